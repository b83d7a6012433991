"""Request ids and the audit trail, as a plain ASGI middleware.

Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) runs every request in a task group with
its body streamed through memory channels; on the verification hot path that cost more than the
verification itself (scripts/bench-verify --profile). This layer only wraps `send`: it stamps
`X-Request-ID` on the answer and, for a request the audit trail records, holds the answer's first
message until the entry is committed (group commit, `api.edge.audit`), so no answer leaves before
its audit entry is durable.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from sqlalchemy import Engine
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.edge import audit

log = logging.getLogger(__name__)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POSTs that change nothing and ask nothing about a pack: identifier parsing, checking a file against
# a batch's certificates. Not audited. Verifications are (the EU FMD's repositories keep every
# verification request: who asked about which pack, when, and what they were told).
UNAUDITED_POSTS = re.compile(r"^/v1/(identifiers/parse|batches/[^/]+/certificates/verify)$")


def audited(method: str, path: str) -> bool:
    if method in WRITE_METHODS:
        return not UNAUDITED_POSTS.match(path)
    return method == "GET" and path.startswith("/vrs/01/")  # a VRS verification request


def outcome(status: int) -> str:
    if status == 202:
        return "accepted"
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    return "rejected" if status < 500 else "error"


class RequestIdAndAudit:
    """Every request gets an id (the client's X-Request-ID, or a new one); every request that could
    change something, and every verification, is written to the audit log with its outcome before
    its answer is sent."""

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:100]
                break
        rid = rid or uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        method, path = scope["method"], scope["path"]
        record = audited(method, path)

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = rid
                if record:
                    await self._record(rid, method, path, int(message["status"]), state)
            await send(message)

        await self.app(scope, receive, send_stamped)

    async def _record(self, rid: str, method: str, path: str, status: int, state: dict[str, Any]) -> None:
        principal = state.get("principal")
        try:
            await audit.append_async(
                self.engine,
                request_id=rid,
                user_id=getattr(principal, "user_id", None),
                username=getattr(principal, "username", None),
                org_id=getattr(principal, "org_id", None),
                method=method,
                path=path,
                action=state.get("action") or path,
                status=status,
                outcome=outcome(status),
                operation_id=state.get("operation_id"),
                # what the route adds (e.g. an e-signature attempt: who, typed username, count)
                detail=state.get("audit_detail"),
            )
        except Exception:  # the answer is already decided; a lost audit row must be loud
            log.exception("could not write the audit entry of request %s", rid)
