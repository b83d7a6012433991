"""At the counter, through the API on a real devnet: verify a scanned pack, dispense it, the second
dispense and the unknown serial as alerts for the sponsor and regulators, lot and expiry checked
against the record, recall, undo, a tote, and the GS1 Lightweight Messaging (VRS) request."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from api.client import ApiProblem, RxClient
from api.read.verify import _PACK, pack_custody
from node.indexer.custody import resolve
from node.ledger.constants import ContainerState
from node.ledger.journey import JOURNEY_GTIN, sscc
from tests.api.conftest import Consortium
from tests.api.test_custody import released_batch

P = "urn:rxledger:problem:"
GS = "\x1d"


def scan(serial: str, lot: str, expiry: str = "290930") -> str:
    """What a DataMatrix scanner sends: symbology id, fixed-length AIs first, GS after variable ones."""
    return f"]d201{JOURNEY_GTIN}17{expiry}10{lot}{GS}21{serial}"


def at_pharmacy(consortium: Consortium, lot: str, serials: list[str], n: int) -> None:
    case = sscc("4098765", 890_000 + n)
    released_batch(consortium, lot, serials, [case])
    consortium.as_("cmo").post(
        "/v1/shipments",
        {"shipment_id": f"VF-{n}", "to_gln": consortium.glns["pharmacy"], "containers": [case]},
    )
    pharmacy = consortium.as_("pharmacy")
    pharmacy.post(f"/v1/shipments/VF-{n}/receive")
    pharmacy.post("/v1/unpack", {"container": case})


def alerts(client: RxClient, code: str, serial: str) -> list[dict[str, Any]]:
    return [a for a in client.get("/v1/alerts", code=code) if a["serial"] == serial]


def test_scan_verify_dispense_and_the_second_dispense_alert(consortium: Consortium) -> None:
    at_pharmacy(consortium, "VF-1", ["VF1A", "VF1B"], 1)
    pharmacy = consortium.as_("pharmacy")
    answer = pharmacy.post("/v1/verify", {"code": scan("VF1A", "VF-1")})
    assert (answer["genuine"], answer["verdict"], answer["reasons"], answer["alerts"]) == (
        True,
        "ok_to_dispense",
        [],
        [],
    )
    assert (answer["lot_matches"], answer["expiry_matches"], answer["batch_status"]) == (
        True,
        True,
        "released",
    )
    assert (answer["pack_status"], answer["held_by_you"], answer["holder"]["org_id"]) == (
        "active",
        True,
        consortium.org_ids["pharmacy"],
    )
    evidence = answer["evidence"]
    assert evidence["block_number"] > 0 and evidence["block_hash"].startswith("0x")
    assert [e["action"] for e in evidence["events"]][:1] == ["commissioned"]
    assert evidence["events"][-1]["action"] == "batch_status_changed"

    done = pharmacy.post("/v1/dispense", {"units": [{"scan": scan("VF1A", "VF-1")}]})
    assert done["status"] == "succeeded"
    again = pharmacy.post("/v1/verify", {"code": scan("VF1A", "VF-1")})
    assert again["verdict"] == "do_not_dispense"
    assert again["reasons"] == ["already decommissioned (dispensed) by your organisation"]
    assert again["alerts"] == []  # its own dispense is no signal

    with pytest.raises(ApiProblem) as second:
        pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "VF1A"}]})
    assert second.value.status == 409
    # the distributor scans the dispensed pack: told so, without learning who dispensed it
    seen = consortium.as_("distributor").post("/v1/verify", {"gtin": JOURNEY_GTIN, "serial": "VF1A"})
    assert seen["reasons"] == ["already decommissioned (dispensed) by another organisation"]
    assert seen["holder"] is None and seen["alerts"] == ["ALREADY_DISPENSED"]

    sponsor, regulator = consortium.as_("sponsor", "qp"), consortium.as_("regulator", "viewer")
    (alert,) = alerts(sponsor, "ALREADY_DISPENSED", "VF1A")
    assert alert["count"] == 2 and alert["status"] == "open"  # the second dispense, then the scan
    assert alerts(regulator, "ALREADY_DISPENSED", "VF1A") == [alert]
    assert alerts(consortium.as_("3pl"), "ALREADY_DISPENSED", "VF1A") == []

    handled = sponsor.patch(
        f"/v1/alerts/{alert['id']}", {"status": "investigating", "note": "asked the pharmacy"}
    )
    assert (handled["status"], handled["handled_by_org"]) == ("investigating", consortium.org_ids["sponsor"])
    with pytest.raises(ApiProblem) as refused:
        consortium.as_("pharmacy").patch(f"/v1/alerts/{alert['id']}", {"status": "closed"})
    assert refused.value.status in (403, 404)
    closed = consortium.as_("regulator", "qp").patch(f"/v1/alerts/{alert['id']}", {"status": "closed"})
    assert closed["status"] == "closed"


def test_unknown_serial_and_mismatches_are_counterfeit_signals(consortium: Consortium) -> None:
    at_pharmacy(consortium, "VF-2", ["VF2A"], 2)
    pharmacy = consortium.as_("pharmacy")
    unknown = pharmacy.post("/v1/verify", {"code": scan("VF2-FAKE", "VF-2")})
    assert (unknown["genuine"], unknown["verdict"], unknown["alerts"]) == (
        False,
        "do_not_dispense",
        ["UNKNOWN_SERIAL"],
    )
    wrong_lot = pharmacy.post("/v1/verify", {"code": scan("VF2A", "VF-X")})
    assert (wrong_lot["lot_matches"], wrong_lot["alerts"]) == (False, ["LOT_MISMATCH"])
    wrong_expiry = pharmacy.post("/v1/verify", {"code": scan("VF2A", "VF-2", "300101")})
    assert (wrong_expiry["expiry_matches"], wrong_expiry["alerts"]) == (False, ["EXPIRY_MISMATCH"])
    sponsor = consortium.as_("sponsor")
    assert [a["code"] for a in alerts(sponsor, "UNKNOWN_SERIAL", "VF2-FAKE")] == ["UNKNOWN_SERIAL"]
    assert [a["code"] for a in alerts(sponsor, "LOT_MISMATCH", "VF2A")] == ["LOT_MISMATCH"]
    with pytest.raises(ApiProblem) as bad:
        pharmacy.post("/v1/verify", {"code": f"]d201{JOURNEY_GTIN[:-1]}9" + "21X"})
    assert (bad.value.status, bad.value.body["field"]) == (422, "code")


def test_recall_undo_tote_and_vrs(consortium: Consortium) -> None:
    serials = ["VF3A", "VF3B", "VF3C"]
    at_pharmacy(consortium, "VF-3", serials, 3)
    pharmacy = consortium.as_("pharmacy")
    pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "VF3C"}]})
    pharmacy.post("/v1/undo", {"units": [{"gtin": JOURNEY_GTIN, "serial": "VF3C"}]})
    tote = pharmacy.post("/v1/verify/bulk", {"packs": [{"code": scan(s, "VF-3")} for s in serials]})
    assert (tote["ok_to_dispense"], tote["do_not_dispense"]) == (3, 0)

    vrs = pharmacy.get(
        f"/vrs/01/{JOURNEY_GTIN}/10/VF-3/21/VF3A",
        exp="290930",
        reqGLN=consortium.glns["pharmacy"],
        corrUUID="7b2a4c1e-0d1f-4a5e-9c3b-2f6e8d9a1b0c",
    )
    assert vrs["data"] == {"verified": True}
    assert vrs["corrUUID"] == "7b2a4c1e-0d1f-4a5e-9c3b-2f6e8d9a1b0c"
    assert vrs["responderGLN"] == consortium.glns["cmo"]
    assert pharmacy.get(f"/vrs/01/{JOURNEY_GTIN}/10/VF-9/21/VF3A", exp="290930")["data"] == {
        "verified": False,
        "verificationFailureReason": "No_match_GTIN_Serial_Lot",
    }
    assert pharmacy.get(f"/vrs/01/{JOURNEY_GTIN}/10/VF-3/21/NOPE")["data"] == {
        "verified": False,
        "verificationFailureReason": "No_match_GTIN_Serial",
    }

    (batch,) = consortium.as_("cmo").get("/v1/batches", lot="VF-3")
    recall = {
        "meaning": "recalled: contamination",
        "signature": consortium.signature("sponsor"),
        "reason": "contamination",
    }
    consortium.as_("sponsor", "qp").post(f"/v1/batches/{batch['batch_id']}/recall", recall)
    after = pharmacy.post("/v1/verify", {"code": scan("VF3A", "VF-3")})
    assert (after["verdict"], after["batch_status"], after["alerts"]) == (
        "do_not_dispense",
        "recalled",
        ["RECALLED"],
    )
    assert after["reasons"] == ["batch is recalled"]
    assert pharmacy.get(f"/vrs/01/{JOURNEY_GTIN}/10/VF-3/21/VF3A", exp="290930")["data"] == {
        "verified": True,
        "additionalInfo": "Recalled",
    }


def test_the_counters_one_join_custody_equals_the_general_resolver(consortium: Consortium) -> None:
    """verify_pack reads a pack's custody from one joined row (a loose pack, a pack whose case was
    unpacked, a pack in a loose case at home or in transit) and falls back to the general resolver
    for deeper nesting: both must agree on every pack indexed so far, and each kind must occur."""
    at_pharmacy(consortium, "VF-EQ", ["VFEQA", "VFEQB"], 40)  # case received and unpacked
    case, moving, pallet = sscc("4098765", 890_041), sscc("4098765", 890_042), sscc("4098765", 890_043)
    released_batch(consortium, "VF-EQ2", ["VFEQC", "VFEQD", "VFEQE", "VFEQF"], [case, moving])
    cmo = consortium.as_("cmo")
    cmo.post(
        "/v1/shipments", {"shipment_id": "VF-EQ-T", "to_gln": consortium.glns["3pl"], "containers": [moving]}
    )
    third = sscc("4098765", 890_044)
    released_batch(consortium, "VF-EQ3", ["VFEQG"], [third])
    cmo.post("/v1/pack", {"container": pallet, "containers": [third]})
    kinds: set[str] = set()
    with consortium.net.engine.connect() as conn:
        for (key,) in conn.execute(text('SELECT "key" FROM units')):
            row = conn.execute(_PACK, {"key": key}).mappings().one()
            assert pack_custody(conn, row) == resolve(conn, dict(row)), key
            if row["parent_key"] is None:
                kinds.add("loose")
            elif row["c_state"] == ContainerState.DISSOLVED:
                kinds.add("case unpacked")
            elif row["c_parent"] is None:
                kinds.add("in transit" if row["c_shipment"] else "in a loose case")
            else:
                kinds.add("nested")
    assert kinds >= {"case unpacked", "in a loose case", "in transit", "nested"}, kinds
    # the shipment is left for no one: the addressee refuses it
    consortium.as_("3pl").post(
        "/v1/shipments/VF-EQ-T/reject", {"containers": [moving], "reason": "test over"}
    )


def test_a_tote_answers_each_pack_as_verifying_it_alone_does(consortium: Consortium) -> None:
    """/v1/verify/bulk reads a tote set-based (one statement for all packs, one for their events);
    each answer equals the one-pack answer: fine, dispensed, undone, wrong lot, wrong expiry,
    unknown serial, unknown product, a pack still in its case, the same pack twice."""
    at_pharmacy(consortium, "VF-7", ["VF7A", "VF7B", "VF7C"], 7)
    case = sscc("4098765", 897_001)
    released_batch(consortium, "VF-8", ["VF8A", "VF8B"], [case])  # still packed, at the CMO
    pharmacy = consortium.as_("pharmacy")
    pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "VF7B"}]})
    pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "VF7C"}]})
    pharmacy.post("/v1/undo", {"units": [{"gtin": JOURNEY_GTIN, "serial": "VF7C"}]})
    packs: list[dict[str, Any]] = [
        {"code": scan("VF7A", "VF-7")},
        {"code": scan("VF7B", "VF-7")},
        {"code": scan("VF7C", "VF-7")},
        {"code": scan("VF7A", "VF-X")},
        {"code": scan("VF7A", "VF-7", "300101")},
        {"gtin": JOURNEY_GTIN, "serial": "VF7-NEVER"},
        {"gtin": "04012345999990", "serial": "VF7A"},
        {"gtin": JOURNEY_GTIN, "serial": "VF8A"},
        {"code": scan("VF7A", "VF-7")},
    ]
    tote = pharmacy.post("/v1/verify/bulk", {"packs": packs})
    alone = [pharmacy.post("/v1/verify", p) for p in packs]

    def same(answer: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in answer.items() if k != "evidence"} | {"events": answer["evidence"]["events"]}

    assert [same(a) for a in tote["results"]] == [same(a) for a in alone]
    assert [a["verdict"] for a in tote["results"]].count("ok_to_dispense") == tote["ok_to_dispense"] == 3
    assert tote["results"][7]["packed"] is True and tote["results"][1]["pack_status"] == "dispensed"
