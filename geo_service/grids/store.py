"""All SQL of the grids domain. Metric figures use geography (exact on the spheroid)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import dict_row
from sqlalchemy import Connection, text

# Overlaps: ST_Relate with an interior/interior dimension of 2 finds real overlaps without
# computing the intersection of every touching pair (neighbours share edges by design).
_OVERLAPS = text(
    """
    SELECT a.community_code, a.code AS grid_a, b.code AS grid_b,
           ST_Area(ST_Intersection(a.geom, b.geom)::geography) AS area_m2,
           ST_X(ST_PointOnSurface(ST_Intersection(a.geom, b.geom))) AS lon,
           ST_Y(ST_PointOnSurface(ST_Intersection(a.geom, b.geom))) AS lat
    FROM grids a JOIN grids b ON a.code < b.code AND a.geom && b.geom
    WHERE ST_Relate(a.geom, b.geom, '2********')
    ORDER BY a.community_code, a.code, b.code
    """
)

_GAPS = text(
    """
    WITH covered AS (
        SELECT c.code, c.geom AS community, ST_Union(g.geom) AS grids
        FROM communities c LEFT JOIN grids g ON g.community_code = c.code
        GROUP BY c.code, c.geom
    ), holes AS (
        SELECT code, (ST_Dump(
            CASE WHEN grids IS NULL THEN community ELSE ST_Difference(community, grids) END
        )).geom AS geom
        FROM covered
    )
    SELECT code AS community_code, ST_Area(geom::geography) AS area_m2,
           ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat
    FROM holes
    WHERE ST_Dimension(geom) = 2 AND ST_Area(geom::geography) >= :min_area
    ORDER BY community_code, area_m2 DESC
    """
)

_OUTSIDE = text(
    """
    SELECT g.community_code, g.code AS grid, ST_Area(ST_Difference(g.geom, c.geom)::geography)
           AS area_m2
    FROM grids g JOIN communities c ON c.code = g.community_code
    WHERE NOT ST_CoveredBy(g.geom, c.geom)
      AND ST_Area(ST_Difference(g.geom, c.geom)::geography) >= :min_area
    ORDER BY g.community_code, g.code
    """
)

# Buildings covered by no grid, attributed to the community they fall in (if any).
_BUILDINGS_OUTSIDE = text(
    """
    SELECT b.code, b.address, c.code AS community_code
    FROM buildings b
    LEFT JOIN communities c ON ST_Covers(c.geom, b.geom)
    WHERE NOT EXISTS (SELECT 1 FROM grids g WHERE ST_Covers(g.geom, b.geom))
    ORDER BY b.code
    """
)

_COMMUNITIES = text(
    """
    SELECT c.code, c.name, c.area_m2, count(g.id) AS grids
    FROM communities c LEFT JOIN grids g ON g.community_code = c.code
    GROUP BY c.code, c.name, c.area_m2 ORDER BY c.code
    """
)


def communities(conn: Connection) -> list[dict]:  # type: ignore[type-arg]
    """Every community with its number of grids."""
    return [dict(r._mapping) for r in conn.execute(_COMMUNITIES)]


def overlaps(conn: Connection) -> list[dict]:  # type: ignore[type-arg]
    """Pairs of grids whose interiors overlap, with the overlap area in m²."""
    return [dict(r._mapping) for r in conn.execute(_OVERLAPS)]


def gaps(conn: Connection, min_area_m2: float) -> list[dict]:  # type: ignore[type-arg]
    """Parts of each community covered by none of its grids."""
    return [dict(r._mapping) for r in conn.execute(_GAPS, {"min_area": min_area_m2})]


def grids_outside(conn: Connection, min_area_m2: float) -> list[dict]:  # type: ignore[type-arg]
    """Grids reaching outside the community they belong to."""
    return [dict(r._mapping) for r in conn.execute(_OUTSIDE, {"min_area": min_area_m2})]


def buildings_outside(conn: Connection) -> list[dict]:  # type: ignore[type-arg]
    """Buildings that no grid covers."""
    return [dict(r._mapping) for r in conn.execute(_BUILDINGS_OUTSIDE)]


def grids_without_worker(conn: Connection) -> list[tuple[str, str]]:
    """(community, grid) of the grids no worker serves today."""
    rows = conn.execute(
        text(
            "SELECT g.community_code, g.code FROM grids g WHERE NOT EXISTS "
            "(SELECT 1 FROM grid_workers w WHERE w.grid_code = g.code) "
            "ORDER BY g.community_code, g.code"
        )
    )
    return [(community, grid) for community, grid in rows]


# -- point -> grid ------------------------------------------------------------------------------
# PostGIS finds the facts (which grids cover a point, in their interior or on their boundary;
# the nearest grid within the tolerance); `rules.classify` turns facts into a status. All
# fragments below are fixed text: values arrive only as bound parameters.


def nearest_sql(point: str, tol: str) -> str:
    """A LATERAL subquery: the nearest grid (id, code, dist in metres) within `tol` metres of
    the geometry expression `point`. Pre-filtered in degrees with a radius never smaller than
    the metric one, then measured on the spheroid; the 3 nearest by planar distance are
    enough candidates at 50 m."""
    return f"""
        SELECT c.id, c.code, c.dist FROM (
            SELECT g.id, g.code, ST_Distance(g.geom::geography, {point}::geography) AS dist
            FROM grids g
            WHERE ST_DWithin(g.geom, {point},
                             {tol} / (110000.0 * cos(radians(least(abs(ST_Y({point})), 89)))))
            ORDER BY g.geom <-> {point} LIMIT 3
        ) c
        WHERE c.dist <= {tol}
        ORDER BY c.dist, c.code LIMIT 1
    """


# Written for psycopg directly (see `locate`), hence %(name)s placeholders.
_POINTS = """
        SELECT u.i, ST_SetSRID(ST_MakePoint(u.x, u.y), 4326) AS geom
        FROM unnest(CAST(%(xs)s AS float8[]), CAST(%(ys)s AS float8[]))
             WITH ORDINALITY AS u(x, y, i)
"""
# One point (GET /locate): two scalars bind and plan cheaper than two one-element arrays.
_ONE_POINT = """
        SELECT 1::int8 AS i,
               ST_SetSRID(ST_MakePoint(CAST(%(x)s AS float8), CAST(%(y)s AS float8)), 4326) AS geom
"""
_FACTS = f"""
    WITH pts AS ({{points}}), facts AS (
        SELECT p.i, p.geom,
               coalesce(array_agg(g.code ORDER BY g.code) FILTER (WHERE g.code IS NOT NULL),
                        '{{}}') AS candidates,
               count(*) FILTER (WHERE ST_Contains(g.geom, p.geom)) AS n_interior
        FROM pts p LEFT JOIN grids g ON ST_Covers(g.geom, p.geom)
        GROUP BY p.i, p.geom
    )
    SELECT f.i, f.candidates, f.n_interior, n.code AS near_code, n.dist AS near_dist,
           g.code AS grid_code, g.name AS grid_name, g.community_code,
           c.name AS community_name,
           (SELECT json_agg(json_build_object('code', w.code, 'name', w.name,
                                              'phone', w.phone) ORDER BY w.code)
            FROM grid_workers w WHERE w.grid_code = g.code) AS workers
    FROM facts f
    LEFT JOIN LATERAL ({nearest_sql("f.geom", "%(tol)s")}) n ON cardinality(f.candidates) = 0
    LEFT JOIN grids g ON g.code = coalesce(f.candidates[1], n.code)
    LEFT JOIN communities c ON c.code = g.community_code
    ORDER BY f.i
    """
_LOCATE = _FACTS.replace("{points}", _POINTS)
# The facts of one point %(x)s, %(y)s (tolerance %(tol)s); public for statements that join
# them to their own (incident intake: `incidents.store.report_facts`).
LOCATE_ONE = _FACTS.replace("{points}", _ONE_POINT)

# The same facts among the grids as they were at %(at)s (their versions valid then), inlined
# (NOT MATERIALIZED) so each use keeps the versions' GiST index. Workers are today's.
_THEN = """
    WITH grids_then AS NOT MATERIALIZED (
        SELECT id, code, name, community_code, geom FROM grid_versions
        WHERE valid_from <= %(at)s AND (valid_to IS NULL OR valid_to > %(at)s)
    ),"""


def _as_of(sql: str) -> str:
    return _THEN + sql.replace("WITH pts AS", " pts AS", 1).replace("grids g", "grids_then g")


_LOCATE_THEN = _as_of(_LOCATE)
_LOCATE_ONE_THEN = _as_of(LOCATE_ONE)


def locate(
    conn: Connection,
    xs: list[float],
    ys: list[float],
    tolerance_m: float,
    at: datetime | None = None,
) -> list[dict]:  # type: ignore[type-arg]
    """Facts for WGS-84 points: sorted covering codes, how many contain the point in their
    interior, the nearest grid when none covers it, and the details of the first grid (among
    the grids of today, or as they were `at` a moment).

    The dispatcher's hot path: run on the driver connection, prepared, skipping the
    SQLAlchemy layers that cost as much as the query itself.
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    params = {"xs": xs, "ys": ys, "tol": tolerance_m, "at": at}
    with raw.cursor(row_factory=dict_row) as cur:
        cur.execute(_LOCATE if at is None else _LOCATE_THEN, params, prepare=True)
        return cur.fetchall()


async def locate_async(
    conn: AsyncConnection,  # type: ignore[type-arg]
    xs: list[float],
    ys: list[float],
    tolerance_m: float,
    at: datetime | None = None,
) -> list[dict]:  # type: ignore[type-arg]
    """`locate` on an asyncio psycopg connection (the API's read pool)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await _locate_on(cur, xs, ys, tolerance_m, at)
        return await cur.fetchall()


async def locate_rows_async(
    conn: AsyncConnection,  # type: ignore[type-arg]
    xs: list[float],
    ys: list[float],
    tolerance_m: float,
    at: datetime | None = None,
) -> list[tuple[Any, ...]]:
    """`locate_async` as plain rows, the columns of `locate` in their order (GET /locate's
    points, its hottest path: a tuple is built for less than a dict)."""
    async with conn.cursor() as cur:
        await _locate_on(cur, xs, ys, tolerance_m, at)
        return await cur.fetchall()


async def _locate_on(
    cur: AsyncCursor[Any],
    xs: list[float],
    ys: list[float],
    tolerance_m: float,
    at: datetime | None,
) -> None:
    params: dict[str, Any] = {"tol": tolerance_m, "at": at}
    if len(xs) == 1:
        params.update(x=xs[0], y=ys[0])
        await cur.execute(LOCATE_ONE if at is None else _LOCATE_ONE_THEN, params, prepare=True)
    else:
        params.update(xs=xs, ys=ys)
        await cur.execute(_LOCATE if at is None else _LOCATE_THEN, params, prepare=True)
