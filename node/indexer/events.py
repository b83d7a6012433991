"""Decode raw logs of the suite by topic0 with eth_abi directly: ~10x faster than web3's contract
event helpers (TOOLCHAIN-NOTES), which matters for a catch-up of hundreds of thousands of events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_utils.crypto import keccak

from node.artifacts import load_artifact
from node.errors import abi_type


@dataclass(frozen=True)
class EventSpec:
    contract: str
    name: str
    topic0: bytes
    indexed: tuple[tuple[str, str], ...]  # (name, type) in topic order
    data: tuple[tuple[str, str], ...]  # (name, type) in data order

    def decode(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for (name, typ), topic in zip(self.indexed, topics[1:], strict=True):
            static = _fast(typ) and typ not in ("bytes32[]", "string")
            args[name] = _word(typ, topic) if static else decode([typ], topic)[0]
        if self.data:
            types = [t for _, t in self.data]
            values = _fast_decode(types, data) if all(_fast(t) for t in types) else decode(types, data)
            for (name, _), value in zip(self.data, values, strict=True):
                args[name] = value
        return args


# Hand-written decoding of the few ABI shapes our events use (words, bytes32[], string): eth_abi's
# general decoder costs ~1 ms per log with a long key list, ten times this.
_WORD_TYPES = {"address", "bool", "bytes32"}


def _fast(typ: str) -> bool:
    return typ in _WORD_TYPES or typ in ("bytes32[]", "string") or (typ.startswith("uint") and "[" not in typ)


def _word(typ: str, word: bytes) -> Any:
    if typ == "bytes32":
        return bytes(word)
    if typ == "address":
        return "0x" + word[12:].hex()
    if typ == "bool":
        return word[-1] == 1
    return int.from_bytes(word, "big")


def _fast_decode(types: Sequence[str], data: bytes) -> list[Any]:
    out: list[Any] = []
    for i, typ in enumerate(types):
        head = data[32 * i : 32 * i + 32]
        if typ == "bytes32[]":
            offset = int.from_bytes(head, "big")
            length = int.from_bytes(data[offset : offset + 32], "big")
            start = offset + 32
            out.append([data[start + 32 * j : start + 32 * j + 32] for j in range(length)])
        elif typ == "string":
            offset = int.from_bytes(head, "big")
            length = int.from_bytes(data[offset : offset + 32], "big")
            out.append(data[offset + 32 : offset + 32 + length].decode("utf-8"))
        else:
            out.append(_word(typ, head))
    return out


@dataclass(frozen=True)
class DecodedLog:
    contract: str
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    tx_index: int
    log_index: int


def event_specs(contract: str, abi: Sequence[Mapping[str, Any]]) -> list[EventSpec]:
    specs = []
    for entry in abi:
        if entry.get("type") != "event" or entry.get("anonymous"):
            continue
        inputs = entry["inputs"]
        signature = f"{entry['name']}({','.join(abi_type(i) for i in inputs)})"
        specs.append(
            EventSpec(
                contract=contract,
                name=entry["name"],
                topic0=bytes(keccak(text=signature)),
                indexed=tuple((i["name"], abi_type(i)) for i in inputs if i["indexed"]),
                data=tuple((i["name"], abi_type(i)) for i in inputs if not i["indexed"]),
            )
        )
    return specs


class EventDecoder:
    """topic0 -> spec for the contracts at the given addresses."""

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self.by_address: dict[str, str] = {a.lower(): name for name, a in addresses.items()}
        self.specs: dict[tuple[str, bytes], EventSpec] = {}
        for name in addresses:
            for spec in event_specs(name, load_artifact(name).abi):
                self.specs[(name, spec.topic0)] = spec

    @property
    def addresses(self) -> list[str]:
        return list(self.by_address)

    def decode(self, log: Mapping[str, Any]) -> DecodedLog | None:
        contract = self.by_address.get(str(log["address"]).lower())
        topics = [_bytes(t) for t in log["topics"]]
        if contract is None or not topics:
            return None
        spec = self.specs.get((contract, topics[0]))
        if spec is None:
            return None
        return DecodedLog(
            contract=contract,
            name=spec.name,
            args=spec.decode(topics, _bytes(log["data"])),
            block_number=_int(log["blockNumber"]),
            block_hash=_hex(log["blockHash"]),
            tx_hash=_hex(log["transactionHash"]),
            tx_index=_int(log["transactionIndex"]),
            log_index=_int(log["logIndex"]),
        )


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _hex(value: Any) -> str:
    return "0x" + _bytes(value).hex()
