"""FastAPI application factory."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import Engine

from api.database import api_engine
from api.edge.problems import BodySizeLimit, JsonDepthLimit, install_problem_handlers
from api.edge.request_audit import RequestIdAndAudit
from api.edge.throttle import FailureThrottle
from api.health import Health, collect_health
from api.read.notify import start_notifier
from api.routes import (
    admin,
    batches,
    custody,
    epcis,
    gs1,
    notifications,
    operations,
    provenance,
    verification,
)
from api.routes import audit as audit_routes
from api.routes.common import chain_unavailable
from api.routes.openapi import PROBLEM_RESPONSES, install_openapi
from api.runtime import ChainUnavailable, Runtime
from api.web import pages
from api.write.submitter import start_submitter
from node.settings import Settings, get_settings

log = logging.getLogger(__name__)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]


def create_app(
    settings: Settings | None = None, *, run_submitter: bool = True, mined: threading.Event | None = None
) -> FastAPI:
    """The API. `run_submitter` runs the outbox submitter in this process (exactly one process per
    database should; a lease in the database keeps a second one idle). `mined` is set whenever the
    submitter sees its transaction mined: pass an indexer in the same process the same event."""
    settings = settings or get_settings()
    engine = api_engine(settings.database_url, tolerate_unreachable=True)
    runtime = Runtime.create(settings, engine)
    if mined is not None:
        runtime.mined = mined

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = start_submitter(runtime) if run_submitter else None
        # the notifier works where the submitter does: one per database, by the same lease
        notifier = start_notifier(runtime, worker[0].acquire_lease) if worker is not None else None
        yield
        if notifier is not None:
            notifier[1].set()
            notifier[0].join(timeout=10)
        if worker is not None:
            _, thread, stop = worker
            stop.set()
            runtime.wake.set()
            thread.join(timeout=10)
        engine.dispose()

    app = FastAPI(
        title="rxledger",
        summary="Pharmaceutical traceability on a permissioned ledger",
        version="0.1.0",
        lifespan=lifespan,
        # every route's errors are problem documents (api/routes/openapi.py); FastAPI alone documents a 422
        # with a body this API never sends, and no other 4xx
        responses=PROBLEM_RESPONSES,
    )
    install_openapi(app)
    app.state.settings = settings
    app.state.engine = engine
    app.state.runtime = runtime
    app.state.auth_throttle = FailureThrottle(
        settings.auth_failure_limit, settings.auth_failure_window_seconds
    )
    install_problem_handlers(app)

    async def _chain_unavailable(_: Request, exc: Exception) -> Response:
        return chain_unavailable(exc).response()

    # ChainUnavailable anywhere (the pre-check, making a key): 503 with Retry-After, nothing accepted
    app.add_exception_handler(ChainUnavailable, _chain_unavailable)
    # added last, runs first: the size limit, then the nesting limit on what it let through
    app.add_middleware(JsonDepthLimit)
    app.add_middleware(BodySizeLimit, max_body_size=settings.max_request_bytes)
    # The router tries routes in this order, one by one: the counter's verification and the custody
    # writes first (matching 60 routes before /v1/verify cost 0.6 ms a request; no path of one
    # router overlaps another's, so the order changes nothing else)
    for module in (
        verification,
        custody,
        provenance,
        operations,
        batches,
        gs1,
        epcis,
        admin,
        notifications,
        audit_routes,
    ):
        app.include_router(module.router)
    pages.install(app)

    # outermost of ours: the request id and the audit entry wrap the limits' answers too
    app.add_middleware(RequestIdAndAudit, engine=engine)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")  # the pages; the API reference is at /docs

    # A plain `def`: the checks block on network I/O, so FastAPI runs them in its thread pool.
    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "Some component is down or mismatched"}},
        tags=["operations"],
    )
    def health(settings: SettingsDep, engine: EngineDep) -> JSONResponse:
        report = collect_health(settings, engine)
        return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.status == "ok" else 503)

    return app
