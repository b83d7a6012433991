"""The standard journey the gas budget is measured on (issue: ledger contracts).

A 10,000-unit batch is commissioned into 100 cases of 100, the cases are packed on 5 pallets, the
pallets go CMO -> 3PL -> distributor, the distributor unpacks the pallets and ships the cases to a
pharmacy, and the pharmacy unpacks every case and dispenses every unit. Every transaction's gas is
recorded per step so that the snapshot shows where the gas goes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from eth_utils.crypto import keccak
from web3.types import TxReceipt

from node.ledger.consortium import Org
from node.ledger.constants import CertificateKind, UnitState
from node.ledger.identifiers import batch_id, container_key, unit_key, with_check_digit

JOURNEY_GTIN = "09506000134352"
SITE_GLN = "4098765000003"


@dataclass
class JourneyResult:
    units: int
    gas_by_step: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tx_by_step: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def total_gas(self) -> int:
        return sum(self.gas_by_step.values())

    @property
    def gas_per_unit(self) -> float:
        return self.total_gas / self.units


def released_batch(cmo: Org, sponsor: Org, lot: str, gtin: str = JOURNEY_GTIN) -> bytes:
    """Create a batch made by `cmo`, anchor its CoA and have `sponsor` certify and release it (the
    documents' digests derive from the lot); returns the batch id."""
    cmo.client.transact("BatchRegistry", "createBatch", int(gtin), lot, 281231, int(SITE_GLN))
    bid = batch_id(gtin, lot)
    meaning = {k: v.encode().ljust(32, b"\0") for k, v in (("coa", "approved"), ("qp", "released for sale"))}
    cmo.client.transact(
        "BatchRegistry",
        "anchorCertificate",
        bid,
        CertificateKind.ANALYSIS,
        keccak(text=f"coa-{lot}"),
        meaning["coa"],
    )
    sponsor.client.transact(
        "BatchRegistry", "releaseWithCertification", bid, keccak(text=f"qp-{lot}"), meaning["qp"], bytes(32)
    )
    return bid


def sscc(prefix: str, n: int) -> str:
    """An SSCC with extension digit 0, a 7-digit company prefix and a serial reference `n`."""
    return with_check_digit(f"0{prefix}{n:09d}")


def run_journey(
    orgs: Mapping[str, Org],
    *,
    cases: int = 100,
    units_per_case: int = 100,
    pallets: int = 5,
    units_per_tx: int = 500,
    dispense_per_tx: int = 1000,
    lot: str = "J-0001",
    sscc_base: int = 0,
    progress: Callable[[str, int], None] | None = None,
) -> JourneyResult:
    """Run the journey between the demo consortium's organisations (sponsor must own JOURNEY_GTIN
    and have authorised the CMO); returns the gas per step."""
    sponsor, cmo = orgs["Sponsor Pharma AG"], orgs["Contract Manufacturing GmbH"]
    tpl, dist = orgs["Alpine Logistics 3PL"], orgs["Euro Wholesale Distribution"]
    pharmacy = orgs["City Pharmacy"]
    total_units = cases * units_per_case
    result = JourneyResult(units=total_units)

    def record(step: str, receipt: TxReceipt) -> None:
        result.gas_by_step[step] += int(receipt["gasUsed"])
        result.tx_by_step[step] += 1
        if progress:
            progress(step, int(receipt["gasUsed"]))

    gtin = JOURNEY_GTIN
    bid = batch_id(gtin, lot)
    record(
        "createBatch",
        cmo.client.transact("BatchRegistry", "createBatch", int(gtin), lot, 281231, int(SITE_GLN)),
    )
    record(
        "anchorCertificate",
        cmo.client.transact(
            "BatchRegistry",
            "anchorCertificate",
            bid,
            CertificateKind.ANALYSIS,
            b"\x01" * 32,
            b"approved".ljust(32, b"\0"),
        ),
    )
    record(
        "releaseWithCertification",
        sponsor.client.transact(
            "BatchRegistry",
            "releaseWithCertification",
            bid,
            b"\x02" * 32,
            b"released for sale".ljust(32, b"\0"),
            b"\x03" * 32,
        ),
    )
    serials = [f"J{lot}S{i:06d}" for i in range(total_units)]
    keys = [unit_key(gtin, s) for s in serials]
    case_keys = [container_key(sscc("4098765", sscc_base + i)) for i in range(cases)]
    pallet_keys = [container_key(sscc("4098765", sscc_base + 900_000 + p)) for p in range(pallets)]
    cases_per_tx = max(1, units_per_tx // units_per_case)
    for start in range(0, cases, cases_per_tx):
        group = case_keys[start : start + cases_per_tx]
        ks = keys[start * units_per_case : (start + len(group)) * units_per_case]
        record("commission", cmo.client.transact("CustodyLedger", "commission", bid, group, ks, b"\x10" * 32))
    cases_per_pallet = cases // pallets
    for p, pallet in enumerate(pallet_keys):
        group = case_keys[p * cases_per_pallet : (p + 1) * cases_per_pallet]
        record("pack", cmo.client.transact("CustodyLedger", "pack", pallet, group, b"\x11" * 32))

    def hop(step: str, sender: Org, receiver: Org, items: list[bytes], sid: bytes) -> None:
        record(
            f"ship:{step}",
            sender.client.transact(
                "CustodyLedger", "ship", sid, receiver.id, items, b"\x20" * 32, b"\x21" * 32
            ),
        )
        record(
            f"receive:{step}",
            receiver.client.transact("CustodyLedger", "receiveShipment", sid, items, b"\x22" * 32),
        )

    hop("cmo->3pl", cmo, tpl, pallet_keys, b"S1" + bid[2:])
    hop("3pl->distributor", tpl, dist, pallet_keys, b"S2" + bid[2:])
    record("unpackAll:pallets", dist.client.transact("CustodyLedger", "unpackAll", pallet_keys, b"\x30" * 32))
    hop("distributor->pharmacy", dist, pharmacy, case_keys, b"S3" + bid[2:])
    for start in range(0, cases, 50):
        record(
            "unpackAll:cases",
            pharmacy.client.transact(
                "CustodyLedger", "unpackAll", case_keys[start : start + 50], b"\x31" * 32
            ),
        )
    for start in range(0, total_units, dispense_per_tx):
        record(
            "decommission:dispensed",
            pharmacy.client.transact(
                "CustodyLedger",
                "decommission",
                keys[start : start + dispense_per_tx],
                UnitState.DISPENSED,
                b"\x40" * 32,
            ),
        )
    return result
