"""The trail as CSV, one row per on-chain step (RFC 4180: comma, CRLF, quotes doubled)."""

from __future__ import annotations

import csv
import io

from api.read.reports.model import InspectionReport
from api.read.reports.typeset import _iso

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
