"""All SQL of batch assignment (`assign`): a session's temp tables of points, the join that
finds which grids cover each point, and the nearest grid of the points none covers.

The rules are the locate door's (`store._FACTS` and `store.nearest_sql`): covered means
`ST_Covers`, interior means `ST_Contains`, and the nearest grid is, among the three nearest in
degrees within the tolerance, the one nearest on the spheroid (then the smallest code). Only
the way the work is laid out differs, for a million points at a time.
"""

from __future__ import annotations

POINTS = "assign_points"  # (i, x, y, geom): the batch's usable points, i = input row number
LONELY = "assign_lonely"  # the same for the points no grid covers
PIECES = "assign_pieces"  # the grids cut into pieces of few vertices, for distances

_POINTS_TABLE = (
    "CREATE TEMP TABLE {table} (i int8, x float8, y float8, geom geometry(Point, 4326) "
    "GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(x, y), 4326)) STORED)"
)
CREATE_POINTS = _POINTS_TABLE.format(table=POINTS)
COPY_POINTS = f"COPY {POINTS} (i, x, y) FROM STDIN (FORMAT binary)"
# No ANALYZE: CREATE INDEX records the table's size, which is all the plans below need, and
# the join is written so that only one plan fits it.
INDEX_POINTS = f"CREATE INDEX ON {POINTS} USING gist (geom)"

# Grid by grid (LATERAL): each grid is prepared once and tested against the points under its
# box, ~15x faster than probing the grids' index point by point at a million points. A point
# in a grid's interior (nearly all) costs one test: ST_Covers is asked only where ST_Contains
# said no (OFFSET 0 keeps the subquery whole, so ST_Contains runs once a row). The results
# travel as three binary arrays (`bulk.array_values`), not a million rows.
HITS = f"""
    SELECT array_send(array_agg(q.i)), array_send(array_agg(g.id)),
           array_send(array_agg(q.interior))
    FROM grids g
    CROSS JOIN LATERAL (
        SELECT t.i, t.geom, ST_Contains(g.geom, t.geom) AS interior
        FROM {POINTS} t WHERE t.geom @ g.geom OFFSET 0
    ) q
    WHERE q.interior OR ST_Covers(g.geom, q.geom)
"""

# The points no grid covers, indexed, and the grids cut into pieces of at most 64 vertices, so
# that a distance on the spheroid reads a few dozen vertices rather than a whole boundary: the
# distance to a grid is the least to its pieces.
CREATE_LONELY = _POINTS_TABLE.format(table=LONELY)
COPY_LONELY = f"COPY {LONELY} (i, x, y) FROM STDIN (FORMAT binary)"
PREPARE_NEAREST = (
    f"CREATE INDEX ON {LONELY} USING gist (geom)",
    f"CREATE TEMP TABLE {PIECES} AS "
    "SELECT g.id, g.code, ST_Subdivide(g.geom, 64) AS geom FROM grids g",
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

GRIDS = "SELECT id, code, community_code FROM grids ORDER BY code"
