"""The FastAPI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from geo_service import __version__
from geo_service.api import (
    buildings,
    coverage,
    division,
    errors,
    fieldwork,
    grids,
    health,
    incidents,
    locate,
    open311,
    pages,
    public,
    workers,
)
from geo_service.api import features as ogc_features
from geo_service.api import map as web_map_routes
from geo_service.api import metrics as prometheus
from geo_service.api import tiles as vector_tiles
from geo_service.api.auth import require
from geo_service.api.documented import document_errors
from geo_service.api.hot import HotRoute, HotRoutes
from geo_service.api.limits import BodyLimit, NulGuard, RateLimiter
from geo_service.api.observe import Metrics, Observe, configure_logging
from geo_service.api.warmup import build_routes
from geo_service.auth.service import TokenCache
from geo_service.coverage.planning import Models
from geo_service.db.engine import connect, read_pool
from geo_service.db.replicas import Reads
from geo_service.errors import NotFound
from geo_service.layers import LayerService
from geo_service.settings import Settings, get_settings

DOCS_ASSETS = "/docs/assets"
# fastapi-offline's own copies of Swagger UI, ReDoc and FastAPI's icon. importlib.resources
# finds them in a plain (non-editable) install too; pip always unpacks them into a real folder.
_ASSETS = Path(str(files("fastapi_offline") / "static"))
# Browsers ask for /favicon.ico on every page that names no icon (the map views): a month of
# caching spares them and the request log. The icon only changes with the package.
_FAVICON_CACHE = "public, max-age=2592000"
# A day for the docs' scripts: after an upgrade of fastapi-offline, stale for a day at most.
_ASSETS_CACHE = "public, max-age=86400"


class _DocsAssets(StaticFiles):
    """The packaged docs files, cached a day; a miss names the file like our other 404s."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file, or NotFound naming it."""
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            raise NotFound(f"no docs file {scope['path']!r}") from None
        response.headers.setdefault("Cache-Control", _ASSETS_CACHE)
        return response


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """Build the app; without an engine, connect (and migrate) at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Request handlers run in anyio's thread pool. Beyond a few threads per core they only
        # fight over the GIL (measured: 40 threads serve fewer locates than 8).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.server.threads
        own = engine is None
        if own:
            app.state.engine = connect(settings)
        app.state.read_pool = read_pool(app.state.engine, settings.database.pool_size)
        await app.state.read_pool.open(wait=False)
        # Where the read-only doors read: the standbys of GEO_DATABASE_READ_URLS, else the
        # primary's engine and pool above (tokens and /healthz stay on the primary).
        app.state.reads = await Reads.open(settings.database, app.state.engine, app.state.read_pool)
        # What-if and suggest's model of the latest compute, loaded while the server starts
        # (about 1.5 s for a city): the planner's first what-if is not the slow one.
        # (/readyz answers 503 until both are done)
        app.state.warming = [
            ("coverage model", app.state.coverage_models.warm(app.state.engine, settings)),
            ("routes", build_routes(app)),  # FastAPI's handling of each, built on first use
        ]
        yield
        await app.state.reads.close()
        await app.state.read_pool.close()
        if own:
            app.state.engine.dispose()

    app = FastAPI(
        title="geo-service",
        version=__version__,
        description="Grid management and 15-minute life-circle mapping on PostGIS.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their scripts from a CDN: _offline_docs instead
        redoc_url=None,
        # The service's own request log, request ids and Prometheus metrics (api/observe.py)
        # are its observability. FastAPI's native OpenTelemetry looked up the global providers
        # on every request (none is configured here): 4% of a locate's Python.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.warming = []  # (what, thread) readied at start: see /readyz
    app.state.layers = LayerService.from_settings(settings)
    app.state.tokens = TokenCache(settings.auth.cache_s)
    app.state.metrics = Metrics()
    app.state.coverage_models = Models()  # what-if and suggest's model, per compute
    app.state.public_limiter = RateLimiter(settings.server.public_rate_per_minute)
    app.state.metrics.watch_pools(app.state)
    errors.install(app)
    document_errors(app)
    _offline_docs(app)
    # Who may call what: the permission table in geo_service/auth/policy.py, one group per
    # router here; incidents and open311 mix groups and check per route.
    app.include_router(health.router)  # public, and touches no token: probes send none
    app.include_router(prometheus.router, dependencies=[require("metrics")])
    app.include_router(division.router)  # before grids: /grids/proposals is no grid code
    app.include_router(grids.router)  # each route names its permission
    app.include_router(workers.router)  # each route names its permission
    app.include_router(public.router, dependencies=[require("public")])
    app.include_router(locate.router, dependencies=[require("locate")])
    app.include_router(buildings.router, dependencies=[require("buildings")])
    app.include_router(incidents.router)
    app.include_router(open311.router)
    app.include_router(coverage.router, dependencies=[require("coverage")])
    app.include_router(fieldwork.router)  # each route names its permission
    app.include_router(ogc_features.router, dependencies=[require("layers")])
    app.include_router(vector_tiles.router, dependencies=[require("layers")])
    app.include_router(web_map_routes.router, dependencies=[require("map")])
    # /find and /m/ hold no data (the API they call checks the caller): no token checked, so
    # that an installed phone page, which keeps its token itself, always opens.
    app.include_router(pages.router)
    # The dispatcher's locate, past FastAPI's routing and dependencies (api/hot.py), with the
    # permission its router has above.
    app.add_middleware(HotRoutes, routes=[HotRoute(locate.ONE_POINT_ROUTE, "locate")])
    if settings.database.read_urls:  # a read that lost its standby runs again
        app.add_middleware(errors.RetryReads)
    app.add_middleware(NulGuard)  # inside BodyLimit: what it buffers is already bounded
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.server.max_body_bytes,
        max_query_bytes=settings.server.max_query_bytes,
    )
    app.add_middleware(errors.InternalErrors)  # a JSON 500 that keeps the connection usable
    app.add_middleware(Observe, metrics=app.state.metrics)  # outermost: sees every answer
    return app


def _offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI), /redoc, Swagger UI's OAuth2 redirect and /favicon.ico, all from
    packaged files so they work without internet. Public, like /openapi.json: no `require`."""
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(DOCS_ASSETS, _DocsAssets(directory=_ASSETS), name="docs-assets")

    def root(request: Request) -> str:
        # Behind a proxy that mounts us under a prefix, every URL the page loads needs it too.
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        """Swagger UI on this service's OpenAPI document."""
        prefix = root(request)
        return get_swagger_ui_html(
            openapi_url=prefix + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{prefix}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{prefix}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{prefix}/favicon.ico",
            oauth2_redirect_url=prefix + redirect_url,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        """The page an OAuth2 login returns to (Swagger UI's Authorize flow)."""
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        """ReDoc on this service's OpenAPI document (system fonts: Google's are off-machine)."""
        prefix = root(request)
        return get_redoc_html(
            openapi_url=prefix + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{prefix}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{prefix}/favicon.ico",
            with_google_fonts=False,
        )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        """The tab icon (a PNG: every browser takes one at this address)."""
        return FileResponse(
            _ASSETS / "favicon.png",
            media_type="image/png",
            headers={"Cache-Control": _FAVICON_CACHE},
        )


def app_from_environment() -> FastAPI:
    """The app of a server process, built from GEO_* settings (uvicorn's factory)."""
    settings = get_settings()
    configure_logging(settings.server.log_json, settings.server.log_level)
    app = create_app(settings)
    # What importing and building the app made (~240,000 objects: modules, routes, schemas)
    # lives as long as the process: frozen out of the cycle collector's reach. Else each full
    # collection walks it all, a pause of 100-200 ms every few seconds under load (measured
    # at 2,600 locates/s), which every request then in flight waits out: the p99.
    gc.collect()
    gc.freeze()
    app.state.coverage_models.settle = True  # likewise each coverage model it loads
    return app
