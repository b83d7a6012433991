"""The A4 inspection report (reportlab platypus), multi-page when long, with the custody diagram."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
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

from api.read.reports.diagram import _INK, _MUTED, _drawing, _layout, _ranks
from api.read.reports.model import InspectionReport, Party
from api.read.reports.typeset import (
    _FRAME_H,
    _FRAME_W,
    _MARGIN_BOTTOM,
    _MARGIN_X,
    _PAGE_H,
    _PAGE_W,
    _current_fonts,
    _fit,
    _Fonts,
    _short,
    _stamp,
    _utc,
    _width,
)

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
