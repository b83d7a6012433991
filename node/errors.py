"""Decode revert data into Python exceptions that name the Solidity error and carry its arguments.

Hand-written because web3.py 8 raises `ContractCustomError` carrying only the raw revert data (the
selector and ABI-encoded args), and only for the one contract whose ABI it was given. A revert can
bubble up from any contract of the suite, so we map selectors from *all* artifacts' ABIs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_abi.grammar import ABIType, BasicType, TupleType, parse
from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.exceptions import ContractLogicError

from node.artifacts import artifact_names, load_artifact
from node.paths import ARTIFACTS_DIR

UNKNOWN_ERROR = "<unknown>"  # revert data whose selector is in no ABI we know
EMPTY_REVERT = "<empty>"  # `revert()`, `require(cond)` without a message, or out of gas

PANIC_REASONS: Mapping[int, str] = {
    0x00: "generic compiler panic",
    0x01: "assert(false)",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop() on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function pointer",
}


def abi_type(param: Mapping[str, Any]) -> str:
    """Canonical ABI type of one input, expanding tuples: `(bytes32,address)[]`."""
    typ: str = param["type"]
    if typ.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){typ[len('tuple') :]}"
    return typ


@dataclass(frozen=True)
class ErrorSpec:
    name: str
    types: tuple[str, ...]
    arg_names: tuple[str, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.types)})"

    @property
    def selector(self) -> bytes:
        return bytes(keccak(text=self.signature)[:4])

    @classmethod
    def from_abi(cls, entry: Mapping[str, Any]) -> ErrorSpec:
        inputs = entry.get("inputs", [])
        return cls(
            name=entry["name"],
            types=tuple(abi_type(i) for i in inputs),
            arg_names=tuple(i.get("name", "") for i in inputs),
        )


ERROR_STRING = ErrorSpec("Error", ("string",), ("message",))
PANIC = ErrorSpec("Panic", ("uint256",), ("code",))


@dataclass(frozen=True)
class DecodedError:
    name: str
    args: tuple[Any, ...]
    selector: bytes
    signature: str
    arg_names: tuple[str, ...] = field(default=())

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(zip(self.arg_names, self.args, strict=False))

    def __str__(self) -> str:
        names = self.arg_names if len(self.arg_names) == len(self.args) else ("",) * len(self.args)
        parts = [f"{n}={_show(v)}" if n else _show(v) for n, v in zip(names, self.args, strict=True)]
        text = f"{self.name}({', '.join(parts)})"
        if self.name == "Panic" and self.args and isinstance(self.args[0], int):
            text += f" [{PANIC_REASONS.get(self.args[0], 'unknown panic code')}]"
        return text


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return repr(value)


class ContractRevert(Exception):
    """A call or transaction reverted. `name`/`args` are the decoded Solidity error; `args` shadows
    BaseException.args on purpose so tests can write `assert exc.args == (account,)`."""

    def __init__(
        self,
        name: str,
        args: Sequence[Any] = (),
        selector: bytes = b"",
        *,
        data: bytes = b"",
        signature: str = "",
        arg_names: Sequence[str] = (),
        tx_hash: HexStr | None = None,
        reason: str | None = None,
    ) -> None:
        self.name = name
        self.selector = selector
        self.data = data
        self.signature = signature
        self.arg_names = tuple(arg_names)
        self.tx_hash = tx_hash
        self.reason = reason  # a node's own words when there is no data, e.g. "OutOfGas"
        super().__init__()
        self.args = tuple(args)

    @classmethod
    def from_data(
        cls,
        data: bytes,
        registry: ErrorRegistry | None = None,
        *,
        tx_hash: HexStr | None = None,
        reason: str | None = None,
    ) -> ContractRevert:
        decoded = decode_revert(data, registry)
        if decoded is not None:
            return cls(
                decoded.name,
                decoded.args,
                decoded.selector,
                data=data,
                signature=decoded.signature,
                arg_names=decoded.arg_names,
                tx_hash=tx_hash,
                reason=reason,
            )
        name = EMPTY_REVERT if not data else UNKNOWN_ERROR
        return cls(name, (), data[:4], data=data, tx_hash=tx_hash, reason=reason)

    @property
    def decoded(self) -> DecodedError:
        return DecodedError(self.name, self.args, self.selector, self.signature, self.arg_names)

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.decoded.kwargs

    def __str__(self) -> str:
        if self.name == UNKNOWN_ERROR:
            text = f"reverted with unknown error 0x{self.data.hex()}"
        elif self.name == EMPTY_REVERT:
            text = f"reverted without data ({self.reason})" if self.reason else "reverted without data"
        else:
            text = f"reverted: {self.decoded}"
        return f"{text} (tx {self.tx_hash})" if self.tx_hash else text

    def __repr__(self) -> str:
        return f"ContractRevert({self.name!r}, {self.args!r}, {self.selector!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException pickles as cls(*self.args), which our shadowed args would break.
        state = (self.name, self.args, self.selector, self.data, self.signature, self.arg_names)
        return (_rebuild_revert, (*state, self.tx_hash, self.reason))


def _rebuild_revert(
    name: str,
    args: tuple[Any, ...],
    selector: bytes,
    data: bytes,
    signature: str,
    arg_names: tuple[str, ...],
    tx_hash: HexStr | None,
    reason: str | None,
) -> ContractRevert:
    return ContractRevert(
        name,
        args,
        selector,
        data=data,
        signature=signature,
        arg_names=arg_names,
        tx_hash=tx_hash,
        reason=reason,
    )


class ErrorRegistry:
    """selector -> error spec, built from ABIs. Identical errors declared by several contracts
    collapse; two different signatures sharing a selector would make decoding ambiguous and raise."""

    def __init__(self, specs: Iterable[ErrorSpec] = ()) -> None:
        self._by_selector: dict[bytes, ErrorSpec] = {}
        for spec in (ERROR_STRING, PANIC, *specs):
            self.add(spec)

    def add(self, spec: ErrorSpec) -> None:
        known = self._by_selector.get(spec.selector)
        if known is not None and known.signature != spec.signature:
            raise ValueError(
                f"selector clash: {known.signature} and {spec.signature} both 0x{spec.selector.hex()}"
            )
        if known is None or not any(known.arg_names):
            self._by_selector[spec.selector] = spec

    @classmethod
    def from_abis(cls, abis: Iterable[Sequence[Mapping[str, Any]]]) -> ErrorRegistry:
        return cls(ErrorSpec.from_abi(e) for abi in abis for e in abi if e.get("type") == "error")

    @classmethod
    def from_artifacts(cls, artifacts_dir: Path | None = None) -> ErrorRegistry:
        names = artifact_names(artifacts_dir)
        return cls.from_abis(load_artifact(n, artifacts_dir).abi for n in names)

    def __contains__(self, selector: bytes) -> bool:
        return selector in self._by_selector

    def __len__(self) -> int:
        return len(self._by_selector)

    def by_name(self, name: str) -> list[ErrorSpec]:
        return [s for s in self._by_selector.values() if s.name == name]

    def decode(self, data: bytes) -> DecodedError | None:
        spec = self._by_selector.get(bytes(data[:4])) if len(data) >= 4 else None
        if spec is None:
            return None
        try:
            raw = abi_decode(list(spec.types), bytes(data[4:]))
        except (DecodingError, ValueError, OverflowError):
            return None  # right selector, malformed payload: report as unknown, keep the raw data
        args = tuple(_checksum_addresses(parse(t), v) for t, v in zip(spec.types, raw, strict=True))
        return DecodedError(spec.name, args, spec.selector, spec.signature, spec.arg_names)


def _checksum_addresses(abi_type_: ABIType, value: Any) -> Any:
    """eth_abi returns lowercase addresses; make them EIP-55 so they compare equal to
    `account.address` and to what web3 returns everywhere else."""
    if abi_type_.is_array:
        item = abi_type_.item_type
        return tuple(_checksum_addresses(item, v) for v in value)
    if isinstance(abi_type_, TupleType):
        return tuple(_checksum_addresses(t, v) for t, v in zip(abi_type_.components, value, strict=True))
    if isinstance(abi_type_, BasicType) and abi_type_.base == "address":
        return to_checksum_address(value)
    return value


def _dir_stamp(directory: Path) -> tuple[tuple[str, int], ...]:
    if not directory.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in directory.glob("*.json")))


@lru_cache(maxsize=8)
def _cached_registry(directory: str, _stamp: tuple[tuple[str, int], ...]) -> ErrorRegistry:
    return ErrorRegistry.from_artifacts(Path(directory))


def default_registry(artifacts_dir: Path | None = None) -> ErrorRegistry:
    """Registry of every error in every artifact, rebuilt when an artifact file changes."""
    directory = artifacts_dir or ARTIFACTS_DIR
    return _cached_registry(str(directory), _dir_stamp(directory))


def decode_revert(data: bytes, registry: ErrorRegistry | None = None) -> DecodedError | None:
    """Decode revert data (selector + ABI args); None when the selector is unknown or data is empty."""
    return (registry or default_registry()).decode(data)


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data a web3 exception carries, if any (web3 keeps it as a 0x hex string)."""
    raw: object = getattr(exc, "data", None)
    if isinstance(raw, dict):  # OffchainLookup-style payloads
        raw = raw.get("data")
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str) and raw.startswith("0x"):
        try:
            return bytes.fromhex(raw[2:])
        except ValueError:
            return None
    return None


def to_contract_revert(
    exc: BaseException, registry: ErrorRegistry | None = None, *, tx_hash: HexStr | None = None
) -> ContractRevert | None:
    """Turn a web3 revert exception into a ContractRevert; None if `exc` is not a revert."""
    if isinstance(exc, ContractRevert):
        return exc
    if not isinstance(exc, ContractLogicError):
        return None
    return ContractRevert.from_data(revert_data(exc) or b"", registry, tx_hash=tx_hash)


@contextmanager
def translate_reverts(registry: ErrorRegistry | None = None) -> Iterator[None]:
    """Re-raise web3 revert exceptions raised inside the block as ContractRevert."""
    try:
        yield
    except ContractLogicError as exc:
        converted = to_contract_revert(exc, registry)
        assert converted is not None
        raise converted from exc


class RevertNotRaised(AssertionError):
    pass


@contextmanager
def expect_revert(
    name: str, *args: Any, registry: ErrorRegistry | None = None
) -> Iterator[list[ContractRevert]]:
    """Assert that the block reverts with error `name` (and `args`, when given).

        with expect_revert("NotMember", outsider.address) as caught:
            registry.functions.requireMember(outsider.address).call()
    The caught ContractRevert is appended to the yielded list for further checks.
    """
    caught: list[ContractRevert] = []
    try:
        with translate_reverts(registry):
            yield caught
    except ContractRevert as exc:
        if registry is not None and exc.name == UNKNOWN_ERROR:
            # converted earlier with the default registry; retry with the one we were given
            exc = ContractRevert.from_data(exc.data, registry, tx_hash=exc.tx_hash, reason=exc.reason)
        caught.append(exc)
        if exc.name != name:
            raise AssertionError(f"expected revert {name}, got {exc}") from exc
        if args and tuple(exc.args) != tuple(args):
            raise AssertionError(f"expected {name}{tuple(args)!r}, got {exc}") from exc
        return
    raise RevertNotRaised(f"expected revert {name}, but nothing reverted")
