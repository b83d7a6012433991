"""Inspection reports for regulators: the custody trail of a pack, a container or a batch.

Another layer (api/read/reports/build.py) builds an :class:`InspectionReport` from the database and the
chain; these modules only render it, without I/O besides reading fonts:

- :func:`render_pdf` (pdf.py): an A4 report, multi-page when long, with a custody diagram;
- :func:`render_csv` (table.py): the trail, one row per on-chain step (RFC 4180);
- :func:`custody_svg` (diagram.py): the custody diagram alone, as a standalone SVG for web pages.

What a report holds is in model.py; fonts, text fitting and the page geometry in typeset.py. This
module is the one the rest of the API imports.
"""

from __future__ import annotations

from api.read.reports.diagram import custody_svg
from api.read.reports.model import CertificateRow, Handover, InspectionReport, Party, StatusChange, Step
from api.read.reports.pdf import render_pdf
from api.read.reports.table import CSV_COLUMNS, render_csv

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
