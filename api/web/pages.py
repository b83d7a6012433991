"""Server-rendered pages for people who will not use curl.

Each page is a Jinja2 template rendered here (labels, forms, help: everything that does not depend on
who is signed in) plus one small script that asks the partner API for the data, with the API token the
user typed at sign-in. The token lives in the browser's sessionStorage only: the server never sets a
cookie, so the pages add no second way in and no CSRF surface. Nothing to build: the templates and
scripts are files in this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.edge.rules import rule_problem

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

# Scripts and styles come from /ui/static only: no inline script can run, whatever a value shown
# on a page contains.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    purpose: str


PAGES = {
    p.slug: p
    for p in (
        Page("counter", "Counter", "Verify and dispense packs at the pharmacy"),
        Page("warehouse", "Warehouse", "Stock, inbound shipments, shipping and packing"),
        Page("quality", "Quality", "Batches, certificates, release and recall"),
        Page("inspector", "Inspector", "Trails, custody diagrams, evidence and alerts"),
    )
}

router = APIRouter(prefix="/ui", include_in_schema=False)


def _render(request: Request, template: str, page: Page | None) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"page": page, "pages": list(PAGES.values())}, headers=SECURITY_HEADERS
    )


@router.get("", response_class=RedirectResponse)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/", response_class=HTMLResponse)
def sign_in(request: Request) -> HTMLResponse:
    return _render(request, "signin.html", None)


@router.get("/{slug}", response_class=HTMLResponse)
def page(slug: str, request: Request) -> HTMLResponse:
    found = PAGES.get(slug)
    if found is None:
        raise rule_problem(404, "unknown-page", f"no page {slug!r}", field="page", pages=sorted(PAGES))
    return _render(request, f"{slug}.html", found)


def install(app: FastAPI) -> None:
    """Add the pages and their static files to `app`."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
