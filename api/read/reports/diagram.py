"""The custody diagram: one node per distinct party, one arrow per hand-over labelled with its date (UTC).

Parties are laid out left to right in order of first appearance: a receiver seen for the first time
goes one column right of its sender, parties of the same column are stacked. A hand-over between
adjacent columns is a straight arrow (a return points back, beside the delivery); one that skips
columns arcs above (forwards) or below (backwards), one within a column bends out to the right;
repeated hand-overs between the same parties are drawn side by side. Drawn for the PDF (a reportlab
Drawing) and as a standalone SVG for web pages (custody_svg)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from reportlab.graphics.shapes import Drawing, Group, Polygon, Rect, String
from reportlab.graphics.shapes import Path as ShapePath
from reportlab.lib import colors

from api.read.reports.model import Handover, InspectionReport, Party
from api.read.reports.typeset import _FRAME_W, _current_fonts, _day, _fit, _Fonts, _iso, _stamp, _width, _wrap

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
