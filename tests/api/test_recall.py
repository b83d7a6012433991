"""A recall reaches the holders: a signed webhook retried until acknowledged, server-sent events, and
the sponsor's recall view following units back home, destroyed, or dispensed before the recall."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from api.client import ApiProblem
from node.ledger.journey import JOURNEY_GTIN
from tests.api.conftest import Consortium
from tests.api.test_verification import at_pharmacy, scan


class Receiver:
    """A partner's webhook endpoint on loopback that refuses the first `failures` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[int, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(outer.received) < outer.failures else 200
                outer.received.append((status, dict(self.headers), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rxledger"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    yield r
    r.server.shutdown()


def test_a_recall_reaches_the_holders_and_the_sponsor_follows_it(
    consortium: Consortium, receiver: Receiver
) -> None:
    serials = ["RC1A", "RC1B", "RC1C"]
    at_pharmacy(consortium, "RC-1", serials, 11)
    pharmacy, sponsor_qp = consortium.as_("pharmacy"), consortium.as_("sponsor", "qp")
    hook = pharmacy.post("/v1/webhooks", {"url": receiver.url}, wait=False)
    pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "RC1A"}]})
    (batch,) = consortium.as_("cmo").get("/v1/batches", lot="RC-1")
    bid = batch["batch_id"]
    time.sleep(1.1)  # the recall in a later second than the dispense (block times are whole seconds)
    recall = {
        "meaning": "recalled: sterility",
        "signature": consortium.signature("sponsor"),
        "reason": "sterility",
    }
    sponsor_qp.post(f"/v1/batches/{bid}/recall", recall)

    deadline = time.monotonic() + 30
    while not any(status == 200 for status, _, _ in receiver.received):
        assert time.monotonic() < deadline, f"no acknowledged delivery: {receiver.received}"
        time.sleep(0.2)
    statuses = [status for status, _, _ in receiver.received]
    assert statuses[:3] == [500, 500, 200]  # retried until acknowledged
    _, headers, body = receiver.received[2]
    stamp, mac = (part.split("=", 1)[1] for part in headers["Rxledger-Signature"].split(","))
    expected = hmac.new(hook["secret"].encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    note = json.loads(body)
    assert note["kind"] == "batch.recalled"
    assert (note["data"]["batch_id"], note["data"]["units_you_hold"]) == (bid, 2)

    listed = [n for n in pharmacy.get("/v1/notifications") if n["subject"] == bid]
    ours = [d for d in listed[0]["deliveries"] if d["webhook_id"] == hook["id"]]
    assert ours == [{"webhook_id": hook["id"], "status": "delivered", "attempts": 3, "last_error": None}]
    response = pharmacy.http.get(
        "/v1/notifications/stream",
        params={"follow": "false"},
        headers=pharmacy._headers({"Last-Event-ID": "0"}),
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: batch.recalled" in response.text and bid in response.text
    assert any(n["subject"] == bid for n in consortium.as_("sponsor").get("/v1/notifications"))
    assert pharmacy.post("/v1/verify", {"code": scan("RC1B", "RC-1")})["verdict"] == "do_not_dispense"

    view = consortium.as_("sponsor").get(f"/v1/recalls/{bid}")
    assert (view["dispensed_before_recall"], view["outstanding"], view["returned"]) == (1, 2, 0)
    # the pharmacy sends the rest back to the sponsor, who destroys one
    units = [{"gtin": JOURNEY_GTIN, "serial": s} for s in serials[1:]]
    pharmacy.post(
        "/v1/shipments", {"shipment_id": "RC-BACK", "to_gln": consortium.glns["sponsor"], "units": units}
    )
    consortium.as_("sponsor").post("/v1/shipments/RC-BACK/receive")
    consortium.as_("sponsor").post("/v1/dispense", {"units": units[:1], "reason": "destroyed"})
    view = consortium.as_("regulator", "viewer").get(f"/v1/recalls/{bid}")
    assert (view["outstanding"], view["returned"], view["destroyed"], view["dispensed_after_recall"]) == (
        0,
        1,
        1,
        0,
    )
    with pytest.raises(ApiProblem) as hidden:
        pharmacy.get(f"/v1/recalls/{bid}")
    assert hidden.value.status == 404
