"""Typed dependencies shared by the routers.

They are `async def` although they await nothing: FastAPI runs a plain `def` dependency in
the thread pool, and two thread hops per request cost more than a one-point locate.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine

from geo_service.layers import LayerService
from geo_service.settings import Settings


async def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]


async def _read_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.read_pool  # type: ignore[no-any-return]


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
