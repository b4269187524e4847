"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool

from geo_service import __version__
from geo_service.api.deps import EngineDep
from geo_service.db.engine import reading

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request, engine: EngineDep) -> dict[str, str]:
    """200 when requests can be served (with the PostGIS version), 503 otherwise: both pools
    the routes use answer, the engine's and the asyncio read pool behind tokens, locate and
    tiles, so a probe never calls the service ready while its requests still fail."""
    pool = getattr(request.app.state, "read_pool", None)
    if pool is not None:
        await pool.ping()
    postgis = await run_in_threadpool(_postgis_version, engine)
    return {"status": "ok", "version": __version__, "postgis": postgis}


def _postgis_version(engine: Engine) -> str:
    with reading(engine) as conn:
        return str(conn.execute(text("SELECT postgis_lib_version()")).scalar_one())


@router.get("/livez")
def livez() -> dict[str, str]:
    """200 while the process serves requests; touches nothing else (a liveness probe)."""
    return {"status": "alive"}
