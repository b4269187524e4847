"""Point -> grid: the one locate operation every door uses (GET/POST /api/v1/locate,
incident intake, reverse geocoding). PostGIS finds the facts; `rules.classify` decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
from psycopg import AsyncConnection
from sqlalchemy import Connection

from geo_service.coords import parse_coordinates
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


async def locate_points_async(
    conn: AsyncConnection,  # type: ignore[type-arg]
    lon: Sequence[Any] | np.ndarray,
    lat: Sequence[Any] | np.ndarray,
    crs: InputCRS,
    tolerance_m: float,
    at: datetime | None = None,
) -> list[Location]:
    """`locate_points` on an asyncio connection: the same facts, the same rules."""
    x, y, reasons = parse_coordinates(lon, lat, crs)
    valid = np.flatnonzero(~np.isnan(x))
    rows = (
        await store.locate_async(conn, x[valid].tolist(), y[valid].tolist(), tolerance_m, at)
        if valid.size
        else []
    )
    return _locations(x, y, reasons, valid, rows)


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
        covered = bool(row["candidates"])
        results[i] = Location(
            status=cast(Status, str(rules.STATUSES[code])),
            lon=float(x[i]),
            lat=float(y[i]),
            grid_code=row["grid_code"],
            grid_name=row["grid_name"],
            community_code=row["community_code"],
            community_name=row["community_name"],
            distance_m=0.0 if covered else _rounded(row["near_dist"]),
            candidates=list(row["candidates"]) or ([row["near_code"]] if row["near_code"] else []),
            workers=[Worker(**w) for w in row["workers"] or []],
        )
    return results


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
