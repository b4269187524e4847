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
from geo_service.api import tiles as vector_tiles
from geo_service.api.limits import BodyLimit
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
    errors.install(app)
    app.include_router(health.router)
    app.include_router(grids.router)
    app.include_router(locate.router)
    app.include_router(buildings.router)
    app.include_router(incidents.router)
    app.include_router(open311.router)
    app.include_router(coverage.router)
    app.include_router(ogc_features.router)
    app.include_router(vector_tiles.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def app_from_environment() -> FastAPI:
    """The app of a server process, built from GEO_* settings (uvicorn's factory)."""
    return create_app(get_settings())
