"""All SQL of batch assignment (`assign`): the grids for the in-memory index, the facts of the
points it leaves to PostGIS, and the nearest grid of the points no grid covers.

The rules are the locate door's (`store._FACTS` and `store.nearest_sql`): covered means
`ST_Covers`, interior means `ST_Contains`, and the nearest grid is, among the three nearest in
degrees within the tolerance, the one nearest on the spheroid (then the smallest code). Only
the way the work is laid out differs, for a million points at a time.
"""

from __future__ import annotations

LONELY = "assign_lonely"  # (i, x, y, geom): a chunk's uncovered points near some grid
PIECES = "assign_pieces"  # the grids cut into pieces of few vertices, for distances

# The grids as the in-memory index holds them (`assign_index`), in code order.
GRID_SHAPES = "SELECT id, code, community_code, ST_AsBinary(geom) FROM grids ORDER BY code"

# The facts of the few points the index leaves to PostGIS (within about a centimetre of a
# boundary): each grid covering the point, and whether the point is in its interior.
UNSURE = """
    SELECT u.i, g.id, ST_Contains(g.geom, p.geom)
    FROM unnest(CAST(%(i)s AS int8[]), CAST(%(x)s AS float8[]), CAST(%(y)s AS float8[]))
         AS u(i, x, y)
    CROSS JOIN LATERAL (SELECT ST_SetSRID(ST_MakePoint(u.x, u.y), 4326) AS geom) p
    JOIN grids g ON ST_Covers(g.geom, p.geom)
"""

# The points no grid covers, indexed, and the grids cut into pieces of at most 64 vertices, so
# that a distance on the spheroid reads a few dozen vertices rather than a whole boundary: the
# distance to a grid is the least to its pieces.
# A chunk's lonely points replace the last chunk's (no ANALYZE: CREATE INDEX records the
# table's size, which is all the plan needs); the pieces are cut once a run.
CREATE_LONELY = (
    f"DROP TABLE IF EXISTS {LONELY}",
    f"CREATE TEMP TABLE {LONELY} (i int8, x float8, y float8, geom geometry(Point, 4326) "
    "GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(x, y), 4326)) STORED)",
)
COPY_LONELY = f"COPY {LONELY} (i, x, y) FROM STDIN (FORMAT binary)"
INDEX_LONELY = f"CREATE INDEX ON {LONELY} USING gist (geom)"
CREATE_PIECES = (
    f"CREATE TEMP TABLE {PIECES} AS "
    "SELECT g.id, g.code, ST_Subdivide(g.geom, 64) AS geom FROM grids g"
)

# `store.nearest_sql` for all the lonely points at once, piece by piece: each piece meets the
# lonely points within its box grown by the widest of their radii, then each pair is kept when
# within the point's own radius, as nearest_sql keeps it (the radius grows with the latitude;
# the widest is that of the point farthest from the equator, by a hair more). A grid's
# distances are the least over its pieces within that radius: its nearest point lies in one of
# them whenever it is within the tolerance at all. Per point: the three grids nearest in
# degrees, of those the nearest on the spheroid within the tolerance, then the smallest code.
_RADIUS = "%(tol)s / (110000.0 * cos(radians(least({lat}, 89))))"
NEAREST = f"""
    WITH reach AS (
        SELECT 1.000001 * {_RADIUS.format(lat="max(abs(y))")} AS radius FROM {LONELY}
    ), pairs AS (
        SELECT l.i, p.id, p.code, min(ST_Distance(p.geom, l.geom)) AS planar,
               min(ST_Distance(p.geom::geography, l.geom::geography)) AS dist
        FROM reach, {PIECES} p
        CROSS JOIN LATERAL (
            SELECT l.i, l.geom FROM {LONELY} l
            WHERE l.geom && ST_Expand(p.geom, reach.radius)
              AND ST_DWithin(p.geom, l.geom, {_RADIUS.format(lat="abs(l.y)")})
        ) l
        GROUP BY l.i, p.id, p.code
    ), ranked AS (
        SELECT pairs.*, row_number() OVER (PARTITION BY i ORDER BY planar) AS k FROM pairs
    ), chosen AS (
        SELECT DISTINCT ON (r.i) r.i, r.id, round(r.dist::numeric, 2)::float8 AS metres
        FROM ranked r WHERE r.k <= 3 AND r.dist <= %(tol)s
        ORDER BY r.i, r.dist, r.code
    )
    SELECT array_send(array_agg(i)), array_send(array_agg(id)), array_send(array_agg(metres))
    FROM chosen
"""
