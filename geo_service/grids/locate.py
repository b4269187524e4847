"""Point -> grid: the one locate operation every door uses (GET/POST /api/v1/locate,
incident intake, reverse geocoding). PostGIS finds the facts; `rules.classify` decides.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection

from geo_service.coords import number, parse_coordinates, unusable_reason
from geo_service.crs import InputCRS
from geo_service.grids import rules, store
from geo_service.grids.rules import Status


@dataclass
class Worker:
    """A grid worker, as dispatch needs them."""

    code: str
    name: str
    phone: str | None


@dataclass
class Location:
    """Where a point falls: its grid, community and workers, and how sure we are."""

    status: Status
    lon: float | None = None  # WGS-84, after conversion from the caller's CRS
    lat: float | None = None
    grid_code: str | None = None
    grid_name: str | None = None
    community_code: str | None = None
    community_name: str | None = None
    distance_m: float | None = None
    candidates: list[str] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (shallow: asdict's deep copy costs more than the lookup)."""
        out = dict(self.__dict__)
        out["candidates"] = list(self.candidates)
        out["workers"] = [w.__dict__ for w in self.workers]
        return out


def locate_points(
    conn: Connection,
    lon: Sequence[Any] | np.ndarray,
    lat: Sequence[Any] | np.ndarray,
    crs: InputCRS,
    tolerance_m: float,
    at: datetime | None = None,
) -> list[Location]:
    """Locate each point (any supported CRS) in the grids of today, or as they were `at` a
    moment; one round trip for all of them."""
    x, y, reasons = parse_coordinates(lon, lat, crs)
    valid = np.flatnonzero(~np.isnan(x))
    points = (x[valid].tolist(), y[valid].tolist())
    rows = store.locate(conn, *points, tolerance_m, at) if valid.size else []
    return _locations(x, y, reasons, valid, rows)


class PointLocator:
    """One-point locates (GET /api/v1/locate), sharing round trips when they queue.

    Under load many requests want one point each at the same moment; a query per point spends
    more on the round trip (the pool, psycopg, the executor's start) than on the point. Points
    that arrive while `max_queries` queries are already running wait for the next query, which
    takes up to `max_points` of them at once (`store.locate_rows_async`: the facts of each
    point are those of its own query). A query starts only after its points arrived, so every
    answer sees the grids as committed before its request came; a point that finds no query
    running has one to itself at once. A failed query fails its points alone.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        tolerance_m: float,
        *,
        max_queries: int = 2,
        max_points: int = 64,
    ) -> None:
        self.pool = pool
        self.tolerance_m = tolerance_m
        self.max_queries = max_queries
        self.max_points = max_points
        self._waiting: list[tuple[float, float, asyncio.Future[tuple[Any, ...]]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def locate(
        self, lon: Any, lat: Any, crs: InputCRS, at: datetime | None = None
    ) -> Location:
        """The answer of `locate_points` for one point as a caller typed it."""
        x, y, reason = _one_point(lon, lat, crs)
        if reason is not None:
            return Location("invalid", message=reason)
        if at is not None:  # the grids of another moment: a query of its own
            conn = await self.pool.getconn()
            try:
                [facts] = await store.locate_rows_async(conn, [x], [y], self.tolerance_m, at)
            finally:
                await self.pool.putconn(conn)
        else:
            facts = await self._queued(x, y)
        return location_of(x, y, facts)

    async def _queued(self, x: float, y: float) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Any, ...]] = loop.create_future()
        self._waiting.append((x, y, answer))
        if self._running < self.max_queries:
            self._running += 1
            # A task of its own (not this request's: its cancellation must not strand the
            # points of others), outside the request's context (its request id).
            task = loop.create_task(self._run(), context=contextvars.Context())
            self._tasks.add(task)  # the loop holds tasks weakly
            task.add_done_callback(self._tasks.discard)
        return await answer

    async def _run(self) -> None:
        """Query for the waiting points, a batch at a time, until none waits."""
        try:
            while self._waiting:
                batch = self._waiting[: self.max_points]
                del self._waiting[: self.max_points]
                try:
                    rows = await self._facts([p[0] for p in batch], [p[1] for p in batch])
                except Exception as exc:
                    for *_, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                except BaseException:  # cancelled (the server stops): nobody is left waiting
                    for *_, answer in (*batch, *self._waiting):
                        answer.cancel()
                    self._waiting.clear()
                    raise
                for (*_, answer), facts in zip(batch, rows, strict=True):
                    if not answer.done():  # its request may have gone
                        answer.set_result(facts)
        finally:
            self._running -= 1

    async def _facts(self, xs: list[float], ys: list[float]) -> list[tuple[Any, ...]]:
        conn = await self.pool.getconn()
        try:
            return await store.locate_rows_async(conn, xs, ys, self.tolerance_m)
        finally:
            await self.pool.putconn(conn)


# The input systems `crs.to_storage` passes through unchanged (CGCS2000 is WGS-84 to within
# centimetres): a point in one of them is read without numpy.
_AS_STORED = frozenset({"wgs84", "cgcs2000"})


def _one_point(lon: Any, lat: Any, crs: InputCRS) -> tuple[float, float, str | None]:
    """`parse_coordinates` of one point: WGS-84 lon/lat, or NaNs and why not."""
    if crs.name not in _AS_STORED:
        xs, ys, reasons = parse_coordinates([lon], [lat], crs)
        return float(xs[0]), float(ys[0]), reasons[0]
    x, y = number(lon), number(lat)
    numeric = math.isfinite(x) and math.isfinite(y)
    if numeric and -180.0 <= x <= 180.0 and -90.0 <= y <= 90.0:
        return x, y, None
    return math.nan, math.nan, unusable_reason(lon, lat, numeric, crs)


def _locations(
    x: np.ndarray,
    y: np.ndarray,
    reasons: list[str | None],
    valid: np.ndarray,
    rows: list[dict[str, Any]],
) -> list[Location]:
    """Apply the rules to the facts PostGIS found for the usable points (pure)."""
    results: list[Location] = [
        Location("invalid", message=reason) if reason else Location("outside") for reason in reasons
    ]
    if not rows:
        return results
    status = rules.classify(
        np.array([len(r["candidates"]) for r in rows]),
        np.array([r["n_interior"] for r in rows]),
        np.array([r["near_code"] is not None for r in rows]),
        np.ones(len(rows), dtype=bool),
    )
    for row, code in zip(rows, status, strict=True):
        i = int(valid[row["i"] - 1])
        facts = tuple(row.values())  # a dict row keeps the columns' order
        results[i] = _location(float(x[i]), float(y[i]), str(rules.STATUSES[code]), facts)
    return results


def location_of(x: float, y: float, facts: Sequence[Any]) -> Location:
    """The answer for a usable WGS-84 point from its facts (one row of
    `store.locate_rows_async`, or of a statement joining `store.LOCATE_ONE`), with the
    status the rules give them."""
    _, candidates, n_interior, near_code = facts[:4]
    status = rules.status(len(candidates), n_interior, near_code is not None)
    return _location(x, y, status, facts)


def _location(x: float, y: float, status: str, facts: Sequence[Any]) -> Location:
    """The answer for a located point from its facts: one row of `store.locate`, its columns
    in their order."""
    _, candidates, _, near_code, near_dist, code, name, community, community_name, workers = facts
    return Location(
        status=cast(Status, status),
        lon=x,
        lat=y,
        grid_code=code,
        grid_name=name,
        community_code=community,
        community_name=community_name,
        distance_m=0.0 if candidates else _rounded(near_dist),
        candidates=list(candidates) or ([near_code] if near_code else []),
        workers=[Worker(**w) for w in workers or []],
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
