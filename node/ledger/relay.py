"""EIP-712 signatures for relayed actions.

Every relayable function of an rxledger contract has its own EIP-712 struct type: the function name
in UpperCamelCase, its parameters in order, then `uint256 nonce,uint256 deadline` (see
RelayedActions.sol). We derive the type from the ABI so Python and Solidity cannot drift apart
silently: a test compares our type hash with the contract's `actionTypeHash(selector)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.contract import Contract

DOMAIN_VERSION = "1"


def abi_function(contract: Contract, fn_name: str) -> Mapping[str, Any]:
    """The ABI entry of a function of `contract` (KeyError when it has none of that name)."""
    for entry in contract.abi:
        if entry.get("type") == "function" and entry.get("name") == fn_name:
            return entry
    raise KeyError(f"{fn_name} is not a function of the contract")


def action_type_name(fn_name: str) -> str:
    return fn_name[0].upper() + fn_name[1:]


def action_fields(contract: Contract, fn_name: str) -> list[dict[str, str]]:
    inputs = abi_function(contract, fn_name)["inputs"]
    fields = [{"name": i["name"], "type": i["type"]} for i in inputs]
    return [*fields, {"name": "nonce", "type": "uint256"}, {"name": "deadline", "type": "uint256"}]


def action_type_string(contract: Contract, fn_name: str) -> str:
    members = ",".join(f"{f['type']} {f['name']}" for f in action_fields(contract, fn_name))
    return f"{action_type_name(fn_name)}({members})"


def action_type_hash(contract: Contract, fn_name: str) -> bytes:
    return bytes(keccak(text=action_type_string(contract, fn_name)))


@dataclass(frozen=True)
class SignedAction:
    """Everything `relay(action, signer, deadline, signature)` takes."""

    action: bytes
    signer: str
    deadline: int
    signature: bytes
    nonce: int


def _json_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def typed_data(
    contract: Contract,
    domain_name: str,
    chain_id: int,
    fn_name: str,
    args: Sequence[Any],
    *,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """The EIP-712 typed data (as JSON: bytes in 0x-hex) a signer signs to have `fn_name(*args)` of
    `contract` relayed; what `eth_signTypedData_v4` and `Account.sign_typed_data` take."""
    fields = action_fields(contract, fn_name)
    params = fields[:-2]
    if len(params) != len(args):
        raise ValueError(f"{fn_name} takes {len(params)} arguments, got {len(args)}")
    message = {f["name"]: _json_value(a) for f, a in zip(params, args, strict=True)}
    message["nonce"] = nonce
    message["deadline"] = deadline
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            action_type_name(fn_name): fields,
        },
        "primaryType": action_type_name(fn_name),
        "domain": {
            "name": domain_name,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": contract.address,
        },
        "message": message,
    }


def recover_signer(typed: Mapping[str, Any], signature: bytes) -> str:
    """The address that signed `typed` (EIP-712)."""
    recovered: str = Account.recover_message(encode_typed_data(full_message=dict(typed)), signature=signature)
    return recovered


def sign_action(
    contract: Contract,
    domain_name: str,
    chain_id: int,
    signer: LocalAccount,
    fn_name: str,
    args: Sequence[Any],
    *,
    nonce: int,
    deadline: int,
) -> SignedAction:
    """Sign the action `fn_name(*args)` of `contract` with `signer` for relaying."""
    typed = typed_data(contract, domain_name, chain_id, fn_name, args, nonce=nonce, deadline=deadline)
    signed = Account.sign_message(encode_typed_data(full_message=typed), signer.key)
    action = bytes.fromhex(contract.encode_abi(fn_name, args=list(args))[2:])
    return SignedAction(action, signer.address, deadline, bytes(signed.signature), nonce)


DOMAIN_NAMES = {
    "ConsortiumRegistry": "rxledger.ConsortiumRegistry",
    "BatchRegistry": "rxledger.BatchRegistry",
    "CustodyLedger": "rxledger.CustodyLedger",
}
