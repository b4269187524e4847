"""Typed dependencies shared by the routers.

They are `async def` although they await nothing: FastAPI runs a plain `def` dependency in
the thread pool, and two thread hops per request cost more than a one-point locate.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine

from geo_service.db.replicas import Reads
from geo_service.layers import LayerService
from geo_service.settings import Settings


async def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


# The primary: writes, and the reads that must see them (the same request's, or an incident
# or grid just written by the caller).
EngineDep = Annotated[Engine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def reads_of(request: Request) -> Reads:
    """Where the app's read-only doors read (the primary's engine and pool when the app runs
    without its lifespan)."""
    state = request.app.state
    reads = getattr(state, "reads", None)
    if reads is None:
        return Reads(state.engine, getattr(state, "read_pool", None))  # type: ignore[arg-type]
    return reads  # type: ignore[no-any-return]


async def _read_engine(request: Request) -> Engine:
    return reads_of(request).engine


async def _read_pool(request: Request) -> AsyncConnectionPool:
    return reads_of(request).pool


# The read-only doors (tiles, OGC items, locate, geocode and building search, coverage figures
# and shapes, workload, QA): a hot standby of GEO_DATABASE_READ_URLS while one is usable, else
# the primary (db/replicas.py). Domain functions take either engine; the door picks.
ReadEngineDep = Annotated[Engine, Depends(_read_engine)]
ReadPoolDep = Annotated[AsyncConnectionPool, Depends(_read_pool)]


async def _layers(request: Request) -> LayerService:
    return request.app.state.layers  # type: ignore[no-any-return]


LayersDep = Annotated[LayerService, Depends(_layers)]


# Query parameters many routes share, bounded so that no value reaches SQL out of range.
MAX_OFFSET = 1_000_000_000  # rows to skip: far beyond any table here, inside bigint
OffsetQuery = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description=f"rows to skip (0..{MAX_OFFSET:_})")
]
MAX_TIER_MIN = 24 * 60
TierQuery = Annotated[
    int | None,
    Query(ge=1, le=MAX_TIER_MIN, description="a walking tier, in minutes (e.g. 15)"),
]
CRS_DESCRIPTION = (
    "coordinate system of the input: wgs84, cgcs2000, gcj02 (Amap, Tencent, WeChat), "
    "bd09 (Baidu) or EPSG:n"
)
CrsQuery = Annotated[str, Query(description=CRS_DESCRIPTION, max_length=64)]
