"""Gas snapshot of the contract suite: one figure per action (single item) and the standard journey.

Runs on a fresh devnet of its own so that every figure is reproducible to the unit: gas depends on
which storage slots are fresh, so the sequence below is fixed. `scripts/gas-snapshot` writes the
result to contracts/gas-snapshot.json, and a test fails when a fresh run differs from the committed
file (as Uniswap's committed snapshots do), so a gas regression shows in the diff.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.types import TxReceipt

from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import deploy_suite, load_contracts
from node.devnet import Devnet
from node.ledger.client import LedgerClient
from node.ledger.consortium import DEMO_ORGS, derived_key, fund, onboard
from node.ledger.constants import CertificateKind, Role, UnitState
from node.ledger.identifiers import batch_id, container_key, unit_key
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, run_journey, sscc

GAS_BUDGET_PER_UNIT = 30_000
BATCH = 8  # actions per batch in the batch figures (the write benchmark's pharmacies)


def _b32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


def measure(
    progress: Callable[[str], None] | None = None, *, then: Callable[[Web3], None] | None = None
) -> dict[str, Any]:
    """Deploy on a fresh devnet, measure every action once, then the journey; `then` runs on the same
    devnet afterwards (a benchmark's baseline measured next to it)."""
    say = progress or (lambda _msg: None)
    with Devnet() as devnet, tempfile.TemporaryDirectory() as tmp:
        w3 = make_web3(devnet.rpc_url)
        admin_account = dev_accounts()[0]
        contracts = load_contracts(w3, deploy_suite(w3, admin_account, manifest_dir=Path(tmp)))
        actions: dict[str, int] = {}

        def gas(name: str, receipt: TxReceipt) -> None:
            actions[name] = int(receipt["gasUsed"])

        say("onboarding the consortium")
        admin = LedgerClient(w3, contracts, admin_account)
        gas(
            "onboardOrganization",
            admin.transact(
                "ConsortiumRegistry", "onboardOrganization", 4000009000007, "Gas Probe Org", [Role.DISPENSER]
            ),
        )
        orgs = onboard(w3, contracts, admin_account, DEMO_ORGS, seed="gas")
        sponsor, cmo = orgs["Sponsor Pharma AG"], orgs["Contract Manufacturing GmbH"]
        tpl, pharmacy = orgs["Alpine Logistics 3PL"], orgs["City Pharmacy"]
        regulator = orgs["National Medicines Agency"]
        spare, spare2 = derived_key("gas:spare"), derived_key("gas:spare2")
        fund(w3, admin, [spare.address])
        gas("addKey", admin.transact("ConsortiumRegistry", "addKey", pharmacy.id, spare.address, 0, 0, False))
        gas(
            "rotateKey",
            pharmacy.client.transact("ConsortiumRegistry", "rotateKey", spare.address, spare2.address, 0),
        )
        gas("revokeKey", pharmacy.client.transact("ConsortiumRegistry", "revokeKey", spare2.address))

        say("products, batches, certificates")
        gtin = int(JOURNEY_GTIN)
        gas("registerProduct", sponsor.client.transact("BatchRegistry", "registerProduct", gtin))
        gas(
            "authorizeManufacturer",
            sponsor.client.transact("BatchRegistry", "authorizeManufacturer", gtin, cmo.id),
        )
        gas(
            "createBatch",
            cmo.client.transact("BatchRegistry", "createBatch", gtin, "G-1", 281231, int(SITE_GLN)),
        )
        bid = batch_id(JOURNEY_GTIN, "G-1")
        gas(
            "anchorCertificate",
            cmo.client.transact(
                "BatchRegistry",
                "anchorCertificate",
                bid,
                CertificateKind.ANALYSIS,
                b"\x01" * 32,
                _b32("approved"),
            ),
        )
        gas(
            "releaseWithCertification",
            sponsor.client.transact(
                "BatchRegistry",
                "releaseWithCertification",
                bid,
                b"\x02" * 32,
                _b32("released for sale"),
                b"\x03" * 32,
            ),
        )
        cmo.client.transact("BatchRegistry", "createBatch", gtin, "G-2", 281231, int(SITE_GLN))
        bid2 = batch_id(JOURNEY_GTIN, "G-2")
        gas("suspend", sponsor.client.transact("BatchRegistry", "suspend", bid2, b"\x04" * 32))
        gas("unsuspend", sponsor.client.transact("BatchRegistry", "unsuspend", bid2, b"\x05" * 32))
        gas("reject", sponsor.client.transact("BatchRegistry", "reject", bid2, b"\x06" * 32))

        say("custody actions, one item each")
        k = [unit_key(JOURNEY_GTIN, f"G{i}") for i in range(8)]
        case, case2, pallet = (container_key(sscc("4098765", 800_000 + i)) for i in range(3))
        gas(
            "commission:1 loose",
            cmo.client.transact("CustodyLedger", "commission", bid, [], k[:1], b"\x10" * 32),
        )
        gas(
            "commission:1 into new case",
            cmo.client.transact("CustodyLedger", "commission", bid, [case], k[1:2], b"\x10" * 32),
        )
        gas(
            "pack:1 into new pallet",
            cmo.client.transact("CustodyLedger", "pack", pallet, [case], b"\x11" * 32),
        )
        cmo.client.transact("CustodyLedger", "commission", bid, [], k[2:6], b"\x10" * 32)
        gas("pack:1 into existing", cmo.client.transact("CustodyLedger", "pack", case2, k[2:3], b"\x11" * 32))
        gas("unpack:1", cmo.client.transact("CustodyLedger", "unpack", case2, k[2:3], b"\x12" * 32))
        gas("unpackAll:1", cmo.client.transact("CustodyLedger", "unpackAll", [case2], b"\x12" * 32))
        gas(
            "ship:1",
            cmo.client.transact(
                "CustodyLedger", "ship", b"\x51" * 32, tpl.id, [k[0]], b"\x20" * 32, b"\x21" * 32
            ),
        )
        gas(
            "receiveShipment:1",
            tpl.client.transact("CustodyLedger", "receiveShipment", b"\x51" * 32, [k[0]], b"\x22" * 32),
        )
        cmo.client.transact("CustodyLedger", "ship", b"\x52" * 32, tpl.id, k[3:5], b"\x20" * 32, b"\x21" * 32)
        gas(
            "rejectShipment:1",
            tpl.client.transact(
                "CustodyLedger", "rejectShipment", b"\x52" * 32, k[3:4], b"\x23" * 32, b"\x24" * 32
            ),
        )
        gas(
            "reportMissing:1",
            tpl.client.transact("CustodyLedger", "reportMissing", b"\x52" * 32, k[4:5], b"\x25" * 32),
        )
        gas("flagSuspect:1", regulator.client.transact("CustodyLedger", "flagSuspect", k[5:6], b"\x30" * 32))
        gas(
            "clearSuspect:1", regulator.client.transact("CustodyLedger", "clearSuspect", k[5:6], b"\x31" * 32)
        )
        gas(
            "flagBatchSuspect",
            regulator.client.transact("CustodyLedger", "flagBatchSuspect", bid2, b"\x32" * 32, bytes(32)),
        )
        gas(
            "decommission:1 dispensed",
            tpl.client.transact("CustodyLedger", "decommission", [k[0]], UnitState.DISPENSED, b"\x40" * 32),
        )
        gas(
            "undoDecommission:1",
            tpl.client.transact("CustodyLedger", "undoDecommission", [k[0]], b"\x41" * 32),
        )
        gas(
            "anchorEvents:1",
            tpl.client.transact("CustodyLedger", "anchorEvents", [b"\x42" * 32]),
        )
        gas(
            "anchorEvents:100",
            tpl.client.transact("CustodyLedger", "anchorEvents", [bytes([i]) * 32 for i in range(100)]),
        )
        signed = tpl.client.sign(
            "CustodyLedger", "decommission", [k[0]], UnitState.DISPENSED, b"\x40" * 32, deadline=2**40
        )
        gas("relay:decommission:1 (EIP-712)", admin.relay("CustodyLedger", signed))

        say("batches of single-pack dispenses")
        b = [unit_key(JOURNEY_GTIN, f"B{i}") for i in range(2 * BATCH)]
        cmo.client.transact("CustodyLedger", "commission", bid, [], b, b"\x10" * 32)
        cmo.client.transact("CustodyLedger", "ship", b"\x53" * 32, tpl.id, b, b"\x20" * 32, b"\x21" * 32)
        tpl.client.transact("CustodyLedger", "receiveShipment", b"\x53" * 32, b, b"\x22" * 32)
        ledger = contracts["CustodyLedger"]
        calls = [
            ledger.encode_abi("decommission", [[key], UnitState.DISPENSED, bytes([0x60 + i]) * 32])
            for i, key in enumerate(b[:BATCH])
        ]
        receipt = tpl.client.transact("CustodyLedger", "batchActions", [bytes.fromhex(c[2:]) for c in calls])
        actions[f"batchActions:decommission:1 x{BATCH}, per action"] = int(receipt["gasUsed"]) // BATCH
        nonce = int(ledger.functions.nonces(tpl.client.address).call())
        relayed = [
            tpl.client.sign(
                "CustodyLedger",
                "decommission",
                [key],
                UnitState.DISPENSED,
                bytes([0x70 + i]) * 32,
                deadline=2**40,
                nonce=nonce + i,
            )
            for i, key in enumerate(b[BATCH:])
        ]
        receipt = admin.transact(
            "CustodyLedger", "relayBatch", [(s.action, s.signer, s.deadline, s.signature) for s in relayed]
        )
        actions[f"relayBatch:decommission:1 x{BATCH} (EIP-712), per action"] = (
            int(receipt["gasUsed"]) // BATCH
        )

        say("the standard journey")
        result = run_journey(orgs)
        journey = {
            "description": (
                "10,000 units commissioned into 100 cases of 100 (500 units per tx), cases packed on "
                "5 pallets, pallets shipped CMO -> 3PL -> distributor, pallets unpacked, cases shipped to "
                "a pharmacy, cases unpacked, every unit dispensed (1,000 per tx)"
            ),
            "units": result.units,
            "total_gas": result.total_gas,
            "gas_per_unit": round(result.gas_per_unit, 1),
            "budget_per_unit": GAS_BUDGET_PER_UNIT,
            "steps": {
                step: {"gas": g, "transactions": result.tx_by_step[step]}
                for step, g in result.gas_by_step.items()
            },
        }
        if then is not None:
            then(w3)
        return {"actions": dict(sorted(actions.items())), "journey": journey}
