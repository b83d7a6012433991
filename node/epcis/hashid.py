"""The EPCIS Event Hash ID of GS1 CBV 2.0 (section 8.9): a canonical pre-hash string of one EPCIS 2.0
event, hashed with SHA-256 into `ni:///sha-256;<hex>?ver=CBV2.0`.

Hand-written: the one PyPI package (epcis-event-hash-generator 1.9.3, 2023) predates its own CBV 2.0
vectors and needs a JSON-LD processor. This module reproduces the published CBV 2.0 vectors of the
reference implementations (tests/epcis/vectors); where the standard's text leaves room it follows their
CBV 2.0 mode, and where they differ from each other or from the text, comments say what is done. In short:

- CBV 2.0 writes no `sensorElementList` name, and moves user extensions that sit inside standard fields
  (readPoint, bizLocation, sensorMetadata, ...) to a block after the ILMD, each under its field's name.
  CBV 2.1 (draft) changes both; this module is CBV 2.0 only.
- `gs1:` (and bare sensor measurement types) expand as the EPCIS context the document names defines
  it: https://gs1.org/voc/ in 2.0.0, https://ref.gs1.org/voc/ in 2.0.1 and the unversioned URL. The
  Python reference bundles the 2.0.1 document under the 2.0.0 URL (its issue #125), so its vectors of
  2.0.0 documents with sensor reports differ from ours in exactly that prefix.

Input is one event, the JSON object of `epcisBody.eventList[i]`, and the document's `@context` (for the
namespace prefixes of user extensions). Values are normalised as the standard asks: EPC URIs and GS1
Digital Links to constrained canonical Digital Links on id.gs1.org, bare CBV words and CBV URNs to
https://ref.gs1.org/cbv/ URIs, timestamps to UTC milliseconds, numbers without trailing zeros.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

VERSION = "CBV2.0"
GS1_DL = "https://id.gs1.org"
CBV = "https://ref.gs1.org/cbv/"
# Prefixes the EPCIS context defines. cbvmda is written as its XML namespace (no final colon), as both
# references write it, so that an XML and a JSON document of one event give one hash.
_DEFAULT_NAMESPACES = {
    "epcis": "https://ref.gs1.org/epcis/",
    "cbv": CBV,
    "cbvmda": "urn:epcglobal:cbv:mda",
    "gs1": "https://gs1.org/voc/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
}
# The published EPCIS contexts differ in one prefix: `gs1` is https://gs1.org/voc/ in 2.0.0 (and in its
# GitHub predecessor), https://ref.gs1.org/voc/ in 2.0.1, which the unversioned URL serves. JSON-LD
# expands a document with the context it names, so the prefix follows the URL (a later prefix
# definition in the document's own context wins, as in JSON-LD).
_EPCIS_CONTEXTS = {
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld": "https://gs1.org/voc/",
    "https://gs1.github.io/EPCIS/epcis-context.jsonld": "https://gs1.org/voc/",
    "https://ref.gs1.org/standards/epcis/2.0.1/epcis-context.jsonld": "https://ref.gs1.org/voc/",
    "https://ref.gs1.org/standards/epcis/epcis-context.jsonld": "https://ref.gs1.org/voc/",
}
# Standard event fields outside the canonical property order are not hashed (both references leave
# these four out); `type` is written first, as eventType. Comments are no data at any level (both).
_EXCLUDED = {"eventID", "recordTime", "errorDeclaration", "certificationInfo", "type", "ilmd"}
_NOT_DATA = {"comment", "rdfs:comment", "@context"}
_CBV_URNS = {
    "urn:epcglobal:cbv:bizstep:": CBV + "BizStep-",
    "urn:epcglobal:cbv:disp:": CBV + "Disp-",
    "urn:epcglobal:cbv:btt:": CBV + "BTT-",
    "urn:epcglobal:cbv:sdt:": CBV + "SDT-",
    "urn:epcglobal:cbv:er:": CBV + "ER-",
}
# The canonical property order (CBV 2.0 table 8-9), after eventType; ilmd and user extensions follow.
# fmt: off
_ORDER = (
    "eventTime", "eventTimeZoneOffset", "epcList", "parentID", "inputEPCList", "childEPCs", "quantityList",
    "childQuantityList", "inputQuantityList", "outputEPCList", "outputQuantityList", "action",
    "transformationID", "bizStep", "disposition", "persistentDisposition", "readPoint", "bizLocation",
    "bizTransactionList", "sourceList", "destinationList", "sensorElementList",
)
_QUANTITY = ("epcClass", "quantity", "uom")
_METADATA = (
    "time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod",
    "bizRules",
)
_REPORT = (
    "type", "exception", "deviceID", "deviceMetadata", "rawData", "dataProcessingMethod", "time",
    "microorganism", "chemicalSubstance", "value", "component", "stringValue", "booleanValue",
    "hexBinaryValue", "uriValue", "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue", "uom",
    "coordinateReferenceSystem",
)
# fmt: on
_TIMES = {"eventTime", "time", "startTime", "endTime"}
_EPC_LISTS = {"epcList", "inputEPCList", "childEPCs", "outputEPCList"}
_QUANTITY_LISTS = {"quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList"}
# list field -> (key of an entry's identifier, CBV vocabulary of its `type`)
_TYPED_LISTS = {
    "bizTransactionList": ("bizTransaction", CBV + "BTT-"),
    "sourceList": ("source", CBV + "SDT-"),
    "destinationList": ("destination", CBV + "SDT-"),
}
_VOCABULARIES = {"bizStep": CBV + "BizStep-", "disposition": CBV + "Disp-"}


def prehash_string(event: Mapping[str, Any], context: Any = None) -> str:
    """The CBV 2.0 pre-hash string of one EPCIS 2.0 JSON/JSON-LD event; `context` is the document's
    `@context` (the event's own `@context` applies on top of it)."""
    if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
        raise ValueError("an EPCIS event is a JSON object with a string `type`")
    c = _Canon(_namespaces(context, event.get("@context")))
    fields = [c.field(name, event[name]) for name in _ORDER if name in event]
    ilmd = c.nodes("ilmd", event["ilmd"]) if "ilmd" in event else []
    # Rules 19 to 21 in CBV 2.0: the ILMD, then the extensions inside standard fields in property
    # order, then the event's own extensions, each element one entry, all of them sorted together.
    rest = c.extensions(event, (*_ORDER, *_EXCLUDED))
    return "".join(
        ("eventType=" + event["type"], *(s for s, _ in fields), *ilmd, *(e for _, e in fields), rest)
    )


def event_digest(event: Mapping[str, Any], context: Any = None) -> bytes:
    """The 32-byte SHA-256 digest of the pre-hash string (the value of the hash ID)."""
    return hashlib.sha256(prehash_string(event, context).encode("utf-8")).digest()


def event_hash_id(event: Mapping[str, Any], context: Any = None) -> str:
    """`ni:///sha-256;<64 hex>?ver=CBV2.0` (RFC 6920 `ni` URI, CBV 2.0 rules 22 to 24)."""
    return f"ni:///sha-256;{event_digest(event, context).hex()}?ver={VERSION}"


def _namespaces(*contexts: Any) -> dict[str, str]:
    """Prefix -> namespace IRI from JSON-LD contexts applied in order: a string names a context (only
    the EPCIS contexts are known), an object maps prefixes, a list holds either."""
    found = dict(_DEFAULT_NAMESPACES)
    pending = [c for c in contexts if c is not None]
    while pending:
        ctx = pending.pop(0)
        if isinstance(ctx, list):
            pending[:0] = ctx
        elif isinstance(ctx, str) and ctx in _EPCIS_CONTEXTS:
            found["gs1"] = _EPCIS_CONTEXTS[ctx]
        elif isinstance(ctx, Mapping):
            for prefix, iri in ctx.items():
                iri = iri.get("@id") if isinstance(iri, Mapping) else iri
                if isinstance(iri, str) and not prefix.startswith("@"):
                    found[prefix] = iri
    return found


def _items(value: Any) -> list[Any]:
    """A JSON value as a list of entries (a JSON-LD set may be written as one value); null is none."""
    if value is None:
        return []
    return [x for x in value if x is not None] if isinstance(value, list) else [value]


def _ordered(pairs: list[tuple[str, str]], name: str) -> tuple[str, str]:
    """(standard text, extension text) of the entries of a list: the entries sorted by their standard
    text (rules 11, 12), their extension blocks in the same order, each part under `name`."""
    pairs.sort()
    std = "".join(s for s, _ in pairs)
    ext = "".join(e for _, e in pairs)
    return (name + std if std else ""), (name + ext if ext else "")


class _Canon:
    """Renders the fields of one event with the namespaces of its contexts."""

    def __init__(self, namespaces: dict[str, str]) -> None:
        self.ns = namespaces

    # ---- values ----------------------------------------------------------------------------------
    def value(self, raw: Any, vocab: str | None = None) -> str:
        """One value in canonical form; `vocab` is the IRI prefix a bare vocabulary word expands to."""
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, int | float | Decimal):
            text = str(raw)
        elif isinstance(raw, str):
            text = self._curie(raw)
        else:
            raise ValueError(f"a value was expected, not {type(raw).__name__}: {raw!r}")
        text = text.strip()  # rule 5
        if vocab and text and ":" not in text:  # rule 16: a bare CBV or GS1 vocabulary word
            text = vocab + text
        for urn, uri in _CBV_URNS.items():  # rule 14
            text = text.replace(urn, uri)
        text = _number(text)  # rules 6 and 7
        return _digital_link(text) or text  # rules 17 and 18

    def _curie(self, text: str) -> str:
        """Rule 15 for values: CURIEs in GS1's namespaces expand. A value with a user prefix stays as
        written, as in both references (XML cannot tell such a value from text)."""
        prefix, colon, rest = text.partition(":")
        iri = self.ns.get(prefix) if colon else None
        if iri and iri.startswith(("https://gs1.org/", "https://ref.gs1.org/")):
            return iri + rest
        return text

    def key(self, name: str) -> str:
        """Rules 19 and 20: a prefixed key becomes {namespace}localName."""
        prefix, colon, local = name.partition(":")
        return f"{{{self.ns[prefix]}}}{local}" if colon and prefix in self.ns else name

    def pair(self, name: str, raw: Any, vocab: str | None = None) -> str:
        """`name=value`, or nothing for an empty value (rule 4); timestamps per rules 8 and 9."""
        if raw is None:
            return ""
        text = _timestamp(str(raw).strip()) if name in _TIMES else self.value(raw, vocab)
        return f"{name}={text}" if text else ""

    # ---- user extensions and ILMD ----------------------------------------------------------------
    def nodes(self, name: str, raw: Any) -> list[str]:
        """One element per entry: its key, `=value` if it has one, then its children sorted (rules 12,
        19, 20); a list repeats the element. JSON-LD's @value is the value; null is nothing."""
        if name in _NOT_DATA or name.startswith("@xmlns") or raw is None:
            return []
        if isinstance(raw, list):
            return sorted(s for item in raw for s in self.nodes(name, item))
        key = self.key(name)
        if not isinstance(raw, Mapping):
            text = self.value(raw)
            return [key + (f"={text}" if text else "")]
        scalar = next((raw[k] for k in ("#text", "@value") if raw.get(k) is not None), None)
        text = "" if scalar is None else self.value(scalar)
        children = self.extensions(raw, ("#text", "@value"))
        return [key + (f"={text}" if text else "") + children]

    def extensions(self, obj: Mapping[str, Any], known: Iterable[str]) -> str:
        """The elements of `obj` outside `known` (its user extensions), sorted."""
        skip = set(known)
        return "".join(sorted(s for k, v in obj.items() if k not in skip for s in self.nodes(k, v)))

    # ---- standard fields -------------------------------------------------------------------------
    def field(self, name: str, raw: Any) -> tuple[str, str]:
        """(its part of the pre-hash string, its part of the CBV 2.0 extension block), for one standard
        field; a structure's own user extensions go to the second, under the structure's name."""
        if name in _EPC_LISTS:
            return _ordered([(self.pair("epc", e), "") for e in _items(raw)], name)
        if name in _QUANTITY_LISTS:
            return _ordered([self._entry(e, _QUANTITY, "quantityElement") for e in _items(raw)], name)
        if name in _TYPED_LISTS:  # rule 13: an entry is its type, then the identifier it qualifies
            key, vocab = _TYPED_LISTS[name]
            return _ordered([self._entry(e, ("type", key), "", {"type": vocab}) for e in _items(raw)], name)
        if name == "sensorElementList":  # CBV 2.0 writes no name for the list itself (2.1 does)
            return _ordered([self._sensor_element(e) for e in _items(raw)], "")
        if name in ("readPoint", "bizLocation", "persistentDisposition"):
            obj = raw if isinstance(raw, Mapping) else {"id": raw}
            keys = ("set", "unset") if name == "persistentDisposition" else ("id",)
            disp = CBV + "Disp-" if name == "persistentDisposition" else None
            std = "".join("".join(sorted(self.pair(k, v, disp) for v in _items(obj.get(k)))) for k in keys)
            ext = self.extensions(obj, keys)
            return (name + std if std else ""), (name + ext if ext else "")
        return self.pair(name, raw, _VOCABULARIES.get(name)), ""

    def _entry(
        self, obj: Any, order: tuple[str, ...], name: str, vocabs: Mapping[str, str] | None = None
    ) -> tuple[str, str]:
        """One structured entry: its fields in `order` (rule 12), and its extensions."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"a list entry is a JSON object, not {obj!r}")
        std = "".join(self.pair(k, obj.get(k), (vocabs or {}).get(k)) for k in order)
        ext = self.extensions(obj, order)
        return (name + std if std else ""), (name + ext if ext else "")

    def _sensor_element(self, element: Any) -> tuple[str, str]:
        """A sensorElement (rule 23): its sensorMetadata, then its sensorReports sorted."""
        if not isinstance(element, Mapping):
            raise ValueError(f"a sensorElement is a JSON object, not {element!r}")
        std, ext = "", ""
        for sub, order in (("sensorMetadata", _METADATA), ("sensorReport", _REPORT)):
            gs1 = {"type": self.ns["gs1"], "exception": self.ns["gs1"], "component": CBV + "Comp-"}
            vocabs = gs1 if sub == "sensorReport" else None  # bare measurement types etc.
            s, e = _ordered([self._entry(obj, order, sub, vocabs) for obj in _items(element.get(sub))], "")
            std, ext = std + s, ext + e
        ext += self.extensions(element, ("sensorMetadata", "sensorReport"))
        return ("sensorElement" + std if std else ""), ("sensorElement" + ext if ext else "")


_NUMERIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _number(text: str) -> str:
    """Rules 6 and 7: a number without trailing zeros (1.0 -> 1, 0.50 -> 0.5). As in both references,
    any value that reads as a decimal number is one (so "007" -> 7), and, as in the Python reference,
    an integral number in exponent form keeps it (1e3 -> 1E+3)."""
    if not _NUMERIC.match(text):
        return text
    try:
        number = Decimal(text)
        if number == number.to_integral_value():
            return str(number.to_integral_value())
        return format(number.normalize(), "f")
    except ArithmeticError:  # beyond Decimal's exponent range
        return text


def _timestamp(text: str) -> str:
    """Rules 8/9: UTC with `Z`, exactly three decimals, the third rounded half up. A timestamp
    without offset is read as UTC; text that is no timestamp is kept."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    millis = int((Decimal(moment.microsecond) / 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    moment = moment.replace(microsecond=0) + dt.timedelta(milliseconds=millis)
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


# ---- EPC URIs and GS1 Digital Links (rules 17 and 18) ---------------------------------------------

# One character of a serial, lot or reference: a %-escape or a character an EPC URI may carry literally
# (TDS 2.0 table I.3.1-1), plus the few more the reference normaliser accepts in Digital Links.
_CHAR = r"(?:%[0-9A-Fa-f]{2}|[!\"'()*+,\-.0-9:;<=>?A-Z_a-z])"
_CPI_CHAR = r"(?:%2[3DFdf]|%3[0-9]|%4[1-9A-Fa-f]|%5[0-9Aa]|[0-9A-Z\-])"  # CPI: digits, capitals, - # /
# Primary keys of a constrained Digital Link (rule 18 III) and the pattern of their values
_PRIMARY = {
    "00": r"\d{18}",
    "01": r"\d{14}",
    "253": r"\d{13}" + _CHAR + "{0,17}",
    "255": r"\d{13}\d{0,12}",
    "401": _CHAR + "{1,30}",
    "402": r"\d{17}",
    "414": r"\d{13}",
    "417": r"\d{13}",
    "8003": r"\d{14}" + _CHAR + "{0,16}",
    "8004": _CHAR + "{1,30}",
    "8006": r"\d{18}",
    "8010": _CPI_CHAR + "{1,30}",
    "8017": r"\d{18}",
    "8018": r"\d{18}",
}
# Key qualifiers each primary key may carry, in their Digital Link order, and their values
_CHAINS = {"01": ("22", "10", "21"), "8006": ("22", "10", "21"), "414": ("254",), "8010": ("8011",)}
# fmt: off
_QUALIFIERS = {"22": _CHAR + "{1,20}", "10": _CHAR + "{1,20}", "21": _CHAR + "{1,20}",
               "235": _CHAR + "{1,28}", "254": _CHAR + "{1,20}", "8011": r"\d{1,12}"}
# GS1 Digital Link 1.0 short names, still met in the wild, and the AIs they stand for
_ALIASES = {"gtin": "01", "itip": "8006", "cpid": "8010", "gln": "414", "party": "417", "gsrnp": "8017",
            "gsrn": "8018", "gcn": "255", "sscc": "00", "gdti": "253", "ginc": "401", "gsin": "402",
            "grai": "8003", "giai": "8004", "cpv": "22", "lot": "10", "ser": "21"}
# fmt: on


def _digital_link(text: str) -> str | None:
    """The constrained canonical GS1 Digital Link of an EPC URI or a GS1 Digital Link (rules 17/18),
    None for any other text."""
    uri = _epc_to_dl(text) if text.startswith("urn:epc:") else _dl_to_dl(text)
    return re.sub(r"%[0-9A-Fa-f]{2}", _escape, uri) if uri else None


# Characters an EPC URI carries literally (TDS 2.0 table I.3.1-1); every other one is %-escaped there.
_LITERAL = frozenset("!'()*+,-.:;=_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _escape(match: re.Match[str]) -> str:
    """One %-escape as an EPC URI writes it, so that the URI and the Digital Link of one EPC agree:
    a character it may carry literally unescaped, any other escape in capitals. The references keep
    escapes as written (a Digital Link with escapes of such characters is left whole by the Python
    one); Digital Links from EPC URIs, the only ones their vectors have, are the same either way."""
    char = chr(int(match.group()[1:], 16))
    return char if char in _LITERAL else match.group().upper()


def _dl_to_dl(text: str) -> str | None:
    """Any host and path prefix becomes https://id.gs1.org and the query goes; of the key qualifiers
    only the finest identification stays: no CPV (22), no lot (10) beside a serial (21)."""
    m = re.match(r"https?://[^/?#]*(/[^?#]*)", text)
    if not m:
        return None
    segments = m.group(1).split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    start = next((i for i, s in enumerate(segments) if _ALIASES.get(s, s) in _PRIMARY), len(segments))
    path = segments[start:]
    # like the reference normaliser, a key value starts with four digits (every GS1 key does)
    if len(path) < 2 or len(path) % 2 or not re.match(r"\d{4}", path[1]):
        return None
    keys = [_ALIASES.get(k, k) for k in path[::2]]
    primary, value, pairs = keys[0], path[1], list(zip(keys[1:], path[3::2], strict=True))
    if primary == "01" and value.isdigit() and len(value) in (8, 12, 13):
        value = value.zfill(14)
    chain = _CHAINS.get(primary, ())
    names = [k for k, _ in pairs]
    in_order = all(k in chain for k in names) and names == sorted(names, key=chain.index)
    if not (in_order or (primary == "01" and names == ["235"])) or len(set(names)) != len(names):
        return None
    if not re.fullmatch(_PRIMARY[primary], value):
        return None
    if any(not re.fullmatch(_QUALIFIERS[k], v) for k, v in pairs):
        return None
    kept = [(k, v) for k, v in pairs if k != "22" and not (k == "10" and "21" in names)]
    return GS1_DL + f"/{primary}/{value}" + "".join(f"/{k}/{v}" for k, v in kept)


def _check_digit(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def _gtin(company: str, item: str) -> str:
    """GTIN-14 (or SSCC-18) of an EPC: indicator (or extension digit) first, check digit last."""
    body = item[:1] + company + item[1:]
    return body + _check_digit(body)


def _key(company: str, ref: str) -> str:
    return company + ref + _check_digit(company + ref)


def _units(text: str) -> int:
    """Length of a value in characters, a %-escape counting as one."""
    return len(re.sub(r"%[0-9A-Fa-f]{2}", "%", text))


def _epc_to_dl(uri: str) -> str | None:
    """An EPC pure identity, class or pattern URI (TDS 2.0) as its canonical GS1 Digital Link."""
    m = re.fullmatch(r"urn:epc:(id|class|idpat):([a-z]+):(\d{6,12})\.(.*)", uri)
    rule = _EPC_RULES.get((m.group(1), m.group(2))) if m else None
    if m is None or rule is None:
        return None
    digits, pattern, build = rule
    company, rest = m.group(3), m.group(4)
    if digits is None:  # a free-text reference (GIAI, GINC, CPI): 30 characters with the prefix
        ref = rest.split(".")[0]
        ok = bool(re.fullmatch(pattern, rest)) and len(company) + _units(ref) <= 30
        return GS1_DL + build(company, rest, "") if ok else None
    ref, dot, tail = rest.partition(".")  # a numeric reference completing the prefix to `digits`
    if len(ref) != digits - len(company) or not re.fullmatch(r"\d*", ref):
        return None
    if bool(pattern) != bool(dot) or not re.fullmatch(pattern, tail):
        return None
    return GS1_DL + build(company, ref, tail)


def _itip(company: str, item: str, tail: str) -> str:
    piece_total, serial = tail[:2] + tail[3:5], tail[6:]
    return f"/8006/{_gtin(company, item)}{piece_total}" + (f"/21/{serial}" if serial != "*" else "")


# (kind, scheme) -> (digits of company prefix and reference together, None for a free-text reference;
# pattern of the part after the reference, "" for none; the Digital Link path from company prefix,
# reference and that part). Character sets and lengths as in TDS 2.0.
_EPC_RULES: dict[tuple[str, str], tuple[int | None, str, Callable[[str, str, str], str]]] = {
    ("id", "sgtin"): (13, _CHAR + "{1,20}", lambda c, i, s: f"/01/{_gtin(c, i)}/21/{s}"),
    ("id", "sscc"): (17, "", lambda c, s, _: f"/00/{_gtin(c, s)}"),
    ("id", "sgln"): (12, _CHAR + "{1,20}", lambda c, r, e: f"/414/{_key(c, r)}" + f"/254/{e}" * (e != "0")),
    ("id", "grai"): (12, _CHAR + "{1,16}", lambda c, r, s: f"/8003/0{_key(c, r)}{s}"),
    ("id", "giai"): (None, _CHAR + "{1,24}", lambda c, r, _: f"/8004/{c}{r}"),
    ("id", "gsrn"): (17, "", lambda c, r, _: f"/8018/{_key(c, r)}"),
    ("id", "gsrnp"): (17, "", lambda c, r, _: f"/8017/{_key(c, r)}"),
    ("id", "gdti"): (12, _CHAR + "{0,17}", lambda c, r, s: f"/253/{_key(c, r)}{s}"),
    ("id", "cpi"): (
        None,
        _CPI_CHAR + r"{1,24}\.\d{1,12}",
        lambda c, r, _: "/8010/{}{}/8011/{}".format(c, *r.split(".")),
    ),
    ("id", "sgcn"): (12, r"\d{1,12}", lambda c, r, s: f"/255/{_key(c, r)}{s}"),
    ("id", "ginc"): (None, _CHAR + "{1,24}", lambda c, r, _: f"/401/{c}{r}"),
    ("id", "gsin"): (16, "", lambda c, r, _: f"/402/{_key(c, r)}"),
    ("id", "itip"): (13, r"\d{2}\.\d{2}\." + _CHAR + "{1,20}", _itip),
    ("id", "upui"): (13, _CHAR + "{1,28}", lambda c, i, s: f"/01/{_gtin(c, i)}/235/{s}"),
    ("id", "pgln"): (12, "", lambda c, r, _: f"/417/{_key(c, r)}"),
    ("class", "lgtin"): (13, _CHAR + "{1,20}", lambda c, i, lot: f"/01/{_gtin(c, i)}/10/{lot}"),
    ("idpat", "sgtin"): (13, r"\*", lambda c, i, _: f"/01/{_gtin(c, i)}"),
    ("idpat", "upui"): (13, r"\*", lambda c, i, _: f"/01/{_gtin(c, i)}"),
    ("idpat", "grai"): (12, r"\*", lambda c, r, _: f"/8003/0{_key(c, r)}"),
    ("idpat", "gdti"): (12, r"\*", lambda c, r, _: f"/253/{_key(c, r)}"),
    ("idpat", "sgcn"): (12, r"\*", lambda c, r, _: f"/255/{_key(c, r)}"),
    ("idpat", "cpi"): (None, _CPI_CHAR + r"{1,24}\.\*", lambda c, r, _: f"/8010/{c}{r[:-2]}"),
    ("idpat", "itip"): (13, r"\d{2}\.\d{2}\.\*", _itip),
}
