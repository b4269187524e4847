"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy import Engine

from geo_service import __version__
from geo_service.api import buildings, coverage, errors, grids, health, incidents, locate, open311
from geo_service.api import features as ogc_features
from geo_service.api import map as web_map_routes
from geo_service.api import metrics as prometheus
from geo_service.api import tiles as vector_tiles
from geo_service.api.auth import require
from geo_service.api.limits import BodyLimit
from geo_service.api.observe import Metrics, Observe, configure_logging
from geo_service.auth.service import TokenCache
from geo_service.db.engine import connect, read_pool
from geo_service.layers import LayerService
from geo_service.settings import Settings, get_settings


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """Build the app; without an engine, connect (and migrate) at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Request handlers run in anyio's thread pool. Beyond a few threads per core they only
        # fight over the GIL (measured: 40 threads serve fewer locates than 8).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        own = engine is None
        if own:
            app.state.engine = connect(settings)
        app.state.read_pool = read_pool(app.state.engine, settings.pool_size)
        await app.state.read_pool.open(wait=False)
        yield
        await app.state.read_pool.close()
        if own:
            app.state.engine.dispose()

    app = FastAPI(
        title="geo-service",
        version=__version__,
        description="Grid management and 15-minute life-circle mapping on PostGIS.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.layers = LayerService.from_settings(settings)
    app.state.tokens = TokenCache(settings.auth_cache_s)
    app.state.metrics = Metrics()
    app.state.metrics.watch_pools(app.state)
    errors.install(app)
    # Who may call what: the permission table in geo_service/auth/policy.py, one group per
    # router here; incidents and open311 mix groups and check per route.
    app.include_router(health.router)  # public, and touches no token: probes send none
    app.include_router(prometheus.router, dependencies=[require("metrics")])
    app.include_router(grids.router, dependencies=[require("qa")])
    app.include_router(locate.router, dependencies=[require("locate")])
    app.include_router(buildings.router, dependencies=[require("buildings")])
    app.include_router(incidents.router)
    app.include_router(open311.router)
    app.include_router(coverage.router, dependencies=[require("coverage")])
    app.include_router(ogc_features.router, dependencies=[require("layers")])
    app.include_router(vector_tiles.router, dependencies=[require("layers")])
    app.include_router(web_map_routes.router, dependencies=[require("map")])
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, max_query_bytes=settings.max_query_bytes
    )
    app.add_middleware(Observe, metrics=app.state.metrics)  # outermost: sees every answer
    return app


def app_from_environment() -> FastAPI:
    """The app of a server process, built from GEO_* settings (uvicorn's factory)."""
    settings = get_settings()
    configure_logging(settings.log_json, settings.log_level)
    return create_app(settings)
