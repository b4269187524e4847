"""All SQL of the grids' shared boundaries: the PostGIS Topology `grid_topo` (migration
0005_grid_topology) in which a boundary between two grids is stored once, as edges with one
grid's faces on the left and the other's on the right.

Every write of grids ends with `sync` (imports and edits alike): the grids whose shape
changed in the transaction are taken out of the topology and put back with their new shape
(snapped to the edges and nodes already there, within the tolerance), the primitives no grid
uses any more are removed, and each changed grid's polygon is written from its faces. So
two grids' polygons share their boundary exactly, and moving a boundary moves it for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import InternalError

from geo_service.errors import Conflict

TOPOLOGY = "grid_topo"
_BATCH = 250  # grids put in the topology per statement (a progress tick each)
# Past this many grids (re)placed in one transaction, the topology's tables are analysed before
# the queries that follow: planned on the statistics of the empty tables (one row each), a
# province's import (39,000 grids) got nested loops over every face, quadratic.
_ANALYZE_AFTER = 1_000

_LAYER = (
    "(SELECT layer_id FROM topology.layer WHERE schema_name = 'public' "
    "AND table_name = 'grids' AND feature_column = 'topo')"
)

# Each grid's faces (the grid's TopoGeometry is made of faces, element type 3): a FROM ... WHERE
# that callers extend with their own conditions.
_GRID_FACES = (
    f"{TOPOLOGY}.relation r JOIN grids g ON id(g.topo) = r.topogeo_id "
    f"WHERE r.layer_id = {_LAYER} AND r.element_type = 3"
)


def sync(
    conn: Connection,
    tolerance_deg: float,
    min_area_m2: float,
    tick: Callable[[int], Any] | None = None,
) -> int:
    """Bring the topology in line with the grids written in this transaction (new, reshaped,
    deleted); answer how many grids were (re)placed in it. Overlaps smaller than
    `min_area_m2` that the new shapes make are settled (`_settle_slivers`)."""
    # the faces of deleted grids, and of changed ones, before they are let go
    freed = conn.execute(
        text(
            f"""
            WITH gone AS (
              DELETE FROM {TOPOLOGY}.relation r
              WHERE r.layer_id = {_LAYER}
                AND NOT EXISTS (SELECT 1 FROM grids g WHERE id(g.topo) = r.topogeo_id)
              RETURNING r.element_id)
            SELECT ST_Extent(f.mbr) FROM gone JOIN {TOPOLOGY}.face f ON f.face_id = gone.element_id
            """
        )
    ).scalar_one()
    changed = list(
        conn.execute(
            text(
                "SELECT id FROM grids WHERE valid_from = now() "
                "AND (topo IS NULL OR NOT ST_Equals(geom, topo::geometry)) ORDER BY id"
            )
        ).scalars()
    )
    if not changed and freed is None:
        return 0
    area = conn.execute(
        text(
            "SELECT ST_Envelope(ST_Collect(ARRAY[b, (SELECT ST_Extent(geom)::geometry FROM grids "
            "  WHERE id = ANY(:ids)), (SELECT ST_Extent((topo::geometry))::geometry FROM grids "
            "  WHERE id = ANY(:ids) AND topo IS NOT NULL)])) "
            "FROM (SELECT CAST(:freed AS box2d)::geometry AS b) f"
        ),
        {"ids": changed, "freed": freed},
    ).scalar_one()
    conn.execute(
        text(
            "UPDATE grids SET topo = topology.clearTopoGeom(topo) "
            "WHERE id = ANY(:ids) AND topo IS NOT NULL"
        ),
        {"ids": changed},
    )
    # the edges and nodes no grid uses any more go before the new shapes come in: a new shape
    # snaps to the boundaries that stay, never to one that is leaving
    conn.execute(
        text(
            f"SELECT topology.RemoveUnusedPrimitives('{TOPOLOGY}', "
            "ST_SetSRID(ST_Expand(CAST(:area AS geometry), :tol), 4326))"
        ),
        {"area": area, "tol": tolerance_deg * 10},
    )
    for start in range(0, len(changed), _BATCH):
        batch = changed[start : start + _BATCH]
        try:
            conn.execute(
                text(
                    f"UPDATE grids SET topo = CASE WHEN topo IS NULL "
                    f"THEN topology.toTopoGeom(geom, '{TOPOLOGY}', {_LAYER}, :tol) "
                    f"ELSE topology.toTopoGeom(geom, topo, :tol) END "
                    "WHERE id = ANY(:ids)"
                ),
                {"ids": batch, "tol": tolerance_deg},
            )
        except InternalError as exc:  # PostGIS Topology refuses the shapes (its lwerror:
            # "SQL/MM Spatial exception - geometry crosses edge", "Side-location conflict")
            raise Conflict(
                "the new boundaries cannot be stored as boundaries shared with the grids "
                f"around them ({str(exc.orig).splitlines()[0]}): a vertex probably moved by "
                f"less than the snapping tolerance ({tolerance_deg:g}°) or onto a neighbouring "
                "boundary; move it further or onto a vertex of that boundary"
            ) from None
        if tick is not None:
            tick(len(batch))
    if len(changed) >= _ANALYZE_AFTER:  # a bulk import, not an edit of a few grids
        tables = ", ".join(f"{TOPOLOGY}.{t}" for t in ("relation", "edge_data", "face", "node"))
        conn.execute(text(f"ANALYZE grids, {tables}"))
    _settle_slivers(conn, area, changed, tolerance_deg, min_area_m2)
    # each changed grid's polygon as its faces make it (snapped where it nearly met another)
    conn.execute(
        text(
            """
            UPDATE grids SET geom = t.g, area_m2 = ST_Area(t.g::geography)
            FROM (SELECT id, ST_Multi(topo::geometry) AS g FROM grids WHERE id = ANY(:ids)) t
            WHERE grids.id = t.id AND NOT ST_OrderingEquals(grids.geom, t.g)
            """
        ),
        {"ids": changed},
    )
    _check(conn, area, tolerance_deg)
    return len(changed)


def _settle_slivers(
    conn: Connection, area: Any, changed: list[int], tolerance_deg: float, min_area_m2: float
) -> None:
    """Give each face that a changed grid claims together with other grids, and that is
    smaller than `min_area_m2` (an overlap QA would call noise: a sliver left where the
    reshaped polygons, computed in floating point, nearly meet), to one grid only: a grid the
    transaction did not change keeps it, else the grid whose new polygon covers most of it.
    Larger overlaps stay, for QA to report. So a tiling edited any number of times stays a
    tiling, each boundary between two grids one line."""
    conn.execute(
        text(
            f"""
            WITH claim AS (
              SELECT r.element_id AS face_id, r.topogeo_id, g.id = ANY(:ids) AS changed,
                     g.code, g.geom
              FROM {_GRID_FACES} AND g.geom && ST_Expand(CAST(:area AS geometry), :tol)),
            sliver AS (
              SELECT face_id, ST_GetFaceGeometry('{TOPOLOGY}', face_id) AS shape FROM claim
              GROUP BY face_id HAVING count(*) > 1 AND bool_or(changed)),
            ranked AS (
              SELECT c.face_id, c.topogeo_id, c.changed,
                     row_number() OVER (PARTITION BY c.face_id ORDER BY c.changed,
                       ST_Area(ST_Intersection(s.shape, c.geom)) DESC, c.code) AS rank
              FROM claim c JOIN sliver s USING (face_id)
              WHERE ST_Area(s.shape::geography) < :min_area)
            DELETE FROM {TOPOLOGY}.relation r USING ranked k
            WHERE k.rank > 1 AND k.changed AND r.layer_id = {_LAYER} AND r.element_type = 3
              AND r.element_id = k.face_id AND r.topogeo_id = k.topogeo_id
            """
        ),
        {"ids": changed, "area": area, "tol": tolerance_deg * 10, "min_area": min_area_m2},
    )


def _check(conn: Connection, area: Any, tolerance_deg: float) -> None:
    """Refuse what left the topology unsound where it changed (a Conflict: the transaction,
    and with it the edit or import, is rolled back): PostGIS's own validation in the area,
    and each edge in the area between two grids' faces on both grids' boundaries (a face
    too thin to show in a grid's polygon would leave its edges off it)."""
    found = conn.execute(
        text(
            f"SELECT error, id1, id2 FROM topology.ValidateTopology('{TOPOLOGY}', "
            "CAST(ST_Expand(CAST(:area AS geometry), :tol) AS box2d))"
        ),
        {"area": area, "tol": tolerance_deg * 10},
    ).first()
    off = conn.execute(
        text(
            f"""
            WITH face_grid AS (
              SELECT r.element_id AS face_id, g.id, g.topo
              FROM {_GRID_FACES} AND g.geom && ST_Expand(CAST(:area AS geometry), :tol)),
            own AS (  -- faces of one grid only (where grids overlap, QA reports it)
              SELECT * FROM face_grid WHERE face_id IN
                (SELECT face_id FROM face_grid GROUP BY face_id HAVING count(*) = 1)),
            bound AS MATERIALIZED (  -- each grid's outline built once, not once per edge
              SELECT id, ST_Boundary(topo::geometry) AS line
              FROM (SELECT DISTINCT ON (id) id, topo FROM face_grid) x)
            SELECT e.edge_id FROM {TOPOLOGY}.edge_data e
            JOIN own l ON l.face_id = e.left_face
            JOIN own r ON r.face_id = e.right_face
            JOIN bound lb ON lb.id = l.id
            JOIN bound rb ON rb.id = r.id
            WHERE l.id <> r.id AND e.geom && ST_Expand(CAST(:area AS geometry), :tol)
              AND (SELECT max(greatest(ST_Distance(d.geom, lb.line), ST_Distance(d.geom, rb.line)))
                   FROM ST_DumpPoints(e.geom) d) > CAST(:tol AS float8)
            LIMIT 1
            """
        ),
        {"tol": tolerance_deg, "area": area},
    ).first()
    if found is not None or off is not None:
        what = (
            f"{found[0]} ({found[1]}, {found[2]})"
            if found is not None
            else f"edge {off[0] if off is not None else '?'} off a grid's boundary"
        )
        raise Conflict(
            "the new boundaries would leave the shared-boundary topology unsound "
            f"({what}): a vertex probably moved by less than the snapping tolerance "
            f"({tolerance_deg:g}°) or onto a neighbouring boundary; move it further"
        )


def problems(conn: Connection) -> list[dict[str, Any]]:
    """What PostGIS finds wrong in the topology (ValidateTopology): empty when it is sound."""
    rows = conn.execute(
        text(f"SELECT error, id1, id2 FROM topology.ValidateTopology('{TOPOLOGY}')")
    ).mappings()
    return [dict(r) for r in rows]


def shared_boundaries(conn: Connection, community: str | None = None) -> list[dict[str, Any]]:
    """The boundaries between two grids, each once: the topology's edges with a grid's faces
    on either side (grid codes in order), their length in metres, as GeoJSON."""
    rows = conn.execute(
        text(
            f"""
            WITH face_grid AS (
              SELECT r.element_id AS face_id, g.code, g.community_code
              FROM {_GRID_FACES})
            SELECT least(l.code, r.code) AS grid_a, greatest(l.code, r.code) AS grid_b,
                   count(*) AS edges,
                   ST_Length(ST_LineMerge(ST_Collect(e.geom))::geography) AS length_m,
                   ST_AsGeoJSON(ST_LineMerge(ST_Collect(e.geom)), 7)::json AS geometry
            FROM {TOPOLOGY}.edge_data e
            JOIN face_grid l ON l.face_id = e.left_face
            JOIN face_grid r ON r.face_id = e.right_face
            WHERE l.code <> r.code
              AND (CAST(:community AS text) IS NULL
                   OR :community IN (l.community_code, r.community_code))
            GROUP BY 1, 2 ORDER BY 1, 2
            """
        ),
        {"community": community},
    ).mappings()
    return [dict(r) for r in rows]
