"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool

from geo_service import __version__
from geo_service.api.deps import EngineDep, reads_of
from geo_service.db.engine import reading

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request, engine: EngineDep) -> dict[str, Any]:
    """200 when requests can be served (with the PostGIS version), 503 otherwise: both pools
    the routes use answer, the engine's and the asyncio read pool behind tokens, locate and
    tiles, so a probe never calls the service ready while its requests still fail. With
    GEO_DATABASE_READ_URLS, `standbys` says which serve reads, their lag, and why any is
    skipped (reads fall back to the primary, so a skipped standby does not make this 503)."""
    pool = getattr(request.app.state, "read_pool", None)
    if pool is not None:
        await pool.ping()
    postgis = await run_in_threadpool(_postgis_version, engine)
    answer: dict[str, Any] = {"status": "ok", "version": __version__, "postgis": postgis}
    standbys = reads_of(request).states()
    if standbys is not None:
        answer["standbys"] = standbys
    return answer


@router.get("/readyz")
async def readyz(request: Request, engine: EngineDep) -> Any:
    """As `/healthz`, and 503 while the server still readies what its first requests would
    otherwise wait for (`warming`: the coverage model of what-if and suggest, the routes'
    request handling): a load balancer sends traffic once this answers 200, so the
    planner's first what-if is as fast as the next."""
    warming = [name for name, thread in request.app.state.warming if thread.is_alive()]
    if warming:  # not an error (none is logged): the answer a probe waits through
        message = f"warming up: {', '.join(warming)}"
        body = {"error": "unavailable", "message": message, "warming": warming}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    return {**await healthz(request, engine), "status": "ready"}


def _postgis_version(engine: Engine) -> str:
    with reading(engine) as conn:
        return str(conn.execute(text("SELECT postgis_lib_version()")).scalar_one())


@router.get("/livez")
def livez() -> dict[str, str]:
    """200 while the process serves requests; touches nothing else (a liveness probe)."""
    return {"status": "alive"}
