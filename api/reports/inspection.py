"""Inspection reports for regulators: the custody trail of a pack, a container or a batch.

Another layer builds an :class:`InspectionReport` from the database and the chain; this module only
renders it, without I/O besides reading fonts:

- :func:`render_pdf`: an A4 report (reportlab platypus), multi-page when long, with a custody diagram;
- :func:`render_csv`: the trail, one row per on-chain step (RFC 4180: comma, CRLF, quotes doubled);
- :func:`custody_svg`: the custody diagram alone, as a standalone SVG for web pages.

The custody diagram has one node per distinct :class:`Party` and one arrow per :class:`Handover`,
labelled with the hand-over's date (UTC). Parties are laid out left to right in order of first
appearance: a receiver seen for the first time goes one column right of its sender, parties of the same
column are stacked. A hand-over between adjacent columns is a straight arrow (a return points back,
beside the delivery); one that skips columns arcs above (forwards) or below (backwards), one within a
column bends out to the right; repeated hand-overs between the same parties are drawn side by side.

Text is set in DejaVu Sans (Latin, Greek, Cyrillic) when the system has it (Debian: fonts-dejavu-core),
otherwise in the PDF standard fonts, which cover Western European (Latin-1) text only.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

from reportlab.graphics.shapes import Drawing, Group, Polygon, Rect, String
from reportlab.graphics.shapes import Path as ShapePath
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    BaseDocTemplate,
    CallerMacro,
    Frame,
    KeepTogether,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

__all__ = [
    "CSV_COLUMNS",
    "CertificateRow",
    "Handover",
    "InspectionReport",
    "Party",
    "StatusChange",
    "Step",
    "custody_svg",
    "render_csv",
    "render_pdf",
]


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Party:
    org_id: int
    name: str
    gln: str


@dataclass(frozen=True)
class Step:
    """One on-chain custody event, in chain order."""

    action: str  # e.g. "commissioned", "packed", "shipped", "received", "decommissioned (dispensed)"
    at: datetime  # block time, UTC-aware
    party: Party  # who acted
    counterparty: Party | None  # e.g. the addressee of a shipment
    block_number: int
    tx_hash: str  # 0x...
    log_index: int
    signer: str  # 0x address of the signing key
    event_id: str | None  # EPCIS Event Hash ID ni:///sha-256;...?ver=CBV2.0
    detail: str = ""  # free text (shipment id, reason...)


@dataclass(frozen=True)
class CertificateRow:
    kind: str
    sha256: str
    signer: str
    party: Party
    meaning: str
    at: datetime


@dataclass(frozen=True)
class StatusChange:
    at: datetime
    from_status: str
    to_status: str
    party: Party
    reason: str


@dataclass(frozen=True)
class Handover:
    """An edge of the custody diagram."""

    sender: Party
    receiver: Party
    at: datetime
    label: str = ""


@dataclass(frozen=True)
class InspectionReport:
    title: str  # e.g. "Pack 09506000134352 / PK7Q2X9A"
    subject: str  # "pack" | "container" | "batch"
    identifiers: dict[str, str]  # ordered: GTIN, serial, lot, expiry, SSCC, batch id, key... as given
    generated_at: datetime
    generated_by: str  # user and organisation
    chain_id: int
    evidence_block: int  # the block at which the report is true
    evidence_block_hash: str
    status: str  # current status in words (e.g. "dispensed", "in transit", "released")
    steps: list[Step]
    certificates: list[CertificateRow]
    status_history: list[StatusChange]
    handovers: list[Handover]  # the custody path for the diagram
    holders: list[tuple[str, str, int]] = field(default_factory=list)  # batch: (holder, status, units)


# -------------------------------------------------------------------------------------------- fonts

FONT_DIRS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/dejavu",  # Debian, Ubuntu (fonts-dejavu-core)
    "/usr/share/fonts/dejavu",  # Fedora
    "/usr/share/fonts/TTF",  # Arch
    "/usr/local/share/fonts",
)
_DEJAVU = {"regular": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf", "mono": "DejaVuSansMono.ttf"}


@dataclass(frozen=True)
class _Fonts:
    regular: str
    bold: str
    mono: str
    svg_family: str
    svg_mono: str


@cache
def _fonts(dirs: tuple[str, ...]) -> _Fonts:
    """DejaVu from the first of `dirs` that has it, registered with reportlab; else the standard fonts."""
    for folder in dirs:
        files = {role: Path(folder) / name for role, name in _DEJAVU.items()}
        if not all(path.is_file() for path in files.values()):
            continue
        names = {role: f"RxlDejaVu-{role}" for role in files}
        registered = set(pdfmetrics.getRegisteredFontNames())
        for role, path in files.items():
            if names[role] not in registered:
                pdfmetrics.registerFont(TTFont(names[role], str(path)))
        pdfmetrics.registerFontFamily(
            names["regular"],
            normal=names["regular"],
            bold=names["bold"],
            italic=names["regular"],
            boldItalic=names["bold"],
        )
        return _Fonts(
            names["regular"],
            names["bold"],
            names["mono"],
            "'DejaVu Sans', Verdana, Arial, sans-serif",
            "'DejaVu Sans Mono', Menlo, Consolas, monospace",
        )
    return _Fonts(
        "Helvetica",
        "Helvetica-Bold",
        "Courier",
        "Helvetica, Arial, sans-serif",
        "'Courier New', Courier, monospace",
    )


def _current_fonts() -> _Fonts:
    return _fonts(FONT_DIRS)


# ---------------------------------------------------------------------------------------- formatting


def _utc(at: datetime) -> datetime:
    """`at` in UTC; a naive datetime is taken to be UTC already."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _iso(at: datetime) -> str:
    return _utc(at).isoformat().replace("+00:00", "Z")


def _stamp(at: datetime) -> str:
    return _utc(at).strftime("%Y-%m-%d %H:%M:%S")


def _day(at: datetime) -> str:
    return _utc(at).strftime("%Y-%m-%d")


def _short(hex_string: str, head: int = 4, tail: int = 4) -> str:
    """0x1234…cdef: a hash or address shortened for a table cell (the full value is printed beside it)."""
    prefix = "0x" if hex_string[:2].lower() == "0x" else ""
    body = hex_string[len(prefix) :]
    if len(body) <= head + tail + 1:
        return hex_string
    return f"{prefix}{body[:head]}…{body[-tail:]}"


def _width(text: str, font: str, size: float) -> float:
    return float(pdfmetrics.stringWidth(text, font, size))


def _fit(text: str, font: str, size: float, width: float, *, force: bool = False) -> str:
    """`text` cut with an ellipsis to fit `width` (always ellipsised when `force`)."""
    if not force and _width(text, font, size) <= width:
        return text
    while text and _width(text.rstrip() + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _wrap(text: str, font: str, size: float, width: float, max_lines: int) -> list[str]:
    lines = [_fit(line, font, size, width) for line in simpleSplit(text, font, size, width)] or [""]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], _fit(lines[max_lines - 1], font, size, width, force=True)]
    return lines


# ----------------------------------------------------------------------------------- custody diagram

_INK = "#1F4E79"  # boxes' border and arrows
_BOX_FILL = "#EAF1FB"
_TEXT = "#1A1A1A"
_MUTED = "#555555"

_GAP_X = 64.0  # between columns: room for an arrow and its date
_BOX_W_MAX = 132.0
_PAD = 8.0
_HEAD_LEN, _HEAD_HALF = 6.0, 3.0
_TALL = 5  # more parties than this in a column: compact boxes


@dataclass(frozen=True)
class _Metrics:
    box_h: float
    gap_y: float
    name_lines: int
    min_box_w: float


_ROOMY = _Metrics(box_h=50.0, gap_y=24.0, name_lines=3, min_box_w=84.0)
_COMPACT = _Metrics(box_h=36.0, gap_y=6.0, name_lines=2, min_box_w=120.0)  # drawn smaller: wider boxes

Point = tuple[float, float]
Anchor = Literal["start", "middle", "end"]
Role = Literal["regular", "bold", "mono"]


@dataclass(frozen=True)
class _Text:
    x: float
    y: float  # baseline; y grows downwards as in SVG
    text: str
    role: Role
    size: float
    anchor: Anchor = "middle"
    color: str = _TEXT


@dataclass(frozen=True)
class _Node:
    party: Party
    x: float
    y: float
    w: float
    h: float
    texts: tuple[_Text, ...]


@dataclass(frozen=True)
class _Edge:
    handover: Handover
    path: tuple[Point, ...]  # a polyline, or when `curved` a cubic Bézier: start, 2 control points, end
    curved: bool
    head: tuple[Point, Point, Point]
    backdrop: tuple[float, float, float, float] | None  # x, y, w, h of a white box behind the texts
    texts: tuple[_Text, ...]


@dataclass(frozen=True)
class _Diagram:
    width: float
    height: float
    dx: float  # translation of the layout coordinates into the picture
    dy: float
    nodes: tuple[_Node, ...]
    edges: tuple[_Edge, ...]


def _ranks(report: InspectionReport) -> dict[Party, int]:
    """Column of each party, in order of first appearance (dict order)."""
    rank: dict[Party, int] = {}
    for handover in report.handovers:
        sender, receiver = handover.sender, handover.receiver
        if sender not in rank:
            rank[sender] = max(0, rank[receiver] - 1) if receiver in rank else 0
        if receiver not in rank:
            rank[receiver] = rank[sender] + 1
    if not rank:  # no hand-over yet: the acting parties in a row, without arrows
        for step in report.steps:
            rank.setdefault(step.party, len(rank))
    return rank


def _bezier(p0: Point, c1: Point, c2: Point, p3: Point, t: float) -> Point:
    u = 1 - t
    return (
        u**3 * p0[0] + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t**3 * p3[0],
        u**3 * p0[1] + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t**3 * p3[1],
    )


def _arrow_head(tip: Point, towards_from: Point) -> tuple[Point, Point, Point]:
    vx, vy = tip[0] - towards_from[0], tip[1] - towards_from[1]
    norm = (vx * vx + vy * vy) ** 0.5 or 1.0
    ux, uy = vx / norm, vy / norm
    bx, by = tip[0] - ux * _HEAD_LEN, tip[1] - uy * _HEAD_LEN
    return (tip, (bx - uy * _HEAD_HALF, by + ux * _HEAD_HALF), (bx + uy * _HEAD_HALF, by - ux * _HEAD_HALF))


def _layout(report: InspectionReport, fonts: _Fonts, fit_width: float) -> _Diagram:
    rank = _ranks(report)
    columns: dict[int, list[Party]] = {}
    for party, column in rank.items():
        columns.setdefault(column, []).append(party)
    ncols = max(columns, default=-1) + 1
    tallest = max((len(members) for members in columns.values()), default=0)
    m = _COMPACT if tallest > _TALL else _ROOMY
    share = (fit_width - 2 * _PAD - (ncols - 1) * _GAP_X) / max(ncols, 1)
    box_w = min(_BOX_W_MAX, max(m.min_box_w, share))
    box_h = m.box_h

    def column_height(count: int) -> float:
        return count * box_h + max(count - 1, 0) * m.gap_y

    boxes: dict[Party, tuple[float, float]] = {}
    nodes: list[_Node] = []
    for column in range(ncols):
        members = columns[column]
        top = (column_height(tallest) - column_height(len(members))) / 2
        for index, party in enumerate(members):
            x, y = column * (box_w + _GAP_X), top + index * (box_h + m.gap_y)
            boxes[party] = (x, y)
            nodes.append(_node(party, x, y, box_w, m, fonts))

    def span_top(a: int, b: int) -> float:
        return min(boxes[p][1] for p, c in rank.items() if min(a, b) <= c <= max(a, b))

    def span_bottom(a: int, b: int) -> float:
        return max(boxes[p][1] for p, c in rank.items() if min(a, b) <= c <= max(a, b)) + box_h

    def outermost(party: Party, side: str) -> bool:
        members = columns[rank[party]]
        return members[0 if side == "above" else -1] == party

    def neighbours(h: Handover) -> bool:
        return abs(rank[h.sender] - rank[h.receiver]) == 1

    # Between adjacent columns an arrow leaves its sender sideways, turns at the sender's trunk (shared by
    # a fan-out) and enters its receiver sideways; arrows meeting at one side of a box are spread apart,
    # those leaving are spread only when they go to the same party (repeated hand-overs, a return).
    adjacent = [h for h in report.handovers if neighbours(h)]
    spacing = 22.0 if any(h.label for h in adjacent) else 13.0
    pair_total = Counter(frozenset((h.sender, h.receiver)) for h in adjacent)
    arrivals_total = Counter((h.receiver, rank[h.sender] < rank[h.receiver]) for h in adjacent)
    pair_seen: Counter[frozenset[Party]] = Counter()
    arrivals_seen: Counter[tuple[Party, bool]] = Counter()
    lanes: Counter[str] = Counter()

    edges: list[_Edge] = []
    for handover in report.handovers:
        sender, receiver = handover.sender, handover.receiver
        (sx, sy), (rx, ry) = boxes[sender], boxes[receiver]
        s_col, r_col = rank[sender], rank[receiver]
        path: tuple[Point, ...]
        if sender == receiver:  # a move within one party: a loop over its box
            lane = lanes["above"]
            lanes["above"] += 1
            start, end = (sx + box_w / 2 - 14, sy), (sx + box_w / 2 + 14, sy)
            lift = min(30 + 14 * lane, m.gap_y + 6) if not outermost(sender, "above") else 30 + 14 * lane
            path = (start, (start[0] - 24, sy - lift), (end[0] + 24, sy - lift), end)
        elif neighbours(handover):
            forward = r_col > s_col
            pair, arrival = frozenset((sender, receiver)), (receiver, forward)
            out = (pair_seen[pair] - (pair_total[pair] - 1) / 2) * spacing
            into = (arrivals_seen[arrival] - (arrivals_total[arrival] - 1) / 2) * spacing
            pair_seen[pair] += 1
            arrivals_seen[arrival] += 1
            if forward:
                x0, x1 = sx + box_w, rx
                trunk = x0 + 0.35 * _GAP_X
            else:
                x0, x1 = sx, rx + box_w
                trunk = x0 - 0.35 * _GAP_X
            y0, y1 = sy + box_h / 2 + out, ry + box_h / 2 + into
            path = (
                ((x0, y0), (x1, y1)) if abs(y0 - y1) < 0.5 else ((x0, y0), (trunk, y0), (trunk, y1), (x1, y1))
            )
        elif r_col != s_col:  # skips columns: an arc above (forwards) or below (backwards), where clear
            side = "above" if r_col > s_col else "below"
            other = "below" if side == "above" else "above"
            if not (outermost(sender, side) and outermost(receiver, side)) and (
                outermost(sender, other) and outermost(receiver, other)
            ):
                side = other
            lane = lanes[side]
            lanes[side] += 1
            shift = 10 if r_col > s_col else -10
            if side == "above":
                crest = span_top(s_col, r_col) - 26 - 14 * lane
                start, end = (sx + box_w / 2 + shift, sy), (rx + box_w / 2 - shift, ry)
            else:
                crest = span_bottom(s_col, r_col) + 26 + 14 * lane
                start, end = (sx + box_w / 2 + shift, sy + box_h), (rx + box_w / 2 - shift, ry + box_h)
            path = (start, (start[0], crest), (end[0], crest), end)
        else:  # within a column: bends out to the right
            lane = lanes[f"side{s_col}"]
            lanes[f"side{s_col}"] += 1
            bulge = sx + box_w + 30 + 14 * lane
            start, end = (sx + box_w, sy + box_h / 2), (rx + box_w, ry + box_h / 2)
            path = (start, (bulge, start[1]), (bulge, end[1]), end)
        edges.append(_edge(handover, path, curved=not neighbours(handover), fonts=fonts))

    xs = [v for n in nodes for v in (n.x, n.x + n.w)]
    ys = [v for n in nodes for v in (n.y, n.y + n.h)]
    for e in edges:
        xs += [p[0] for p in e.path]
        ys += [p[1] for p in e.path]
        if e.backdrop:
            bx, by, bw, bh = e.backdrop
            xs += [bx, bx + bw]
            ys += [by, by + bh]
    if not xs:
        return _Diagram(2 * _PAD, 2 * _PAD, _PAD, _PAD, (), ())
    return _Diagram(
        max(xs) - min(xs) + 2 * _PAD,
        max(ys) - min(ys) + 2 * _PAD,
        _PAD - min(xs),
        _PAD - min(ys),
        tuple(nodes),
        tuple(edges),
    )


def _node(party: Party, x: float, y: float, w: float, m: _Metrics, fonts: _Fonts) -> _Node:
    name_size, name_lead, gln_size = 7.5, 9.0, 6.5
    lines = _wrap(party.name, fonts.bold, name_size, w - 8, max_lines=m.name_lines)
    block = len(lines) * name_lead + 8.5
    top = y + (m.box_h - block) / 2
    cx = x + w / 2
    texts = [_Text(cx, top + 7 + i * name_lead, line, "bold", name_size) for i, line in enumerate(lines)]
    # a party the reader may not see has no GLN in the report: say so rather than print "GLN "
    gln = _fit(f"GLN {party.gln}" if party.gln else "GLN withheld", fonts.mono, gln_size, w - 6)
    texts.append(_Text(cx, top + len(lines) * name_lead + 7, gln, "mono", gln_size, color=_MUTED))
    return _Node(party, x, y, w, m.box_h, tuple(texts))


def _edge(handover: Handover, path: tuple[Point, ...], *, curved: bool, fonts: _Fonts) -> _Edge:
    date_size, label_size = 6.5, 6.0
    date = _day(handover.at)
    label = _fit(handover.label, fonts.regular, label_size, 96) if handover.label else ""
    date_w = _width(date, fonts.regular, date_size) + 4
    head = _arrow_head(path[-1], path[-2])
    if not curved:  # the date just above the last segment, the label just below
        (ax, ay), (bx, by) = path[-2], path[-1]
        mid = ((ax + bx) / 2, (ay + by) / 2)
        texts = [_Text(mid[0], mid[1] - 3, date, "regular", date_size)]
        if label:
            texts.append(_Text(mid[0], mid[1] + 8, label, "regular", label_size, color=_MUTED))
        backdrop = (mid[0] - date_w / 2, mid[1] - 3 - date_size * 0.85, date_w, date_size * 0.85 + 1.5)
    else:  # the texts sit on the middle of the curve, over a white box
        mid = _bezier(path[0], path[1], path[2], path[3], 0.5)
        lines = [(date, date_size), (label, label_size)] if label else [(date, date_size)]
        box_w = max(date_w, _width(label, fonts.regular, label_size) + 4 if label else 0)
        height = sum(size + 1.5 for _, size in lines) + 1
        top = mid[1] - height / 2
        texts = []
        baseline = top + 0.5
        for text, size in lines:
            baseline += size
            texts.append(
                _Text(mid[0], baseline, text, "regular", size, color=_TEXT if text == date else _MUTED)
            )
            baseline += 1.5
        backdrop = (mid[0] - box_w / 2, top, box_w, height)
    return _Edge(handover, path, curved, head, backdrop, tuple(texts))


def _font_of(role: Role, fonts: _Fonts) -> str:
    return {"regular": fonts.regular, "bold": fonts.bold, "mono": fonts.mono}[role]


def _rect(x: float, y: float, w: float, h: float, *, fill: colors.Color, stroke: colors.Color | None) -> Rect:
    rect = Rect(x, y, w, h)
    rect.fillColor, rect.strokeColor, rect.strokeWidth = fill, stroke, 1 if stroke else 0
    return rect


def _drawing(diagram: _Diagram, fonts: _Fonts, max_width: float, max_height: float) -> Drawing:
    """The diagram as a reportlab Drawing (y upwards), scaled down to fit `max_width` by `max_height`."""
    scale = min(1.0, max_width / diagram.width, max_height / diagram.height)
    height = diagram.height

    def x_of(x: float) -> float:
        return x + diagram.dx

    def y_of(y: float) -> float:
        return height - (y + diagram.dy)

    ink = colors.HexColor(_INK)
    group = Group()
    for edge in diagram.edges:
        path = ShapePath(strokeColor=ink, strokeWidth=0.9, fillColor=None)
        (x0, y0), *rest = edge.path
        path.moveTo(x_of(x0), y_of(y0))
        if edge.curved:
            path.curveTo(*(v for x, y in rest for v in (x_of(x), y_of(y))))
        else:
            for x, y in rest:
                path.lineTo(x_of(x), y_of(y))
        group.add(path)
        group.add(
            Polygon([v for p in edge.head for v in (x_of(p[0]), y_of(p[1]))], fillColor=ink, strokeColor=None)
        )
        if edge.backdrop:
            bx, by, bw, bh = edge.backdrop
            group.add(_rect(x_of(bx), y_of(by + bh), bw, bh, fill=colors.white, stroke=None))
    for node in diagram.nodes:
        box = _rect(
            x_of(node.x), y_of(node.y + node.h), node.w, node.h, fill=colors.HexColor(_BOX_FILL), stroke=ink
        )
        box.rx = box.ry = 4
        group.add(box)
    for text in [t for e in diagram.edges for t in e.texts] + [t for n in diagram.nodes for t in n.texts]:
        group.add(
            String(
                x_of(text.x),
                y_of(text.y),
                text.text,
                fontName=_font_of(text.role, fonts),
                fontSize=text.size,
                fillColor=colors.HexColor(text.color),
                textAnchor=text.anchor,
            )
        )
    group.transform = (scale, 0, 0, scale, 0, 0)
    drawing = Drawing(diagram.width * scale, diagram.height * scale)
    drawing.add(group)
    drawing.hAlign = "CENTER"
    return drawing


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def custody_svg(report: InspectionReport) -> str:
    """The custody diagram as a standalone SVG document (UTF-8 text, no XML declaration).

    Each party is a ``<g class="party">`` (with ``data-org-id`` and ``data-gln``), each hand-over a
    ``<g class="handover">`` holding its path, its arrowhead and a ``<text class="handover-date">``.
    """
    fonts = _current_fonts()
    diagram = _layout(report, fonts, fit_width=_FRAME_W)
    width, height = _num(diagram.width), _num(diagram.height)
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "class": "rxledger-custody",
            "width": width,
            "height": height,
            "viewBox": f"0 0 {width} {height}",
            "role": "img",
            "font-family": fonts.svg_family,
        },
    )
    ET.SubElement(svg, "title").text = f"Custody diagram: {report.title}"
    ET.SubElement(
        svg, "desc"
    ).text = "Parties in order of first appearance; arrows are hand-overs labelled with their date (UTC)."
    canvas = ET.SubElement(svg, "g", {"transform": f"translate({_num(diagram.dx)},{_num(diagram.dy)})"})

    def add_text(parent: ET.Element, text: _Text, css_class: str) -> None:
        attributes = {
            "class": css_class,
            "x": _num(text.x),
            "y": _num(text.y),
            "font-size": _num(text.size),
            "text-anchor": text.anchor,
            "fill": text.color,
        }
        if text.role == "bold":
            attributes["font-weight"] = "bold"
        elif text.role == "mono":
            attributes["font-family"] = fonts.svg_mono
        ET.SubElement(parent, "text", attributes).text = text.text

    for edge in diagram.edges:
        h = edge.handover
        group = ET.SubElement(
            canvas,
            "g",
            {
                "class": "handover",
                "data-from-gln": h.sender.gln,
                "data-to-gln": h.receiver.gln,
                "data-at": _iso(h.at),
            },
        )
        caption = f"{h.sender.name} → {h.receiver.name}, {_stamp(h.at)} UTC"
        ET.SubElement(group, "title").text = f"{caption} ({h.label})" if h.label else caption
        (x0, y0), *rest = edge.path
        d = (
            f"M{_num(x0)},{_num(y0)} "
            + ("C" if edge.curved else "L")
            + " ".join(f"{_num(x)},{_num(y)}" for x, y in rest)
        )
        ET.SubElement(group, "path", {"d": d, "fill": "none", "stroke": _INK, "stroke-width": "0.9"})
        ET.SubElement(
            group,
            "polygon",
            {
                "class": "arrowhead",
                "points": " ".join(f"{_num(x)},{_num(y)}" for x, y in edge.head),
                "fill": _INK,
            },
        )
        if edge.backdrop:
            bx, by, bw, bh = edge.backdrop
            ET.SubElement(
                group,
                "rect",
                {"x": _num(bx), "y": _num(by), "width": _num(bw), "height": _num(bh), "fill": "#FFFFFF"},
            )
        for index, text in enumerate(edge.texts):
            add_text(group, text, "handover-date" if index == 0 else "handover-label")
    for node in diagram.nodes:
        party = node.party
        group = ET.SubElement(
            canvas, "g", {"class": "party", "data-org-id": str(party.org_id), "data-gln": party.gln}
        )
        ET.SubElement(group, "title").text = f"{party.name} (GLN {party.gln or 'withheld'})"
        ET.SubElement(
            group,
            "rect",
            {
                "x": _num(node.x),
                "y": _num(node.y),
                "width": _num(node.w),
                "height": _num(node.h),
                "rx": "4",
                "fill": _BOX_FILL,
                "stroke": _INK,
            },
        )
        for index, text in enumerate(node.texts):
            add_text(group, text, "party-gln" if index == len(node.texts) - 1 else "party-name")
    return ET.tostring(svg, encoding="unicode")


# ---------------------------------------------------------------------------------------------- CSV

CSV_COLUMNS: tuple[str, ...] = (
    "step",
    "time_utc",
    "action",
    "party",
    "party_gln",
    "party_org_id",
    "counterparty",
    "counterparty_gln",
    "counterparty_org_id",
    "block_number",
    "tx_hash",
    "log_index",
    "signer",
    "event_id",
    "detail",
)


def render_csv(report: InspectionReport) -> str:
    """The custody trail as CSV: a header row (:data:`CSV_COLUMNS`), then one row per step in chain order.

    RFC 4180: comma-separated, CRLF line ends, fields with a comma, quote or line break quoted, quotes
    doubled. Times are ISO 8601 in UTC (``...Z``); a missing counterparty or Event Hash ID is empty.
    Write the text with ``newline=""`` so the CRLFs are kept as they are.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for number, step in enumerate(report.steps, start=1):
        other = step.counterparty
        writer.writerow(
            [
                number,
                _iso(step.at),
                step.action,
                step.party.name,
                step.party.gln,
                step.party.org_id,
                other.name if other else "",
                other.gln if other else "",
                other.org_id if other else "",
                step.block_number,
                step.tx_hash,
                step.log_index,
                step.signer,
                step.event_id or "",
                step.detail,
            ]
        )
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- PDF

_PAGE_W, _PAGE_H = A4
_MARGIN_X = 15 * mm
_MARGIN_TOP = 20 * mm
_MARGIN_BOTTOM = 18 * mm
_FRAME_W = _PAGE_W - 2 * _MARGIN_X
_FRAME_H = _PAGE_H - _MARGIN_TOP - _MARGIN_BOTTOM
_DIAGRAM_MAX_H = 300.0  # on page 1 under the identifiers, unless that shrinks it below _DIAGRAM_MIN_SCALE
_DIAGRAM_MIN_SCALE = 0.6
_TOTAL_PAGES_FORM = "rxlTotalPages"

_GRID = colors.HexColor("#B8C4D0")
_HEAD_FILL = colors.HexColor("#DCE6F2")
_STRIPE = colors.HexColor("#F4F7FB")


@dataclass(frozen=True)
class _Styles:
    kicker: ParagraphStyle
    title: ParagraphStyle
    meta: ParagraphStyle
    h2: ParagraphStyle
    body: ParagraphStyle
    note: ParagraphStyle
    cell: ParagraphStyle
    cell_right: ParagraphStyle
    cell_head: ParagraphStyle
    cell_mono: ParagraphStyle
    sub_mono: ParagraphStyle
    mono: ParagraphStyle
    status: ParagraphStyle


def _styles(fonts: _Fonts) -> _Styles:
    def style(name: str, **kw: Any) -> ParagraphStyle:
        kw.setdefault("fontName", fonts.regular)
        return ParagraphStyle(name, **kw)

    return _Styles(
        kicker=style("kicker", fontSize=8, leading=10, textColor=colors.HexColor(_MUTED)),
        title=style("title", fontName=fonts.bold, fontSize=16, leading=20, spaceAfter=2),
        meta=style("meta", fontSize=8, leading=10.5, textColor=colors.HexColor(_MUTED), spaceAfter=8),
        h2=style(
            "h2",
            fontName=fonts.bold,
            fontSize=11,
            leading=14,
            spaceBefore=12,
            spaceAfter=5,
            keepWithNext=1,
            textColor=colors.HexColor(_INK),
        ),
        body=style("body", fontSize=8.5, leading=11.5, spaceAfter=4),
        note=style("note", fontSize=7, leading=9, textColor=colors.HexColor(_MUTED), spaceBefore=3),
        cell=style("cell", fontSize=7, leading=8.6),
        cell_right=style("cell_right", fontSize=7, leading=8.6, alignment=2),
        cell_head=style("cell_head", fontName=fonts.bold, fontSize=7, leading=8.6),
        cell_mono=style("cell_mono", fontName=fonts.mono, fontSize=6.5, leading=8.6),
        sub_mono=style(
            "sub_mono", fontName=fonts.mono, fontSize=6.3, leading=7.8, textColor=colors.HexColor("#333333")
        ),
        mono=style("mono", fontName=fonts.mono, fontSize=8, leading=10.5),
        status=style("status", fontName=fonts.bold, fontSize=10, leading=13),
    )


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text), style)


def _label(text: str, fonts: _Fonts) -> str:
    """Markup for a small sans label inside a mono paragraph."""
    return f'<font name="{fonts.regular}" color="{_MUTED}">{escape(text)}</font>'


def _grid_table(
    rows: list[list[Any]], widths: Sequence[float], extra: Sequence[tuple[Any, ...]] = ()
) -> Table:
    """A table with a shaded header row repeated on each page."""
    table = Table(rows, colWidths=list(widths), repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), _HEAD_FILL),
                ("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.HexColor(_INK)),
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor(_INK)),
                ("LINEBELOW", (0, -1), (-1, -1), 0.8, colors.HexColor(_INK)),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                *extra,
            ]
        )
    )
    return table


def _paired_rows_style(count: int) -> list[tuple[Any, ...]]:
    """Commands for tables whose records take two rows (a main row and a spanning detail row)."""
    commands: list[tuple[Any, ...]] = [
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.white, _STRIPE, _STRIPE])
    ]
    for index in range(count):
        main = 1 + 2 * index
        commands += [
            ("SPAN", (0, main), (0, main + 1)),
            ("SPAN", (1, main + 1), (-1, main + 1)),
            ("NOSPLIT", (0, main), (-1, main + 1)),
            ("TOPPADDING", (0, main + 1), (-1, main + 1), 0),
            ("LINEBELOW", (0, main + 1), (-1, main + 1), 0.3, _GRID),
        ]
    return commands


def _parties(report: InspectionReport) -> list[Party]:
    seen: dict[Party, None] = dict.fromkeys(_ranks(report))
    for step in report.steps:
        seen.setdefault(step.party)
        if step.counterparty:
            seen.setdefault(step.counterparty)
    for row in report.certificates:
        seen.setdefault(row.party)
    for change in report.status_history:
        seen.setdefault(change.party)
    return list(seen)


def _trail_table(report: InspectionReport, s: _Styles, fonts: _Fonts) -> Table:
    head = ["#", "Time (UTC)", "Action", "Party", "Counterparty", "Block", "Tx", "Log", "Signer"]
    rows: list[list[Any]] = [[_p(h, s.cell_head) for h in head]]
    for number, step in enumerate(report.steps, start=1):
        when = _utc(step.at)
        rows.append(
            [
                _p(str(number), s.cell),
                Paragraph(f"{when:%Y-%m-%d}<br/>{when:%H:%M:%S}", s.cell),
                _p(step.action, s.cell),
                _p(step.party.name, s.cell),
                _p(step.counterparty.name if step.counterparty else "—", s.cell),
                _p(str(step.block_number), s.cell_right),
                _p(_short(step.tx_hash), s.cell_mono),
                _p(str(step.log_index), s.cell_right),
                _p(_short(step.signer), s.cell_mono),
            ]
        )
        detail = (
            f"{_label('tx', fonts)} {escape(step.tx_hash)}&nbsp;&nbsp; "
            f"{_label('signer', fonts)} {escape(step.signer)}"
            f"<br/>{_label('Event Hash ID', fonts)} {escape(step.event_id or '—')}"
        )
        if step.detail:
            detail += (
                f'<br/>{_label("detail", fonts)} <font name="{fonts.regular}">{escape(step.detail)}</font>'
            )
        rows.append(["", Paragraph(detail, s.sub_mono), "", "", "", "", "", "", ""])
    widths = [18, 50, 72, 95, 95, 40, 58, 24, 58]
    return _grid_table(rows, widths, _paired_rows_style(len(report.steps)))


def _certificates_table(report: InspectionReport, s: _Styles, fonts: _Fonts) -> Table:
    rows: list[list[Any]] = [
        [_p(h, s.cell_head) for h in ["#", "Kind", "Party", "Meaning", "Signed at (UTC)"]]
    ]
    for number, row in enumerate(report.certificates, start=1):
        rows.append(
            [
                _p(str(number), s.cell),
                _p(row.kind, s.cell),
                _p(row.party.name, s.cell),
                _p(row.meaning, s.cell),
                _p(_stamp(row.at), s.cell),
            ]
        )
        detail = (
            f"{_label('SHA-256', fonts)} {escape(row.sha256)}"
            f"<br/>{_label('signer', fonts)} {escape(row.signer)}"
        )
        rows.append(["", Paragraph(detail, s.sub_mono), "", "", ""])
    return _grid_table(rows, [18, 90, 130, 192, 80], _paired_rows_style(len(report.certificates)))


def _status_table(report: InspectionReport, s: _Styles) -> Table:
    rows: list[list[Any]] = [[_p(h, s.cell_head) for h in ["Time (UTC)", "From", "To", "Party", "Reason"]]]
    for change in report.status_history:
        rows.append(
            [
                _p(_stamp(change.at), s.cell),
                _p(change.from_status or "—", s.cell),
                _p(change.to_status, s.cell),
                _p(change.party.name, s.cell),
                _p(change.reason, s.cell),
            ]
        )
    stripes = [("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, _STRIPE])]
    return _grid_table(rows, [80, 72, 72, 120, 166], stripes)


def _holders_table(report: InspectionReport, s: _Styles) -> Table:
    rows: list[list[Any]] = [[_p(h, s.cell_head) for h in ["Holder", "Status", "Units"]]]
    for holder, status, units in report.holders:
        rows.append([_p(holder, s.cell), _p(status, s.cell), _p(f"{units:,}", s.cell_right)])
    total = sum(units for _, _, units in report.holders)
    rows.append([_p("Total", s.cell_head), "", Paragraph(f"<b>{total:,}</b>", s.cell_right)])
    extra = [
        ("ROWBACKGROUNDS", (0, 1), (-1, -2), [colors.white, _STRIPE]),
        ("LINEABOVE", (0, -1), (-1, -1), 0.5, _GRID),
    ]
    return _grid_table(rows, [290, 130, 90], extra)


def _key_value_table(rows: Sequence[tuple[str, Any]], s: _Styles, label_width: float = 120) -> Table:
    data = [[_p(key, s.cell_head), value] for key, value in rows]
    table = Table(data, colWidths=[label_width, _FRAME_W - label_width])
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (0, -1), _STRIPE),
                ("LINEBELOW", (0, 0), (-1, -1), 0.3, _GRID),
                ("LINEABOVE", (0, 0), (-1, 0), 0.3, _GRID),
                ("LEFTPADDING", (0, 0), (-1, -1), 4),
                ("TOPPADDING", (0, 0), (-1, -1), 2.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
            ]
        )
    )
    return table


def _page_decorations(report: InspectionReport, fonts: _Fonts) -> Callable[[Any, Any], None]:
    stamp = f"Generated {_stamp(report.generated_at)} UTC by {report.generated_by}"
    evidence = (
        f"Chain id {report.chain_id} · evidence block {report.evidence_block} "
        f"({_short(report.evidence_block_hash, 8, 8)})"
    )
    grey = colors.HexColor(_MUTED)
    reserve = _width(" 9999", fonts.regular, 7)

    def decorate(canv: Any, doc: Any) -> None:
        canv.saveState()
        canv.setStrokeColor(_GRID)
        canv.setLineWidth(0.5)
        top = _PAGE_H - 12 * mm
        canv.line(_MARGIN_X, top - 2, _PAGE_W - _MARGIN_X, top - 2)
        canv.setFont(fonts.regular, 7)
        canv.setFillColor(grey)
        canv.drawString(_MARGIN_X, top + 1, "rxledger inspection report")
        canv.drawRightString(
            _PAGE_W - _MARGIN_X, top + 1, _fit(report.title, fonts.regular, 7, _FRAME_W * 0.7)
        )
        bottom = 10 * mm  # the footer's second line
        canv.line(_MARGIN_X, bottom + 17, _PAGE_W - _MARGIN_X, bottom + 17)
        page = f"Page {canv.getPageNumber()} of"
        page_end = _PAGE_W - _MARGIN_X - reserve
        left_room = page_end - _width(page, fonts.regular, 7) - 12 - _MARGIN_X
        canv.drawString(_MARGIN_X, bottom + 8, _fit(stamp, fonts.regular, 7, left_room))
        canv.drawRightString(page_end, bottom + 8, page)
        canv.saveState()
        canv.translate(page_end, bottom + 8)
        canv.doForm(_TOTAL_PAGES_FORM)  # the page count, drawn once it is known (see _define_total_pages)
        canv.restoreState()
        canv.drawString(_MARGIN_X, bottom, _fit(evidence, fonts.regular, 7, left_room))
        canv.restoreState()

    return decorate


def _define_total_pages(fonts: _Fonts) -> CallerMacro:
    """A last, empty flowable that defines the form holding the page count (forms may be used before)."""

    def define(flowable: CallerMacro, *_: float) -> None:  # reportlab calls it with the flowable only
        canv = flowable.canv
        total = canv.getPageNumber()
        canv.beginForm(_TOTAL_PAGES_FORM)
        canv.setFont(fonts.regular, 7)
        canv.setFillColor(colors.HexColor(_MUTED))
        canv.drawString(0, 0, f" {total}")
        canv.endForm()

    return CallerMacro(drawCallable=define)


def render_pdf(report: InspectionReport) -> bytes:
    """The inspection report as an A4 PDF; tables run onto further pages with their header repeated."""
    fonts = _current_fonts()
    s = _styles(fonts)
    story: list[Any] = [
        _p(f"Inspection report · {report.subject}", s.kicker),
        _p(report.title, s.title),
        _p(f"Generated {_stamp(report.generated_at)} UTC by {report.generated_by}", s.meta),
    ]
    if report.identifiers:
        story.append(_key_value_table([(k, _p(v, s.cell)) for k, v in report.identifiers.items()], s))
    status = Table(
        [
            [
                _p("Current status", s.cell_head),
                _p(report.status, s.status),
                _p(f"as of block {report.evidence_block} on chain id {report.chain_id}", s.note),
            ]
        ],
        colWidths=[120, 150, _FRAME_W - 270],
    )
    status.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), _HEAD_FILL),
                ("BOX", (0, 0), (-1, -1), 0.8, colors.HexColor(_INK)),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("LEFTPADDING", (0, 0), (-1, -1), 4),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    story += [Spacer(1, 8), status]

    story.append(_p("Custody diagram", s.h2))
    diagram = _layout(report, fonts, fit_width=_FRAME_W)
    if report.handovers:
        note = (
            "Parties in order of first appearance; each arrow is a hand-over, labelled with its date (UTC)."
        )
    else:
        note = "No hand-over recorded: the parties that acted, in order."
    appendix: list[Any] = []
    if not diagram.nodes:
        story.append(_p("No party recorded.", s.body))
    elif min(1.0, _FRAME_W / diagram.width, _DIAGRAM_MAX_H / diagram.height) >= _DIAGRAM_MIN_SCALE:
        story += [_drawing(diagram, fonts, _FRAME_W, _DIAGRAM_MAX_H), _p(note, s.note)]
    else:  # too large for page 1 (a batch's fan-out): a page of its own at the end; the PDF zooms
        story.append(
            _p(f"The diagram ({len(diagram.nodes)} parties) has a page of its own, at the end.", s.body)
        )
        appendix = [
            PageBreak(),
            _p("Custody diagram", s.h2),
            _p(note, s.note),
            Spacer(1, 6),
            _drawing(diagram, fonts, _FRAME_W, _FRAME_H - 60),
        ]

    parties = _parties(report)
    if parties:
        story.append(_p("Parties", s.h2))
        rows: list[list[Any]] = [[_p(h, s.cell_head) for h in ["#", "Party", "GLN", "Organisation id"]]]
        rows += [
            [_p(str(i), s.cell), _p(p.name, s.cell), _p(p.gln, s.cell_mono), _p(str(p.org_id), s.cell)]
            for i, p in enumerate(parties, start=1)
        ]
        story.append(
            _grid_table(
                rows, [18, 300, 110, 82], [("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, _STRIPE])]
            )
        )

    story.append(_p("Custody trail", s.h2))
    if report.steps:
        story.append(
            _p(
                f"{len(report.steps)} on-chain events in chain order. Under each: the full transaction hash, "
                "the signing key and the EPCIS Event Hash ID.",
                s.note,
            )
        )
        story += [Spacer(1, 3), _trail_table(report, s, fonts)]
    else:
        story.append(_p("No on-chain event recorded.", s.body))

    story.append(_p("Certificates", s.h2))
    if report.certificates:
        story.append(_certificates_table(report, s, fonts))
    else:
        story.append(_p("No certificate recorded.", s.body))

    story.append(_p("Status history", s.h2))
    if report.status_history:
        story.append(_status_table(report, s))
    else:
        story.append(_p("No status change recorded.", s.body))

    if report.holders or report.subject == "batch":
        story.append(_p("Holders", s.h2))
        story.append(_holders_table(report, s) if report.holders else _p("No holder recorded.", s.body))

    evidence_rows = [
        ("Chain id", _p(str(report.chain_id), s.cell)),
        ("Evidence block", _p(str(report.evidence_block), s.cell)),
        ("Evidence block hash", _p(report.evidence_block_hash, s.mono)),
    ]
    how_to_verify = (
        f"This report states the ledger's record as of block {report.evidence_block} "
        f"(hash above) of chain id {report.chain_id}. Each step of the trail cites the block, "
        "transaction and log index of its on-chain event, and the key that signed it. To check the "
        "report without trusting the rxledger API, verify the evidence bundle with "
        f'<font name="{fonts.mono}">rxledger verify-bundle</font>, and compare the evidence block hash '
        "with the one given by a node of the network that you trust."
    )
    story.append(
        KeepTogether(
            [
                _p("Chain evidence", s.h2),
                _key_value_table(evidence_rows, s),
                Spacer(1, 5),
                Paragraph(how_to_verify, s.body),
            ]
        )
    )
    story += appendix
    story.append(_define_total_pages(fonts))

    decorate = _page_decorations(report, fonts)
    out = io.BytesIO()
    frame = Frame(
        _MARGIN_X,
        _MARGIN_BOTTOM,
        _FRAME_W,
        _FRAME_H,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    doc = BaseDocTemplate(
        out,
        pagesize=A4,
        pageTemplates=[PageTemplate("page", frames=[frame], onPage=decorate)],
        title=f"Inspection report: {report.title}",
        author=report.generated_by,
        subject=f"Custody trail of a {report.subject}, as of block {report.evidence_block}",
        creator="rxledger",
    )
    doc.build(story)
    return out.getvalue()
