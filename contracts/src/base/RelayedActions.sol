// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title RelayedActions
/// @notice Lets anyone relay a state-changing call that an organisation key signed with EIP-712.
/// @dev Every relayable function has its own EIP-712 struct type, named after the function in
/// UpperCamelCase, whose members are the function's parameters in order followed by
/// `uint256 nonce,uint256 deadline`. The struct hash is computed generically from the ABI-encoded
/// call: static parameters are taken as their 32-byte words, dynamic ones (`bytes`, `string`,
/// `bytes32[]`) as the keccak256 of their contents, exactly as EIP-712 `encodeData` prescribes.
/// The verified call is then executed as a self-call with the signer appended to the calldata
/// (the ERC-2771 convention, with this contract as its own forwarder); `_actor()` recovers it.
abstract contract RelayedActions is EIP712, Nonces {
    /// @dev Parameter kinds in an action's kind mask, two bits per parameter.
    uint256 internal constant PARAM_STATIC = 0;
    uint256 internal constant PARAM_BYTES = 1;
    uint256 internal constant PARAM_WORD_ARRAY = 2;

    /// @notice The relayed signature's deadline has passed.
    error SignatureExpired(uint256 deadline);
    /// @notice The signature does not recover to the claimed signer.
    error InvalidSignature(address signer, address recovered);
    /// @notice The selector is not a relayable action of this contract.
    error ActionNotRelayable(bytes4 selector);
    /// @notice An action of a batch reverted without a custom error: it ran out of gas. The whole
    /// batch is undone, so that a refusal in a batch is always the contract's verdict.
    error ActionOutOfGas(uint256 index);
    /// @notice Only this contract calls this function (one action of a relayed batch).
    error OnlySelf();

    /// @notice One signed action of a relayed batch: what `relay` takes.
    struct SignedAction {
        bytes action;
        address signer;
        uint256 deadline;
        bytes signature;
    }

    /// @notice A signed action was relayed on behalf of `signer` by `relayer`.
    event ActionRelayed(address indexed signer, address indexed relayer, bytes4 indexed selector, uint256 nonce);

    /// @notice The action at `index` of a batch was refused with `reason` (its custom error) and
    /// had no effect; the batch's other actions went ahead.
    event ActionRefused(uint256 indexed index, address indexed signer, bytes reason);

    /// @notice Executes `action` (an ABI-encoded call of this contract) on behalf of `signer`.
    /// @param action The full calldata of the relayable function, selector included.
    /// @param signer The organisation key that signed the EIP-712 typed data of the action.
    /// @param deadline Unix time after which the signature is void; also part of the signed data.
    /// @param signature The 65-byte ECDSA signature over the EIP-712 digest.
    /// @return result The relayed function's return data.
    function relay(bytes calldata action, address signer, uint256 deadline, bytes calldata signature)
        external
        returns (bytes memory result)
    {
        return _relay(msg.sender, action, signer, deadline, signature);
    }

    /// @notice Executes several actions of the sender, in order; a refused action is reported as
    /// ActionRefused and undone on its own, the others go ahead.
    /// @param actions Full calldata of relayable functions of this contract, selectors included.
    /// @return refusals Per action: empty when it went ahead, else the custom error it reverted with.
    function batchActions(bytes[] calldata actions) external returns (bytes[] memory refusals) {
        refusals = new bytes[](actions.length);
        for (uint256 i = 0; i < actions.length; ++i) {
            _actionType(bytes4(actions[i][:4])); // relayable actions only, as relay allows
            // The sender acts, appended as a relay self-call appends the signer (see _actor).
            (bool ok, bytes memory reason) = address(this).call(abi.encodePacked(actions[i], msg.sender));
            if (!ok) refusals[i] = _refused(i, msg.sender, reason);
        }
    }

    /// @notice Relays several signed actions (of any signers) in order; a refused action (expired,
    /// badly signed, or refused by the contract) is reported as ActionRefused and undone on its own,
    /// its nonce included; the others go ahead.
    /// @param actions What `relay` takes, per action.
    /// @return refusals Per action: empty when it went ahead, else the custom error it reverted with.
    function relayBatch(SignedAction[] calldata actions) external returns (bytes[] memory refusals) {
        refusals = new bytes[](actions.length);
        for (uint256 i = 0; i < actions.length; ++i) {
            SignedAction calldata a = actions[i];
            (bool ok, bytes memory reason) = address(this).call(
                abi.encodeCall(this.relayInBatch, (msg.sender, a.action, a.signer, a.deadline, a.signature))
            );
            if (!ok) refusals[i] = _refused(i, a.signer, reason);
        }
    }

    /// @notice One action of `relayBatch`, in a call frame of its own so that a refusal undoes it
    /// alone; only this contract may call it.
    /// @param relayer The batch's sender, named in ActionRelayed.
    /// @param action As for `relay`.
    /// @param signer As for `relay`.
    /// @param deadline As for `relay`.
    /// @param signature As for `relay`.
    /// @return result The relayed function's return data.
    function relayInBatch(
        address relayer,
        bytes calldata action,
        address signer,
        uint256 deadline,
        bytes calldata signature
    ) external returns (bytes memory result) {
        if (msg.sender != address(this)) revert OnlySelf();
        return _relay(relayer, action, signer, deadline, signature);
    }

    /// @notice The EIP-712 type hash of a relayable action.
    /// @param selector The function selector of the action.
    /// @return typeHash keccak256 of the action's EIP-712 type string.
    function actionTypeHash(bytes4 selector) external pure returns (bytes32 typeHash) {
        (typeHash,,) = _actionType(selector);
    }

    /// @dev Returns the type hash, the parameter count and the two-bit kind mask of a relayable
    /// action; must revert with ActionNotRelayable for any other selector.
    function _actionType(bytes4 selector)
        internal
        pure
        virtual
        returns (bytes32 typeHash, uint256 paramCount, uint256 kindMask);

    function _relay(address relayer, bytes calldata action, address signer, uint256 deadline, bytes calldata signature)
        private
        returns (bytes memory result)
    {
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        bytes4 selector = bytes4(action[:4]);
        uint256 nonce = _useNonce(signer);
        bytes32 digest = _hashTypedDataV4(_actionStructHash(selector, action[4:], nonce, deadline));
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || recovered != signer) revert InvalidSignature(signer, recovered);
        emit ActionRelayed(signer, relayer, selector, nonce);
        bool ok;
        (ok, result) = address(this).call(abi.encodePacked(action, signer));
        if (!ok) {
            // Bubble the relayed call's custom error up unchanged.
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
    }

    /// @dev Reports a refused batch action; a revert without data is running out of gas, which
    /// must not pass for the contract's verdict: it undoes the whole batch.
    function _refused(uint256 index, address signer, bytes memory reason) private returns (bytes memory) {
        if (reason.length == 0) revert ActionOutOfGas(index);
        emit ActionRefused(index, signer, reason);
        return reason;
    }

    /// @dev The key that acts: the relayed signer inside a relay self-call, else the sender.
    function _actor() internal view returns (address) {
        if (msg.sender == address(this) && msg.data.length >= 24) {
            return address(bytes20(msg.data[msg.data.length - 20:]));
        }
        return msg.sender;
    }

    function _actionStructHash(bytes4 selector, bytes calldata args, uint256 nonce, uint256 deadline)
        private
        pure
        returns (bytes32)
    {
        (bytes32 typeHash, uint256 paramCount, uint256 kindMask) = _actionType(selector);
        bytes32[] memory words = new bytes32[](paramCount + 3);
        words[0] = typeHash;
        for (uint256 i = 0; i < paramCount; ++i) {
            bytes32 word = bytes32(args[i * 32:i * 32 + 32]);
            uint256 kind = (kindMask >> (2 * i)) & 3;
            if (kind != PARAM_STATIC) {
                uint256 offset = uint256(word);
                uint256 length = uint256(bytes32(args[offset:offset + 32]));
                if (kind == PARAM_WORD_ARRAY) length *= 32;
                word = keccak256(args[offset + 32:offset + 32 + length]);
            }
            words[i + 1] = word;
        }
        words[paramCount + 1] = bytes32(nonce);
        words[paramCount + 2] = bytes32(deadline);
        return keccak256(abi.encodePacked(words));
    }
}
