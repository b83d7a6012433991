"""FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import Engine

from api.health import Health, collect_health
from api.problems import install_problem_handlers
from node.db import make_engine
from node.settings import Settings, get_settings


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="rxledger",
        summary="Pharmaceutical traceability on a permissioned ledger",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    install_problem_handlers(app)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

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
