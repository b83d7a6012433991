"""node.epcis.hashid against the published CBV 2.0 vectors of the reference implementations, GS1's
example documents, and properties: one event spelled differently hashes the same, any changed value
hashes differently.

Vectors live in tests/epcis/vectors (sources in its README): one JSON file per source document with the
document and, per event, the published pre-hash string and/or hash ID, or substrings a reference's test
asserts. A file may carry a `divergence`: one substitution that turns the published pre-hash string into
ours, with the reason (where a reference departs from the standard); the published pair is still
checked for consistency. GS1's examples are read from shared/gs1 beside the repository, never copied.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.epcis.hashid import event_digest, event_hash_id, prehash_string

VECTORS = Path(__file__).parent / "vectors"
GS1_EXAMPLES = Path(__file__).parents[3] / "shared" / "gs1" / "examples"
HASH_ID = re.compile(r"^ni:///sha-256;[0-9a-f]{64}\?ver=CBV2\.0$")


def _events(document: dict[str, Any]) -> list[dict[str, Any]]:
    body = document["epcisBody"]
    if "queryResults" in body:
        body = body["queryResults"]["resultsBody"]
    events: list[dict[str, Any]] = body["eventList"] if "eventList" in body else [body["event"]]
    return events


def _vector_cases() -> list[Any]:
    cases = []
    for path in sorted(VECTORS.glob("*/*.json")):
        vector = json.loads(path.read_text(encoding="utf-8"))
        for i, expected in enumerate(vector["expected"]):
            case_id = f"{path.parent.name}/{path.stem}#{i}"
            cases.append(pytest.param(vector, i, expected, id=case_id))
    return cases


VECTOR_CASES = _vector_cases()


def test_vector_count() -> None:
    # 37 events from the Python reference, 3 from openepcis' tests
    assert len(VECTOR_CASES) == 40


@pytest.mark.parametrize(("vector", "index", "expected"), VECTOR_CASES)
def test_reference_vector(vector: dict[str, Any], index: int, expected: dict[str, Any]) -> None:
    document = vector["document"]
    event = _events(document)[index]
    ours = prehash_string(event, document.get("@context"))
    published_prehash, published_hash = expected.get("prehash"), expected.get("hash_id")
    if published_prehash is not None and published_hash is not None:  # the vector is consistent
        digest = hashlib.sha256(published_prehash.encode()).hexdigest()
        assert published_hash == f"ni:///sha-256;{digest}?ver=CBV2.0"
    old, new = vector["divergence"]["replace"] if "divergence" in vector else ("", "")

    def adjusted(text: str) -> str:
        return text.replace(old, new) if old else text

    if published_prehash is not None:
        assert ours == adjusted(published_prehash)
    if published_hash is not None and not old:
        assert event_hash_id(event, document.get("@context")) == published_hash
    for fragment in expected.get("prehash_contains", ()):
        assert adjusted(fragment) in ours


def test_hash_id_and_digest_agree() -> None:
    vector = json.loads((VECTORS / "ralphtro" / "ReferenceEventHashAlgorithm3.json").read_text())
    event, context = vector["document"]["epcisBody"]["eventList"][0], vector["document"]["@context"]
    digest = event_digest(event, context)
    assert len(digest) == 32
    assert event_hash_id(event, context) == f"ni:///sha-256;{digest.hex()}?ver=CBV2.0"


def _gs1_examples() -> list[Path]:
    files = sorted(GS1_EXAMPLES.rglob("*.jsonld"))
    assert len(files) == 47, f"GS1's 47 example documents are expected under {GS1_EXAMPLES}"
    return files


@pytest.mark.parametrize("path", _gs1_examples(), ids=lambda p: str(p.relative_to(GS1_EXAMPLES)))
def test_gs1_example_documents(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    for event in _events(document):
        prehash = prehash_string(event, document.get("@context"))
        assert prehash.startswith(f"eventType={event['type']}eventTime=")
        assert HASH_ID.match(event_hash_id(event, document.get("@context")))


def test_fields_outside_the_hash() -> None:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2024-05-02T10:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": ["urn:epc:id:sgtin:4012345.011111.1"],
        "action": "OBSERVE",
    }
    extra = {
        "eventID": "urn:uuid:2b6e3f1a-0d5c-4a53-9b5e-5f4c2e8d7a10",
        "recordTime": "2024-05-02T10:00:01Z",
        "certificationInfo": "https://cert.example.org/1",
        "errorDeclaration": {"declarationTime": "2024-05-03T10:00:00Z", "reason": "incorrect_data"},
        "rdfs:comment": "not data",
    }
    assert event_hash_id(event) == event_hash_id(event | extra)


def test_contexts_name_extension_namespaces() -> None:
    event = {"type": "ObjectEvent", "action": "OBSERVE", "ex:batchNote": "B-1"}
    expected = "eventType=ObjectEventaction=OBSERVE{https://ns.example.com/epcis/}batchNote=B-1"
    assert (
        prehash_string(event, ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"ex": NS}])
        == expected
    )
    assert prehash_string(event | {"@context": {"ex": NS}}) == expected  # the event's own context
    assert prehash_string(event).endswith("ex:batchNote=B-1")  # an unknown prefix stays as written


def test_timestamp_rounding_carries() -> None:
    event = {"type": "ObjectEvent", "eventTime": "2024-12-31T23:59:59.9996+00:00", "action": "OBSERVE"}
    assert prehash_string(event).startswith("eventType=ObjectEventeventTime=2025-01-01T00:00:00.000Z")


def test_not_an_event() -> None:
    with pytest.raises(ValueError):
        prehash_string({"eventTime": "2024-05-02T10:00:00Z"})


# ---- properties -----------------------------------------------------------------------------------

COMPANY = "4012345"  # a GS1 company prefix of seven digits
BIZ_STEPS = ("commissioning", "packing", "shipping", "receiving", "dispensing", "decommissioning")
DISPOSITIONS = ("active", "in_transit", "in_progress", "dispensed", "inactive", "damaged")
ACTIONS = ("ADD", "OBSERVE", "DELETE")
NS = "https://ns.example.com/epcis/"


def _check_digit(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def _gtin(item: str) -> str:
    body = item[0] + COMPANY + item[1:]
    return body + _check_digit(body)


def _gln(ref: str) -> str:
    return COMPANY + ref + _check_digit(COMPANY + ref)


def _word(urn: str, web: str, word: str, pick: int) -> str:
    """A CBV word as a bare word, a CBV 1.x URN, a web URI or a CURIE."""
    return (
        word,
        f"urn:epcglobal:cbv:{urn}:{word}",
        f"https://ref.gs1.org/cbv/{web}-{word}",
        f"cbv:{web}-{word}",
    )[pick]


def _sgtin(item: str, serial: str, pick: int) -> str:
    """One SGTIN as an EPC URI (TDS escapes) or as Digital Links (RFC 3986 escapes) of several
    equivalent spellings."""
    urn = "".join(quote(c, safe="") if c in '"%&/<>?' else c for c in serial)
    path = quote(serial, safe="")
    lower = re.sub("%..", lambda m: m[0].lower(), path)  # %-escapes with small hex digits
    return (
        f"urn:epc:id:sgtin:{COMPANY}.{item}.{urn}",
        f"https://id.gs1.org/01/{_gtin(item)}/21/{path}",
        f"https://example.com/01/{_gtin(item)}/21/{path}?17=261231",
        f"http://dl.example.org/products/01/{_gtin(item)}/10/LOT7/21/{lower}",
    )[pick]


def _sgln(ref: str, ext: str, pick: int) -> str:
    if pick == 0:
        return f"urn:epc:id:sgln:{COMPANY}.{ref}.{ext}"
    return f"https://id.gs1.org/414/{_gln(ref)}" + ("" if ext == "0" else f"/254/{ext}")


def _time(moment: dt.datetime, offset_minutes: int, digits: int) -> str:
    """The same instant written in another time zone, with 3 or 6 decimals (or none at whole seconds)."""
    local = moment.astimezone(dt.timezone(dt.timedelta(minutes=offset_minutes)))
    if digits == 0 and local.microsecond == 0:
        return local.isoformat(timespec="seconds")
    return local.isoformat(timespec="milliseconds" if digits <= 3 else "microseconds")


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """The facts of a pharma-like ObjectEvent or AggregationEvent, not yet their spelling."""
    # GS1 AI encodable character set 82, as serials may use it
    serial = st.text("ABCDEFGHJKLMNPQRSTUVWXYZabcxyz0123456789!\"%&'()*+,-./:;<=>?_", min_size=1, max_size=12)
    millis = draw(st.integers(0, 4_000_000_000_000))
    return {
        "time": dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC),
        "epcs": draw(
            st.lists(
                st.tuples(st.sampled_from(("011111", "022222", "133333")), serial),
                min_size=1,
                max_size=5,
                unique=True,
            )
        ),
        "action": draw(st.sampled_from(ACTIONS)),
        "biz_step": draw(st.sampled_from(BIZ_STEPS)),
        "disposition": draw(st.sampled_from(DISPOSITIONS)),
        "read_point": (draw(st.sampled_from(("00011", "00025"))), draw(st.sampled_from(("0", "7", "A1")))),
        "transactions": draw(
            st.lists(
                st.tuples(st.sampled_from(("po", "inv", "desadv")), st.integers(1, 10**6)),
                max_size=3,
                unique=True,
            )
        ),
        "owner": draw(st.sampled_from(("00000", "00012"))),
        "kind": draw(st.sampled_from(("ObjectEvent", "AggregationEvent"))),
        "sscc": draw(st.integers(0, 10**9 - 1)),
        "lots": draw(
            st.lists(
                st.tuples(st.sampled_from(("LOT7", "A-1", "B2")), st.integers(1, 500)),
                min_size=1,
                max_size=3,
                unique_by=lambda lot: lot[0],
            )
        ),
        "note": draw(st.text("abcdefghij XYZ-", min_size=1, max_size=15).map(str.strip).filter(bool)),
    }


def spell(facts: dict[str, Any], data: st.DataObject) -> tuple[dict[str, Any], Any]:
    """(event, document context) writing `facts` with spellings and orders drawn from `data`."""
    pick = data.draw(st.integers(0, 3))
    prefix = data.draw(st.sampled_from(("ex", "rxl", "acme")))
    aggregation = facts["kind"] == "AggregationEvent"
    epcs = "childEPCs" if aggregation else "epcList"
    quantities = "childQuantityList" if aggregation else "quantityList"
    event: dict[str, Any] = {
        "type": facts["kind"],
        "eventTime": _time(
            facts["time"], data.draw(st.integers(-48, 56)) * 15, data.draw(st.sampled_from((0, 3, 6)))
        ),
        "eventTimeZoneOffset": "+01:00",
        epcs: [_sgtin(item, serial, data.draw(st.integers(0, 3))) for item, serial in facts["epcs"]],
        "action": facts["action"],
        "bizStep": _word("bizstep", "BizStep", facts["biz_step"], data.draw(st.integers(0, 3))),
        "disposition": _word("disp", "Disp", facts["disposition"], data.draw(st.integers(0, 3))),
        "readPoint": {
            "id": _sgln(facts["read_point"][0], facts["read_point"][1], data.draw(st.integers(0, 1)))
        },
        "bizTransactionList": [
            {
                "type": _word("btt", "BTT", kind, data.draw(st.integers(0, 3))),
                "bizTransaction": f"urn:epc:id:gdti:{COMPANY}.00001.{number}"
                if data.draw(st.booleans())
                else f"https://id.gs1.org/253/{_gln('00001')}{number}",
            }
            for kind, number in facts["transactions"]
        ],
        "sourceList": [
            {
                "source": f"urn:epc:id:pgln:{COMPANY}.{facts['owner']}"
                if pick % 2
                else f"https://id.gs1.org/417/{_gln(facts['owner'])}",
                "type": _word("sdt", "SDT", "owning_party", pick),
            }
        ],
        quantities: [
            {
                "epcClass": f"urn:epc:class:lgtin:{COMPANY}.011111.{lot}"
                if data.draw(st.booleans())
                else f"https://id.gs1.org/01/{_gtin('011111')}/10/{lot}",
                "quantity": quantity if data.draw(st.booleans()) else float(quantity),
                "uom": "EA",
            }
            for lot, quantity in facts["lots"]
        ],
        f"{prefix}:note": facts["note"],
    }
    if aggregation:
        sscc = f"{facts['sscc']:09d}"
        body = "0" + COMPANY + sscc
        event["parentID"] = (
            f"urn:epc:id:sscc:{COMPANY}.0{sscc}"
            if pick % 2
            else f"https://id.gs1.org/00/{body}{_check_digit(body)}"
        )
    # JSON arrays and objects in any order
    for key in (epcs, quantities, "bizTransactionList"):
        event[key] = data.draw(st.permutations(event[key]))
    keys = data.draw(st.permutations(list(event)))
    event = {k: event[k] for k in keys}
    return event, ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {prefix: NS}]


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(facts=events(), data=st.data())
def test_spelling_does_not_change_the_hash(facts: dict[str, Any], data: st.DataObject) -> None:
    first = spell(facts, data)
    second = spell(facts, data)
    assert prehash_string(*first) == prehash_string(*second)
    assert event_hash_id(*first) == event_hash_id(*second)


def _changes() -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    def other(values: tuple[str, ...], value: str) -> str:
        return values[(values.index(value) + 1) % len(values)]

    def serial(f: dict[str, Any]) -> None:
        item, value = f["epcs"][0]
        f["epcs"][0] = (item, value + "0")

    def transaction(f: dict[str, Any]) -> None:
        f["transactions"] = [*f["transactions"], ("po", 10**7)]

    return [
        ("serial", serial),
        ("item reference", lambda f: f["epcs"].__setitem__(0, ("044444", f["epcs"][0][1]))),
        ("action", lambda f: f.__setitem__("action", other(ACTIONS, f["action"]))),
        ("bizStep", lambda f: f.__setitem__("biz_step", other(BIZ_STEPS, f["biz_step"]))),
        ("disposition", lambda f: f.__setitem__("disposition", other(DISPOSITIONS, f["disposition"]))),
        ("eventTime", lambda f: f.__setitem__("time", f["time"] + dt.timedelta(milliseconds=1))),
        ("readPoint", lambda f: f.__setitem__("read_point", (f["read_point"][0], f["read_point"][1] + "9"))),
        ("business transaction", transaction),
        ("owner", lambda f: f.__setitem__("owner", other(("00000", "00012"), f["owner"]))),
        ("quantity", lambda f: f["lots"].__setitem__(0, (f["lots"][0][0], f["lots"][0][1] + 1))),
        (
            "event type",
            lambda f: f.__setitem__("kind", other(("ObjectEvent", "AggregationEvent"), f["kind"])),
        ),
        ("extension", lambda f: f.__setitem__("note", f["note"] + "X")),
    ]


@PROPERTY
@given(facts=events(), data=st.data(), change=st.sampled_from(_changes()))
def test_any_changed_value_changes_the_hash(
    facts: dict[str, Any], data: st.DataObject, change: tuple[str, Callable[[dict[str, Any]], None]]
) -> None:
    changed = copy.deepcopy(facts)
    change[1](changed)
    assert event_hash_id(*spell(facts, data)) != event_hash_id(*spell(changed, data))
