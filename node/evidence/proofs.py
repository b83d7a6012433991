"""Receipt inclusion proofs that an inspector can check without trusting our API.

A custody step is a log in a transaction receipt. An evidence item (JSON, built by `receipt_proof`)
carries that receipt, the block header, and the receipts-trie path from the header's receiptsRoot to
the receipt::

    {"block_number": int, "block_hash": "0x..", "header": {"parentHash": "0x..", ...},
     "tx_index": int, "receipt": "0x<consensus-encoded receipt>", "proof": ["0x<rlp trie node>", ...]}

Verifying needs only RLP, keccak and the `trie` package: the header must hash to the block hash (which
the inspector trusts: from their own node, or a list of known hashes), and the proof must lead from
receiptsRoot to exactly this receipt. The receipt then says what the transaction logged.

Not proven here: which transaction produced the receipt (its hash or sender). A receipt's logs name
the emitting contract, which is what custody checks need; binding the tx hash would take a second
proof against transactionsRoot (same key scheme, value = the raw transaction).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx
import rlp
from eth_hash.auto import keccak
from trie.exceptions import BadTrieProof
from trie.hexary import HexaryTrie
from web3 import Web3
from web3.types import RPCEndpoint

# Header fields in consensus (RLP) order, and whether each is an integer (JSON-RPC QUANTITY) rather than
# bytes (DATA). The first 15 are in every header; each later one was appended by a fork and is present
# from that fork on: London, Shanghai, Cancun (three), Prague. Besu QBFT headers are hashed the same way
# (their extraData, with the validators' seals, is hashed as the node returns it).
HEADER_FIELDS: tuple[tuple[str, bool], ...] = (
    ("parentHash", False),
    ("sha3Uncles", False),
    ("miner", False),
    ("stateRoot", False),
    ("transactionsRoot", False),
    ("receiptsRoot", False),
    ("logsBloom", False),
    ("difficulty", True),
    ("number", True),
    ("gasLimit", True),
    ("gasUsed", True),
    ("timestamp", True),
    ("extraData", False),
    ("mixHash", False),
    ("nonce", False),
    ("baseFeePerGas", True),  # London
    ("withdrawalsRoot", False),  # Shanghai
    ("blobGasUsed", True),  # Cancun
    ("excessBlobGas", True),  # Cancun
    ("parentBeaconBlockRoot", False),  # Cancun
    ("requestsHash", False),  # Prague
)
BASE_HEADER_FIELDS = 15
_HEADER_NAMES = frozenset(name for name, _ in HEADER_FIELDS)
# eth_getBlockByNumber keys that are not part of the header (not hashed)
_BLOCK_ONLY_KEYS = frozenset({"hash", "size", "totalDifficulty", "uncles", "transactions", "withdrawals"})
ITEM_KEYS = frozenset({"block_number", "block_hash", "header", "tx_index", "receipt", "proof"})
_MAX_INDEX = 2**63  # block numbers and tx indices are uint64; bounds what we send to a node

_QUANTITY = re.compile(r"0x(?:0|[1-9a-fA-F][0-9a-fA-F]*)")  # JSON-RPC QUANTITY: no leading zeros
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")

Rpc: TypeAlias = str | Web3
"""A JSON-RPC endpoint: its URL, or a Web3 (its provider makes raw calls, so any web3 setup works)."""
_Call: TypeAlias = Callable[[str, list[Any]], Any]


class EvidenceError(RuntimeError):
    """Building evidence or asking a node failed (unknown block or tx, node error, inconsistent data)."""


class RpcError(EvidenceError):
    """The node answered a JSON-RPC call with an error, or could not be reached."""


@dataclass(frozen=True)
class Log:
    """One log of a proven receipt, as the chain stores it."""

    address: bytes
    topics: tuple[bytes, ...]
    data: bytes

    def matches(
        self, address: str | bytes, topics: Sequence[str | bytes], data: str | bytes | None = None
    ) -> bool:
        """True if this log has this emitter and exactly these topics (and this data, when given).
        Hex strings may be checksummed or lower-case."""
        try:
            return (
                self.address == _as_bytes(address)
                and self.topics == tuple(_as_bytes(topic) for topic in topics)
                and (data is None or self.data == _as_bytes(data))
            )
        except ValueError:
            return False


@dataclass(frozen=True)
class ProofResult:
    """Outcome of a verification. When `ok`, the receipt fields are proven; check `status` too (a
    reverted transaction's receipt is genuinely in the block, but it has no logs)."""

    ok: bool
    reason: str
    tx_type: int | None = None
    status: int | None = None  # 1 success, 0 reverted; None if not ok (or a pre-Byzantium state root)
    cumulative_gas_used: int | None = None
    logs: tuple[Log, ...] = ()  # in order: logs[i] is the i-th log of the transaction


# -- JSON-RPC ------------------------------------------------------------------------------------


@contextmanager
def _connect(rpc: Rpc) -> Iterator[_Call]:
    """A raw JSON-RPC call function (results stay JSON: hex strings, as the header hash needs)."""
    if isinstance(rpc, Web3):
        w3 = rpc

        def web3_call(method: str, params: list[Any]) -> Any:
            return _result(method, w3.provider.make_request(RPCEndpoint(method), params))

        yield web3_call
        return
    ids = itertools.count(1)
    with httpx.Client(timeout=30.0) as client:

        def http_call(method: str, params: list[Any]) -> Any:
            payload = {"jsonrpc": "2.0", "id": next(ids), "method": method, "params": params}
            try:
                reply = client.post(rpc, json=payload)
                reply.raise_for_status()
                body = reply.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise RpcError(f"{method} on {rpc}: {exc}") from exc
            return _result(method, body)

        yield http_call


def _result(method: str, body: Mapping[str, Any]) -> Any:
    if body.get("error"):
        raise RpcError(f"{method} failed: {body['error']}")
    return body.get("result")


def _get_block(call: _Call, block_number: int) -> dict[str, Any]:
    block: dict[str, Any] | None = call("eth_getBlockByNumber", [hex(block_number), False])
    if not block:
        raise EvidenceError(f"the node has no block {block_number}")
    return block


# -- encodings -----------------------------------------------------------------------------------


def _quantity(value: object, what: str) -> int:
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise ValueError(f"{what} is not a 0x-hex quantity: {value!r:.80}")
    return int(value, 16)


def _data(value: object, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not _DATA.fullmatch(value):
        raise ValueError(f"{what} is not 0x-hex bytes: {value!r:.80}")
    raw = bytes.fromhex(value[2:])
    if length is not None and len(raw) != length:
        raise ValueError(f"{what} is {len(raw)} bytes, expected {length}")
    return raw


def _as_int(value: Any) -> int:
    """An int from node JSON (hex string) or from web3's decoded form (int)."""
    return value if isinstance(value, int) else int(value, 16)


def _as_bytes(value: Any) -> bytes:
    """Bytes from node JSON (hex string, any case) or from web3's decoded form (HexBytes)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise ValueError(f"not hex bytes: {value!r:.80}")
    return bytes.fromhex(value.removeprefix("0x"))


def _key(tx_index: int) -> bytes:
    # Consensus rule: the receipts (and transactions) trie is keyed by rlp(index), not the raw index,
    # so index 0 is 0x80, 1..127 are single bytes and 128 is 0x8180.
    key: bytes = rlp.encode(tx_index)
    return key


def _header_items(header: Mapping[str, Any]) -> list[int | bytes]:
    if not isinstance(header, Mapping):
        raise ValueError("header is not an object")
    unknown = set(header) - _HEADER_NAMES
    if unknown:
        raise ValueError(f"header has unknown fields {sorted(map(str, unknown))}")
    items: list[int | bytes] = []
    absent: str | None = None
    for position, (name, is_int) in enumerate(HEADER_FIELDS):
        if name not in header:
            if position < BASE_HEADER_FIELDS:
                raise ValueError(f"header lacks {name}")
            absent = absent or name
            continue
        if absent:  # fork fields are positional: a later one cannot exist without the earlier ones
            raise ValueError(f"header has {name} but lacks the earlier fork field {absent}")
        value = header[name]
        items.append(_quantity(value, f"header.{name}") if is_int else _data(value, f"header.{name}"))
    return items


def header_hash(header: Mapping[str, Any]) -> bytes:
    """keccak(rlp(header fields in consensus order)): the block hash. Optional (fork) fields are hashed
    when present. Raises ValueError for a malformed header."""
    return bytes(keccak(rlp.encode(_header_items(header))))


def _header_of(block: Mapping[str, Any]) -> dict[str, str]:
    """The header fields of an eth_getBlockByNumber result, normalised (lower-case hex, minimal
    quantities), after checking they hash to the hash the node reports."""
    header: dict[str, str] = {}
    for name, is_int in HEADER_FIELDS:
        value = block.get(name)
        if value is not None:
            header[name] = hex(_as_int(value)) if is_int else "0x" + _as_bytes(value).hex()
    number = block.get("number")
    try:
        computed = header_hash(header)
    except ValueError as exc:
        raise EvidenceError(f"block {number}: {exc}") from exc
    reported = str(block.get("hash", "")).lower()
    if "0x" + computed.hex() != reported:
        unknown = sorted(set(block) - _HEADER_NAMES - _BLOCK_ONLY_KEYS)
        hint = f"; the node returned fields this module does not know: {unknown}" if unknown else ""
        raise EvidenceError(
            f"block {number}: header hashes to 0x{computed.hex()}, node says {reported}{hint}"
        )
    return header


def block_header(w3_or_rpc: Rpc, block_number: int) -> dict[str, str]:
    """The header of a block as JSON hex strings: the fields `header_hash` needs, nothing else.
    Raises EvidenceError if they do not hash to the block hash the node reports."""
    with _connect(w3_or_rpc) as call:
        return _header_of(_get_block(call, block_number))


def encode_receipt(receipt: Mapping[str, Any]) -> bytes:
    """The consensus encoding of a receipt (eth_getTransactionReceipt JSON, or web3's decoded form):
    rlp([status, cumulativeGasUsed, logsBloom, [[address, topics, data], ...]]), prefixed with the type
    byte for typed (EIP-2718) receipts."""
    tx_type = _as_int(receipt.get("type") or 0)
    # pre-Byzantium receipts carry a state root where later ones have the status
    status = receipt.get("status")
    outcome = _as_int(status) if status is not None else _as_bytes(receipt["root"])
    logs = [
        [_as_bytes(log["address"]), [_as_bytes(topic) for topic in log["topics"]], _as_bytes(log["data"])]
        for log in receipt["logs"]
    ]
    payload: bytes = rlp.encode(
        [outcome, _as_int(receipt["cumulativeGasUsed"]), _as_bytes(receipt["logsBloom"]), logs]
    )
    return payload if tx_type == 0 else bytes([tx_type]) + payload


# -- building proofs -----------------------------------------------------------------------------


def _block_receipts(call: _Call, block_number: int, tx_hashes: Sequence[str]) -> list[Mapping[str, Any]]:
    receipts: list[Mapping[str, Any]] | None
    try:
        receipts = call("eth_getBlockReceipts", [hex(block_number)])
    except RpcError:
        receipts = None  # not every node has it (it is newer than the rest of the eth_ API)
    if receipts is None:
        receipts = [call("eth_getTransactionReceipt", [tx_hash]) for tx_hash in tx_hashes]
    if len(receipts) != len(tx_hashes):
        raise EvidenceError(
            f"block {block_number}: {len(receipts)} receipts for {len(tx_hashes)} transactions"
        )
    for index, (receipt, tx_hash) in enumerate(zip(receipts, tx_hashes, strict=True)):
        if (
            not receipt
            or _as_int(receipt["transactionIndex"]) != index
            or str(receipt["transactionHash"]).lower() != tx_hash.lower()
        ):
            raise EvidenceError(f"block {block_number}: the node's receipt {index} is not that of {tx_hash}")
    return receipts


def _get_proof(trie: HexaryTrie, key: bytes) -> tuple[Any, ...]:
    proof: tuple[Any, ...] = trie.get_proof(key)  # type: ignore[no-untyped-call]
    return proof


def receipt_proofs(rpc: Rpc, block_number: int, tx_indices: Iterable[int]) -> list[dict[str, Any]]:
    """Evidence items (see the module doc) for several transactions of one block, building the block's
    receipts trie once. Raises EvidenceError if the rebuilt trie does not match the header."""
    indices = list(tx_indices)
    with _connect(rpc) as call:
        block = _get_block(call, block_number)
        header = _header_of(block)
        tx_hashes: list[str] = block["transactions"]
        for tx_index in indices:
            if not 0 <= tx_index < len(tx_hashes):
                raise EvidenceError(
                    f"block {block_number} has {len(tx_hashes)} transactions, no index {tx_index}"
                )
        receipts = _block_receipts(call, block_number, tx_hashes)
    trie = HexaryTrie({})
    for index, receipt in enumerate(receipts):
        trie[_key(index)] = encode_receipt(receipt)
    if trie.root_hash != _as_bytes(header["receiptsRoot"]):
        raise EvidenceError(
            f"block {block_number}: receipts trie root 0x{trie.root_hash.hex()} != receiptsRoot "
            f"{header['receiptsRoot']} (a receipt type this module cannot encode?)"
        )
    block_hash = "0x" + header_hash(header).hex()  # _header_of checked it equals the node's hash
    return [
        {
            "block_number": block_number,
            "block_hash": block_hash,
            "header": dict(header),
            "tx_index": tx_index,
            "receipt": "0x" + trie[_key(tx_index)].hex(),
            # get_proof gives decoded nodes, root first; ship each in its hashed (RLP) form
            "proof": ["0x" + rlp.encode(node).hex() for node in _get_proof(trie, _key(tx_index))],
        }
        for tx_index in indices
    ]


def receipt_proof(rpc: Rpc, block_number: int, tx_index: int) -> dict[str, Any]:
    """The evidence item for transaction `tx_index` of block `block_number` (see the module doc)."""
    return receipt_proofs(rpc, block_number, [tx_index])[0]


# -- verifying -----------------------------------------------------------------------------------


def _index(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_INDEX:
        raise ValueError(f"{what} is not a non-negative integer: {value!r:.80}")
    return value


def _decode_chain(root: bytes, nodes: Sequence[bytes]) -> list[Any]:
    """Decode the proof nodes after checking each is the one its parent references (node 0: the root).
    trie.get_from_proof alone would ignore a node it does not need, so a changed byte there would pass."""
    decoded: list[Any] = []
    references: list[Any] = [root]
    for i, raw in enumerate(nodes):
        try:
            node = rlp.decode(raw)
        except rlp.exceptions.DecodingError as exc:
            raise ValueError(f"proof[{i}] is not valid RLP: {exc}") from exc
        # a child is referenced by hash, or embedded whole when its encoding is under 32 bytes
        if bytes(keccak(raw)) not in references and (len(raw) >= 32 or node not in references):
            where = "receiptsRoot" if i == 0 else f"proof[{i - 1}]"
            raise ValueError(f"proof[{i}] is not the node {where} references")
        if not isinstance(node, list) or len(node) not in (2, 17):
            raise ValueError(f"proof[{i}] is not a trie node")
        references = node[:16] if len(node) == 17 else [node[1]]  # branch children / extension target
        decoded.append(node)
    return decoded


def _decode_receipt(encoded: bytes) -> ProofResult:
    if encoded[0] >= 0xC0:
        tx_type, payload = 0, encoded  # legacy: a bare RLP list
    elif encoded[0] <= 0x7F:
        tx_type, payload = encoded[0], encoded[1:]  # EIP-2718: type byte, then the RLP list
    else:
        raise ValueError("receipt is neither typed nor legacy")
    try:
        fields = rlp.decode(payload)
    except rlp.exceptions.DecodingError as exc:
        raise ValueError(f"receipt is not valid RLP: {exc}") from exc
    if not isinstance(fields, list) or len(fields) != 4 or not isinstance(fields[3], list):
        raise ValueError("receipt is not [status, cumulativeGasUsed, logsBloom, logs]")
    outcome, gas_used, _bloom, raw_logs = fields
    logs: list[Log] = []
    for i, raw in enumerate(raw_logs):
        if not (isinstance(raw, list) and len(raw) == 3 and isinstance(raw[1], list)):
            raise ValueError(f"receipt log {i} is not [address, topics, data]")
        address, topics, data = raw
        if not all(isinstance(part, bytes) for part in (address, data, *topics)):
            raise ValueError(f"receipt log {i} is malformed")
        logs.append(Log(address=address, topics=tuple(topics), data=data))
    return ProofResult(
        ok=True,
        reason="ok",
        tx_type=tx_type,
        status=int.from_bytes(outcome, "big") if len(outcome) <= 1 else None,
        cumulative_gas_used=int.from_bytes(gas_used, "big"),
        logs=tuple(logs),
    )


def _verify(item: Mapping[str, Any], trusted_block_hash: bytes | None) -> ProofResult:
    if not isinstance(item, Mapping):
        raise ValueError("evidence item is not an object")
    if set(item) != ITEM_KEYS:
        missing, extra = sorted(ITEM_KEYS - set(item)), sorted(map(str, set(item) - ITEM_KEYS))
        raise ValueError(f"evidence item keys: missing {missing}, unexpected {extra}")
    block_number = _index(item["block_number"], "block_number")
    tx_index = _index(item["tx_index"], "tx_index")
    block_hash = _data(item["block_hash"], "block_hash", 32)
    header = item["header"]
    computed = header_hash(header)
    if computed != block_hash:
        raise ValueError(f"header hashes to 0x{computed.hex()}, not to block_hash 0x{block_hash.hex()}")
    if trusted_block_hash is not None:
        if not isinstance(trusted_block_hash, bytes) or len(trusted_block_hash) != 32:
            raise ValueError(f"trusted_block_hash is not 32 bytes: {trusted_block_hash!r:.80}")
        if block_hash != trusted_block_hash:
            raise ValueError(
                f"block_hash 0x{block_hash.hex()} is not the trusted hash 0x{trusted_block_hash.hex()}"
            )
    if _quantity(header["number"], "header.number") != block_number:
        raise ValueError(f"header.number {header['number']} is not block_number {block_number}")
    receipts_root = _data(header["receiptsRoot"], "header.receiptsRoot", 32)
    receipt = _data(item["receipt"], "receipt")
    proof = item["proof"]
    if not isinstance(proof, list) or not proof:
        raise ValueError("proof is not a non-empty list")
    nodes = _decode_chain(receipts_root, [_data(node, f"proof[{i}]") for i, node in enumerate(proof)])
    try:
        proven: bytes = HexaryTrie.get_from_proof(  # type: ignore[no-untyped-call]
            receipts_root, _key(tx_index), nodes
        )
    except BadTrieProof as exc:
        raise ValueError(f"proof is incomplete for tx_index {tx_index}: {exc}") from exc
    if not proven:
        raise ValueError(f"proof shows block {block_number} has no receipt at tx_index {tx_index}")
    if proven != receipt:
        raise ValueError(f"receipt is not the one block {block_number} has at tx_index {tx_index}")
    return _decode_receipt(receipt)


def verify_receipt_proof(item: Mapping[str, Any], *, trusted_block_hash: bytes | None = None) -> ProofResult:
    """Check an evidence item offline: the header hashes to item's block_hash (and to
    `trusted_block_hash`, when given: without it, only internal consistency is checked), and the proof
    leads from the header's receiptsRoot, at key rlp(tx_index), to exactly item's receipt.

    Never raises for malformed input: ok=False with the reason."""
    try:
        return _verify(item, trusted_block_hash)
    except ValueError as exc:
        return ProofResult(ok=False, reason=str(exc))
    except Exception as exc:  # deliberately broad: hostile input must yield a verdict, not a crash
        return ProofResult(ok=False, reason=f"malformed evidence item: {type(exc).__name__}: {exc}")


def verify_against_rpc(item: Mapping[str, Any], rpc_url: Rpc) -> ProofResult:
    """Verify `item` trusting the node at `rpc_url` for the hash of block item["block_number"].
    ok=False if the item does not verify; raises RpcError only if the node cannot be asked."""
    try:
        block_number = _index(item["block_number"], "block_number")
    except (TypeError, KeyError, ValueError) as exc:
        return ProofResult(ok=False, reason=f"no usable block_number: {exc}")
    with _connect(rpc_url) as call:
        block = call("eth_getBlockByNumber", [hex(block_number), False])
    if not block:
        return ProofResult(ok=False, reason=f"the node has no block {block_number}")
    return verify_receipt_proof(item, trusted_block_hash=_as_bytes(block["hash"]))


# -- transactions --------------------------------------------------------------------------------
# A receipt does not name its transaction; a second proof, against transactionsRoot, ties a
# transaction (and so its hash: keccak of its signed bytes) to the same block and index.


def transaction_proofs(rpc: Rpc, block_number: int, tx_indices: Iterable[int]) -> dict[int, dict[str, Any]]:
    """{tx_index: {"raw": signed transaction hex, "proof": [nodes]}} against the block's
    transactionsRoot (the header is in the receipt items of the same block)."""
    indices = list(tx_indices)
    with _connect(rpc) as call:
        block = _get_block(call, block_number)
        header = _header_of(block)
        raws = [
            _data(call("eth_getRawTransactionByBlockNumberAndIndex", [hex(block_number), hex(i)]), f"tx {i}")
            for i in range(len(block["transactions"]))
        ]
    trie = HexaryTrie({})
    for index, raw in enumerate(raws):
        trie[_key(index)] = raw
    if trie.root_hash != _as_bytes(header["transactionsRoot"]):
        raise EvidenceError(f"block {block_number}: transactions trie root differs from transactionsRoot")
    return {
        i: {
            "raw": "0x" + raws[i].hex(),
            "proof": ["0x" + rlp.encode(node).hex() for node in _get_proof(trie, _key(i))],
        }
        for i in indices
    }


def verify_transaction_proof(header: Mapping[str, Any], tx_index: int, tx: Mapping[str, Any]) -> bytes:
    """The hash of the transaction at `tx_index` of the block with `header`, proven by `tx`'s proof
    against transactionsRoot. Raises ValueError when it does not prove it. The header itself must be
    checked (hashed to a trusted block hash) by the caller."""
    if not isinstance(tx, Mapping) or set(tx) != {"raw", "proof"}:
        raise ValueError("transaction evidence is not {raw, proof}")
    root = _data(header["transactionsRoot"], "header.transactionsRoot", 32)
    raw = _data(tx["raw"], "transaction raw")
    proof = tx["proof"]
    if not isinstance(proof, list) or not proof:
        raise ValueError("transaction proof is not a non-empty list")
    nodes = _decode_chain(root, [_data(node, f"transaction proof[{i}]") for i, node in enumerate(proof)])
    try:
        proven: bytes = HexaryTrie.get_from_proof(root, _key(_index(tx_index, "tx_index")), nodes)  # type: ignore[no-untyped-call]
    except BadTrieProof as exc:
        raise ValueError(f"transaction proof is incomplete: {exc}") from exc
    if not proven or proven != raw:
        raise ValueError(f"the block has not this transaction at index {tx_index}")
    return bytes(keccak(raw))
