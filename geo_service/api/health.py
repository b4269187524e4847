"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from geo_service import __version__
from geo_service.api.deps import EngineDep
from geo_service.db.engine import reading

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(engine: EngineDep) -> dict[str, str]:
    """200 when the database answers (with PostGIS version), 503 otherwise."""
    with reading(engine) as conn:
        postgis = conn.execute(text("SELECT postgis_lib_version()")).scalar_one()
    return {"status": "ok", "version": __version__, "postgis": postgis}


@router.get("/livez")
def livez() -> dict[str, str]:
    """200 while the process serves requests; touches nothing else (a liveness probe)."""
    return {"status": "alive"}
