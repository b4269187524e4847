"""All SQL of the buildings domain: nearest buildings, buildings of a grid or near a point,
one building with its grid. Distances are on the spheroid; lookups use the GiST index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

_POINT = "ST_SetSRID(ST_MakePoint(:x, :y), 4326)"
# The grid of a building follows the locate rules' deterministic choice: the smallest code
# among the grids covering it.
_GRID_OF = """
    LEFT JOIN LATERAL (
        SELECT g.code, g.name, g.community_code FROM grids g
        WHERE ST_Covers(g.geom, b.geom) ORDER BY g.code LIMIT 1
    ) g ON true
"""
# Within a metric radius: a degree box never smaller than the radius lets the GiST index
# work, then the spheroid decides.
_WITHIN = (
    f"ST_DWithin(b.geom, {_POINT}, :radius / (110000.0 * cos(radians(least(abs(:y), 89))))) "
    f"AND ST_DWithin(b.geom::geography, {_POINT}::geography, :radius)"
)
_COLUMNS = """
    b.code, b.address, b.name, b.households, ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat,
    g.code AS grid_code, g.name AS grid_name, g.community_code
"""

_NEAREST = text(
    f"""
    SELECT {_COLUMNS}, ST_Distance(b.geom::geography, {_POINT}::geography) AS distance_m
    FROM (
        SELECT * FROM buildings b
        WHERE {_WITHIN}
        ORDER BY b.geom <-> {_POINT} LIMIT :limit
    ) b
    {_GRID_OF}
    ORDER BY distance_m, b.code
    """
)

_IN_GRID = text(
    f"""
    SELECT {_COLUMNS}, NULL::float8 AS distance_m, count(*) OVER () AS total
    FROM grids gr JOIN buildings b ON ST_Covers(gr.geom, b.geom)
    {_GRID_OF}
    WHERE gr.code = :grid
    ORDER BY b.code
    LIMIT :limit OFFSET :offset
    """
)

_NEAR = text(
    f"""
    SELECT {_COLUMNS}, ST_Distance(b.geom::geography, {_POINT}::geography) AS distance_m,
           count(*) OVER () AS total
    FROM buildings b
    {_GRID_OF}
    WHERE {_WITHIN}
      AND (CAST(:grid AS text) IS NULL OR g.code = :grid)
    ORDER BY distance_m, b.code
    LIMIT :limit OFFSET :offset
    """
)

_ONE = text(
    f"""
    SELECT {_COLUMNS}, ST_AsGeoJSON(b.footprint, 7)::json AS footprint, c.name AS community_name,
           (SELECT json_agg(json_build_object('code', w.code, 'name', w.name, 'phone', w.phone)
                            ORDER BY w.code)
            FROM workers w WHERE w.grid_code = g.code) AS workers
    FROM buildings b
    {_GRID_OF}
    LEFT JOIN communities c ON c.code = g.community_code
    WHERE b.code = :code
    """
)

_GRID_EXISTS = text("SELECT EXISTS (SELECT 1 FROM grids WHERE code = :grid)")


def nearest(
    conn: Connection, x: float, y: float, radius_m: float, limit: int
) -> list[dict[str, Any]]:
    """The `limit` buildings nearest to a WGS-84 point, within `radius_m`."""
    rows = conn.execute(_NEAREST, {"x": x, "y": y, "radius": radius_m, "limit": limit})
    return [dict(r._mapping) for r in rows]


def in_grid(conn: Connection, grid: str, limit: int, offset: int) -> list[dict[str, Any]]:
    """A page of the buildings of a grid, by code (each row carries the `total`)."""
    rows = conn.execute(_IN_GRID, {"grid": grid, "limit": limit, "offset": offset})
    return [dict(r._mapping) for r in rows]


def near(
    conn: Connection, x: float, y: float, radius_m: float, grid: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """A page of the buildings within `radius_m` of a point (optionally of one grid), nearest
    first (each row carries the `total`)."""
    params = {"x": x, "y": y, "radius": radius_m, "grid": grid, "limit": limit, "offset": offset}
    return [dict(r._mapping) for r in conn.execute(_NEAR, params)]


def one(conn: Connection, code: str) -> dict[str, Any] | None:
    """One building with its footprint, grid, community and the grid's workers."""
    row = conn.execute(_ONE, {"code": code}).first()
    return None if row is None else dict(row._mapping)


def grid_exists(conn: Connection, grid: str) -> bool:
    """True when a grid has this code."""
    return bool(conn.execute(_GRID_EXISTS, {"grid": grid}).scalar_one())
