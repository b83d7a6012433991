"""node.epcis.model against GS1's official EPCIS 2.0 JSON Schema: the models accept exactly the documents
the schema accepts, over GS1's examples and over systematic and random mutations of them.

The schema is the oracle, run by jsonschema's Draft7Validator with format checking (`date-time` needs
rfc3339-validator, `uri` rfc3986-validator). GS1's files are read from shared/gs1 beside the repository,
never copied into it; without them this module fails to load rather than skipping.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, FormatChecker
from pydantic import BaseModel, ValidationError

from node.epcis.model import (
    AggregationEvent,
    EPCISDocument,
    EPCISQueryDocument,
    ExtensionEvent,
    ObjectEvent,
    TransformationEvent,
    problems,
    validate_document,
)

GS1 = Path(__file__).resolve().parents[3] / "shared" / "gs1"
SCHEMA_FILE = GS1 / "EPCIS-JSON-Schema.json"
EXAMPLE_FILES = sorted((GS1 / "examples").glob("**/*.jsonld"))
if not SCHEMA_FILE.is_file() or not EXAMPLE_FILES:
    raise RuntimeError(f"GS1's EPCIS schema and examples are missing from {GS1}: see shared/gs1/README.md")

SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
EXAMPLES: dict[str, dict[str, Any]] = {
    str(path.relative_to(GS1 / "examples")): json.loads(path.read_text()) for path in EXAMPLE_FILES
}
FORMATS = FormatChecker()
ROOT_ORACLE = Draft7Validator(SCHEMA, format_checker=FORMATS)


def _oracle(definition: str) -> Draft7Validator:
    # The definition the root schema applies when `type` is EPCISDocument / EPCISQueryDocument: a
    # mutated `type` must not turn a document into a bare event the root schema would also accept.
    schema = {"allOf": [{"$ref": f"#/definitions/{definition}"}], "definitions": SCHEMA["definitions"]}
    return Draft7Validator(schema, format_checker=FORMATS)


ORACLES = {"EPCISDocument": _oracle("epcisDocument"), "EPCISQueryDocument": _oracle("epcisQueryDocument")}
MODELS: dict[str, type[BaseModel]] = {
    "EPCISDocument": EPCISDocument,
    "EPCISQueryDocument": EPCISQueryDocument,
}


def _require_format_checking() -> None:
    missing = [name for name in ("date-time", "uri") if name not in FORMATS.checkers]
    if missing:
        pytest.fail(
            f"jsonschema cannot check format {', '.join(missing)}: without it the schema accepts any string "
            "there and parity proves nothing. Install rfc3339-validator (date-time) and rfc3986-validator "
            "(uri), as the dev extra does."
        )


def schema_accepts(kind: str, doc: Any) -> bool:
    return bool(ORACLES[kind].is_valid(doc))


def model_accepts(kind: str, doc: Any) -> bool:
    try:
        MODELS[kind].model_validate(doc)
    except ValidationError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# Base documents: every example event alone in its example's document, lists cut to two entries
# ---------------------------------------------------------------------------------------------------

Loc = tuple[str | int, ...]


def _is_free(key: str) -> bool:
    # Extension fields (namespaced, hence ':') and JSON-LD contexts hold free JSON: nothing to mutate inside.
    return ":" in key or key == "@context"


def _trim(value: Any, key: str = "") -> Any:
    if _is_free(key):
        return value
    if isinstance(value, list):
        return [_trim(item) for item in value[:2]]
    if isinstance(value, dict):
        return {k: _trim(v, k) for k, v in value.items()}
    return value


def _event_list_loc(doc: dict[str, Any]) -> Loc:
    if doc["type"] == "EPCISQueryDocument":
        return ("epcisBody", "queryResults", "resultsBody", "eventList")
    return ("epcisBody", "eventList")


def get(value: Any, loc: Loc) -> Any:
    for part in loc:
        value = value[part]
    return value


def _bases() -> list[tuple[str, str, dict[str, Any]]]:
    bases = []
    for name, example in EXAMPLES.items():
        events_loc = _event_list_loc(example)
        for i, event in enumerate(get(example, events_loc)):
            doc = copy.deepcopy(example)
            get(doc, events_loc[:-1])[events_loc[-1]] = [_trim(event)]
            bases.append((f"{name}#{i}", example["type"], doc))
    # GS1 publishes no example with a header: one with master data and a namespaced header field.
    doc = copy.deepcopy(bases[0][2])
    doc["epcisHeader"] = {
        "epcisMasterData": {
            "vocabularyList": [
                {
                    "type": "urn:epcglobal:epcis:vtype:BusinessLocation",
                    "vocabularyElementList": [
                        {
                            "id": "urn:epc:id:sgln:0614141.07346.1234",
                            "attributes": [
                                {"id": "urn:epcglobal:cbv:mda#name", "attribute": "Dock 1"},
                                {"id": "urn:epcglobal:cbv:mda#sst", "attribute": 201},
                            ],
                            "children": ["urn:epc:id:sgln:0614141.07346.1235"],
                        }
                    ],
                }
            ]
        },
        "sbdh:StandardBusinessDocumentHeader": {"sbdh:HeaderVersion": "1.0"},
    }
    bases.append(("header-and-master-data", "EPCISDocument", doc))
    return bases


BASES = _bases()


# ---------------------------------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------------------------------

# Wrong JSON types and empty containers, tried everywhere.
ANY_TYPE: list[Any] = [42, True, None, "text", {}, []]

URIS = [
    "urn:epc:id:sgtin:0614141.107346.2017",
    "",
    "https://id.gs1.org/01/09506000134352/21/1",
    "urn:x",
    "x:",
    "mailto:a@example.org",
    "http://[::1]:8080/a?b#c",
    "http://[::1/a",
    "https://example.org/%2F",
    "https://example.org/%zz",
    "urn:epc:id:sgtin:0614141.107346.20 17",
    "not a uri",
    "0614141.107346.2017",
    "//example.org/a",
    "/relative/path",
    "ünicode:x",
    "urn:épc:x",
    "urn:epcglobal:cbv:bizstep:shipping",
]
TIMES = [
    "2005-04-03T20:33:31.116-06:00",
    "2005-04-03T20:33:31Z",
    "2005-04-03t20:33:31z",
    "2005-04-03T20:33:31.123456789+14:00",
    "2005-04-03T20:33:31+23:59",
    "2004-02-29T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2005-04-03T20:33:31",
    "2005-13-03T20:33:31Z",
    "2005-00-03T20:33:31Z",
    "2005-02-29T00:00:00Z",
    "2005-04-31T00:00:00Z",
    "2005-04-03 20:33:31Z",
    "2005-04-03T24:00:00Z",
    "2016-12-31T23:59:60Z",
    "2005-04-03T20:33Z",
    "2005-04-03T20:33:31.Z",
    "2005-04-03T20:33:31+24:00",
    "2005-04-03T20:33:31+0100",
    "0000-01-01T00:00:00Z",
    "20050403T203331Z",
    "2005-04-03",
    1112560411,
]
OFFSETS = [
    "+00:00",
    "-00:00",
    "+14:00",
    "-14:00",
    "+13:59",
    "+14:01",
    "+15:00",
    "+1:00",
    "01:00",
    "+01:60",
    "+01",
    "Z",
    "+01:00:00",
    "\u221201:00",  # a typographic minus
    "+0100",
    " +01:00",
]
NUMBERS = [0, -1, 2.5, -0.0, 1e308, 10**30, "5"]
CBV_BIZ_STEPS = [
    "shipping",
    "receiving",
    "Shipping",
    "shipping ",
    "in_transit",
    "urn:epcglobal:cbv:bizstep:shipping",
    "https://ns.gs1.org/cbv/BizStep-shipping",
    "http://ns.gs1.org/cbv/BizStep-shipping",
    "https://ref.gs1.org/cbv/BizStep-shipping",
    "URN:EPCGLOBAL:CBV:BIZSTEP:SHIPPING",
    "urn:epcglobal:cbvx",
    "example:myStep",
]
DISPOSITIONS = [
    "in_transit",
    "recalled",
    "In_Transit",
    "shipping",
    "urn:epcglobal:cbv:disp:in_transit",
    "https://ns.gs1.org/cbv/Disp-in_transit",
    "https://ref.gs1.org/cbv/Disp-in_transit",
    "example:myDisposition",
]
EVENT_TYPES = [
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
    "EPCISDocument",
    "example:MyEvent",
    "MyEvent",
    "objectEvent",
]
# `type` means something else in each part: the values tried follow the part.
TYPES_BY_PART: dict[str, list[Any]] = {
    "bizTransactionList": [
        "po",
        "Po",
        "urn:epcglobal:cbv:btt:po",
        "https://ns.gs1.org/cbv/BTT-po",
        "example:t",
    ],
    "sourceList": ["owning_party", "location", "Location", "urn:epcglobal:cbv:sdt:location", "example:t"],
    "sensorReport": [
        "Temperature",
        "temperature",
        "https://gs1.org/voc/Temperature",
        "https://www.gs1.org/voc/Temperature",
        "gs1:Temperature",
        "ALARM_CONDITION",
    ],
    "vocabularyList": ["urn:epcglobal:epcis:vtype:BusinessLocation", "BusinessLocation"],
}
TYPES_BY_PART["destinationList"] = TYPES_BY_PART["sourceList"]
VALUES_BY_KEY: dict[str, list[Any]] = {
    "action": ["ADD", "OBSERVE", "DELETE", "add", "Add", "UPDATE", "ADD "],
    "bizStep": CBV_BIZ_STEPS,
    "disposition": DISPOSITIONS,
    "set": DISPOSITIONS,
    "unset": DISPOSITIONS,
    "reason": [
        "did_not_occur",
        "incorrect_data",
        "urn:epcglobal:cbv:er:incorrect_data",
        "example:r",
        "wrong",
    ],
    "exception": [
        "ALARM_CONDITION",
        "alarm_condition",
        "https://gs1.org/voc/ALARM_CONDITION",
        "example:alarm",
    ],
    "component": ["x", "latitude", "X", "example:x", "https://ns.gs1.org/cbv/x"],
    "uom": ["KGM", "KG", "A93", "kgm", "K", "KGMS", "KG M"],
    "hexBinaryValue": ["f0f0f0", "F0", "xyz", "0x1f", "f0 f0"],
    "booleanValue": [False, "true", 1, 0],
    "stringValue": ["x", 1],
    "schemaVersion": ["2.0", "2", "2.0.1", "v2", "2.", ".2", "2..0", "2,0"],
    "eventTimeZoneOffset": OFFSETS,
    "@context": [
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        "not a uri",
        [{}],
        ["x:y", "x:y"],
        ["x:y", {"x": "y"}],
        [{"a": 1}, {"a": 1}],
        [{"a": 1}, {"a": 1.0}],
        [{"a": True}, {"a": 1}],
        [1],
    ],
    "certificationInfo": ["https://cert.example.org/1", ["https://cert.example.org/1"], ["nope"], "nope"],
    "ilmd": [{"cbvmda:lotNumber": "A1"}, {"lotNumber": "A1"}, {"1x:y": 1}],
    "attribute": [7, "x", {"k": "v"}, [1], False],
}
for _key in ("eventTime", "recordTime", "creationDate", "declarationTime", "time", "startTime", "endTime"):
    VALUES_BY_KEY[_key] = TIMES
URI_FIELDS = [
    "id",
    "eventID",
    "parentID",
    "epcClass",
    "bizTransaction",
    "source",
    "destination",
    "deviceID",
    "deviceMetadata",
    "rawData",
    "dataProcessingMethod",
    "bizRules",
    "microorganism",
    "chemicalSubstance",
    "coordinateReferenceSystem",
    "uriValue",
    "transformationID",
    "epcList",
    "childEPCs",
    "inputEPCList",
    "outputEPCList",
    "correctiveEventIDs",
    "children",
]
for _key in URI_FIELDS:
    VALUES_BY_KEY[_key] = URIS
for _key in ["quantity", "value", "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue"]:
    VALUES_BY_KEY[_key] = NUMBERS

# Field names to add to objects: namespaced names pass where the schema takes extensions.
NEW_KEYS = [
    "myField",
    "example:myField",
    "urn:x:y",
    "1x:y",
    "ex ample:y",
    "@id",
    "type_",
    "context",
    "action",
]


def nodes(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, Any]]:
    """Every value inside `value` with its location, not looking inside free JSON."""
    items: Any = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, item in items:
        yield (*loc, key), item
        if not (isinstance(key, str) and _is_free(key)):
            yield from nodes(item, (*loc, key))


def mutate(doc: dict[str, Any], op: str, loc: Loc, arg: Any = None) -> dict[str, Any]:
    new = copy.deepcopy(doc)
    parent = get(new, loc[:-1])
    if op == "drop":
        del parent[loc[-1]]
    elif op == "set":
        parent[loc[-1]] = copy.deepcopy(arg)
    elif op == "add":
        parent[loc[-1]][arg] = "v"
    elif op == "repeat":
        parent[loc[-1]].append(copy.deepcopy(parent[loc[-1]][0]))
    return new


def _key_of(loc: Loc) -> str:
    return next((part for part in reversed(loc) if isinstance(part, str)), "")


def values_for(doc: dict[str, Any], loc: Loc) -> list[Any]:
    """The values whose acceptance the rules of the field at `loc` are about."""
    key = _key_of(loc)
    if key != "type":
        return VALUES_BY_KEY.get(key, [])
    part = _key_of(loc[:-1])
    if part in ("eventList", ""):
        return EVENT_TYPES if part else ["EPCISDocument", "EPCISQueryDocument", "ObjectEvent", "example:Doc"]
    return TYPES_BY_PART.get(part, [])


# Event fields whose presence, emptiness or value decides a rule across fields (what an event is about,
# ilmd only with ADD): mutations of these are tried in every combination the examples show.
CROSS_FIELD = {
    "type",
    "action",
    "epcList",
    "quantityList",
    "childEPCs",
    "childQuantityList",
    "inputEPCList",
    "inputQuantityList",
    "outputEPCList",
    "outputQuantityList",
    "transformationID",
    "sensorElementList",
    "readPoint",
    "ilmd",
}


def _signature(kind: str, doc: dict[str, Any], loc: Loc, op: str, arg: Any) -> str:
    """Mutations with equal signatures test the same rule: one of them is enough. Parts of events (a
    sensorReport, a quantity) follow the same rules in every event, and so do the values of an event's
    own fields; which fields an event may or must have follows its type; and the presence or emptiness
    of the cross-field ones also its action and which of them the event has."""
    events_loc = _event_list_loc(doc)
    inside = loc[: len(events_loc)] == events_loc and len(loc) > len(events_loc)
    rel = loc[len(events_loc) + 1 :] if inside else loc
    shape: Any = kind
    if inside:
        event = get(doc, loc[: len(events_loc) + 1])
        event_type = event.get("type") if isinstance(event, dict) else None
        key = rel[0] if rel else None
        if len(rel) > 1 or (op == "set" and arg not in ANY_TYPE and key not in ("type", "action")):
            shape = "part"
        elif key in CROSS_FIELD and (
            op == "drop" or (op == "set" and (arg in ([], None) or key in ("type", "action")))
        ):
            shape = [event_type, event.get("action"), sorted(k for k in event if k in CROSS_FIELD)]
        else:
            shape = event_type
    place = ["<ext>" if isinstance(part, str) and ":" in part else part for part in rel]
    place = [0 if isinstance(part, int) else part for part in place]
    return json.dumps([shape, place, op, arg], sort_keys=True, default=str)


Case = tuple[str, str, dict[str, Any]]  # (description, document kind, document)


def systematic_cases() -> dict[str, list[Case]]:
    """Per base document: drop each field; give each value wrong types, empty lists and the values its
    field's rules are about; add unknown and namespaced fields to each object; repeat list entries."""
    seen: set[str] = set()
    cases: dict[str, list[Case]] = {}
    for name, kind, doc in BASES:
        mine = cases.setdefault(name.split("#")[0], [])
        for loc, value in nodes(doc):
            tries: list[tuple[str, Any]] = [("set", v) for v in ANY_TYPE + values_for(doc, loc)]
            if isinstance(loc[-1], str):
                tries.append(("drop", None))
            if isinstance(value, dict):
                tries += [("add", key) for key in NEW_KEYS]
            if isinstance(value, list) and value:
                tries.append(("repeat", None))
            for op, arg in tries:
                signature = _signature(kind, doc, loc, op, arg)
                if signature not in seen:
                    seen.add(signature)
                    mine.append((f"{op} {_show(loc)} {arg!r}", kind, mutate(doc, op, loc, arg)))
    return cases


def _show(loc: Loc) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


CASES = systematic_cases()


# ---------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------


def test_the_oracle_checks_formats() -> None:
    _require_format_checking()
    doc = copy.deepcopy(BASES[0][2])
    doc["creationDate"] = "2005-13-11T11:30:47Z"
    assert not ROOT_ORACLE.is_valid(doc)
    doc = copy.deepcopy(BASES[0][2])
    doc["id"] = "not a uri"
    assert not ROOT_ORACLE.is_valid(doc)


def test_all_gs1_examples_are_here() -> None:
    assert len(EXAMPLES) == 47, sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_gs1_example_is_accepted_by_schema_and_models(name: str) -> None:
    _require_format_checking()
    doc = EXAMPLES[name]
    errors = [e.message for e in ROOT_ORACLE.iter_errors(doc)]
    assert not errors, errors
    assert ORACLES[doc["type"]].is_valid(doc)
    try:
        MODELS[doc["type"]].model_validate(doc)
    except ValidationError as exc:
        pytest.fail(f"{name}: {problems(exc)}")


def test_base_documents_are_valid() -> None:
    # Cutting lists to two entries and events to one keeps every example valid: mutations start clean.
    _require_format_checking()
    assert [name for name, kind, doc in BASES if not schema_accepts(kind, doc)] == []
    assert [name for name, kind, doc in BASES if not model_accepts(kind, doc)] == []


@pytest.mark.parametrize("example", sorted(CASES))
def test_systematic_mutations_agree_with_schema(example: str) -> None:
    _require_format_checking()
    disagreements = [
        f"{description}: schema {'accepts' if expected else 'refuses'}, models do not"
        for description, kind, doc in CASES[example]
        if (expected := schema_accepts(kind, doc)) != model_accepts(kind, doc)
    ]
    assert not disagreements, "\n".join(disagreements[:30])


def test_mutation_suite_covers_both_outcomes() -> None:
    # Guards the suite itself: each kind of mutation must produce both accepted and refused documents.
    _require_format_checking()
    outcomes: Counter[tuple[str, bool]] = Counter()
    for cases in CASES.values():
        for description, kind, doc in cases:
            outcomes[description.split()[0], model_accepts(kind, doc)] += 1
    for op in ("set", "drop", "add", "repeat"):
        assert outcomes[op, True] > 0 and outcomes[op, False] > 0, outcomes
    assert sum(outcomes.values()) > 2000, outcomes


EXTRA_NASTY: list[Any] = [[None], [{}], {"id": 5}, {"id": "urn:x:y"}, [1, 1], ["a:b", "a:b"], 1.5e-9]
NASTY = sorted(
    {
        json.dumps(v)
        for values in [ANY_TYPE, EVENT_TYPES, *VALUES_BY_KEY.values(), *TYPES_BY_PART.values()]
        for v in values
    }
    | {json.dumps(v) for v in EXTRA_NASTY}
)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_mutations_agree_with_schema(data: st.DataObject) -> None:
    _require_format_checking()
    name, kind, doc = data.draw(st.sampled_from(BASES), label="base")
    loc, value = data.draw(st.sampled_from(list(nodes(doc))), label="place")
    ops = ["set", "set", "drop" if isinstance(loc[-1], str) else "set"]
    if isinstance(value, dict):
        ops.append("add")
    op = data.draw(st.sampled_from(ops), label="op")
    arg: Any = None
    if op == "set":
        arg = json.loads(data.draw(st.sampled_from(NASTY), label="value"))
    elif op == "add":
        arg = data.draw(st.sampled_from(NEW_KEYS), label="key")
    mutated = mutate(doc, op, loc, arg)
    expected = schema_accepts(kind, mutated)
    assert model_accepts(kind, mutated) == expected, (
        f"{name}: {op} {_show(loc)} {arg!r}: schema says {expected}"
    )


# The schema's patterns and formats, read as JSON Schema means them (ECMA-262 regular expressions,
# RFC 3339, RFC 3986), refuse these values; Python's jsonschema accepts them because `re` lets `$`
# match before a final newline and `\d` match any Unicode digit, and rfc3986-validator lets IPv4 parts
# of an IPv6 address have leading zeros. The models refuse them: this test records the difference so
# that a change on either side is seen.
ORACLE_ARTEFACTS: list[tuple[str, Loc, Any]] = [
    ("newline after a pattern", ("epcisBody", "eventList", 0, "eventTimeZoneOffset"), "-06:00\n"),
    ("newline after a version", ("schemaVersion",), "2.0\n"),
    ("Unicode digits in a version", ("schemaVersion",), "\u0662.\u0660"),
    ("newline after a date-time", ("creationDate",), "2005-07-11T11:30:47Z\n"),
    (
        "newline after a URI",
        ("epcisBody", "eventList", 0, "epcList", 0),
        "urn:epc:id:sgtin:0614141.107346.2017\n",
    ),
    ("leading zero in an IPv6 address", ("id",), "http://[::01.2.3.4]/"),
]


@pytest.mark.parametrize(("why", "loc", "value"), ORACLE_ARTEFACTS, ids=[a[0] for a in ORACLE_ARTEFACTS])
def test_validator_artefacts_are_refused(why: str, loc: Loc, value: Any) -> None:
    _require_format_checking()
    doc = mutate(EXAMPLES["Example_9.6.1-ObjectEvent.jsonld"], "set", loc, value)
    assert schema_accepts("EPCISDocument", doc), f"jsonschema no longer accepts it ({why}): move it to parity"
    assert not model_accepts("EPCISDocument", doc)


# ---------------------------------------------------------------------------------------------------
# The models themselves: dispatch, raw data, errors, speed
# ---------------------------------------------------------------------------------------------------


def _doc(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-05-01T10:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }


def _object_event(**fields: Any) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventTime": "2024-05-01T09:59:00.000+02:00",
        "eventTimeZoneOffset": "+02:00",
        "action": "OBSERVE",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
        "bizStep": "dispensing",
        "disposition": "dispensed",
        **fields,
    }


def test_events_are_told_apart_by_type() -> None:
    doc = validate_document(EXAMPLES["WithErrorDeclaration/ErrorDeclarationAndCorrectiveEvent.jsonld"])
    assert [type(e) for e in doc.epcisBody.eventList] == [TransformationEvent, TransformationEvent]
    aggregation = validate_document(EXAMPLES["Example_9.6.3-AggregationEvent.jsonld"]).epcisBody.eventList[0]
    assert isinstance(aggregation, AggregationEvent)
    assert aggregation.parentID == "urn:epc:id:sscc:0614141.1234567890"
    extension = {**_object_event(), "type": "https://ns.example.org/TemperatureEvent", "example:celsius": 4.5}
    event = validate_document(_doc(extension)).epcisBody.eventList[0]
    assert isinstance(event, ExtensionEvent)
    # Only the common event fields are checked; the rest is kept as it came.
    assert event.model_extra == {
        "action": "OBSERVE",
        "epcList": extension["epcList"],
        "bizStep": "dispensing",
        "disposition": "dispensed",
        "example:celsius": 4.5,
    }


def test_values_are_read_as_the_standard_means_them() -> None:
    event = validate_document(_doc(_object_event(**{"example:note": "x"}))).epcisBody.eventList[0]
    assert isinstance(event, ObjectEvent)
    assert event.eventTime.isoformat() == "2024-05-01T09:59:00+02:00"
    assert event.type_ == "ObjectEvent" and event.action == "OBSERVE"
    assert event.model_extra == {"example:note": "x"}
    assert event.model_dump(exclude_none=True)["type"] == "ObjectEvent"  # JSON names out, too


def test_validation_leaves_the_raw_document_alone() -> None:
    raw = EXAMPLES["WithFullCombinationOfFields/object_event_all_possible_fields.jsonld"]
    before = copy.deepcopy(raw)
    validate_document(raw)
    assert raw == before


def _problems(doc: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        validate_document(doc)
    return problems(caught.value)


def test_problem_names_the_field_and_the_allowed_values() -> None:
    found = _problems(_doc(_object_event(), _object_event(action="UPDATE")))
    assert found == [{"field": "epcisBody.eventList[1].action", "rule": "one of ADD, OBSERVE, DELETE"}]


def test_problem_for_a_missing_field_and_a_bad_offset() -> None:
    event = _object_event(eventTimeZoneOffset="+2:00")
    del event["eventTime"]
    assert _problems(_doc(event)) == [
        {"field": "epcisBody.eventList[0].eventTime", "rule": "required"},
        {
            "field": "epcisBody.eventList[0].eventTimeZoneOffset",
            "rule": "a time zone offset from -14:00 to +14:00, e.g. +01:00",
        },
    ]


def test_problem_points_into_lists_and_explains_uris_and_timestamps() -> None:
    event = _object_event(
        epcList=["urn:epc:id:sgtin:0614141.107346.2017", "0614141.107346.2018"],
        recordTime="2024-13-01T00:00:00Z",
        quantityList=[{"epcClass": "urn:epc:class:lgtin:4012345.012345.998877", "quantity": "5"}],
    )
    found = {p["field"]: p["rule"] for p in _problems(_doc(event))}
    assert found.keys() == {
        "epcisBody.eventList[0].epcList[1]",
        "epcisBody.eventList[0].recordTime",
        "epcisBody.eventList[0].quantityList[0].quantity",
    }
    assert found["epcisBody.eventList[0].epcList[1]"].startswith("an absolute URI (RFC 3986)")
    assert "RFC 3339" in found["epcisBody.eventList[0].recordTime"]
    assert found["epcisBody.eventList[0].quantityList[0].quantity"] == "a number"


def test_problem_for_vocabulary_extensions_and_closed_objects() -> None:
    event = _object_event(
        bizStep="urn:epcglobal:cbv:bizstep:dispensing",
        myField=1,
        bizTransactionList=[
            {"type": "po", "bizTransaction": "urn:epc:id:gdti:0614141.00001.1618034", "x:y": 1}
        ],
    )
    found = {p["field"]: p["rule"] for p in _problems(_doc(event))}
    assert "bare word such as shipping" in found["epcisBody.eventList[0].bizStep"]
    assert "namespaced name" in found["epcisBody.eventList[0].myField"]
    assert found["epcisBody.eventList[0].bizTransactionList[0].x:y"].startswith("not allowed")


def test_problem_for_rules_across_fields() -> None:
    ilmd_on_observe = _object_event(ilmd={"cbvmda:lotNumber": "L1", "lotNumber": "L1"})
    found = _problems(_doc(ilmd_on_observe))
    assert found == [
        {
            "field": "epcisBody.eventList[0].ilmd.lotNumber",
            "rule": "a namespaced field name (a URI), e.g. cbvmda:lotNumber",
        }
    ]
    del ilmd_on_observe["ilmd"]["lotNumber"]
    assert _problems(_doc(ilmd_on_observe)) == [
        {"field": "epcisBody.eventList[0].ilmd", "rule": "left out unless action is ADD"}
    ]
    packing = {
        k: v for k, v in _object_event(type="AggregationEvent", action="ADD").items() if k != "epcList"
    }
    [problem] = _problems(_doc(packing))
    assert problem["field"] == "epcisBody.eventList[0]"
    assert "childEPCs or childQuantityList" in problem["rule"]


def test_problem_for_unknown_event_types_and_null() -> None:
    found = _problems(_doc(_object_event(type="ShippingEvent"), _object_event(disposition=None)))
    assert found == [
        {
            "field": "epcisBody.eventList[0].type",
            "rule": "one of ObjectEvent, AggregationEvent, TransactionEvent, TransformationEvent, "
            "AssociationEvent, or the URI of an extension event type",
        },
        {
            "field": "epcisBody.eventList[1].disposition",
            "rule": "left out or given a value; null is not allowed",
        },
    ]
