"""An accepted request becomes a plan: the transactions it takes, each tagged with how many request
items it carries, plus what the API learns on the way (the identifiers behind on-chain keys)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak
from web3.contract import Contract

from node.errors import abi_type
from node.ledger.relay import abi_function


@dataclass
class TxStep:
    contract: str
    function: str
    args: list[Any]  # values as web3 takes them (bytes for bytesN)
    items: int = 0
    event: int | None = None  # the EPCIS event (index in Plan.events) this transaction applies


@dataclass
class EventRecord:
    """An EPCIS event the plan anchors: its JSON, CBV 2.0 Event Hash ID and digest, how it is
    anchored (`custody`: by the action applying it; `hash`: by `anchorEvents`), and the on-chain keys
    of the identifiers it names as (key, role, GTIN)."""

    event: dict[str, Any]
    hash_id: str
    digest: bytes
    anchoring: str
    keys: list[tuple[str, str, str | None]]
    position: int = 0  # index in a captured document's eventList


@dataclass
class KeyRef:
    """What the client called an on-chain key: the field it came from and the identifier."""

    key: str
    kind: str  # unit | container
    field: str
    gtin: str | None = None
    serial: str | None = None
    sscc: str | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "kind": self.kind, "key": self.key}
        for name in ("gtin", "serial", "sscc"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass
class Plan:
    kind: str
    steps: list[TxStep] = field(default_factory=list)
    subject: str | None = None
    items_total: int = 0
    refs: dict[str, KeyRef] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)  # known at acceptance (ids the client needs)
    events: list[EventRecord] = field(default_factory=list)
    capture_id: str | None = None
    sequential: bool = False  # steps depend on earlier ones: simulate them as one sequence
    prechecked: bool = False  # simulated already by the route

    def describe_key(self, key: str) -> dict[str, Any] | None:
        ref = self.refs.get(key.lower())
        return ref.describe() if ref else None


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _function_types(contract: Contract, fn: str) -> tuple[bytes, list[str]]:
    inputs = _abi_inputs(contract, fn)
    types = [abi_type(i) for i in inputs]
    return bytes(keccak(text=f"{fn}({','.join(types)})")[:4]), types


_SIGNATURES: dict[tuple[str, str], tuple[bytes, list[str]]] = {}


def encode_call(contract: Contract, fn: str, args: Sequence[Any]) -> bytes:
    """Calldata of `fn(*args)`. eth-abi directly: web3's `encode_abi` walks every argument through
    its formatters and costs ~130 ms for 500 keys, more than the node takes to run the call."""
    cache_key = (str(contract.address), fn)
    if cache_key not in _SIGNATURES:
        _SIGNATURES[cache_key] = _function_types(contract, fn)
    selector, types = _SIGNATURES[cache_key]
    return selector + abi_encode(types, list(args))


def _abi_inputs(contract: Contract, fn: str) -> list[Mapping[str, Any]]:
    return list(abi_function(contract, fn)["inputs"])


def _to_json(value: Any) -> Any:
    if isinstance(value, OrgByGln):
        return {"$org_by_gln": value.gln}
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


@dataclass(frozen=True)
class OrgByGln:
    """An organisation id not known when the plan is made (it is onboarded by an earlier
    transaction of the same operation); the submitter resolves it just before signing."""

    gln: str


def _from_json(typ: str, value: Any) -> Any:
    if isinstance(value, dict) and "$org_by_gln" in value:
        return OrgByGln(str(value["$org_by_gln"]))
    if typ.endswith("[]"):
        return [_from_json(typ[:-2], v) for v in value]
    if typ.startswith("bytes"):
        return bytes.fromhex(str(value).removeprefix("0x"))
    return value


def encode_args(args: Sequence[Any]) -> str:
    return json.dumps(_to_json(list(args)), separators=(",", ":"))


def decode_args(contract: Contract, fn: str, stored: str) -> list[Any]:
    values = json.loads(stored)
    inputs = _abi_inputs(contract, fn)
    return [_from_json(i["type"], v) for i, v in zip(inputs, values, strict=True)]


def has_deferred(args: Sequence[Any]) -> bool:
    return any(isinstance(a, OrgByGln) for a in args)


def resolve_deferred(args: Sequence[Any], registry: Contract) -> list[Any]:
    return [
        int(registry.functions.organizationByGln(int(a.gln)).call()) if isinstance(a, OrgByGln) else a
        for a in args
    ]
