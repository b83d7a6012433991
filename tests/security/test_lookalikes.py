"""Look-alike identifiers against the live API: a GS1 key, serial or number with a non-ASCII digit
or a confusable character is malformed input at every entry point (JSON bodies, scans, Digital
Links, EPCIS documents, query and path parameters): a 4xx problem naming the field, nothing
accepted into the outbox, nothing on chain, no alert. Before the fix a fullwidth SSCC was
commissioned on chain and a fullwidth GTIN scanned at /v1/verify got a 200 verdict (issue 18)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import Session

from api.models import Alert, Operation
from node.epcis.events import CONTEXT
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN
from tests.api.conftest import Consortium
from tests.gs1.test_ascii_only import ALL_NON_ASCII_DIGITS, CONFUSABLES, NON_ASCII_DIGITS

P = "urn:rxledger:problem:"
SSCC = "040987650007000006"  # the pharmacy's demo case, as the attacker's look-alike mimics it
FULLWIDTH = {str(d): chr(0xFF10 + d) for d in range(10)}
ARABIC_INDIC = {str(d): chr(0x0660 + d) for d in range(10)}


def rewrite(text: str, table: dict[str, str]) -> str:
    return "".join(table.get(c, c) for c in text)


def count(consortium: Consortium, model: Any) -> int:
    with Session(consortium.net.engine) as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def http(consortium: Consortium, org: str, role: str = "operator") -> httpx.Client:
    token = consortium.tokens[(org, role)]
    return httpx.Client(base_url=consortium.net.base_url, headers={"Authorization": f"Bearer {token}"})


def is_refusal(response: httpx.Response) -> bool:
    return response.status_code in (400, 422) and response.headers["content-type"].startswith(
        "application/problem+json"
    )


def entry_points(consortium: Consortium) -> list[tuple[str, Callable[[str, str, str], httpx.Response]]]:
    """(name, call(gtin, sscc, gln)) for every way a GS1 key enters the API."""
    cmo, pharmacy, sponsor = (
        http(consortium, "cmo"),
        http(consortium, "pharmacy"),
        http(consortium, "sponsor"),
    )
    pharmacy_gln = consortium.glns["pharmacy"]

    def epcis(client: httpx.Client, ev: dict[str, Any]) -> httpx.Response:
        document = {
            "@context": CONTEXT,
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-12-07T08:00:00.000Z",
            "epcisBody": {
                "eventList": [
                    {"eventTime": "2026-12-07T09:00:00.000+01:00", "eventTimeZoneOffset": "+01:00", **ev}
                ]
            },
        }
        headers = {"Content-Type": "application/ld+json"}
        return client.post("/epcis/capture?wait=true", content=json.dumps(document), headers=headers)

    return [
        ("commission: container SSCC", lambda g, s, n: cmo.post("/v1/commission", json={"batch_id": "0x" + "11" * 32, "serials": ["LA1"], "containers": [s]})),  # noqa: E501
        ("pack: container SSCC", lambda g, s, n: cmo.post("/v1/pack", json={"container": s, "units": [{"gtin": JOURNEY_GTIN, "serial": "LA1"}]})),  # noqa: E501
        ("ship: to_gln", lambda g, s, n: cmo.post("/v1/shipments", json={"to_gln": n, "containers": [SSCC]})),
        ("ship: unit gtin", lambda g, s, n: cmo.post("/v1/shipments", json={"to_gln": pharmacy_gln, "units": [{"gtin": g, "serial": "LA1"}]})),  # noqa: E501
        ("decommission: scan", lambda g, s, n: pharmacy.post("/v1/decommission", json={"units": [{"scan": f"01{g}21LA1"}], "reason": "dispensed"})),  # noqa: E501
        ("products: gtin", lambda g, s, n: sponsor.post("/v1/products", json={"gtin": g})),
        ("batches: site_gln and gtin", lambda g, s, n: cmo.post("/v1/batches", json={"gtin": g, "lot": "LA-1", "expiry": "2029-01-31", "site_gln": n})),  # noqa: E501
        ("verify: scan", lambda g, s, n: pharmacy.post("/v1/verify", json={"code": f"]d201{g}21LA1"})),
        ("verify: Digital Link", lambda g, s, n: pharmacy.post("/v1/verify", json={"code": f"https://id.gs1.org/01/{g}/21/LA1"})),
        ("verify: gtin field", lambda g, s, n: pharmacy.post("/v1/verify", json={"gtin": g, "serial": "LA1"})),  # noqa: E501
        ("verify bulk", lambda g, s, n: pharmacy.post("/v1/verify/bulk", json={"packs": [{"code": f"(01){g}(21)LA1"}]})),  # noqa: E501
        ("identifiers/parse", lambda g, s, n: pharmacy.post("/v1/identifiers/parse", json={"input": f"(00){s}"})),  # noqa: E501
        ("VRS path", lambda g, s, n: pharmacy.get(f"/vrs/01/{quote(g)}/10/L1/21/LA1")),
        ("VRS reqGLN query", lambda g, s, n: pharmacy.get(f"/vrs/01/{JOURNEY_GTIN}/10/L1/21/LA1", params={"reqGLN": n})),  # noqa: E501
        ("provenance path", lambda g, s, n: pharmacy.get(f"/v1/provenance/{quote(s)}")),
        ("master data path", lambda g, s, n: sponsor.get(f"/v1/products/{quote(g)}/master-data")),
        ("EPCIS query MATCH_epc", lambda g, s, n: pharmacy.get("/epcis/events", params={"MATCH_epc": f"https://id.gs1.org/00/{s}"})),
        ("EPCIS epcs path", lambda g, s, n: pharmacy.get(f"/epcis/epcs/{quote(f'https://id.gs1.org/01/{g}/21/LA1', safe='')}/events")),  # noqa: E501
        ("EPCIS capture: epcList", lambda g, s, n: epcis(cmo, {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "inspecting", "epcList": [f"https://id.gs1.org/00/{s}"]})),  # noqa: E501
        ("EPCIS capture: destination", lambda g, s, n: epcis(cmo, {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping", "epcList": [f"https://id.gs1.org/00/{SSCC}"], "destinationList": [{"type": "owning_party", "destination": f"https://id.gs1.org/417/{n}"}]})),  # noqa: E501
    ]  # fmt: skip


def test_the_reported_lookalikes_are_malformed_input_everywhere(consortium: Consortium) -> None:
    """The report's own cases, fullwidth and Arabic-Indic, at every entry point."""
    operations, alerts = count(consortium, Operation), count(consortium, Alert)
    for table in (FULLWIDTH, ARABIC_INDIC):
        gtin, sscc, gln = rewrite(JOURNEY_GTIN, table), rewrite(SSCC, table), rewrite(SITE_GLN, table)
        for name, call in entry_points(consortium):
            response = call(gtin, sscc, gln)
            assert is_refusal(response), (name, response.status_code, response.text[:300])
            problem = response.json()
            named = json.dumps(problem)
            assert "field" in named or "errors" in named or "parameter" in named, (name, problem)
    assert count(consortium, Operation) == operations  # nothing accepted
    assert count(consortium, Alert) == alerts  # malformed input raises no alert


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(min_value=0, max_value=17),
    st.sampled_from(ALL_NON_ASCII_DIGITS + CONFUSABLES),
    st.integers(min_value=0),
)
def test_any_lookalike_anywhere_is_refused(
    consortium: Consortium, position: int, char: str, which: int
) -> None:
    """One non-ASCII digit (of the same value where possible) or confusable at a random position."""

    def put(real: str) -> str:
        at = position % len(real)
        same_value = NON_ASCII_DIGITS[int(real[at])]
        replacement = same_value[which % len(same_value)] if char in ALL_NON_ASCII_DIGITS else char
        return real[:at] + replacement + real[at + 1 :]

    points = entry_points(consortium)
    name, call = points[which % len(points)]
    operations = count(consortium, Operation)
    response = call(put(JOURNEY_GTIN), put(SSCC), put(SITE_GLN))
    assert is_refusal(response), (name, response.status_code, response.text[:300])
    assert count(consortium, Operation) == operations


def test_the_real_keys_still_pass_the_same_entry_points(consortium: Consortium) -> None:
    """Control: the ASCII keys are not refused as malformed by the same calls (they may be refused
    for what they name: unknown item, forbidden, nothing to do; never as a bad identifier)."""
    for name, call in entry_points(consortium):
        response = call(JOURNEY_GTIN, SSCC, SITE_GLN)
        if response.status_code < 400:
            continue
        problem = response.json()
        text = json.dumps(problem)
        assert "ASCII" not in text and "invalid-identifier" not in text, (name, text[:300])
