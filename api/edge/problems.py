"""RFC 9457 problem details (`application/problem+json`) for every error the API returns."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_JSON = "application/problem+json"
VALIDATION_TYPE = "urn:rxledger:problem:validation"
INTERNAL_TYPE = "urn:rxledger:problem:internal"
DATABASE_UNAVAILABLE_TYPE = "urn:rxledger:problem:database-unavailable"

log = logging.getLogger(__name__)


class Problem(Exception):
    """Raise from an endpoint to answer with a problem document. Extra keyword arguments become
    extension members (RFC 9457 section 3.2), e.g. `Problem(404, "Unknown batch", batch_id=...)`."""

    def __init__(
        self,
        status: int,
        title: str | None = None,
        *,
        detail: str | None = None,
        type: str = "about:blank",
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.type = type
        self.instance = instance
        self.headers = headers
        self.extensions = extensions
        super().__init__(f"{status} {self.title}: {detail}" if detail else f"{status} {self.title}")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            body["detail"] = self.detail
        if self.instance is not None:
            body["instance"] = self.instance
        body.update(jsonable_encoder(self.extensions))
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body(), status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers
        )


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _problem_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.response()


async def _validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": _field_name(err.get("loc", ())),
            "rule": err.get("type", "invalid"),
            "message": err.get("msg", ""),
        }
        for err in exc.errors()
    ]
    malformed = next((e for e in errors if e["rule"] == "json_invalid"), None)
    if malformed is not None:  # not JSON at all: a syntax error is 400 (RFC 9110 15.5.1), not 422
        detail = f"the body is not valid JSON: {malformed['message']}"
        return Problem(
            400,
            "Malformed JSON",
            detail=detail,
            type="urn:rxledger:problem:malformed-json",
            errors=[malformed],
        ).response()
    first = errors[0] if errors else {"field": "request", "rule": "invalid", "message": "invalid request"}
    detail = f"{first['field']}: {first['message']} (rule: {first['rule']})"
    if len(errors) > 1:
        detail += f"; and {len(errors) - 1} more"
    problem = Problem(422, "Request validation failed", detail=detail, type=VALIDATION_TYPE, errors=errors)
    return problem.response()


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    problem = Problem(exc.status_code, phrase, detail=detail, instance=request.url.path, headers=exc.headers)
    return problem.response()


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Problem(500, type=INTERNAL_TYPE, detail="unexpected server error; see the server log").response()


async def _database_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached (down, restarting, connection dropped): 503 with Retry-After,
    not a 500. Without this every request during a PostgreSQL restart answered 500, and uvicorn then
    closed the client's keep-alive connection as well (tests/faults/test_postgres_restarted.py). One
    log line, no traceback: an outage would otherwise log one per request. The driver's message is
    kept out of the answer (it names hosts and ports)."""
    first_line = next(iter(str(getattr(exc, "orig", None) or exc).splitlines()), "")
    log.warning(
        "database unavailable on %s %s: %s: %s",
        request.method,
        request.url.path,
        exc.__class__.__name__,
        first_line,
    )
    return Problem(
        503,
        "Database unavailable",
        type=DATABASE_UNAVAILABLE_TYPE,
        detail="the API's database cannot be reached right now; retry later (a write retried with the "
        "same Idempotency-Key is never done twice)",
        headers={"Retry-After": "5"},
    ).response()


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _problem_handler)
    # SQLAlchemy's wrappers of the driver's connection-level errors (psycopg: server down, shutting
    # down, starting up, connection lost; SQLite: locked, cannot open); other database errors (a
    # constraint, bad SQL) stay 500s
    app.add_exception_handler(OperationalError, _database_unavailable_handler)
    app.add_exception_handler(InterfaceError, _database_unavailable_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unhandled_handler)


class BodySizeLimit:
    """At most `max_body_size` bytes of request body, refused with a problem document before the app
    sees it: by the declared Content-Length, or for a chunked body by reading it up to the limit.
    (FastAPI's own limit answers in plain text, outside the problem handlers.)"""

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    def _problem(self, size: int | None) -> Problem:
        said = f"{size} bytes" if size is not None else "longer"
        return Problem(
            413,
            type="urn:rxledger:problem:payload-too-large",
            detail=f"the request body is {said}; this API takes at most {self.max_body_size} bytes",
            limit=self.max_body_size,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        # bytes.isdigit() is ASCII-only (str.isdigit() is not: node/gs1/charset.py)
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_size:
            await self._problem(int(declared)).response()(scope, receive, send)
            return
        if declared is not None or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)  # the server holds a declared body to its length
            return
        # No length (chunked): read the body here, up to the limit, then hand it on.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_body_size:
                await self._problem(None).response()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)


MAX_JSON_DEPTH = 100  # EPCIS documents nest about 10 deep; nothing legitimate comes near
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (strings skipped; no parsing)."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    depth = deepest = 0
    for b in brackets:
        depth += 1 if b in (0x5B, 0x7B) else -1
        deepest = max(deepest, depth)
    return deepest


class JsonDepthLimit:
    """JSON bodies nested deeper than MAX_JSON_DEPTH are refused (400) before anything parses them.
    Without this a 200 KB body of brackets crashes the process: py_ecc (imported by the Ethereum
    libraries) raises Python's recursion limit to 100,000, so json.loads recurses past the C stack."""

    def __init__(self, app: ASGIApp, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
        if scope["type"] != "http" or b"json" not in content_type.lower():
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if json_depth(bytes(body)) > self.max_depth:
            problem = Problem(
                400,
                type="urn:rxledger:problem:json-too-deep",
                detail=f"the JSON body nests deeper than {self.max_depth} levels",
                field="body",
                limit=self.max_depth,
            )
            await problem.response()(scope, receive, send)
            return
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)
