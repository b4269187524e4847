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
