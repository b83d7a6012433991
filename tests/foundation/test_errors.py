"""Revert decoding: selectors from all ABIs, args decoded, from calls, gas estimation and mined txs."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_abi.grammar import parse
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from node.artifacts import load_all_artifacts, load_artifact
from node.chain import Sender, call
from node.errors import (
    EMPTY_REVERT,
    UNKNOWN_ERROR,
    ContractRevert,
    ErrorRegistry,
    ErrorSpec,
    RevertNotRaised,
    decode_revert,
    expect_revert,
)


def selector(signature: str) -> bytes:
    return bytes(keccak(text=signature)[:4])


@pytest.fixture(scope="module")
def registry(probe_artifacts: Path) -> ErrorRegistry:
    return ErrorRegistry.from_artifacts(probe_artifacts)


def test_decodes_custom_error_with_checksummed_address(
    registry: ErrorRegistry, accounts: list[LocalAccount]
) -> None:
    who = accounts[3].address
    data = selector("NotAllowed(address,uint256)") + encode(["address", "uint256"], [who, 7])
    decoded = decode_revert(data, registry)
    assert decoded is not None
    assert (decoded.name, decoded.args) == ("NotAllowed", (who, 7))
    assert decoded.kwargs == {"caller": who, "code": 7}
    assert str(decoded) == f"NotAllowed(caller='{who}', code=7)"


def test_decodes_tuple_and_array_args(registry: ErrorRegistry, accounts: list[LocalAccount]) -> None:
    who = accounts[4].address
    item = b"\x11" * 32
    data = selector("BadPair((bytes32,address),uint8[])") + encode(
        ["(bytes32,address)", "uint8[]"], [(item, who), [1, 2]]
    )
    decoded = decode_revert(data, registry)
    assert decoded is not None
    assert decoded.args == ((item, who), (1, 2))


def test_builtin_error_and_panic(registry: ErrorRegistry) -> None:
    message = decode_revert(selector("Error(string)") + encode(["string"], ["nope"]), registry)
    assert message is not None and (message.name, message.args) == ("Error", ("nope",))
    panic = decode_revert(selector("Panic(uint256)") + encode(["uint256"], [0x11]), registry)
    assert panic is not None and panic.args == (0x11,)
    assert "overflow" in str(panic)


def test_unknown_empty_and_malformed(registry: ErrorRegistry) -> None:
    assert decode_revert(b"\xde\xad\xbe\xef" + bytes(32), registry) is None
    assert decode_revert(b"", registry) is None
    assert decode_revert(selector("NotAllowed(address,uint256)") + b"\x01", registry) is None  # truncated
    unknown = ContractRevert.from_data(b"\xde\xad\xbe\xef", registry)
    assert unknown.name == UNKNOWN_ERROR and unknown.selector == b"\xde\xad\xbe\xef"
    assert ContractRevert.from_data(b"", registry).name == EMPTY_REVERT


def test_registry_rejects_selector_clash() -> None:
    registry = ErrorRegistry([ErrorSpec("burn", ("uint256",), ("x",))])
    registry.add(ErrorSpec("burn", ("uint256",), ("amount",)))  # same signature again: fine
    # A known 4-byte collision: two signatures, one selector (0x42966c68). Decoding would be ambiguous.
    with pytest.raises(ValueError, match="selector clash"):
        registry.add(ErrorSpec("collate_propagate_storage", ("bytes16",), ("x",)))


def test_every_error_of_the_suite_round_trips() -> None:
    """Each custom error in the committed artifacts decodes from its own encoding (zero values)."""
    registry = ErrorRegistry.from_artifacts()
    seen = 0
    for artifact in load_all_artifacts().values():
        for entry in artifact.abi:
            if entry["type"] != "error":
                continue
            spec = ErrorSpec.from_abi(entry)
            decoded = registry.decode(spec.selector + _zero_encoding(spec.types))
            assert decoded is not None and decoded.signature == spec.signature
            seen += 1
    assert seen > 0


def _zero_encoding(types: tuple[str, ...]) -> bytes:
    """ABI encoding of zero/empty values of `types` (arrays get one element when dynamic-sized)."""

    def default(t: str) -> object:
        parsed = parse(t)
        if parsed.is_array:
            size = parsed.arrlist[-1]
            item = parsed.item_type.to_type_str()
            return [default(item) for _ in range(size[0] if size else 1)]
        if t.startswith("("):
            return tuple(default(c.to_type_str()) for c in parsed.components)
        if parsed.base == "address":
            return "0x" + "00" * 20
        if parsed.base == "bool":
            return False
        if parsed.base == "string":
            return ""
        if parsed.base == "bytes":
            return bytes(int(parsed.sub)) if parsed.sub else b""
        return 0  # int/uint of any size

    return encode(list(types), [default(t) for t in types])


def test_contract_revert_is_picklable_and_readable() -> None:
    exc = ContractRevert(
        "NotAllowed", ("0xabc", 7), b"\x01\x02\x03\x04", arg_names=("caller", "code"), tx_hash=HexStr("0x12")
    )
    clone = pickle.loads(pickle.dumps(exc))
    assert (clone.name, clone.args, clone.selector, clone.tx_hash) == (
        "NotAllowed",
        ("0xabc", 7),
        b"\x01\x02\x03\x04",
        "0x12",
    )
    assert str(exc) == "reverted: NotAllowed(caller='0xabc', code=7) (tx 0x12)"


# -- against a live chain ------------------------------------------------------------------------


@pytest.fixture
def probe(
    w3: Web3,
    accounts: list[LocalAccount],
    probe_artifacts: Path,
    registry: ErrorRegistry,
    chain_snapshot: str,
) -> Contract:
    artifact = load_artifact("Probe", probe_artifacts)
    receipt = Sender(w3, accounts[0], registry=registry).deploy(
        artifact.abi, artifact.bytecode, [accounts[0].address]
    )
    address = receipt["contractAddress"]
    assert address is not None
    return w3.eth.contract(address=address, abi=artifact.abi)


def test_call_revert_carries_name_and_args(
    probe: Contract, accounts: list[LocalAccount], registry: ErrorRegistry
) -> None:
    who = accounts[5].address
    with pytest.raises(ContractRevert) as caught:
        call(probe.functions.bump(), sender=who, registry=registry)
    assert (caught.value.name, caught.value.args) == ("NotAllowed", (who, 7))
    with expect_revert("BadPair", registry=registry) as got:
        call(probe.functions.pair(b"\x22" * 32, who), registry=registry)
    assert got[0].args == ((b"\x22" * 32, who), (1, 2))
    with expect_revert("Error", "plain reason", registry=registry):
        call(probe.functions.message(), registry=registry)
    with expect_revert("Panic", 0x12, registry=registry):
        call(probe.functions.divide(0), registry=registry)


def test_transaction_reverts_at_estimation_and_when_mined(
    w3: Web3, probe: Contract, accounts: list[LocalAccount], registry: ErrorRegistry
) -> None:
    outsider = Sender(w3, accounts[6], registry=registry)
    block_before = w3.eth.block_number
    with pytest.raises(ContractRevert) as estimated:
        outsider.transact(probe.functions.bump())
    assert estimated.value.name == "NotAllowed" and estimated.value.tx_hash is None
    assert w3.eth.block_number == block_before  # refused before sending anything

    # With explicit gas nothing is estimated: the tx is mined with status 0 and we recover the
    # revert data from the node's trace.
    with pytest.raises(ContractRevert) as mined:
        outsider.transact(probe.functions.bump(), gas=100_000)
    assert (mined.value.name, mined.value.args) == ("NotAllowed", (accounts[6].address, 7))
    assert mined.value.tx_hash is not None
    receipt = w3.eth.get_transaction_receipt(mined.value.tx_hash)
    assert receipt["status"] == 0

    with pytest.raises(ContractRevert) as out_of_gas:
        Sender(w3, accounts[0], registry=registry).transact(probe.functions.bump(), gas=23_000)
    assert out_of_gas.value.name == EMPTY_REVERT
    assert out_of_gas.value.reason is not None and "gas" in out_of_gas.value.reason.lower()


def test_successful_transaction_and_expect_revert_misses(
    w3: Web3, probe: Contract, accounts: list[LocalAccount], sender_for: Callable[[LocalAccount], Sender]
) -> None:
    receipt = sender_for(accounts[0]).transact(probe.functions.bump())
    assert receipt["status"] == 1
    assert probe.functions.counter().call() == 1
    with pytest.raises(RevertNotRaised), expect_revert("NotAllowed"):
        probe.functions.counter().call()
    with pytest.raises(AssertionError, match="expected revert Other"), expect_revert("Other"):
        call(probe.functions.divide(0))
