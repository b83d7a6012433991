"""Fonts, text and page geometry for the reports: DejaVu Sans (Latin, Greek, Cyrillic) when the
system has it (Debian: fonts-dejavu-core), otherwise the PDF standard fonts (Latin-1 only); dates,
shortened hashes and text fitted to a width; the A4 frame both the PDF and the SVG diagram use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

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


# A4 page geometry - the SVG diagram is laid out for the PDF frame width too
_PAGE_W, _PAGE_H = A4
_MARGIN_X = 15 * mm
_MARGIN_TOP = 20 * mm
_MARGIN_BOTTOM = 18 * mm
_FRAME_W = _PAGE_W - 2 * _MARGIN_X
_FRAME_H = _PAGE_H - _MARGIN_TOP - _MARGIN_BOTTOM
