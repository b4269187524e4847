"""All SQL of re-division proposals: what a division reads (communities, today's grids,
buildings with their estates, walkable streets) and the proposals it writes.

Geometry travels as WKB in lon/lat (EPSG:4326); values only as bound parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Connection, text

Row = dict[str, Any]
Box = tuple[float, float, float, float]  # lon/lat: west, south, east, north

KINDS = ("grids", "buildings", "roads")  # the data a proposal is made from


def communities(conn: Connection, codes: Sequence[str] | None) -> list[Row]:
    """code, name and lon/lat shape of the communities named (all when None), by code."""
    rows = conn.execute(
        text(
            "SELECT code, name, ST_AsBinary(geom) AS wkb FROM communities "
            "WHERE CAST(:codes AS text[]) IS NULL OR code = ANY(CAST(:codes AS text[])) "
            "ORDER BY code"
        ),
        {"codes": None if codes is None else list(codes)},
    ).mappings()
    return [
        {"code": r["code"], "name": r["name"], "shape": shapely.from_wkb(r["wkb"])} for r in rows
    ]


def grids(conn: Connection, communities: Sequence[str]) -> list[Row]:
    """Today's grids of those communities: code, community, version and lon/lat shape."""
    rows = conn.execute(
        text(
            "SELECT code, community_code, version, ST_AsBinary(geom) AS wkb FROM grids "
            "WHERE community_code = ANY(:codes) ORDER BY code"
        ),
        {"codes": list(communities)},
    ).mappings()
    return [
        {
            "code": r["code"],
            "community": r["community_code"],
            "version": int(r["version"]),
            "shape": shapely.from_wkb(r["wkb"]),
        }
        for r in rows
    ]


def buildings(conn: Connection, box: Box | None) -> dict[str, np.ndarray]:
    """Buildings (within the box, or all): lon, lat, households and estate (the road and
    estate of their parsed address, as the geocoder groups an estate; '' for none)."""
    rows = conn.execute(
        text(
            "SELECT ST_X(b.geom), ST_Y(b.geom), b.households, "
            "coalesce(a.road, '') || '|' || a.estate "
            "FROM buildings b LEFT JOIN building_addresses a ON a.code = b.code "
            "WHERE CAST(:w AS float8) IS NULL "
            "   OR b.geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326) ORDER BY b.id"
        ),
        dict(zip("wsen", box or (None,) * 4, strict=True)),
    ).all()
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return {
        "lon": np.asarray(cols[0], dtype=float),
        "lat": np.asarray(cols[1], dtype=float),
        "households": np.asarray(cols[2], dtype=np.int64),
        "estate": np.asarray([e or "" for e in cols[3]], dtype=object),
    }


def streets(conn: Connection, box: Box | None, osm_prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """The walkable streets (within the box, or all) as lon/lat lines, and whether each came
    from an OpenStreetMap extract (those meet only at shared vertices)."""
    rows = conn.execute(
        text(
            "SELECT ST_AsBinary(geom), starts_with(coalesce(code, ''), :osm) FROM street_edges "
            "WHERE walkable AND (CAST(:w AS float8) IS NULL "
            "   OR geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)) ORDER BY id"
        ),
        {"osm": osm_prefix, **dict(zip("wsen", box or (None,) * 4, strict=True))},
    ).all()
    lines = shapely.from_wkb([r[0] for r in rows]) if rows else np.zeros(0, dtype=object)
    return np.asarray(lines, dtype=object), np.asarray([bool(r[1]) for r in rows], dtype=bool)


def versions(conn: Connection) -> dict[str, int]:
    """The data version of each kind a proposal is made from (0: never imported)."""
    rows = conn.execute(
        text("SELECT kind, version FROM dataset_versions WHERE kind = ANY(:k)"),
        {"k": list(KINDS)},
    )
    found = {kind: int(version) for kind, version in rows}
    return {kind: found.get(kind, 0) for kind in KINDS}


# -- proposals ---------------------------------------------------------------------------------
def start(conn: Connection, by: str, params: Row, versions: Row, total: int) -> int:
    """A new proposal, running; its id."""
    return int(
        conn.execute(
            text(
                "INSERT INTO division_proposals (status, created_by, params, versions, "
                "communities_total) VALUES ('running', :by, CAST(:params AS jsonb), "
                "CAST(:versions AS jsonb), :total) RETURNING id"
            ),
            {
                "by": by,
                "params": json.dumps(params),
                "versions": json.dumps(versions),
                "total": total,
            },
        ).scalar_one()
    )


def progress(conn: Connection, proposal: int, done: int) -> None:
    """How many communities are divided so far."""
    conn.execute(
        text("UPDATE division_proposals SET communities_done = :d WHERE id = :id"),
        {"d": done, "id": proposal},
    )


def add_grids(conn: Connection, proposal: int, rows: list[Row]) -> None:
    """The proposed grids of some communities (geometry as lon/lat WKB)."""
    if not rows:
        return
    conn.execute(
        text(
            "INSERT INTO division_proposal_grids (proposal_id, code, name, community_code, "
            "households, buildings, area_m2, polsby_popper, takes, geom) VALUES (:proposal, "
            ":code, :name, :community, :households, :buildings, :area_m2, :polsby_popper, "
            "CAST(:takes AS jsonb), ST_Multi(ST_SetSRID(ST_GeomFromWKB(:wkb), 4326)))"
        ),
        [{**r, "proposal": proposal, "takes": json.dumps(r["takes"])} for r in rows],
    )


def finish(conn: Connection, proposal: int, figures: Row, notes: list[Any], seconds: float) -> None:
    """The proposal done, with its figures and notes."""
    conn.execute(
        text(
            "UPDATE division_proposals SET status = 'done', finished_at = now(), "
            "figures = CAST(:figures AS jsonb), notes = CAST(:notes AS jsonb), "
            "seconds = :seconds, communities_done = communities_total WHERE id = :id"
        ),
        {
            "figures": json.dumps(figures),
            "notes": json.dumps(notes, ensure_ascii=False),
            "seconds": seconds,
            "id": proposal,
        },
    )


def fail(conn: Connection, proposal: int, error: str) -> None:
    """The proposal failed, saying why."""
    conn.execute(
        text(
            "UPDATE division_proposals SET status = 'failed', finished_at = now(), "
            "error = :error WHERE id = :id"
        ),
        {"error": error, "id": proposal},
    )


def listing(conn: Connection, limit: int) -> list[Row]:
    """The latest proposals, newest first: what was asked, status, progress, how many grids,
    and the edit that applied each (None: not applied)."""
    rows = conn.execute(
        text(
            """
            SELECT p.id, p.status, p.created_by, p.created_at, p.finished_at, p.params,
                   p.communities_total, p.communities_done,
                   CAST(p.figures -> 'all' -> 'proposal' ->> 'grids' AS integer) AS grids,
                   (SELECT min(e.id) FROM grid_edits e WHERE e.kind = 'redivide'
                     AND e.summary ->> 'proposal' = CAST(p.id AS text)) AS applied_edit
            FROM division_proposals p ORDER BY p.id DESC LIMIT :n
            """
        ),
        {"n": limit},
    ).mappings()
    return [dict(r) for r in rows]


def proposal(conn: Connection, proposal: int) -> Row | None:
    """One proposal's row (None: no such proposal)."""
    row = (
        conn.execute(text("SELECT * FROM division_proposals WHERE id = :id"), {"id": proposal})
        .mappings()
        .first()
    )
    return dict(row) if row else None


def applied(conn: Connection, proposal: int) -> Row | None:
    """The grid edit that applied a proposal: id, actor, moment (None: not applied)."""
    row = (
        conn.execute(
            text(
                "SELECT id AS edit, actor, at FROM grid_edits WHERE kind = 'redivide' "
                "AND summary ->> 'proposal' = CAST(:p AS text) ORDER BY id LIMIT 1"
            ),
            {"p": proposal},
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def proposal_grids(conn: Connection, proposal: int) -> list[Row]:
    """The grids of a proposal, by code, with their lon/lat shapes."""
    rows = conn.execute(
        text(
            "SELECT code, name, community_code, households, buildings, area_m2, polsby_popper, "
            "takes, ST_AsBinary(geom) AS wkb FROM division_proposal_grids "
            "WHERE proposal_id = :id ORDER BY code"
        ),
        {"id": proposal},
    ).mappings()
    out = []
    for r in rows:
        row = dict(r)
        row["shape"] = shapely.from_wkb(row.pop("wkb"))
        out.append(row)
    return out
