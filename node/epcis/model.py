"""Pydantic models of GS1 EPCIS 2.0 JSON/JSON-LD documents: capture documents, query-result documents
and the five standard event types, with the rules of GS1's official JSON Schema (EPCIS-JSON-Schema.json).

Acceptance follows the schema exactly (tests/epcis/test_model_parity.py proves it against the schema and
GS1's examples); where the standard's text asks for more than the schema checks, a comment says so and
the model still follows the schema, so that every document GS1's schema accepts is accepted here.

The schema's patterns are ECMA-262 regular expressions and its formats are RFC 3339 (`date-time`) and
RFC 3986 (`uri`). The models apply them with that meaning: `$` is the end of the text and `\\d` is an
ASCII digit. Python's `jsonschema` reads them with Python's `re`, which also lets a value end in one
newline (and reads `\\d` as any Unicode digit); the parity tests list those few validator artefacts.

The models are a checked view, not a rewrite: callers hash and store the raw JSON they validated.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "URI",
    "Action",
    "AggregationEvent",
    "AssociationEvent",
    "Attribute",
    "BizLocation",
    "BizStep",
    "BizTransaction",
    "BizTransactionType",
    "Destination",
    "Disposition",
    "EPCISBody",
    "EPCISDocument",
    "EPCISEvent",
    "EPCISHeader",
    "EPCISMasterData",
    "EPCISQueryBody",
    "EPCISQueryDocument",
    "ErrorDeclaration",
    "ErrorReason",
    "EventBase",
    "ExtensionEvent",
    "MeasurementType",
    "ObjectEvent",
    "PersistentDisposition",
    "QuantityElement",
    "QueryResults",
    "ReadPoint",
    "ResultsBody",
    "SensorAlertType",
    "SensorComponent",
    "SensorElement",
    "SensorMetadata",
    "SensorReport",
    "Source",
    "SourceDestType",
    "Timestamp",
    "TransactionEvent",
    "TransformationEvent",
    "Vocabulary",
    "VocabularyElement",
    "is_uri",
    "problems",
    "validate_document",
]

T = TypeVar("T")


def _fail(kind: str, rule: str, **context: Any) -> PydanticCustomError:
    # The message of every custom error is the rule itself, phrased to follow "must be": problems()
    # passes it on unchanged. Braces in it name context values (a repeated entry); values stay out of
    # the template itself, where their own braces would be read as fields.
    return PydanticCustomError(kind, rule, context or None)


# ---------------------------------------------------------------------------------------------------
# Lexical rules
# ---------------------------------------------------------------------------------------------------

# RFC 3986 `URI` (absolute: a scheme is required; a fragment is allowed), the schema's `format: uri`.
# Written with plain character classes and '%' allowed wherever pct-encoded may stand; _PCT_OK then
# checks that every '%' starts a pct-encoded triple. This is the ABNF of appendix A, only faster in
# Python's `re` than nested `(pchar|pct-encoded)*` groups: a 10,000-EPC epcList is checked per EPC.
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_H16 = r"[0-9A-Fa-f]{1,4}"
_DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LS32 = rf"(?:{_H16}:{_H16}|{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}})"
_IPV6 = "|".join(
    [
        rf"(?:{_H16}:){{6}}{_LS32}",
        rf"::(?:{_H16}:){{5}}{_LS32}",
        rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
        rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
        rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
        rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
    ]
)
_IP_LITERAL = rf"\[(?:{_IPV6}|v[0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+)\]"
_PCHAR = rf"[{_UNRESERVED}{_SUB_DELIMS}:@%]"
_PATH_CHARS = rf"[{_UNRESERVED}{_SUB_DELIMS}:@%/]"
_QUERY_CHARS = rf"[{_UNRESERVED}{_SUB_DELIMS}:@%/?]"
_AUTHORITY = (
    rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:%]*@)?"  # userinfo
    rf"(?:{_IP_LITERAL}|[{_UNRESERVED}{_SUB_DELIMS}%]*)"  # host: IP-literal, or reg-name (IPv4 fits it)
    r"(?::[0-9]*)?"  # port
)
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+\-.]*:"  # scheme
    rf"(?://{_AUTHORITY}(?:/{_PATH_CHARS}*)?"  # "//" authority path-abempty
    rf"|/(?:{_PCHAR}{_PATH_CHARS}*)?"  # path-absolute
    rf"|{_PCHAR}{_PATH_CHARS}*"  # path-rootless
    r")?"  # path-empty
    rf"(?:\?{_QUERY_CHARS}*)?(?:#{_QUERY_CHARS}*)?"
)
_PCT_BAD = re.compile(r"%(?![0-9A-Fa-f]{2})")

# RFC 3339 date-time as the schema's `format: date-time` checker reads it: a time zone is required,
# 't'/'z' may be lower case (RFC 3339 section 5.6), no leap second (':60'), no year 0000.
_TIMESTAMP = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-([0-9]{2})[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))"
)
_TIME_ZONE_OFFSET = re.compile(r"[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00)")
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_UOM = re.compile(r"[A-Z0-9]{2,3}")  # a UN/CEFACT Recommendation 20 code
_HEX_BINARY = re.compile(r"[A-Fa-f0-9]+")

# The schema's `vocab-other-uri`: a URI standing in for a CBV word must not be in the CBV's own URI
# spaces, where the bare word is the only spelling. The schema bars only these two spellings (case
# sensitive); CBV 2.0's https://ref.gs1.org/cbv/ URIs, which the JSON-LD context maps the bare words to,
# pass as "other" URIs although the standard asks for the bare words in JSON.
_CBV_URI_PREFIXES = ("urn:epcglobal:cbv", "http://ns.gs1.org/cbv/", "https://ns.gs1.org/cbv/")
# `vocab-nonGS1WebVoc-uri`: sensor measurement and alert types use GS1 Web Vocabulary bare words.
_GS1_VOC_PREFIXES = (
    "http://gs1.org/voc/",
    "https://gs1.org/voc/",
    "http://www.gs1.org/voc/",
    "https://www.gs1.org/voc/",
)


def is_uri(value: str) -> bool:
    """True when `value` is an absolute URI by RFC 3986 (what the schema's `format: uri` asks)."""
    return _URI.fullmatch(value) is not None and ("%" not in value or _PCT_BAD.search(value) is None)


# ---------------------------------------------------------------------------------------------------
# Leaf types
# ---------------------------------------------------------------------------------------------------

_URI_RULE = "an absolute URI (RFC 3986), e.g. urn:epc:id:sgtin:0614141.107346.2017 or https://id.gs1.org/01/…"


def _uri(value: Any) -> str:
    if type(value) is not str or not is_uri(value):
        raise _fail("uri", _URI_RULE)
    return value


def _not_null(value: Any) -> Any:
    # JSON Schema checks a property only when it is present, and then null is not a string, list or
    # object: an optional field may be left out but not sent as null.
    if value is None:
        raise _fail("null", "left out or given a value; null is not allowed")
    return value


URI = Annotated[str, PlainValidator(_uri), WithJsonSchema({"type": "string", "format": "uri"})]
"""Any absolute URI: an EPC URN, a GS1 Digital Link URI, or any other URI."""

Opt = Annotated[T | None, BeforeValidator(_not_null)]
"""An optional field: absent (None) or a valid value, never an explicit JSON null."""


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    match = _TIMESTAMP.fullmatch(value) if type(value) is str else None
    if match is not None:
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        fraction, sign, offset_h, offset_m = match.groups()[6:]
        if year != 0 and day >= 1 and day <= calendar.monthrange(year, month)[1]:
            if sign is None:
                zone: timezone = UTC
            else:
                offset = timedelta(hours=int(offset_h), minutes=int(offset_m))
                zone = timezone(offset if sign == "+" else -offset)
            micros = int((fraction or "0")[:6].ljust(6, "0"))  # finer than a microsecond is dropped
            return datetime(year, month, day, hour, minute, second, micros, tzinfo=zone)
    raise _fail(
        "date_time",
        "a date-time with a time zone (RFC 3339), e.g. 2005-04-03T20:33:31.116-06:00 or 2005-04-04T02:33:31Z",
    )


Timestamp = Annotated[
    datetime, BeforeValidator(_timestamp), WithJsonSchema({"type": "string", "format": "date-time"})
]
"""An RFC 3339 date-time with a time zone, parsed to an aware datetime (microsecond precision)."""


def _pattern(regex: re.Pattern[str], kind: str, rule: str) -> PlainValidator:
    def check(value: Any) -> str:
        if type(value) is not str or regex.fullmatch(value) is None:
            raise _fail(kind, rule)
        return value

    return PlainValidator(check)


TimeZoneOffset = Annotated[
    str,
    _pattern(_TIME_ZONE_OFFSET, "time_zone_offset", "a time zone offset from -14:00 to +14:00, e.g. +01:00"),
    WithJsonSchema({"type": "string", "pattern": "^([+]|[-])((0[0-9]|1[0-3]):([0-5][0-9])|14:00)$"}),
]
SchemaVersion = Annotated[
    str,
    _pattern(_VERSION, "version", "a version number such as 2.0"),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)*$"}),
]
UnitOfMeasure = Annotated[
    str,
    _pattern(_UOM, "uom", "a UN/ECE Recommendation 20 unit code of 2 or 3 capitals or digits, e.g. KGM"),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z0-9]{2,3}$"}),
]
HexBinary = Annotated[
    str,
    _pattern(_HEX_BINARY, "hex_binary", "hexadecimal digits, e.g. f0f0f0"),
    WithJsonSchema({"type": "string", "pattern": "^[A-Fa-f0-9]+$"}),
]


def _number(value: Any) -> float:
    # A JSON number, given back as it came (int or float): true/false and numeric strings are not.
    if type(value) is int or type(value) is float:
        return value
    raise _fail("number", "a number")


Number = Annotated[float, PlainValidator(_number), WithJsonSchema({"type": "number"})]


def _extension_key(value: Any) -> str:
    if type(value) is not str or not is_uri(value):
        raise _fail(
            "extension_field",
            "a known field; any other field needs a namespaced name (a URI), e.g. example:myField",
        )
    return value


ExtensionKey = Annotated[str, PlainValidator(_extension_key)]
"""The name of a user extension field: a URI, in practice a JSON-LD compact IRI such as `example:myField`."""


def _ilmd_key(value: Any) -> str:
    if type(value) is not str or not is_uri(value):
        raise _fail("ilmd_field", "a namespaced field name (a URI), e.g. cbvmda:lotNumber")
    return value


def _json_equal(a: Any, b: Any) -> bool:
    # JSON equality as uniqueItems means it: 1 == 1.0, but true is not 1; lists and objects deeply.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _context(value: Any) -> str | dict[str, Any] | list[str | dict[str, Any]]:
    def one(item: Any) -> bool:
        return type(item) is dict or (type(item) is str and is_uri(item))

    if one(value):
        return value  # type: ignore[no-any-return]
    if type(value) is list and all(one(item) for item in value):
        if any(_json_equal(a, b) for i, a in enumerate(value) for b in value[i + 1 :]):
            raise _fail("context_unique", "a JSON-LD context list without repeated entries")
        return value
    raise _fail(
        "context",
        "a JSON-LD context: a context URI, an object, or a list of them, "
        "e.g. https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    )


Context = Annotated[
    str | dict[str, Any] | list[str | dict[str, Any]],
    PlainValidator(_context),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "uri"}, {"type": "object"}, {"type": "array"}]}),
]


def _certification_info(value: Any) -> str | list[str]:
    if type(value) is str and is_uri(value):
        return value
    if type(value) is list and all(type(item) is str and is_uri(item) for item in value):
        return value
    raise _fail("certification_info", "a certificate URI or a list of certificate URIs")


CertificationInfo = Annotated[str | list[str], PlainValidator(_certification_info)]


def _attribute_value(value: Any) -> float | str | dict[str, Any]:
    if type(value) in (int, float, str, dict):
        return value  # type: ignore[no-any-return]
    raise _fail("attribute_value", "a number, a string or an object")


def _unique(values: list[T]) -> list[T]:
    # Only lists of strings are checked this way (JSON equality is plain string equality there).
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise _fail("unique", "a list without repeats: {repeated} appears twice", repeated=value)
        seen.add(value)
    return values


def _non_empty(values: list[T]) -> list[T]:
    if not values:
        raise _fail("non_empty", "a list of at least one item")
    return values


UniqueURIList = Annotated[list[URI], AfterValidator(_unique)]
"""The schema's `epcList`: URIs, each at most once (ObjectEvent and TransformationEvent lists)."""


# ---------------------------------------------------------------------------------------------------
# Core Business Vocabulary: standard values are bare words in EPCIS 2.0 JSON
# ---------------------------------------------------------------------------------------------------


class BizStep(StrEnum):
    """CBV 2.0 business steps."""

    ACCEPTING = "accepting"
    ARRIVING = "arriving"
    ASSEMBLING = "assembling"
    COLLECTING = "collecting"
    COMMISSIONING = "commissioning"
    CONSIGNING = "consigning"
    CREATING_CLASS_INSTANCE = "creating_class_instance"
    CYCLE_COUNTING = "cycle_counting"
    DECOMMISSIONING = "decommissioning"
    DEPARTING = "departing"
    DESTROYING = "destroying"
    DISASSEMBLING = "disassembling"
    DISPENSING = "dispensing"
    ENCODING = "encoding"
    ENTERING_EXITING = "entering_exiting"
    HOLDING = "holding"
    INSPECTING = "inspecting"
    INSTALLING = "installing"
    KILLING = "killing"
    LOADING = "loading"
    OTHER = "other"
    PACKING = "packing"
    PICKING = "picking"
    RECEIVING = "receiving"
    REMOVING = "removing"
    REPACKAGING = "repackaging"
    REPAIRING = "repairing"
    REPLACING = "replacing"
    RESERVING = "reserving"
    RETAIL_SELLING = "retail_selling"
    SHIPPING = "shipping"
    STAGING_OUTBOUND = "staging_outbound"
    STOCK_TAKING = "stock_taking"
    STOCKING = "stocking"
    STORING = "storing"
    TRANSPORTING = "transporting"
    UNLOADING = "unloading"
    UNPACKING = "unpacking"
    VOID_SHIPPING = "void_shipping"
    SENSOR_REPORTING = "sensor_reporting"
    SAMPLING = "sampling"


class Disposition(StrEnum):
    """CBV 2.0 dispositions."""

    ACTIVE = "active"
    CONTAINER_CLOSED = "container_closed"
    DAMAGED = "damaged"
    DESTROYED = "destroyed"
    DISPENSED = "dispensed"
    DISPOSED = "disposed"
    ENCODED = "encoded"
    EXPIRED = "expired"
    IN_PROGRESS = "in_progress"
    IN_TRANSIT = "in_transit"
    INACTIVE = "inactive"
    NO_PEDIGREE_MATCH = "no_pedigree_match"
    NON_SELLABLE_OTHER = "non_sellable_other"
    PARTIALLY_DISPENSED = "partially_dispensed"
    RECALLED = "recalled"
    RESERVED = "reserved"
    RETAIL_SOLD = "retail_sold"
    RETURNED = "returned"
    SELLABLE_ACCESSIBLE = "sellable_accessible"
    SELLABLE_NOT_ACCESSIBLE = "sellable_not_accessible"
    STOLEN = "stolen"
    UNKNOWN = "unknown"
    AVAILABLE = "available"
    COMPLETENESS_VERIFIED = "completeness_verified"
    COMPLETENESS_INFERRED = "completeness_inferred"
    CONFORMANT = "conformant"
    CONTAINER_OPEN = "container_open"
    MISMATCH_INSTANCE = "mismatch_instance"
    MISMATCH_CLASS = "mismatch_class"
    MISMATCH_QUANTITY = "mismatch_quantity"
    NEEDS_REPLACEMENT = "needs_replacement"
    NON_CONFORMANT = "non_conformant"
    UNAVAILABLE = "unavailable"


class BizTransactionType(StrEnum):
    """CBV 2.0 business transaction types."""

    BOL = "bol"
    CERT = "cert"
    DESADV = "desadv"
    INV = "inv"
    PEDIGREE = "pedigree"
    PO = "po"
    POC = "poc"
    PRODORDER = "prodorder"
    RECADV = "recadv"
    RMA = "rma"
    TESTPRD = "testprd"
    TESTRES = "testres"
    UPEVT = "upevt"


class SourceDestType(StrEnum):
    """CBV 2.0 source/destination types."""

    OWNING_PARTY = "owning_party"
    POSSESSING_PARTY = "possessing_party"
    LOCATION = "location"


class ErrorReason(StrEnum):
    """CBV 2.0 error reasons."""

    DID_NOT_OCCUR = "did_not_occur"
    INCORRECT_DATA = "incorrect_data"


class SensorAlertType(StrEnum):
    """CBV 2.0 sensor alert types."""

    ALARM_CONDITION = "ALARM_CONDITION"
    ERROR_CONDITION = "ERROR_CONDITION"


class SensorComponent(StrEnum):
    """CBV 2.0 components of a multi-dimensional sensor value (coordinates)."""

    X = "x"
    Y = "y"
    Z = "z"
    AXIAL_DISTANCE = "axial_distance"
    AZIMUTH = "azimuth"
    HEIGHT = "height"
    SPHERICAL_RADIUS = "spherical_radius"
    POLAR_ANGLE = "polar_angle"
    ELEVATION_ANGLE = "elevation_angle"
    EASTING = "easting"
    NORTHING = "northing"
    LATITUDE = "latitude"
    LONGITUDE = "longitude"
    ALTITUDE = "altitude"


class MeasurementType(StrEnum):
    """GS1 Web Vocabulary measurement types (gs1:MeasurementType), as the schema lists them."""

    ABSOLUTE_HUMIDITY = "AbsoluteHumidity"
    ABSORBED_DOSE = "AbsorbedDose"
    ABSORBED_DOSE_RATE = "AbsorbedDoseRate"
    ACCELERATION = "Acceleration"
    RADIOACTIVITY = "Radioactivity"
    ALTITUDE = "Altitude"
    AMOUNT_OF_SUBSTANCE = "AmountOfSubstance"
    AMOUNT_OF_SUBSTANCE_PER_UNIT_VOLUME = "AmountOfSubstancePerUnitVolume"
    ANGLE = "Angle"
    ANGULAR_ACCELERATION = "AngularAcceleration"
    ANGULAR_MOMENTUM = "AngularMomentum"
    ANGULAR_VELOCITY = "AngularVelocity"
    AREA = "Area"
    CAPACITANCE = "Capacitance"
    CONDUCTANCE = "Conductance"
    CONDUCTIVITY = "Conductivity"
    COUNT = "Count"
    DENSITY = "Density"
    DIMENSIONLESS = "Dimensionless"
    DOSE_EQUIVALENT = "DoseEquivalent"
    DOSE_EQUIVALENT_RATE = "DoseEquivalentRate"
    DYNAMIC_VISCOSITY = "DynamicViscosity"
    ELECTRIC_CHARGE = "ElectricCharge"
    ELECTRIC_CURRENT = "ElectricCurrent"
    ELECTRIC_CURRENT_DENSITY = "ElectricCurrentDensity"
    ELECTRIC_FIELD_STRENGTH = "ElectricFieldStrength"
    ENERGY = "Energy"
    EXPOSURE = "Exposure"
    FORCE = "Force"
    FREQUENCY = "Frequency"
    ILLUMINANCE = "Illuminance"
    INDUCTANCE = "Inductance"
    IRRADIANCE = "Irradiance"
    KINEMATIC_VISCOSITY = "KinematicViscosity"
    LENGTH = "Length"
    LINEAR_MOMENTUM = "LinearMomentum"
    LUMINANCE = "Luminance"
    LUMINOUS_FLUX = "LuminousFlux"
    LUMINOUS_INTENSITY = "LuminousIntensity"
    MAGNETIC_FLUX = "MagneticFlux"
    MAGNETIC_FLUX_DENSITY = "MagneticFluxDensity"
    MAGNETIC_VECTOR_POTENTIAL = "MagneticVectorPotential"
    MASS = "Mass"
    MASS_CONCENTRATION = "MassConcentration"
    MASS_FLOW_RATE = "MassFlowRate"
    MASS_PER_AREA_TIME = "MassPerAreaTime"
    MEMORY_CAPACITY = "MemoryCapacity"
    MOLALITY_OF_SOLUTE = "MolalityOfSolute"
    MOLAR_ENERGY = "MolarEnergy"
    MOLAR_MASS = "MolarMass"
    MOLAR_VOLUME = "MolarVolume"
    POWER = "Power"
    PRESSURE = "Pressure"
    RADIANT_FLUX = "RadiantFlux"
    RADIANT_INTENSITY = "RadiantIntensity"
    RELATIVE_HUMIDITY = "RelativeHumidity"
    RESISTANCE = "Resistance"
    RESISTIVITY = "Resistivity"
    SOLID_ANGLE = "SolidAngle"
    SPECIFIC_VOLUME = "SpecificVolume"
    SPEED = "Speed"
    SURFACE_DENSITY = "SurfaceDensity"
    SURFACE_TENSION = "SurfaceTension"
    TEMPERATURE = "Temperature"
    TIME = "Time"
    TORQUE = "Torque"
    VOLTAGE = "Voltage"
    VOLUME = "Volume"
    VOLUME_FLOW_RATE = "VolumeFlowRate"
    VOLUME_FRACTION = "VolumeFraction"
    VOLUMETRIC_FLUX = "VolumetricFlux"
    WAVENUMBER = "Wavenumber"


def _vocabulary(words: type[StrEnum], barred: tuple[str, ...], what: str, examples: str) -> PlainValidator:
    allowed = frozenset(words)
    rule = f"{what}: a bare word such as {examples}, or a URI of your own (not a GS1 vocabulary URI)"

    def check(value: Any) -> str:
        if type(value) is str and (value in allowed or (is_uri(value) and not value.startswith(barred))):
            return value
        raise _fail("vocabulary", rule, vocabulary=words.__name__)

    return PlainValidator(check)


BizStepValue = Annotated[
    str, _vocabulary(BizStep, _CBV_URI_PREFIXES, "a CBV business step", "shipping or receiving")
]
DispositionValue = Annotated[
    str, _vocabulary(Disposition, _CBV_URI_PREFIXES, "a CBV disposition", "in_transit or active")
]
BizTransactionTypeValue = Annotated[
    str,
    _vocabulary(BizTransactionType, _CBV_URI_PREFIXES, "a CBV business transaction type", "po or desadv"),
]
SourceDestTypeValue = Annotated[
    str,
    _vocabulary(
        SourceDestType, _CBV_URI_PREFIXES, "a CBV source/destination type", "owning_party or location"
    ),
]
ErrorReasonValue = Annotated[
    str, _vocabulary(ErrorReason, _CBV_URI_PREFIXES, "a CBV error reason", "incorrect_data")
]
SensorComponentValue = Annotated[
    str, _vocabulary(SensorComponent, _CBV_URI_PREFIXES, "a CBV sensor component", "x or latitude")
]
MeasurementTypeValue = Annotated[
    str,
    _vocabulary(MeasurementType, _GS1_VOC_PREFIXES, "a GS1 measurement type", "Temperature or Mass"),
]
SensorAlertTypeValue = Annotated[
    str,
    _vocabulary(SensorAlertType, _GS1_VOC_PREFIXES, "a GS1 sensor alert type", "ALARM_CONDITION"),
]

Action = Literal["ADD", "OBSERVE", "DELETE"]
"""What an event did to its objects' lifecycle or aggregation."""


# ---------------------------------------------------------------------------------------------------
# Base classes: how each object of the schema treats fields it does not name
# ---------------------------------------------------------------------------------------------------


class _Closed(BaseModel):
    """An object with exactly its named fields (the schema's `additionalProperties: false`)."""

    model_config = ConfigDict(strict=True, extra="forbid", serialize_by_alias=True)


class _Open(BaseModel):
    """An object on which the schema puts no rule about other fields: any are kept, unchecked."""

    model_config = ConfigDict(strict=True, extra="allow", serialize_by_alias=True)


class _Extensible(_Open):
    """An object that takes user extension fields, whose names must be URIs (the schema's
    `propertyNames`), in practice namespaced names such as `example:myField`; their values are free."""

    __pydantic_extra__: dict[ExtensionKey, Any] = Field(init=False)  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------------
# Event parts
# ---------------------------------------------------------------------------------------------------


class QuantityElement(_Closed):
    """A quantity of a class of objects."""

    epcClass: URI
    # The schema takes any JSON number, negative or fractional too, with or without uom.
    quantity: Opt[Number] = None
    uom: Opt[UnitOfMeasure] = None


class ReadPoint(_Open):
    """Where the event was observed. The standard wants extension fields here
    namespaced; the schema checks no other field of readPoint, so neither do we."""

    id: URI


class BizLocation(_Open):
    """Where the objects are expected to be after the event; extras as ReadPoint."""

    id: URI


class BizTransaction(_Closed):
    """A business transaction the event took part in."""

    type_: Opt[BizTransactionTypeValue] = Field(default=None, alias="type")
    bizTransaction: URI


class Source(_Closed):
    """A party or location that goods came from."""

    type_: SourceDestTypeValue = Field(alias="type")
    source: URI


class Destination(_Closed):
    """A party or location that goods go to."""

    type_: SourceDestTypeValue = Field(alias="type")
    destination: URI


class PersistentDisposition(_Closed):
    """Dispositions that stay set until unset; at least one of set and unset."""

    set: Opt[Annotated[list[DispositionValue], AfterValidator(_non_empty), AfterValidator(_unique)]] = None
    unset: Opt[Annotated[list[DispositionValue], AfterValidator(_non_empty), AfterValidator(_unique)]] = None

    @model_validator(mode="after")
    def _set_or_unset(self) -> PersistentDisposition:
        if self.set is None and self.unset is None:
            raise _fail("set_or_unset", "an object with set, unset or both")
        return self


class SensorMetadata(_Extensible):
    """Facts about a sensor device and its readings."""

    time: Opt[Timestamp] = None
    deviceID: Opt[URI] = None
    deviceMetadata: Opt[URI] = None
    rawData: Opt[URI] = None
    startTime: Opt[Timestamp] = None
    endTime: Opt[Timestamp] = None
    dataProcessingMethod: Opt[URI] = None
    bizRules: Opt[URI] = None


class SensorReport(_Extensible):
    """One sensor reading or alert. The schema requires `type`."""

    type_: MeasurementTypeValue = Field(alias="type")
    exception: Opt[SensorAlertTypeValue] = None
    deviceID: Opt[URI] = None
    deviceMetadata: Opt[URI] = None
    rawData: Opt[URI] = None
    dataProcessingMethod: Opt[URI] = None
    bizRules: Opt[URI] = None
    time: Opt[Timestamp] = None
    microorganism: Opt[URI] = None
    chemicalSubstance: Opt[URI] = None
    coordinateReferenceSystem: Opt[URI] = None
    value: Opt[Number] = None
    component: Opt[SensorComponentValue] = None
    stringValue: Opt[str] = None
    booleanValue: Opt[bool] = None
    hexBinaryValue: Opt[HexBinary] = None
    uriValue: Opt[URI] = None
    minValue: Opt[Number] = None
    maxValue: Opt[Number] = None
    meanValue: Opt[Number] = None
    sDev: Opt[Number] = None
    percRank: Opt[Number] = None
    percValue: Opt[Number] = None
    uom: Opt[str] = None  # any string here, unlike QuantityElement.uom


class SensorElement(_Extensible):
    """Sensor data captured with the event: at least one report."""

    sensorMetadata: Opt[SensorMetadata] = None
    sensorReport: Annotated[list[SensorReport], AfterValidator(_non_empty)]


class ErrorDeclaration(_Extensible):
    """Marks the event as erroneous."""

    declarationTime: Timestamp
    reason: Opt[ErrorReasonValue] = None
    correctiveEventIDs: Opt[list[URI]] = None


Ilmd = dict[Annotated[str, PlainValidator(_ilmd_key)], Any]
"""Instance/lot master data: namespaced fields only, values free."""


# ---------------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------------


class EventBase(_Open):
    """The fields every EPCIS event has (the schema's `Event`)."""

    context: Opt[Context] = Field(default=None, alias="@context")
    eventTime: Timestamp
    recordTime: Opt[Timestamp] = None
    eventTimeZoneOffset: TimeZoneOffset
    eventID: Opt[URI] = None
    certificationInfo: Opt[CertificationInfo] = None
    errorDeclaration: Opt[ErrorDeclaration] = None


class _BusinessEvent(EventBase, _Extensible):
    """The why/where/how fields the five standard event types share."""

    bizStep: Opt[BizStepValue] = None
    disposition: Opt[DispositionValue] = None
    readPoint: Opt[ReadPoint] = None
    bizLocation: Opt[BizLocation] = None
    bizTransactionList: Opt[list[BizTransaction]] = None
    sourceList: Opt[list[Source]] = None
    destinationList: Opt[list[Destination]] = None
    sensorElementList: Opt[list[SensorElement]] = None


class ObjectEvent(_BusinessEvent):
    """Something happened to objects: commissioned, observed, shipped, decommissioned."""

    type_: Literal["ObjectEvent"] = Field(alias="type")
    action: Action
    epcList: Opt[UniqueURIList] = None
    quantityList: Opt[list[QuantityElement]] = None
    persistentDisposition: Opt[PersistentDisposition] = None
    ilmd: Opt[Ilmd] = None

    @model_validator(mode="after")
    def _what_and_ilmd(self) -> ObjectEvent:
        # An empty epcList counts as naming the objects; the other two ways need at least one entry.
        if not (
            self.epcList is not None
            or self.quantityList
            or (self.sensorElementList and self.readPoint is not None)
        ):
            raise _fail(
                "object_event_what",
                "an ObjectEvent with an epcList, a non-empty quantityList, "
                "or a non-empty sensorElementList together with a readPoint",
            )
        if self.ilmd is not None and self.action != "ADD":
            raise _fail("ilmd_action", "left out unless action is ADD", field="ilmd")
        return self


def _children_rule(event: AggregationEvent | AssociationEvent) -> None:
    if event.action != "DELETE" and not (event.childEPCs or event.childQuantityList):
        raise _fail(
            "children",
            f"an {event.type_} with a non-empty childEPCs or childQuantityList, unless action is DELETE",
        )


class AggregationEvent(_BusinessEvent):
    """Children were packed into, seen in, or taken out of a parent.

    The standard requires parentID when action is ADD or DELETE; the schema never requires it, so
    neither do we."""

    type_: Literal["AggregationEvent"] = Field(alias="type")
    action: Action
    parentID: Opt[URI] = None
    childEPCs: Opt[list[URI]] = None  # no uniqueness rule in the schema, unlike epcList
    childQuantityList: Opt[list[QuantityElement]] = None

    @model_validator(mode="after")
    def _children(self) -> AggregationEvent:
        _children_rule(self)
        return self


class TransactionEvent(_BusinessEvent):
    """Objects were tied to or untied from business transactions."""

    type_: Literal["TransactionEvent"] = Field(alias="type")
    action: Action
    bizTransactionList: Annotated[list[BizTransaction], AfterValidator(_non_empty)]  # type: ignore[assignment]
    parentID: Opt[URI] = None
    epcList: Opt[list[URI]] = None  # no uniqueness rule in the schema here
    quantityList: Opt[list[QuantityElement]] = None

    @model_validator(mode="after")
    def _what(self) -> TransactionEvent:
        if self.action != "DELETE" and not (self.epcList is not None or self.quantityList):
            raise _fail(
                "transaction_event_what",
                "a TransactionEvent with an epcList or a non-empty quantityList, unless action is DELETE",
            )
        return self


class TransformationEvent(_BusinessEvent):
    """Inputs were consumed and outputs produced, e.g. a batch made. No action."""

    type_: Literal["TransformationEvent"] = Field(alias="type")
    inputEPCList: Opt[UniqueURIList] = None
    inputQuantityList: Opt[list[QuantityElement]] = None
    outputEPCList: Opt[UniqueURIList] = None
    outputQuantityList: Opt[list[QuantityElement]] = None
    transformationID: Opt[URI] = None
    persistentDisposition: Opt[PersistentDisposition] = None
    ilmd: Opt[Ilmd] = None

    @model_validator(mode="after")
    def _inputs_outputs(self) -> TransformationEvent:
        inputs = bool(self.inputEPCList or self.inputQuantityList)
        outputs = bool(self.outputEPCList or self.outputQuantityList)
        # One side may stand alone when a transformationID links it to events carrying the other.
        if not ((inputs and outputs) or (self.transformationID is not None and (inputs or outputs))):
            raise _fail(
                "transformation_io",
                "a TransformationEvent with inputs and outputs (non-empty inputEPCList or inputQuantityList, "
                "and outputEPCList or outputQuantityList), or with a transformationID and either",
            )
        return self


class AssociationEvent(_BusinessEvent):
    """Assets were associated with a parent asset or place, e.g. a sensor fitted."""

    type_: Literal["AssociationEvent"] = Field(alias="type")
    action: Action
    parentID: URI
    childEPCs: Opt[list[URI]] = None
    childQuantityList: Opt[list[QuantityElement]] = None

    @model_validator(mode="after")
    def _children(self) -> AssociationEvent:
        _children_rule(self)
        return self


def _extension_event_type(value: Any) -> str:
    if type(value) is not str or not is_uri(value):
        raise _fail(
            "event_type",
            "one of ObjectEvent, AggregationEvent, TransactionEvent, TransformationEvent, AssociationEvent, "
            "or the URI of an extension event type",
        )
    return value


class ExtensionEvent(EventBase):
    """An event of a type outside the standard's five, named by a URI (the schema's `Extended-Event`):
    only the common event fields are checked; other fields are free."""

    type_: Annotated[str, PlainValidator(_extension_event_type)] = Field(alias="type")


_STANDARD_EVENT_TYPES = frozenset(
    {"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"}
)
_EXTENSION_TAG = "extension"


def _event_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type_", None)
    return kind if isinstance(kind, str) and kind in _STANDARD_EVENT_TYPES else _EXTENSION_TAG


EPCISEvent = Annotated[
    Annotated[ObjectEvent, Tag("ObjectEvent")]
    | Annotated[AggregationEvent, Tag("AggregationEvent")]
    | Annotated[TransactionEvent, Tag("TransactionEvent")]
    | Annotated[TransformationEvent, Tag("TransformationEvent")]
    | Annotated[AssociationEvent, Tag("AssociationEvent")]
    | Annotated[ExtensionEvent, Tag(_EXTENSION_TAG)],
    Discriminator(_event_kind),
]
"""Any event of an eventList, chosen by its `type`."""


# ---------------------------------------------------------------------------------------------------
# Master data and documents
# ---------------------------------------------------------------------------------------------------


class Attribute(_Open):
    """One master data attribute of a vocabulary element."""

    id: URI
    attribute: Opt[Annotated[float | str | dict[str, Any], PlainValidator(_attribute_value)]] = None


class VocabularyElement(_Open):
    """Master data of one identifier (a location, a product class...)."""

    id: URI
    attributes: Opt[list[Attribute]] = None
    children: Opt[list[URI]] = None


class Vocabulary(_Open):
    """Master data elements of one vocabulary type, e.g. urn:epcglobal:epcis:vtype:BusinessLocation."""

    type_: URI = Field(alias="type")
    vocabularyElementList: Opt[list[VocabularyElement]] = None


class EPCISMasterData(_Open):
    """Master data sent along with events."""

    vocabularyList: Opt[list[Vocabulary]] = None


class EPCISHeader(_Extensible):
    """The document header: optional master data, plus namespaced fields (e.g. an SBDH)."""

    epcisMasterData: Opt[EPCISMasterData] = None


class EPCISBody(_Open):
    """The events of a capture document, in order."""

    eventList: list[EPCISEvent]


class EPCISDocument(_Extensible):
    """A document of EPCIS events, as sent to a capture interface."""

    context: Context = Field(alias="@context")
    id: Opt[URI] = None
    type_: Literal["EPCISDocument"] = Field(alias="type")
    schemaVersion: SchemaVersion
    creationDate: Timestamp
    instanceIdentifier: Opt[str] = None
    sender: Opt[str] = None
    receiver: Opt[str] = None
    epcisHeader: Opt[EPCISHeader] = None
    epcisBody: EPCISBody


class ResultsBody(_Extensible):
    """The events (and optionally master data) a query returned."""

    eventList: list[EPCISEvent]
    vocabularyList: Opt[list[Vocabulary]] = None


class QueryResults(_Extensible):
    """The results of one named query or subscription."""

    queryName: str
    subscriptionID: Opt[str] = None
    resultsBody: ResultsBody


class EPCISQueryBody(_Extensible):
    """The body of a query document."""

    queryResults: QueryResults


class EPCISQueryDocument(_Extensible):
    """A document of query results. The schema leaves schemaVersion and
    creationDate optional here, although the XML binding requires them of every EPCIS document."""

    context: Context = Field(alias="@context")
    id: Opt[URI] = None
    type_: Literal["EPCISQueryDocument"] = Field(alias="type")
    schemaVersion: Opt[SchemaVersion] = None
    creationDate: Opt[Timestamp] = None
    epcisBody: EPCISQueryBody


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------


def validate_document(data: Any) -> EPCISDocument:
    """Check a parsed EPCIS 2.0 capture document (JSON/JSON-LD) and return its model.

    `data` is not changed, and the order of events is kept: `doc.epcisBody.eventList[i]` is the model of
    `data["epcisBody"]["eventList"][i]`, so callers hash and store the raw dicts and use the model for
    the checked values. Raises pydantic's ValidationError; `problems(exc)` lists the faults readably.
    """
    return EPCISDocument.model_validate(data)


_TAG_NAMES = _STANDARD_EVENT_TYPES | {_EXTENSION_TAG}
_PLAIN_KEY = re.compile(r"[A-Za-z_@][A-Za-z0-9_@:\-]*")
_BUILTIN_RULES = {
    "missing": "required",
    "extra_forbidden": "not allowed: this object takes no other fields",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue  # a dict key failed; the path already ends in that key
        elif i >= 2 and isinstance(loc[i - 1], int) and loc[i - 2] == "eventList" and part in _TAG_NAMES:
            continue  # the union member pydantic chose by `type`: not part of the JSON
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _rule(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _BUILTIN_RULES:
        return _BUILTIN_RULES[kind]
    if kind == "literal_error":
        options = [o.strip().strip("'") for o in re.split(r",| or ", ctx.get("expected", ""))]
        options = [o for o in options if o]
        return f"exactly {options[0]}" if len(options) == 1 else "one of " + ", ".join(options)
    return str(error["msg"])  # our own errors: the message is already the rule


def problems(exc: ValidationError) -> list[dict[str, str]]:
    """One entry per fault: `field` is the JSON path (e.g. `epcisBody.eventList[3].action`), `rule` what
    the value must be, in words (e.g. `one of ADD, OBSERVE, DELETE`)."""
    found = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        field = (error.get("ctx") or {}).get("field")
        if isinstance(field, str):
            loc += (field,)  # a rule across fields that is about one of them
        found.append({"field": _path(loc) or "(document)", "rule": _rule(error)})
    return found
