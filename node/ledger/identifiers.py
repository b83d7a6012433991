"""On-chain keys of units, containers and batches.

Clear-text serials never go on chain: a unit is known there by a digest of its canonical SGTIN
("sgtin:" + GTIN-14 + ":" + serial), a container by a digest of "sscc:" + SSCC-18. Anyone holding
the identifier (the pack in hand, an EPCIS document) derives the same key; nobody can list serials
from the chain.

The digest is the low 160 bits of keccak256, left-padded with zeros to a bytes32 (the way an address
sits in a word). 160 bits keep collisions out of reach (a birthday search needs ~2^80 hashes, the
same margin Ethereum addresses rely on), and the twelve zero bytes cost 4 gas each in calldata
instead of 16: about 290 gas per unit over a commission and a dispense, 1% of the per-unit budget.

Container keys are the low 88 bits (11 bytes) of keccak256("sscc:" + SSCC). The ledger uses them as
the container's own storage key and as the parent pointer packed into each unit's single storage
word, so a container costs one slot and a unit never needs a second. Unit keys always have bits above
the 88th set (the contract refuses a unit key that does not), so a key alone says which kind it names.
88 bits against at most 10^17 possible SSCCs: an accidental collision among a billion containers has
a probability near 10^-9, and nobody can aim one at a given SSCC.

A batch id is what BatchRegistry computes: keccak256(abi.encode(uint64 gtin, lot)).
"""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from node.gs1.charset import is_cset82, is_digits


def _key(text: str) -> bytes:
    return bytes(12) + bytes(keccak(text.encode()))[12:]


def unit_key(gtin14: str, serial: str) -> bytes:
    """bytes32 key of the pack with this GTIN-14 and serial (AI 21)."""
    if not is_digits(gtin14, 14):
        raise ValueError(f"GTIN must be 14 ASCII digits, got {gtin14!r}")
    if not is_cset82(serial):
        raise ValueError(f"serial must be 1 to 20 characters of GS1 character set 82, got {serial!r}")
    return _key(f"sgtin:{gtin14}:{serial}")


def container_key(sscc18: str) -> bytes:
    """bytes32 key of the logistic unit (case, pallet) with this SSCC."""
    if not is_digits(sscc18, 18):
        raise ValueError(f"SSCC must be 18 ASCII digits, got {sscc18!r}")
    return bytes(21) + bytes(keccak(f"sscc:{sscc18}".encode()))[21:]


def batch_id(gtin14: str | int, lot: str) -> bytes:
    """bytes32 id of the batch (lot) of a GTIN, as BatchRegistry derives it."""
    if isinstance(gtin14, str) and not is_digits(gtin14, 14):
        raise ValueError(f"GTIN must be 14 ASCII digits, got {gtin14!r}")
    return bytes(keccak(encode(["uint64", "string"], [int(gtin14), lot])))


def gs1_check_digit(body: str) -> int:
    """GS1 mod-10 check digit for the digits `body` (all but the check digit)."""
    if not is_digits(body):
        raise ValueError(f"a GS1 check digit is computed over ASCII digits, got {body!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def with_check_digit(body: str) -> str:
    """`body` with its GS1 check digit appended."""
    return body + str(gs1_check_digit(body))
