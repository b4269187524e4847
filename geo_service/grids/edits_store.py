"""All SQL of grid edits and grid history: locking the grids an edit touches, writing its
result, the QA rules on the communities it touched, and the versions, edits and lineage the
history keeps (the `grids` triggers of migration 0003_living_grids write the versions).

Geometry travels as WKB (WGS-84); areas are measured on the spheroid (geography).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from geo_service.db import versions

Row = dict[str, Any]

_MULTI = "ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_GeomFromWKB(:wkb, 4326)), 3))"


def _wkb(geom: BaseGeometry) -> bytes:
    return shapely.to_wkb(geom, byte_order=1)  # type: ignore[no-any-return]


def _shape(value: bytes | memoryview) -> BaseGeometry:
    return shapely.from_wkb(bytes(value))


# -- what an edit reads ---------------------------------------------------------------------------
def lock_edits(conn: Connection) -> None:
    """One grid edit at a time, and none while grids are imported (the import's own lock):
    edits are rare, and taking neighbours' row locks in any order could otherwise deadlock."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('geo-import:grids'))"))


def _lock(conn: Connection, where: str, params: dict[str, Any]) -> dict[str, Row]:
    """The grids `where` says (code, name, community, version, shape), locked until the edit
    ends, by code."""
    rows = conn.execute(
        text(
            "SELECT code, name, community_code, version, ST_AsBinary(geom) AS wkb FROM grids "
            f"WHERE {where} ORDER BY code FOR UPDATE"
        ),
        params,
    ).mappings()
    return {r["code"]: {**r, "shape": _shape(r["wkb"])} for r in rows}


def lock_grids(conn: Connection, codes: Sequence[str]) -> dict[str, Row]:
    """The named grids, locked until the edit ends so two planners' edits of one grid run one
    after the other."""
    return _lock(conn, "code = ANY(:codes)", {"codes": list(codes)})


def lock_communities(conn: Connection, communities: Sequence[str]) -> dict[str, Row]:
    """Every grid of the named communities, locked."""
    return _lock(conn, "community_code = ANY(:c)", {"c": list(communities)})


def lock_near(conn: Connection, point: BaseGeometry, within_deg: float) -> dict[str, Row]:
    """The grids whose boundary passes within `within_deg` of a point, locked."""
    return _lock(
        conn,
        "ST_DWithin(ST_Boundary(geom), ST_GeomFromWKB(:wkb, 4326), :d)",
        {"wkb": _wkb(point), "d": within_deg},
    )


def touching(
    conn: Connection, shape: BaseGeometry, community: str, exclude: Sequence[str]
) -> dict[str, Row]:
    """Grids of the community that touch or overlap `shape` (its neighbours), locked."""
    return _lock(
        conn,
        "community_code = :community AND NOT code = ANY(:exclude) "
        "AND ST_Intersects(geom, ST_GeomFromWKB(:wkb, 4326))",
        {"community": community, "exclude": list(exclude), "wkb": _wkb(shape)},
    )


def last_edits(conn: Connection, codes: Sequence[str]) -> dict[str, Row]:
    """The latest edit that made or ended a version of each grid code: id, kind, actor,
    reason and moment (codes no edit touched are left out)."""
    rows = conn.execute(
        text(
            """
            SELECT DISTINCT ON (v.code) v.code, e.id, e.kind, e.actor, e.reason, e.at
            FROM grid_versions v JOIN grid_edits e ON e.id IN (v.edit_id, v.ended_by)
            WHERE v.code = ANY(:codes) ORDER BY v.code, e.at DESC, e.id DESC
            """
        ),
        {"codes": list(codes)},
    ).mappings()
    return {r["code"]: dict(r) for r in rows}


def community(conn: Connection, code: str) -> Row | None:
    """A community's name and shape."""
    row = (
        conn.execute(
            text("SELECT code, name, ST_AsBinary(geom) AS wkb FROM communities WHERE code = :c"),
            {"c": code},
        )
        .mappings()
        .first()
    )
    return None if row is None else {**row, "shape": _shape(row["wkb"])}


def community_grids_union(conn: Connection, code: str) -> BaseGeometry:
    """The area the community's grids cover today."""
    wkb = conn.execute(
        text(
            "SELECT ST_AsBinary(coalesce(ST_Union(geom), 'GEOMETRYCOLLECTION EMPTY'::geometry)) "
            "FROM grids WHERE community_code = :c"
        ),
        {"c": code},
    ).scalar_one()
    return _shape(wkb)


def codes_ever_used(conn: Connection, community: str) -> list[str]:
    """Every grid code the community has had (today's and retired ones)."""
    return list(
        conn.execute(
            text(
                "SELECT code FROM grids WHERE community_code = :c "
                "UNION SELECT code FROM grid_versions WHERE community_code = :c"
            ),
            {"c": community},
        ).scalars()
    )


def code_ever_used(conn: Connection, code: str) -> bool:
    """True when a grid has ever had this code (codes are never given twice)."""
    return bool(
        conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM grids WHERE code = :c) "
                "OR EXISTS (SELECT 1 FROM grid_versions WHERE code = :c)"
            ),
            {"c": code},
        ).scalar_one()
    )


def workers_of(conn: Connection, codes: Sequence[str]) -> dict[str, list[str]]:
    """Worker codes per grid."""
    out: dict[str, list[str]] = {c: [] for c in codes}
    for grid, worker in conn.execute(
        text(
            "SELECT grid_code, code FROM grid_workers WHERE grid_code = ANY(:codes) ORDER BY code"
        ),
        {"codes": list(codes)},
    ):
        out[grid].append(worker)
    return out


def known_workers(conn: Connection, workers: Sequence[str]) -> dict[str, list[str]]:
    """The grids each named worker serves today (workers who do not exist are left out)."""
    rows = conn.execute(
        text(
            "SELECT w.code, coalesce(array_agg(a.grid_code ORDER BY a.grid_code) "
            "FILTER (WHERE a.grid_code IS NOT NULL), '{}') "
            "FROM workers w LEFT JOIN worker_assignments a "
            "ON a.worker_code = w.code AND a.valid_to IS NULL "
            "WHERE w.code = ANY(:w) GROUP BY w.code"
        ),
        {"w": list(workers)},
    )
    return {code: list(grids) for code, grids in rows}


def grids_without_workers(conn: Connection, codes: Sequence[str]) -> list[str]:
    """Those of the named grids that exist and have no worker."""
    return list(
        conn.execute(
            text(
                "SELECT g.code FROM grids g WHERE g.code = ANY(:codes) "
                "AND NOT EXISTS (SELECT 1 FROM grid_workers w WHERE w.grid_code = g.code) "
                "ORDER BY g.code"
            ),
            {"codes": list(codes)},
        ).scalars()
    )


def buildings_in(conn: Connection, area: BaseGeometry) -> dict[str, tuple[str | None, int]]:
    """Each building in `area` -> (its grid by the locate rule: the smallest code covering it,
    its households)."""
    rows = conn.execute(
        text(
            """
            SELECT b.code, b.households,
                   (SELECT min(g.code) FROM grids g
                     WHERE g.geom && b.geom AND ST_Covers(g.geom, b.geom)) AS grid
            FROM buildings b
            WHERE ST_Intersects(b.geom, ST_GeomFromWKB(:wkb, 4326))
            """
        ),
        {"wkb": _wkb(area)},
    )
    return {code: (grid, households) for code, households, grid in rows}


# -- what an edit writes --------------------------------------------------------------------------
def begin_edit(conn: Connection, kind: str, actor: str, reason: str) -> int:
    """Record an edit and make it the one this transaction's grid changes belong to."""
    edit = int(
        conn.execute(
            text("INSERT INTO grid_edits (kind, actor, reason) VALUES (:k, :a, :r) RETURNING id"),
            {"k": kind, "a": actor, "r": reason},
        ).scalar_one()
    )
    conn.execute(text("SELECT set_config('geo.grid_edit', :e, true)"), {"e": str(edit)})
    return edit


def insert_grid(
    conn: Connection, code: str, name: str, community: str, shape: BaseGeometry
) -> None:
    """A new grid (its first version starts in grid_versions)."""
    conn.execute(
        text(
            f"INSERT INTO grids (code, name, community_code, area_m2, geom) "
            f"SELECT :code, :name, :community, ST_Area(g::geography), g FROM {_MULTI} AS g"
        ),
        {"code": code, "name": name, "community": community, "wkb": _wkb(shape)},
    )


def update_grid(
    conn: Connection,
    code: str,
    *,
    shape: BaseGeometry | None = None,
    name: str | None = None,
    new_code: str | None = None,
) -> None:
    """Change a grid's shape, name or code (None: keep)."""
    conn.execute(
        text(
            f"""
            UPDATE grids SET
              geom = CASE WHEN :has_shape THEN (SELECT g FROM {_MULTI} AS g) ELSE geom END,
              area_m2 = CASE WHEN :has_shape
                        THEN (SELECT ST_Area(g::geography) FROM {_MULTI} AS g) ELSE area_m2 END,
              name = coalesce(:name, name), code = coalesce(:new_code, code),
              updated_at = now()
            WHERE code = :code
            """
        ),
        {
            "code": code,
            "has_shape": shape is not None,
            "wkb": _wkb(shape) if shape is not None else b"",
            "name": name,
            "new_code": new_code,
        },
    )


def move_workers(conn: Connection, moves: dict[str, str], leaving: Sequence[str]) -> None:
    """Workers (code -> grid code) to serve a grid: their assignments to the `leaving` grids
    end, one to the new grid begins, and a home grid among the leaving ones becomes the new."""
    if not moves:
        return
    params = {"w": list(moves), "g": list(moves.values()), "leaving": list(leaving)}
    conn.execute(
        text(
            "UPDATE worker_assignments SET valid_to = now() "
            "WHERE worker_code = ANY(:w) AND grid_code = ANY(:leaving) AND valid_to IS NULL"
        ),
        params,
    )
    conn.execute(
        text(
            "INSERT INTO worker_assignments (worker_code, grid_code) "
            "SELECT * FROM unnest(CAST(:w AS text[]), CAST(:g AS text[])) "
            "ON CONFLICT (worker_code, grid_code) WHERE valid_to IS NULL DO NOTHING"
        ),
        params,
    )
    conn.execute(
        text(
            "UPDATE workers w SET grid_code = m.grid, updated_at = now() "
            "FROM unnest(CAST(:w AS text[]), CAST(:g AS text[])) AS m(worker, grid) "
            "WHERE w.code = m.worker AND (w.grid_code = ANY(:leaving) OR w.grid_code IS NULL)"
        ),
        params,
    )


def add_assignments(conn: Connection, serve: dict[str, list[str]]) -> None:
    """Workers (code -> grid codes) to serve more grids from now on, keeping those they
    serve."""
    pairs = [(w, g) for w, grids in serve.items() for g in grids]
    if not pairs:
        return
    conn.execute(
        text(
            "INSERT INTO worker_assignments (worker_code, grid_code) "
            "SELECT * FROM unnest(CAST(:w AS text[]), CAST(:g AS text[])) "
            "ON CONFLICT (worker_code, grid_code) WHERE valid_to IS NULL DO NOTHING"
        ),
        {"w": [w for w, _ in pairs], "g": [g for _, g in pairs]},
    )


def delete_grids(conn: Connection, codes: Sequence[str]) -> None:
    """Retire grids (their last versions end in grid_versions)."""
    conn.execute(text("DELETE FROM grids WHERE code = ANY(:codes)"), {"codes": list(codes)})


def record_lineage(conn: Connection, edit: int) -> list[Row]:
    """Which grid versions this edit ended gave area to which versions it made (m²), by code
    (RETURNING alone gives the join's order, which a change of the table's layout can turn)."""
    rows = conn.execute(
        text(
            """
            WITH added AS (
            INSERT INTO grid_lineage (edit_id, from_code, from_version, to_code, to_version,
                                      area_m2)
            SELECT :edit, o.code, o.version, n.code, n.version,
                   ST_Area(ST_Intersection(o.geom, n.geom)::geography)
            FROM grid_versions o JOIN grid_versions n
              ON o.geom && n.geom AND ST_Relate(o.geom, n.geom, '2********')
            WHERE o.ended_by = :edit AND n.edit_id = :edit
              -- interiors that meet in a sliver too thin to measure gave no area
              AND ST_Area(ST_Intersection(o.geom, n.geom)::geography) > 0
            ON CONFLICT DO NOTHING
            RETURNING from_code, from_version, to_code, to_version, area_m2)
            SELECT * FROM added ORDER BY from_code, from_version, to_code, to_version
            """
        ),
        {"edit": edit},
    ).mappings()
    return [dict(r) for r in rows]


def record_recode(conn: Connection, edit: int, old: str, new: str) -> None:
    """A recode's lineage: the same grid under its new code (whatever its shape did)."""
    conn.execute(
        text(
            """
            INSERT INTO grid_lineage (edit_id, from_code, from_version, to_code, to_version,
                                      area_m2)
            SELECT :edit, o.code, o.version, n.code, n.version, n.area_m2
            FROM grid_versions o, grid_versions n
            WHERE o.code = :old AND o.ended_by = :edit AND n.code = :new AND n.edit_id = :edit
            ON CONFLICT DO NOTHING
            """
        ),
        {"edit": edit, "old": old, "new": new},
    )


def finish_edit(
    conn: Connection, edit: int, summary: dict[str, Any], kinds: Sequence[str]
) -> datetime:
    """Store what the edit did, and bump the versions of what it changed (tiles and layers
    see new data); returns the edit's moment."""
    at = conn.execute(
        text("UPDATE grid_edits SET summary = CAST(:s AS jsonb) WHERE id = :e RETURNING at"),
        {"s": json.dumps(summary, ensure_ascii=False), "e": edit},
    ).scalar_one()
    versions.bump(conn, *kinds)
    return at  # type: ignore[no-any-return]


def end_import(conn: Connection, edit: int, inserted: int, updated: int, deleted: int) -> None:
    """Close the edit of an import of grids: its lineage and counts, or nothing at all when
    the import changed no grid."""
    if not (inserted or updated or deleted):
        conn.execute(text("DELETE FROM grid_edits WHERE id = :e"), {"e": edit})
        return
    record_lineage(conn, edit)
    summary = {"inserted": inserted, "updated": updated, "deleted": deleted}
    conn.execute(
        text("UPDATE grid_edits SET summary = CAST(:s AS jsonb) WHERE id = :e"),
        {"s": json.dumps(summary), "e": edit},
    )


# -- the QA rules on what an edit touched ---------------------------------------------------------
def gaps(conn: Connection, community: str) -> BaseGeometry:
    """The part of a community no grid covers (possibly empty)."""
    wkb = conn.execute(
        text(
            """
            SELECT ST_AsBinary(ST_CollectionExtract(ST_Difference(c.geom, coalesce(
                     (SELECT ST_Union(g.geom) FROM grids g WHERE g.community_code = c.code),
                     ST_SetSRID('GEOMETRYCOLLECTION EMPTY'::geometry, 4326))), 3))
            FROM communities c WHERE c.code = :c
            """
        ),
        {"c": community},
    ).scalar_one()
    return _shape(wkb)


def new_gaps(conn: Connection, community: str, before: BaseGeometry, min_area: float) -> list[Row]:
    """Parts of the community no grid covers now that were covered before, of `min_area` m²
    or more, with a point inside each."""
    rows = conn.execute(
        text(
            """
            WITH now AS (
              SELECT ST_Difference(c.geom, coalesce(
                       (SELECT ST_Union(g.geom) FROM grids g WHERE g.community_code = c.code),
                       ST_SetSRID('GEOMETRYCOLLECTION EMPTY'::geometry, 4326))) AS geom
              FROM communities c WHERE c.code = :c
            ), opened AS (
              SELECT (ST_Dump(ST_CollectionExtract(
                        ST_Difference(now.geom, ST_GeomFromWKB(:before, 4326)), 3))).geom AS geom
              FROM now
            )
            SELECT ST_Area(geom::geography) AS area_m2,
                   ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat
            FROM opened WHERE ST_Area(geom::geography) >= :min
            ORDER BY area_m2 DESC
            """
        ),
        {"c": community, "before": _wkb(before), "min": min_area},
    ).mappings()
    return [dict(r) for r in rows]


def overlaps_of(conn: Connection, codes: Sequence[str], min_area: float) -> list[Row]:
    """Overlaps of `min_area` m² or more between the named grids and any other grid."""
    rows = conn.execute(
        text(
            """
            SELECT least(a.code, b.code) AS grid_a, greatest(a.code, b.code) AS grid_b,
                   ST_Area(ST_Intersection(a.geom, b.geom)::geography) AS area_m2,
                   ST_X(ST_PointOnSurface(ST_Intersection(a.geom, b.geom))) AS lon,
                   ST_Y(ST_PointOnSurface(ST_Intersection(a.geom, b.geom))) AS lat
            FROM grids a JOIN grids b ON a.code <> b.code AND a.geom && b.geom
            WHERE a.code = ANY(:codes) AND (NOT b.code = ANY(:codes) OR a.code < b.code)
              AND ST_Relate(a.geom, b.geom, '2********')
            """
        ),
        {"codes": list(codes)},
    ).mappings()
    return [dict(r) for r in rows if r["area_m2"] >= min_area]


def outside_community(conn: Connection, codes: Sequence[str], min_area: float) -> list[Row]:
    """The named grids' area outside their community, of `min_area` m² or more."""
    rows = conn.execute(
        text(
            """
            SELECT g.code AS grid, ST_Area(d::geography) AS area_m2,
                   ST_X(ST_PointOnSurface(d)) AS lon, ST_Y(ST_PointOnSurface(d)) AS lat
            FROM grids g JOIN communities c ON c.code = g.community_code,
                 ST_CollectionExtract(ST_Difference(g.geom, c.geom), 3) AS d
            WHERE g.code = ANY(:codes) AND NOT ST_CoveredBy(g.geom, c.geom)
            """
        ),
        {"codes": list(codes)},
    ).mappings()
    return [dict(r) for r in rows if r["area_m2"] >= min_area]


def grid_figures(conn: Connection, codes: Sequence[str]) -> list[Row]:
    """The named grids as they are now: name, version, area, buildings and households (by the
    locate rule), workers, and the shape as GeoJSON."""
    rows = conn.execute(
        text(
            """
            SELECT g.code, g.name, g.community_code, g.version, g.valid_from, g.area_m2,
                   ST_AsGeoJSON(g.geom, 7)::json AS geometry,
                   (SELECT count(*) FROM buildings b
                     WHERE ST_Covers(g.geom, b.geom) AND NOT EXISTS (
                       SELECT 1 FROM grids o WHERE o.code < g.code AND o.geom && b.geom
                       AND ST_Covers(o.geom, b.geom))) AS buildings,
                   (SELECT coalesce(sum(b.households), 0) FROM buildings b
                     WHERE ST_Covers(g.geom, b.geom) AND NOT EXISTS (
                       SELECT 1 FROM grids o WHERE o.code < g.code AND o.geom && b.geom
                       AND ST_Covers(o.geom, b.geom))) AS households,
                   coalesce((SELECT array_agg(w.code ORDER BY w.code) FROM grid_workers w
                              WHERE w.grid_code = g.code), '{}') AS workers
            FROM grids g WHERE g.code = ANY(:codes) ORDER BY g.code
            """
        ),
        {"codes": list(codes)},
    ).mappings()
    return [{**r, "households": int(r["households"])} for r in rows]


# -- history --------------------------------------------------------------------------------------
def history(conn: Connection, code: str) -> list[Row]:
    """Every version a code has had, oldest first, with the edits that made and ended it."""
    rows = conn.execute(
        text(
            """
            SELECT v.code, v.version, v.name, v.community_code, v.area_m2, v.valid_from,
                   v.valid_to, ST_AsGeoJSON(v.geom, 7)::json AS geometry,
                   m.id AS edit_id, m.kind AS edit_kind, m.actor AS edit_actor,
                   m.reason AS edit_reason,
                   e.id AS ended_by, e.kind AS ended_kind, e.actor AS ended_actor,
                   coalesce((SELECT json_agg(json_build_object('code', l.from_code,
                              'version', l.from_version, 'area_m2', l.area_m2)
                              ORDER BY l.from_code)
                     FROM grid_lineage l WHERE l.to_code = v.code AND l.to_version = v.version
                       AND NOT (l.from_code = v.code)), '[]') AS came_from,
                   coalesce((SELECT json_agg(json_build_object('code', l.to_code,
                              'version', l.to_version, 'area_m2', l.area_m2)
                              ORDER BY l.to_code)
                     FROM grid_lineage l WHERE l.from_code = v.code
                       AND l.from_version = v.version AND NOT (l.to_code = v.code)), '[]')
                     AS went_to
            FROM grid_versions v
            LEFT JOIN grid_edits m ON m.id = v.edit_id
            LEFT JOIN grid_edits e ON e.id = v.ended_by
            WHERE v.code = :code ORDER BY v.version
            """
        ),
        {"code": code},
    ).mappings()
    return [dict(r) for r in rows]


def edits_since(conn: Connection, since: datetime | None, limit: int) -> list[Row]:
    """Edits from `since` on (all with None), oldest first."""
    rows = conn.execute(
        text(
            "SELECT id, kind, actor, reason, at, summary FROM grid_edits "
            "WHERE CAST(:since AS timestamptz) IS NULL OR at >= :since ORDER BY at, id LIMIT :n"
        ),
        {"since": since, "n": limit},
    ).mappings()
    return [dict(r) for r in rows]


def version_at(conn: Connection, code: str, at: datetime) -> Row | None:
    """The version of a grid valid at `at`, with its shape as GeoJSON."""
    row = (
        conn.execute(
            text(
                """
                SELECT code, name, community_code, version, area_m2, valid_from, valid_to,
                       ST_AsGeoJSON(geom, 7)::json AS geometry
                FROM grid_versions
                WHERE code = :code AND valid_from <= :at AND (valid_to IS NULL OR valid_to > :at)
                """
            ),
            {"code": code, "at": at},
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def grids_as_of(conn: Connection, at: datetime, community: str | None = None) -> list[Row]:
    """The grids as they were at `at`: code, version, name, community, area, WKB."""
    rows = conn.execute(
        text(
            """
            SELECT code, version, name, community_code, area_m2, ST_AsBinary(geom) AS wkb
            FROM grid_versions
            WHERE valid_from <= :at AND (valid_to IS NULL OR valid_to > :at)
              AND (CAST(:community AS text) IS NULL OR community_code = :community)
            ORDER BY code
            """
        ),
        {"at": at, "community": community},
    ).mappings()
    return [dict(r) for r in rows]
