// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @title PackToken
/// @notice Benchmark baseline only (never deployed by rxledger): the standard journey done the
/// common way, one OpenZeppelin ERC-721 token per pack. Minted by the maker, transferred at each hop,
/// burnt when dispensed. The batch functions only loop, so that a transaction carries as many packs
/// as rxledger's do and the 21,000 gas of a transaction is shared alike.
contract PackToken is ERC721 {
    /// @notice Only the deployer (the maker) mints.
    error NotMinter(address caller);

    address public immutable minter;

    constructor() ERC721("rxledger benchmark pack", "PACK") {
        minter = msg.sender;
    }

    /// @notice Mint `ids` to `to`.
    function mintBatch(address to, uint256[] calldata ids) external {
        if (msg.sender != minter) revert NotMinter(msg.sender);
        for (uint256 i = 0; i < ids.length; ++i) {
            _mint(to, ids[i]);
        }
    }

    /// @notice Hand the caller's `ids` to `to` (one hop of the journey).
    function transferBatch(address to, uint256[] calldata ids) external {
        for (uint256 i = 0; i < ids.length; ++i) {
            transferFrom(msg.sender, to, ids[i]);
        }
    }

    /// @notice Burn the caller's `ids` (dispensed).
    function burnBatch(uint256[] calldata ids) external {
        for (uint256 i = 0; i < ids.length; ++i) {
            _update(address(0), ids[i], msg.sender);
        }
    }
}
