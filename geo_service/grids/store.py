"""All SQL of the grids domain. Metric figures use geography (exact on the spheroid)."""

from __future__ import annotations

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


# -- point -> grid ------------------------------------------------------------------------------
# Two fixed ways to find covering grids (never user text). A handful of points from the API
# probe the grids' GiST index point by point. A million points from `assign` sit in a table
# with its own GiST index and the join runs grid by grid (LATERAL), so each grid is prepared
# once and tested against the points under it; that is ~15x faster at that scale.
POINTS_FROM_ARRAYS = (
    "(SELECT u.i, ST_SetSRID(ST_MakePoint(u.x, u.y), 4326) AS geom "
    "FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[])) WITH ORDINALITY AS u(x, y, i))"
)
HITS_FROM_ARRAYS = (
    "SELECT p.i, g.code, ST_Contains(g.geom, p.geom) AS interior "
    "FROM {points} p JOIN grids g ON ST_Covers(g.geom, p.geom)"
)
HITS_GRID_BY_GRID = (
    "SELECT q.i, g.code, ST_Contains(g.geom, q.geom) AS interior FROM grids g "
    "CROSS JOIN LATERAL (SELECT i, geom FROM {points} t WHERE ST_Covers(g.geom, t.geom)) q"
)


def locate_sql(points: str, hits: str, tol: str = ":tol", *, candidates: bool = True) -> str:
    """The locate rules as one statement over the relation `points` (i, geom); `hits` yields
    (i, code, interior) for every grid covering a point.

    ST_Covers finds covering grids; ST_Contains on the same pairs tells interior from
    boundary. Hits are materialised narrow (no geometry) so that grouping a million of them
    stays in memory. Points in no grid look for the nearest grid within the tolerance,
    pre-filtered in degrees (a radius never smaller than the metric one) and measured on the
    spheroid. Points without geometry (unusable coordinates) are `invalid`. `tol` is the
    placeholder of the tolerance in metres in the caller's parameter style. Without
    `candidates` the list of covering grids is left out (a batch of millions needs only the
    chosen grid, and collecting arrays per point costs more than the whole join).
    """
    hits = hits.replace("{points}", points)
    codes = "array_agg(code)" if candidates else "NULL::text[]"
    return f"""
    WITH hits AS MATERIALIZED ({hits}),
    agg AS (
        SELECT i, min(code) AS code, count(*) AS n,
               count(*) FILTER (WHERE interior) AS n_interior, {codes} AS codes
        FROM hits GROUP BY i
    ),
    near AS (
        SELECT p.i, n.code, n.dist
        FROM {points} p
        CROSS JOIN LATERAL (
            SELECT c.code, c.dist FROM (
                SELECT g.code, ST_Distance(g.geom::geography, p.geom::geography) AS dist
                FROM grids g
                WHERE ST_DWithin(g.geom, p.geom, {tol} /
                                 (110000.0 * cos(radians(least(abs(ST_Y(p.geom)), 89)))))
                ORDER BY g.geom <-> p.geom LIMIT 3
            ) c
            WHERE c.dist <= {tol}
            ORDER BY c.dist, c.code LIMIT 1
        ) n
        WHERE p.geom IS NOT NULL AND NOT EXISTS (SELECT 1 FROM hits h WHERE h.i = p.i)
    )
    SELECT p.i,
           CASE WHEN p.geom IS NULL THEN 'invalid'
                WHEN a.i IS NULL THEN
                     CASE WHEN n.code IS NULL THEN 'outside' ELSE 'nearest' END
                WHEN a.n = 1 AND a.n_interior = 1 THEN 'inside'
                WHEN a.n > 1 AND a.n_interior > 0 THEN 'ambiguous'
                ELSE 'boundary' END AS status,
           COALESCE(a.code, n.code) AS grid_code,
           CASE WHEN a.i IS NOT NULL THEN 0.0 ELSE n.dist END AS distance_m,
           CASE WHEN a.n > 1 THEN ARRAY(SELECT unnest(a.codes) ORDER BY 1)
                ELSE array_remove(ARRAY[COALESCE(a.code, n.code)], NULL) END AS candidates
    FROM {points} p
    LEFT JOIN agg a ON a.i = p.i
    LEFT JOIN near n ON n.i = p.i
    """


_LOCATE = text(
    f"""
    SELECT r.i, r.status, r.grid_code, r.distance_m, r.candidates,
           g.name AS grid_name, g.community_code, c.name AS community_name,
           (SELECT json_agg(json_build_object('code', w.code, 'name', w.name,
                                              'phone', w.phone) ORDER BY w.code)
            FROM workers w WHERE w.grid_code = r.grid_code) AS workers
    FROM ({locate_sql(POINTS_FROM_ARRAYS, HITS_FROM_ARRAYS)}) r
    LEFT JOIN grids g ON g.code = r.grid_code
    LEFT JOIN communities c ON c.code = g.community_code
    ORDER BY r.i
    """
)


def locate(conn: Connection, xs: list[float], ys: list[float], tolerance_m: float) -> list[dict]:  # type: ignore[type-arg]
    """Locate WGS-84 points; rows carry the 1-based input position `i`."""
    rows = conn.execute(_LOCATE, {"xs": xs, "ys": ys, "tol": tolerance_m})
    return [dict(r._mapping) for r in rows]


_GRIDS_NEAR = text(
    """
    SELECT g.code FROM grids g
    WHERE g.code <> :exclude
      AND ST_DWithin(g.geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography, :r)
    ORDER BY g.code
    """
)


def grids_near(conn: Connection, x: float, y: float, radius_m: float, exclude: str) -> list[str]:
    """Other grids within `radius_m` of a point (a report near a boundary deserves a check)."""
    rows = conn.execute(_GRIDS_NEAR, {"x": x, "y": y, "r": radius_m, "exclude": exclude})
    return list(rows.scalars())
