"""Inspection reports: the PDF rendered to pixels and text with pdfium and looked at; CSV and SVG parsed."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from PIL import Image

from api.read.reports import typeset
from api.read.reports.inspection import (
    CSV_COLUMNS,
    CertificateRow,
    Handover,
    InspectionReport,
    Party,
    StatusChange,
    Step,
    custody_svg,
    render_csv,
    render_pdf,
)

MANUFACTURER = Party(101, "Contract Manufacturing GmbH", "4001234000015")
LOGISTICS = Party(102, "Alpine Logistics 3PL", "7612345000015")
WHOLESALER = Party(103, "Euro Wholesale Distribution", "4067890000028")
PHARMACY = Party(104, 'City Pharmacy "Zur Linde", Wien', "9001100000038")  # a comma and quotes
PARTIES = (MANUFACTURER, LOGISTICS, WHOLESALER, PHARMACY)

GTIN, SERIAL, LOT, SSCC = "09506000134352", "PK7Q2X9A", "LOT24A117", "040987650007000006"
T0 = datetime(2025, 3, 4, 7, 12, 5, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"
SVG_NS = {"svg": "http://www.w3.org/2000/svg"}


def _hex(seed: str, chars: int = 64) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:chars]


def _event_id(seed: str) -> str:
    return f"ni:///sha-256;{_hex('event' + seed)}?ver=CBV2.0"


def _signer(party: Party) -> str:
    return "0x" + _hex(f"key of {party.gln}", 40)


def _step(
    n: int,
    action: str,
    party: Party,
    counterparty: Party | None = None,
    detail: str = "",
    *,
    event: bool = True,
) -> Step:
    return Step(
        action=action,
        at=T0 + timedelta(hours=11 * n, minutes=7 * n),
        party=party,
        counterparty=counterparty,
        block_number=1021 + 9 * n,
        tx_hash="0x" + _hex(f"tx {n}"),
        log_index=n % 3,
        signer=_signer(party),
        event_id=_event_id(str(n)) if event else None,
        detail=detail,
    )


def _pack_steps() -> list[Step]:
    m, lg, w, ph = PARTIES
    return [
        _step(0, "commissioned", m, detail=f"lot {LOT}, expiry 2027-06-30"),
        _step(1, "packed", m, detail=f"into SSCC {SSCC}"),
        _step(2, "shipped", m, lg, "shipment SHP-2025-00417"),
        _step(3, "received", lg, m, "shipment SHP-2025-00417"),
        _step(4, "shipped", lg, w, "shipment SHP-2025-00552"),
        _step(5, "received", w, lg, "shipment SHP-2025-00552, 1 case"),
        _step(6, "unpacked", w, detail=f"from SSCC {SSCC}", event=False),
        _step(7, "shipped", w, ph, "delivery note 88123"),
        _step(8, "received", ph, w),
        _step(9, "decommissioned (dispensed)", ph, detail="dispensed against prescription"),
    ]


def _report(steps: list[Step] | None = None, **changes: Any) -> InspectionReport:
    m, lg, w, ph = PARTIES
    steps = _pack_steps() if steps is None else steps
    report = InspectionReport(
        title=f"Pack {GTIN} / {SERIAL}",
        subject="pack",
        identifiers={
            "GTIN": GTIN,
            "Serial": SERIAL,
            "Lot": LOT,
            "Expiry": "2027-06-30",
            "SSCC (last case)": SSCC,
            "Key": f"(01){GTIN}(21){SERIAL}",
        },
        generated_at=datetime(2025, 3, 12, 9, 30, tzinfo=UTC),
        generated_by="Dr. Anna Berger, Inspectorate (AGES Medizinmarktaufsicht)",
        chain_id=31337,
        evidence_block=1157,
        evidence_block_hash="0x" + _hex("block 1157"),
        status="dispensed",
        steps=steps,
        certificates=[
            CertificateRow(
                "batch release certificate",
                _hex("release LOT24A117"),
                _signer(m),
                m,
                "QP certifies the batch for release (EU GMP Annex 16)",
                T0 - timedelta(days=2),
            ),
            CertificateRow(
                "certificate of analysis",
                _hex("coa"),
                _signer(m),
                m,
                "specification met",
                T0 - timedelta(days=3),
            ),
        ],
        status_history=[
            StatusChange(T0, "", "active", m, "commissioned"),
            StatusChange(T0 + timedelta(hours=22), "active", "in transit", m, "shipment SHP-2025-00417"),
            StatusChange(T0 + timedelta(days=4), "active", "dispensed", ph, "dispensed against prescription"),
        ],
        handovers=[
            Handover(m, lg, T0 + timedelta(hours=22, minutes=14), "SHP-2025-00417"),
            Handover(lg, w, T0 + timedelta(days=2, hours=3)),
            Handover(w, ph, T0 + timedelta(days=3, hours=5)),
        ],
    )
    return replace(report, **changes)


def _pdf_text(pdf: pdfium.PdfDocument) -> list[str]:
    return [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]


def _flat(text: str) -> str:
    """Extracted text with line breaks and runs of spaces as one space (table cells wrap words)."""
    return re.sub(r"\s+", " ", text)


def _count_ink(image: Image.Image) -> int:
    """Pixels of the diagram's dark blue (#1F4E79, anti-aliased) in an RGB image."""
    data = image.tobytes()
    return sum(1 for r, b in zip(data[0::3], data[2::3], strict=True) if b > r + 40 and r < 140 and b < 200)


def test_pdf_page_one_has_content_and_is_saved_as_png(tmp_path: Path) -> None:
    data = render_pdf(_report())
    assert data.startswith(b"%PDF-")
    (tmp_path / "pack.pdf").write_bytes(data)
    pdf = pdfium.PdfDocument(data)
    page = pdf[0]
    width, height = page.get_size()
    assert (round(width), round(height)) == (595, 842)  # A4
    image = page.render(scale=100 / 72).to_pil().convert("L")
    image.save(tmp_path / "pack-page1.png")
    histogram = image.histogram()
    dark = sum(histogram[:200]) / sum(histogram)
    assert dark > 0.03, f"page 1 nearly blank ({dark:.1%} non-white)"
    assert Image.open(tmp_path / "pack-page1.png").size == image.size


def test_pdf_text_holds_identifiers_parties_event_ids_and_evidence() -> None:
    report = _report()
    pages = _pdf_text(pdfium.PdfDocument(render_pdf(report)))
    text = _flat(" ".join(pages))
    for value in (GTIN, SERIAL, SSCC, LOT, "2027-06-30", "dispensed", report.generated_by):
        assert value in text
    for party in PARTIES:
        assert party.name in text
        assert party.gln in text
    for step in report.steps:
        assert step.tx_hash in text  # full hashes, on one line each (never wrapped)
        assert step.signer in text
        if step.event_id:
            assert step.event_id in "".join(pages), step.event_id
    for certificate in report.certificates:
        assert certificate.sha256 in text
    assert "Chain evidence" in text
    assert report.evidence_block_hash in "".join(pages)
    assert "31337" in text and "1157" in text
    assert "rxledger verify-bundle" in text
    assert "Generated 2025-03-12 09:30:00 UTC by Dr. Anna Berger" in text  # the footer stamp


def test_pdf_diagram_is_drawn_under_its_heading(tmp_path: Path) -> None:
    pdf = pdfium.PdfDocument(render_pdf(_report()))
    page = pdf[0]
    textpage = page.get_textpage()
    found = textpage.search("Custody diagram", match_case=True).get_next()
    assert found is not None, "no diagram heading on page 1"
    _, heading_bottom, _, _ = textpage.get_charbox(found[0])
    width, height = page.get_size()
    top, bottom = heading_bottom - 2, heading_bottom - 130  # PDF points, y upwards
    in_region = _flat(textpage.get_text_bounded(0, bottom, width, top))
    for party in PARTIES[:3]:
        assert party.name in in_region
    assert "City Pharmacy" in in_region
    for date in ("2025-03-05", "2025-03-06", "2025-03-07"):  # the hand-overs' dates label the arrows
        assert date in in_region

    scale = 2.0
    image = page.render(scale=scale).to_pil().convert("RGB")
    crop = image.crop((0, int((height - top) * scale), int(width * scale), int((height - bottom) * scale)))
    crop.save(tmp_path / "diagram.png")
    ink = _count_ink(crop)
    assert ink > 2000, f"only {ink} pixels of box borders and arrows in the diagram region"
    above = image.crop((0, 0, int(width * scale), int((height - top) * scale)))
    assert _count_ink(above) < ink  # it is the diagram that is drawn


def test_nothing_runs_past_the_margins() -> None:
    pdf = pdfium.PdfDocument(render_pdf(_report()))
    for index in range(len(pdf)):
        page = pdf[index]
        width, _ = page.get_size()
        textpage = page.get_textpage()
        for n in range(textpage.count_rects()):
            left, _, right, _ = textpage.get_rect(n)
            assert left >= 40 and right <= width - 40, (index, textpage.get_text_bounded(left, _, right, _))


def test_long_trail_runs_onto_numbered_pages() -> None:
    m, lg, w, _ = PARTIES
    cycle = [("shipped", m, lg), ("received", lg, m), ("shipped", lg, w), ("received", w, lg)]
    steps = [
        _step(i, cycle[i % 4][0], cycle[i % 4][1], cycle[i % 4][2], f"shipment {i // 2}") for i in range(120)
    ]
    report = _report(steps)
    data = render_pdf(report)
    pdf = pdfium.PdfDocument(data)
    pages = _pdf_text(pdf)
    total = len(pages)
    assert total >= 4
    for number, text in enumerate(pages, start=1):
        assert re.search(rf"Page {number} of\s*{total}\b", text), text[-200:]
    for text in pages[1:-1]:
        assert "Time (UTC)" in text and "Counterparty" in text  # the trail's header row repeats
    everything = "".join(pages)
    assert all(step.event_id in everything for step in steps if step.event_id)
    assert "Chain evidence" in pages[-1]


def test_batch_report_lists_holders() -> None:
    report = _report(
        title=f"Batch {LOT} of {GTIN}",
        subject="batch",
        identifiers={"GTIN": GTIN, "Lot": LOT, "Batch id": "B-2025-0117"},
        status="released",
        holders=[
            (WHOLESALER.name, "in stock", 1180),
            (PHARMACY.name, "dispensed", 36),
            ("Müller & Söhne <Apotheke>", "in stock", 240),
        ],
    )
    text = _flat(" ".join(_pdf_text(pdfium.PdfDocument(render_pdf(report)))))
    assert "Holders" in text
    assert "Euro Wholesale Distribution in stock 1,180" in text
    assert "Total 1,456" in text
    assert "B-2025-0117" in text
    assert "Müller & Söhne <Apotheke> in stock 240" in text  # markup characters escaped, not parsed


def test_large_fan_out_gets_a_diagram_page_of_its_own() -> None:
    m, lg, w, _ = PARTIES
    pharmacies = [Party(200 + i, f"Apotheke Nr. {i} am Stadtplatz", f"900110000{i:03d}9") for i in range(24)]
    handovers = [Handover(m, lg, T0), Handover(lg, w, T0 + timedelta(days=1))]
    handovers += [Handover(w, p, T0 + timedelta(days=2 + i % 9)) for i, p in enumerate(pharmacies)]
    report = _report(
        subject="batch", handovers=handovers, holders=[(p.name, "dispensed", 12) for p in pharmacies]
    )
    pdf = pdfium.PdfDocument(render_pdf(report))
    pages = [_flat(text) for text in _pdf_text(pdf)]
    assert "The diagram (27 parties) has a page of its own, at the end." in pages[0]
    last = pdf[len(pdf) - 1]
    assert "Custody diagram" in pages[-1]
    assert all(p.name in pages[-1] and p.gln in pages[-1] for p in pharmacies)  # legible, if small
    width, height = last.get_size()
    image = last.render(scale=1).to_pil().convert("RGB")
    assert _count_ink(image.crop((0, 100, int(width), int(height) - 60))) > 3000
    svg = ET.fromstring(custody_svg(report))
    assert len(svg.findall(".//svg:g[@class='party']", SVG_NS)) == 27
    assert len(svg.findall(".//svg:g[@class='handover']", SVG_NS)) == 26


def test_report_without_hand_over_or_certificate() -> None:
    report = _report(
        [_step(0, "commissioned", MANUFACTURER)], certificates=[], status_history=[], handovers=[]
    )
    text = _flat(" ".join(_pdf_text(pdfium.PdfDocument(render_pdf(report)))))
    assert "No hand-over recorded" in text and "No certificate recorded" in text
    svg = ET.fromstring(custody_svg(report))
    assert len(svg.findall(".//svg:g[@class='party']", SVG_NS)) == 1
    assert svg.findall(".//svg:g[@class='handover']", SVG_NS) == []


def test_csv_has_one_quoted_row_per_step() -> None:
    report = _report()
    text = render_csv(report)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    assert '"City Pharmacy ""Zur Linde"", Wien"' in text  # RFC 4180: quoted, quotes doubled
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert len(body) == len(report.steps)
    for row, step in zip(body, report.steps, strict=True):
        assert row["action"] == step.action
        assert row["party"] == step.party.name and row["party_gln"] == step.party.gln
        assert row["tx_hash"] == step.tx_hash and row["signer"] == step.signer
        assert row["block_number"] == str(step.block_number) and row["log_index"] == str(step.log_index)
        assert row["event_id"] == (step.event_id or "")
        assert row["detail"] == step.detail
        assert datetime.fromisoformat(row["time_utc"]) == step.at and row["time_utc"].endswith("Z")
    assert body[7]["counterparty"] == 'City Pharmacy "Zur Linde", Wien'
    assert body[8]["party"] == 'City Pharmacy "Zur Linde", Wien'
    assert body[0]["counterparty"] == body[0]["counterparty_gln"] == ""
    assert body[6]["event_id"] == ""


def test_svg_has_a_node_per_party_and_an_arrow_per_hand_over(tmp_path: Path) -> None:
    m, lg, w, ph = PARTIES
    odd = Party(105, "Müller & Söhne <Apotheke>", "4001234000022")
    handovers = [
        Handover(m, lg, datetime(2025, 3, 4, 22, 0, tzinfo=UTC), "SHP-2025-00417"),
        Handover(m, lg, datetime(2025, 3, 5, 6, 0, tzinfo=UTC), "SHP-2025-00418"),  # a second shipment
        Handover(lg, w, datetime(2025, 3, 6, 10, 0, tzinfo=UTC)),
        Handover(w, ph, datetime(2025, 3, 7, 12, 0, tzinfo=UTC)),
        Handover(ph, w, datetime(2025, 3, 9, 8, 30, tzinfo=UTC), "return R-17"),  # back: an arc below
        Handover(w, odd, datetime(2025, 3, 11, 9, 0, tzinfo=UTC)),
        Handover(m, w, datetime(2025, 3, 12, 9, 0, tzinfo=UTC), "direct"),  # skips a column: an arc above
    ]
    text = custody_svg(_report(handovers=handovers))
    (tmp_path / "custody.svg").write_text(text, encoding="utf-8")
    svg = ET.fromstring(text)
    assert svg.tag == f"{SVG}svg"
    assert float(svg.get("width", "0")) > 300 and svg.get("viewBox", "").startswith("0 0 ")
    nodes = svg.findall(".//svg:g[@class='party']", SVG_NS)
    assert [n.get("data-gln") for n in nodes] == [p.gln for p in (m, lg, w, ph, odd)]  # first appearance
    names = [
        " ".join(t.text or "" for t in n.findall("svg:text[@class='party-name']", SVG_NS)) for n in nodes
    ]
    assert "Contract Manufacturing GmbH" in names and "Müller & Söhne <Apotheke>" in names
    arrows = svg.findall(".//svg:g[@class='handover']", SVG_NS)
    assert len(arrows) == len(handovers)
    for arrow, handover in zip(arrows, handovers, strict=True):
        assert arrow.find("svg:path", SVG_NS) is not None
        assert arrow.find("svg:polygon[@class='arrowhead']", SVG_NS) is not None
        date = arrow.find("svg:text[@class='handover-date']", SVG_NS)
        assert date is not None and date.text == handover.at.date().isoformat()
        assert (arrow.get("data-from-gln"), arrow.get("data-to-gln")) == (
            handover.sender.gln,
            handover.receiver.gln,
        )
    xs = [float(r.get("x", "0")) for n in nodes for r in n.findall("svg:rect", SVG_NS)]
    assert xs[:3] == sorted(xs[:3]) and len(set(xs[:3])) == 3  # left to right along the chain
    first, second = (a.find("svg:path", SVG_NS) for a in arrows[:2])
    assert first is not None and second is not None and first.get("d") != second.get("d")  # side by side


def test_standard_fonts_when_dejavu_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(typeset, "FONT_DIRS", (str(tmp_path),))
    pdf = pdfium.PdfDocument(render_pdf(_report()))
    text = _flat(" ".join(_pdf_text(pdf)))
    assert all(party.name in text for party in PARTIES)
    assert "Helvetica" in custody_svg(_report())


def test_greek_and_cyrillic_names_with_dejavu() -> None:
    if typeset._current_fonts().regular == "Helvetica":
        pytest.skip("DejaVu Sans is not installed (Debian: fonts-dejavu-core)")
    athens = Party(106, "Φαρμακείο Αθηνών", "5200001000046")
    sofia = Party(107, "Аптека София ООД", "3800001000002")
    report = _report(
        [_step(0, "shipped", athens, sofia), _step(1, "received", sofia, athens)],
        handovers=[Handover(athens, sofia, T0)],
    )
    text = _flat(" ".join(_pdf_text(pdfium.PdfDocument(render_pdf(report)))))
    assert athens.name in text and sofia.name in text
