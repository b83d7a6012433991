"""A busy stretch of supply-chain activity touching every kind of event the indexer reads."""

from __future__ import annotations

from web3 import Web3

from node.ledger.consortium import Org
from node.ledger.constants import UnitState
from node.ledger.identifiers import container_key, unit_key
from node.ledger.journey import JOURNEY_GTIN, released_batch, sscc


def _b32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


def busy_day(orgs: dict[str, Org], tag: str) -> None:
    """Every custody action at least once, under the unique `tag` (a short string)."""
    sponsor, cmo = orgs["Sponsor Pharma AG"], orgs["Contract Manufacturing GmbH"]
    tpl, dist = orgs["Alpine Logistics 3PL"], orgs["Euro Wholesale Distribution"]
    pharmacy, regulator = orgs["City Pharmacy"], orgs["National Medicines Agency"]
    gtin = JOURNEY_GTIN
    lots = [f"{tag}-A", f"{tag}-B"]
    a, b = (released_batch(cmo, sponsor, lot, gtin) for lot in lots)
    seed = sum(ord(ch) for ch in tag) * 1000
    cases = [container_key(sscc("4098765", seed + i)) for i in range(4)]
    pallet = container_key(sscc("4098765", seed + 900))
    units_a = [unit_key(gtin, f"{tag}A{i:03d}") for i in range(24)]
    units_b = [unit_key(gtin, f"{tag}B{i:03d}") for i in range(6)]
    cmo.client.transact("CustodyLedger", "commission", a, cases[:3], units_a, Web3.keccak(text=f"c-{tag}"))
    cmo.client.transact("CustodyLedger", "commission", b, [cases[3]], units_b[:4], bytes(32))
    cmo.client.transact("CustodyLedger", "commission", b, [], units_b[4:], bytes(32))
    cmo.client.transact("CustodyLedger", "pack", pallet, cases, bytes(32))  # a mixed pallet
    sid = [Web3.keccak(text=f"{tag}-s{i}") for i in range(6)]
    cmo.client.transact("CustodyLedger", "ship", sid[0], tpl.id, [pallet, units_b[4]], bytes(32), bytes(32))
    tpl.client.transact("CustodyLedger", "receiveShipment", sid[0], [pallet], bytes(32))
    tpl.client.transact("CustodyLedger", "reportMissing", sid[0], [units_b[4]], _b32("lost"))
    tpl.client.transact("CustodyLedger", "ship", sid[1], dist.id, [pallet], bytes(32), bytes(32))
    dist.client.transact("CustodyLedger", "receiveShipment", sid[1], [pallet], bytes(32))
    dist.client.transact("CustodyLedger", "unpack", pallet, [cases[3]], bytes(32))
    dist.client.transact("CustodyLedger", "unpackAll", [pallet], bytes(32))
    dist.client.transact("CustodyLedger", "ship", sid[2], pharmacy.id, cases[:2], bytes(32), bytes(32))
    pharmacy.client.transact("CustodyLedger", "receiveShipment", sid[2], cases[:1], bytes(32))
    pharmacy.client.transact(
        "CustodyLedger", "rejectShipment", sid[2], cases[1:2], _b32("damaged"), bytes(32)
    )
    pharmacy.client.transact("CustodyLedger", "unpackAll", cases[:1], bytes(32))
    pharmacy.client.transact("CustodyLedger", "decommission", units_a[:5], UnitState.DISPENSED, bytes(32))
    pharmacy.client.transact("CustodyLedger", "undoDecommission", units_a[:1], bytes(32))
    pharmacy.client.transact("CustodyLedger", "decommission", units_a[5:6], UnitState.DESTROYED, bytes(32))
    pharmacy.client.transact("CustodyLedger", "flagSuspect", units_a[6:7], _b32("odd print"))
    regulator.client.transact("CustodyLedger", "confirmIllegitimate", units_a[6:7], _b32("fake"))
    dist.client.transact("CustodyLedger", "unpack", cases[2], units_a[16:18], bytes(32))
    regulator.client.transact("CustodyLedger", "flagBatchSuspect", b, _b32("complaint"), bytes(32))
    sponsor.client.transact("CustodyLedger", "clearBatchSuspect", b, _b32("cleared"))
    sponsor.client.transact("BatchRegistry", "recall", b, _b32("recall"))
