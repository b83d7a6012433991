"""Constants of the rxledger contracts, mirrored for Python callers (a test checks they agree)."""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

from eth_utils.crypto import keccak


def _role(name: str) -> bytes:
    return bytes(keccak(text=f"rxledger.role.{name}"))


class Role:
    SPONSOR = _role("SPONSOR")
    CMO = _role("CMO")
    LOGISTICS = _role("LOGISTICS")
    DISTRIBUTOR = _role("DISTRIBUTOR")
    DISPENSER = _role("DISPENSER")
    REGULATOR = _role("REGULATOR")

    ALL: ClassVar[tuple[bytes, ...]] = (SPONSOR, CMO, LOGISTICS, DISTRIBUTOR, DISPENSER, REGULATOR)
    NAMES: ClassVar[dict[bytes, str]] = {
        SPONSOR: "SPONSOR",
        CMO: "CMO",
        LOGISTICS: "LOGISTICS",
        DISTRIBUTOR: "DISTRIBUTOR",
        DISPENSER: "DISPENSER",
        REGULATOR: "REGULATOR",
    }


class OrgStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    SUSPENDED = 2
    OFFBOARDED = 3


class BatchStatus(IntEnum):
    NONE = 0
    QUARANTINE = 1
    RELEASED = 2
    REJECTED = 3
    RECALLED = 4
    SUSPENDED = 5


class CertificateKind(IntEnum):
    NONE = 0
    ANALYSIS = 1
    CONFORMANCE = 2
    QP_CERTIFICATION = 3
    OTHER = 4


class UnitState(IntEnum):
    """A unit's state: active, or the reason it was decommissioned (EU FMD statuses)."""

    NONE = 0
    ACTIVE = 1
    DISPENSED = 2
    DESTROYED = 3
    SAMPLE = 4
    FREE_SAMPLE = 5
    EXPORTED = 6
    STOLEN = 7
    LOCKED = 8
    CHECKED_OUT = 9


DECOMMISSION_REASONS = tuple(s for s in UnitState if s >= UnitState.DISPENSED)
FINAL_REASONS = frozenset({UnitState.DESTROYED, UnitState.EXPORTED, UnitState.STOLEN})
SALE_REASONS = frozenset({UnitState.DISPENSED, UnitState.SAMPLE, UnitState.FREE_SAMPLE, UnitState.EXPORTED})
UNDO_WINDOW_SECONDS = 240 * 3600


class ContainerState(IntEnum):
    NONE = 0
    ACTIVE = 1
    DISSOLVED = 2


class SuspectStatus(IntEnum):
    NOT_SUSPECT = 0
    SUSPECT = 1
    ILLEGITIMATE = 2


MAX_CONTAINER_HEIGHT = 8
