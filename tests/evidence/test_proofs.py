"""Receipt inclusion proofs against a real Anvil: blocks with several transactions of every common type
(legacy, EIP-2930, EIP-1559; calls that log, a contract creation, a revert), and tampering anywhere."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import rlp
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from trie.hexary import HexaryTrie
from web3 import Web3

from node.accounts import dev_accounts
from node.chain import make_web3
from node.devnet import Devnet, free_port
from node.evidence import proofs
from node.evidence.proofs import (
    HEADER_FIELDS,
    EvidenceError,
    RpcError,
    block_header,
    encode_receipt,
    header_hash,
    receipt_proof,
    receipt_proofs,
    verify_against_rpc,
    verify_receipt_proof,
)

pytestmark = pytest.mark.chain

GWEI = 10**9
TOPIC = keccak(b"CustodyStep(bytes)")
# Runtime: copy calldata to memory, LOG1(memory[0:calldatasize], TOPIC), stop.
RUNTIME = bytes.fromhex("3660006000377f") + TOPIC + bytes.fromhex("366000a100")
# Init code: CODECOPY the runtime (appended after these 11 bytes) to memory 0 and RETURN it.
INIT = bytes.fromhex(f"60{len(RUNTIME):02x}80600b6000396000f3") + RUNTIME


@dataclass
class Chain:
    devnet: Devnet
    w3: Web3
    logger: str  # address of the LOG1 contract
    multi: int  # block with a mix of tx types, a creation and a revert
    wide: int  # block with 24 txs (a deeper trie)
    single: int  # block with one tx
    empty: int  # block with none
    items: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    def item(self, block: int, index: int) -> dict[str, Any]:
        """A fresh copy of the evidence item (tests may tamper with it)."""
        if (block, index) not in self.items:
            self.items[block, index] = receipt_proof(self.devnet.rpc_url, block, index)
        return copy.deepcopy(self.items[block, index])

    def tx_count(self, block: int) -> int:
        return len(self.devnet.rpc("eth_getBlockByNumber", [hex(block), False])["transactions"])


def _send(devnet: Devnet, account: LocalAccount, nonces: dict[str, int], **tx: Any) -> str:
    """Sign and send one transaction; fees stay uniform per sender (TOOLCHAIN-NOTES: Anvil drops a
    queued tx priced far above the same sender's earlier ones)."""
    full: dict[str, Any] = {"chainId": 31337, "nonce": nonces.get(account.address, 0), "value": 0, **tx}
    if "gasPrice" not in full:
        full |= {"maxFeePerGas": 10 * GWEI, "maxPriorityFeePerGas": GWEI}
    nonces[account.address] = full["nonce"] + 1
    raw = account.sign_transaction(full).raw_transaction
    tx_hash: str = devnet.rpc("eth_sendRawTransaction", [raw.to_0x_hex()])
    return tx_hash


def _wait_receipt(devnet: Devnet, tx_hash: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (receipt := devnet.rpc("eth_getTransactionReceipt", [tx_hash])) is None:
        assert time.monotonic() < deadline, f"{tx_hash} was not mined"
        time.sleep(0.01)  # automine mines asynchronously: the receipt can lag the send
    return dict(receipt)


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    accounts = dev_accounts()
    nonces: dict[str, int] = {}
    with Devnet(port=0) as devnet:
        w3 = make_web3(devnet.rpc_url)
        deploy = _send(devnet, accounts[0], nonces, data=INIT, gas=200_000)  # automined: block 1
        logger = Web3.to_checksum_address(_wait_receipt(devnet, deploy)["contractAddress"])
        call = {"to": logger, "gas": 100_000}

        devnet.rpc("evm_setAutomine", [False])
        _send(devnet, accounts[0], nonces, **call, data=b"step-1")
        _send(devnet, accounts[0], nonces, **call, data=b"step-2")
        _send(devnet, accounts[1], nonces, to=accounts[9].address, value=1, gas=21_000, gasPrice=10 * GWEI)
        access_list = [{"address": logger, "storageKeys": []}]
        _send(
            devnet,
            accounts[2],
            nonces,
            **call,
            data=b"2930",
            type=1,
            gasPrice=10 * GWEI,
            accessList=access_list,
        )
        _send(devnet, accounts[3], nonces, data=INIT, gas=200_000)  # contract creation
        _send(devnet, accounts[4], nonces, to=logger, data=b"oog!", gas=21_200)  # out of gas: status 0
        _send(devnet, accounts[5], nonces, **call, data=b"legacy", gasPrice=10 * GWEI)
        _send(devnet, accounts[6], nonces, **call, data=b"")
        devnet.rpc("evm_mine")
        for i in range(24):
            _send(devnet, accounts[7 + i % 12], nonces, **call, data=f"wide-{i}".encode())
        devnet.rpc("evm_mine")
        _send(devnet, accounts[19], nonces, **call, data=b"alone")
        devnet.rpc("evm_mine")
        devnet.rpc("evm_mine")
        yield Chain(devnet, w3, logger, multi=2, wide=3, single=4, empty=5)


def _flip_hex(value: str, position: int | None = None, delta: int = 1) -> str:
    """Change one hex digit after "0x" (by default the middle one) to another value; an empty value
    gets a byte instead (extraData is "0x" on Anvil)."""
    digits = value[2:]
    if not digits:
        return "0x00"
    position = len(digits) // 2 if position is None else position
    new = format((int(digits[position], 16) + delta) % 16, "x")
    return "0x" + digits[:position] + new + digits[position + 1 :]


# -- headers -------------------------------------------------------------------------------------


def test_header_hash_equals_node_block_hash(chain: Chain) -> None:
    for number in range(chain.empty + 1):
        header = block_header(chain.devnet.rpc_url, number)
        node_hash = chain.devnet.rpc("eth_getBlockByNumber", [hex(number), False])["hash"]
        assert "0x" + header_hash(header).hex() == node_hash
        assert json.loads(json.dumps(header)) == header
    # Anvil 1.7 defaults to Prague: every fork field is there, in the canonical order
    assert list(block_header(chain.w3, chain.wide)) == [name for name, _ in HEADER_FIELDS]


def test_header_hash_rejects_malformed_headers(chain: Chain) -> None:
    header = block_header(chain.devnet.rpc_url, chain.multi)
    without_base = {k: v for k, v in header.items() if k != "mixHash"}
    with_gap = {k: v for k, v in header.items() if k != "withdrawalsRoot"}
    for bad, message in [
        (without_base, "lacks mixHash"),
        (with_gap, "lacks the earlier fork field withdrawalsRoot"),
        ({**header, "hash": "0x00"}, "unknown fields"),
        ({**header, "number": "0x02"}, "not a 0x-hex quantity"),
        ({**header, "miner": "0xabc"}, "not 0x-hex bytes"),
    ]:
        with pytest.raises(ValueError, match=message):
            header_hash(bad)


# -- building and verifying ----------------------------------------------------------------------


def test_fixture_blocks_cover_the_receipt_kinds(chain: Chain) -> None:
    receipts = chain.devnet.rpc("eth_getBlockReceipts", [hex(chain.multi)])
    assert len(receipts) == 8
    assert {int(r["type"], 16) for r in receipts} == {0, 1, 2}
    assert any(r["contractAddress"] for r in receipts)
    assert {int(r["status"], 16) for r in receipts} == {0, 1}
    assert chain.tx_count(chain.wide) == 24
    assert chain.tx_count(chain.single) == 1
    assert chain.tx_count(chain.empty) == 0


@pytest.mark.parametrize("which", ["multi", "wide", "single"])
def test_every_receipt_of_a_block_verifies(chain: Chain, which: str) -> None:
    block = getattr(chain, which)
    receipts = chain.devnet.rpc("eth_getBlockReceipts", [hex(block)])
    items = receipt_proofs(chain.devnet.rpc_url, block, range(len(receipts)))
    for index, (item, receipt) in enumerate(zip(items, receipts, strict=True)):
        assert item["receipt"] == "0x" + encode_receipt(receipt).hex()
        result = verify_receipt_proof(json.loads(json.dumps(item)))
        assert result.ok, result.reason
        assert result.tx_type == int(receipt["type"], 16)
        assert result.status == int(receipt["status"], 16)
        assert result.cumulative_gas_used == int(receipt["cumulativeGasUsed"], 16)
        assert len(result.logs) == len(receipt["logs"])
        for log, node_log in zip(result.logs, receipt["logs"], strict=True):
            assert log.matches(node_log["address"], node_log["topics"], node_log["data"])
        if index in (0, len(receipts) // 2, len(receipts) - 1):  # the single-tx API gives the same item
            assert receipt_proof(chain.w3, block, index) == item


def test_a_caller_can_check_the_expected_event(chain: Chain) -> None:
    receipts = chain.devnet.rpc("eth_getBlockReceipts", [hex(chain.multi)])
    index = next(
        i for i, r in enumerate(receipts) if r["logs"] and r["logs"][0]["data"] == "0x" + b"2930".hex()
    )
    result = verify_receipt_proof(chain.item(chain.multi, index))
    assert result.ok and result.status == 1 and result.tx_type == 1
    (log,) = result.logs
    assert log.matches(Web3.to_checksum_address(chain.logger), [TOPIC], b"2930")
    assert log.address == bytes.fromhex(chain.logger[2:]) and log.topics == (TOPIC,) and log.data == b"2930"
    assert not log.matches(chain.logger, [TOPIC], b"2931")
    assert not log.matches(chain.logger, [])
    assert not log.matches("not hex", [TOPIC])


def test_reverted_transaction_is_proven_with_status_zero(chain: Chain) -> None:
    receipts = chain.devnet.rpc("eth_getBlockReceipts", [hex(chain.multi)])
    index = next(i for i, r in enumerate(receipts) if r["status"] == "0x0")
    result = verify_receipt_proof(chain.item(chain.multi, index))
    assert result.ok and result.status == 0 and result.logs == ()


def test_encode_receipt_accepts_web3_decoded_receipts(chain: Chain) -> None:
    raw = chain.devnet.rpc("eth_getBlockReceipts", [hex(chain.multi)])
    decoded = chain.w3.eth.get_block_receipts(chain.multi)
    assert [encode_receipt(r) for r in decoded] == [encode_receipt(r) for r in raw]


def test_falls_back_to_per_transaction_receipts(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_result = proofs._result

    def no_block_receipts(method: str, body: Any) -> Any:
        calls.append(method)
        if method == "eth_getBlockReceipts":
            raise RpcError("the method eth_getBlockReceipts does not exist/is not available")
        return real_result(method, body)

    monkeypatch.setattr(proofs, "_result", no_block_receipts)
    item = receipt_proof(chain.devnet.rpc_url, chain.multi, 3)
    assert calls.count("eth_getTransactionReceipt") == 8
    assert item == chain.item(chain.multi, 3)


def test_receipt_proof_rejects_unknown_blocks_and_indices(chain: Chain) -> None:
    url = chain.devnet.rpc_url
    with pytest.raises(EvidenceError, match="no index 8"):
        receipt_proof(url, chain.multi, 8)
    with pytest.raises(EvidenceError, match="0 transactions"):
        receipt_proof(url, chain.empty, 0)
    with pytest.raises(EvidenceError, match="no block 999"):
        receipt_proof(url, 999, 0)
    with pytest.raises(EvidenceError, match="no block 999"):
        block_header(chain.w3, 999)


# -- tampering -----------------------------------------------------------------------------------


def _assert_fails(item: Any, reason: str, **kwargs: Any) -> None:
    result = verify_receipt_proof(item, **kwargs)
    assert not result.ok
    assert reason in result.reason, result.reason
    assert result.logs == () and result.status is None


@pytest.mark.parametrize("name", [name for name, _ in HEADER_FIELDS])
def test_changed_header_field_fails(chain: Chain, name: str) -> None:
    item = chain.item(chain.wide, 11)
    item["header"][name] = _flip_hex(item["header"][name])
    _assert_fails(item, "header hashes to")


def test_changed_proof_node_fails(chain: Chain) -> None:
    original = chain.item(chain.wide, 11)
    assert len(original["proof"]) >= 3  # root branch, a branch for keys 0x10..0x17, the leaf
    for position in range(len(original["proof"])):
        for digit in (2, len(original["proof"][position]) // 2, len(original["proof"][position]) - 3):
            item = copy.deepcopy(original)
            item["proof"][position] = _flip_hex(item["proof"][position], digit)
            _assert_fails(item, f"proof[{position}]")


OTHER_CHANGES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "receipt-digit": (lambda item: item.update(receipt=_flip_hex(item["receipt"])), "receipt is not the one"),
    "receipt-longer": (lambda item: item.update(receipt=item["receipt"] + "00"), "receipt is not the one"),
    "block_hash": (lambda item: item.update(block_hash=_flip_hex(item["block_hash"])), "not to block_hash"),
    "block_number": (lambda item: item.update(block_number=item["block_number"] + 1), "is not block_number"),
    "tx_index-sibling": (lambda item: item.update(tx_index=12), "proof is incomplete for tx_index 12"),
    "tx_index-far": (lambda item: item.update(tx_index=200), "proof is incomplete for tx_index 200"),
    "proof-no-leaf": (lambda item: item["proof"].pop(), "proof is incomplete"),
    "proof-no-root": (lambda item: item["proof"].pop(0), "proof[0] is not the node receiptsRoot references"),
    "proof-extra-node": (lambda item: item["proof"].append(item["proof"][0]), "proof[3] is not the node"),
    "proof-empty": (lambda item: item.update(proof=[]), "proof is not a non-empty list"),
    "key-missing": (lambda item: item.pop("receipt"), "missing ['receipt']"),
    "key-extra": (lambda item: item.update(note="x"), "unexpected ['note']"),
    "header-field-dropped": (lambda item: item["header"].pop("requestsHash"), "header hashes to"),
}


@pytest.mark.parametrize("name", OTHER_CHANGES)
def test_other_changes_fail(chain: Chain, name: str) -> None:
    change, reason = OTHER_CHANGES[name]
    item = chain.item(chain.wide, 11)
    change(item)
    _assert_fails(item, reason)


def test_proof_of_absence_is_not_a_receipt(chain: Chain) -> None:
    item = chain.item(chain.wide, 23)  # key 0x17: its path passes the branch where 0x18 would be
    item["tx_index"] = 24
    _assert_fails(item, "has no receipt at tx_index 24")


def test_swapped_headers_and_proofs_fail(chain: Chain) -> None:
    wide, multi = chain.item(chain.wide, 1), chain.item(chain.multi, 1)
    _assert_fails({**wide, "proof": multi["proof"]}, "proof[0] is not the node receiptsRoot references")
    _assert_fails({**wide, "receipt": multi["receipt"]}, "receipt is not the one")
    _assert_fails({**wide, "header": multi["header"]}, "not to block_hash")


@pytest.mark.parametrize(
    "item",
    [
        None,
        [],
        "0x",
        {},
        {"block_number": 1},
        {"block_number": True, "block_hash": "0x", "header": {}, "tx_index": 0, "receipt": "0x", "proof": []},
    ],
)
def test_malformed_items_fail_without_raising(chain: Chain, item: Any) -> None:
    assert not verify_receipt_proof(item).ok
    assert not verify_against_rpc(item, chain.devnet.rpc_url).ok


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("block_number", "3"),
        ("block_number", -1),
        ("block_number", 2**64),
        ("tx_index", 1.0),
        ("block_hash", None),
        ("block_hash", "0x" + "zz" * 32),
        ("header", []),
        ("header", {"number": 3}),
        ("receipt", "ff"),
        ("receipt", 7),
        ("proof", "0x00"),
        ("proof", [1, 2]),
        ("proof", ["0xc0"]),
        ("proof", [[]]),
    ],
)
def test_wrong_types_fail_without_raising(chain: Chain, key: str, value: Any) -> None:
    item = chain.item(chain.wide, 11)
    item[key] = value
    result = verify_receipt_proof(item)
    assert not result.ok and result.reason


HEX_LEAVES = [("block_hash",), ("receipt",), *(("header", name) for name, _ in HEADER_FIELDS)]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_changed_hex_digit_fails(chain: Chain, data: st.DataObject) -> None:
    block, index = data.draw(st.sampled_from([(chain.multi, 0), (chain.multi, 5), (chain.wide, 17)]))
    item = chain.item(block, index)
    leaves = HEX_LEAVES + [("proof", i) for i in range(len(item["proof"]))]
    *parents, last = data.draw(st.sampled_from(leaves))
    container: Any = item
    for key in parents:
        container = container[key]
    value: str = container[last]
    position = data.draw(st.integers(0, max(len(value) - 3, 0)))
    container[last] = _flip_hex(value, position, data.draw(st.integers(1, 15)))
    result = verify_receipt_proof(item)
    assert not result.ok and result.reason


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["0x", "0x00", "0x0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), junk=JSON)
def test_junk_anywhere_fails_without_raising(chain: Chain, data: st.DataObject, junk: Any) -> None:
    item = chain.item(chain.multi, 2)
    leaves = [(key,) for key in item] + [("header", name) for name in item["header"]]
    leaves += [("proof", i) for i in range(len(item["proof"]))]
    *parents, last = data.draw(st.sampled_from(leaves))
    container: Any = item
    for key in parents:
        container = container[key]
    assume(container[last] != junk or type(container[last]) is not type(junk))
    container[last] = junk
    result = verify_receipt_proof(item)
    assert not result.ok and result.reason


# -- trusted hashes ------------------------------------------------------------------------------


def test_offline_with_trusted_block_hash(chain: Chain) -> None:
    item = chain.item(chain.multi, 4)
    node_hash = bytes.fromhex(chain.devnet.rpc("eth_getBlockByNumber", [hex(chain.multi), False])["hash"][2:])
    assert verify_receipt_proof(item, trusted_block_hash=node_hash).ok
    other = bytes.fromhex(chain.devnet.rpc("eth_getBlockByNumber", [hex(chain.wide), False])["hash"][2:])
    _assert_fails(item, "is not the trusted hash", trusted_block_hash=other)
    _assert_fails(item, "trusted_block_hash is not 32 bytes", trusted_block_hash=node_hash[:31])
    # Without a trusted hash only consistency is checked: a made-up block passes, so callers must
    # pass one (or use verify_against_rpc).
    forged = _forge(item)
    result = verify_receipt_proof(forged)
    assert result.ok and result.logs[0].data == b"forged"
    _assert_fails(forged, "is not the trusted hash", trusted_block_hash=node_hash)


def _forge(item: dict[str, Any]) -> dict[str, Any]:
    """A self-consistent item for a receipt that is not on the chain: a one-leaf receipts trie and a
    header around it, as someone who controlled the bundle could make."""
    log = {"address": "0x" + "11" * 20, "topics": ["0x" + TOPIC.hex()], "data": "0x" + b"forged".hex()}
    fake = {"type": "0x2", "status": "0x1", "cumulativeGasUsed": "0x5208", "logsBloom": "0x" + "00" * 256}
    receipt = encode_receipt({**fake, "logs": [log]})
    trie = HexaryTrie({})
    key = rlp.encode(item["tx_index"])
    trie[key] = receipt
    header = {**item["header"], "receiptsRoot": "0x" + trie.root_hash.hex()}
    return {
        **item,
        "header": header,
        "block_hash": "0x" + header_hash(header).hex(),
        "receipt": "0x" + receipt.hex(),
        "proof": ["0x" + rlp.encode(node).hex() for node in trie.get_proof(key)],  # type: ignore[no-untyped-call]
    }


def test_verify_against_rpc(chain: Chain) -> None:
    item = chain.item(chain.wide, 23)
    assert verify_against_rpc(item, chain.devnet.rpc_url).ok
    assert verify_against_rpc(item, chain.w3).ok
    forged = _forge(item)
    result = verify_against_rpc(forged, chain.devnet.rpc_url)
    assert not result.ok and "is not the trusted hash" in result.reason
    result = verify_against_rpc({**item, "block_number": 999}, chain.devnet.rpc_url)
    assert not result.ok and "no block 999" in result.reason
    result = verify_against_rpc({**item, "block_number": chain.multi}, chain.devnet.rpc_url)
    assert not result.ok and "not the trusted hash" in result.reason


def test_verify_against_unreachable_node_raises() -> None:
    with pytest.raises(RpcError):
        verify_against_rpc({"block_number": 1}, f"http://127.0.0.1:{free_port()}")
