"""All SQL of field work: campaigns and their building snapshots, visits, progress and the
buildings still to visit (SQLAlchemy Core and text(), bound parameters only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text, update

from geo_service.db.models import campaign_visits, campaigns
from geo_service.grids.store import nearest_sql

Row = dict[str, Any]


def now(conn: Connection) -> datetime:
    """The transaction's moment."""
    return conn.execute(text("SELECT now()")).scalar_one()  # type: ignore[no-any-return]


# -- campaigns -----------------------------------------------------------------------------------
def unknown_codes(conn: Connection, kind: str, codes: Sequence[str]) -> list[str]:
    """The codes that name no community (kind 'communities') or no grid today ('grids')."""
    table = "communities" if kind == "communities" else "grids"
    found = conn.execute(
        text(
            f"SELECT t.code FROM {table} t "
            "JOIN unnest(CAST(:codes AS text[])) AS asked(code) ON asked.code = t.code"
        ),
        {"codes": list(codes)},
    ).scalars()
    known = set(found)
    return [c for c in codes if c not in known]


def insert_campaign(conn: Connection, values: Row) -> int:
    """A new campaign (its totals filled in by `snapshot`); its id."""
    row = conn.execute(
        insert(campaigns).values(**values, buildings=0, households=0).returning(campaigns.c.id)
    )
    return int(row.scalar_one())


# The buildings of the scope, each in the grid the locate rule gives it (the smallest code of
# the grids covering it, else the nearest grid within the tolerance), kept when that grid is
# in the scope; then the totals per grid. Only buildings in the scope grids' box (widened by
# the tolerance) are located: a building covered by a scope grid lies in it, and every grid
# covering a building in the box meets the box. Covering is found grid by grid (each grid's
# shape prepared once for the buildings under it: 0.2 s for a city, against 2 s building by
# building); the nearest grid only for the few buildings no grid covers (COALESCE runs its
# subquery only when the first value is NULL).
_SNAPSHOT = f"""
WITH scope AS MATERIALIZED (
  SELECT g.code, g.community_code, g.geom
  FROM grids g JOIN (SELECT DISTINCT unnest(CAST(:codes AS text[])) AS code) asked
    ON asked.code = CASE WHEN :kind = 'grids' THEN g.code ELSE g.community_code END
), area AS MATERIALIZED (  -- the scope's box, widened by the tolerance (in degrees, never less)
  SELECT ST_SetSRID(ST_Expand(ST_Extent(geom), :tol / (110000.0 * cos(radians(
           least(abs(avg(ST_Y(ST_Centroid(geom)))), 89)))))::geometry, 4326) AS box
  FROM scope
), covered AS (
  SELECT b.id, min(g.code) AS grid_code
  FROM area, grids g JOIN buildings b ON b.geom && g.geom AND ST_Covers(g.geom, b.geom)
  WHERE g.geom && area.box
  GROUP BY b.id
), located AS MATERIALIZED (
  SELECT b.code, b.households,
         coalesce(c.grid_code, (SELECT n.code FROM ({nearest_sql("b.geom", ":tol")}) n))
           AS grid_code
  FROM area, buildings b LEFT JOIN covered c ON c.id = b.id
  WHERE b.geom && area.box
), stored AS (
  INSERT INTO campaign_buildings (campaign_id, building_code, grid_code, community_code,
                                  households)
  SELECT :campaign, l.code, l.grid_code, s.community_code, l.households
  FROM located l JOIN scope s ON s.code = l.grid_code
  RETURNING grid_code, community_code, households
), per_grid AS (
  INSERT INTO campaign_grids (campaign_id, grid_code, community_code, buildings, households)
  SELECT :campaign, grid_code, community_code, count(*), sum(households)
  FROM stored GROUP BY grid_code, community_code
  RETURNING buildings, households
)
SELECT coalesce(sum(buildings), 0) AS buildings, coalesce(sum(households), 0) AS households
FROM per_grid
"""


def snapshot(
    conn: Connection, campaign: int, kind: str, codes: Sequence[str], tolerance_m: float
) -> tuple[int, int]:
    """Store the campaign's buildings with their grid and community, and its totals per
    grid; (buildings, households) stored, also written on the campaign."""
    params = {"campaign": campaign, "kind": kind, "codes": list(codes), "tol": tolerance_m}
    found = conn.execute(text(_SNAPSHOT), params).one()
    buildings, households = int(found.buildings), int(found.households)
    conn.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign)
        .values(buildings=buildings, households=households)
    )
    return buildings, households


_CAMPAIGNS = """
SELECT c.id, c.name, c.kind, c.target, c.rounds, c.scope_kind, c.scope_codes, c.starts_at,
       c.due_at, c.created_by, c.created_at, c.buildings, c.households,
       CASE WHEN :counted THEN (SELECT count(*) FROM campaign_visits v WHERE v.campaign_id = c.id)
       END AS visits
FROM campaigns c
WHERE (CAST(:id AS int) IS NULL OR c.id = :id)
  AND (CAST(:grids AS text[]) IS NULL OR EXISTS (
        SELECT 1 FROM campaign_grids cg
        WHERE cg.campaign_id = c.id AND cg.grid_code = ANY(:grids)))
ORDER BY c.id DESC
"""


def campaign_rows(
    conn: Connection, id_: int | None, grids: Sequence[str] | None, *, counted: bool = True
) -> list[Row]:
    """Campaigns (one, or all), newest first; with `grids`, only those covering one of them.
    `counted`: with the number of visits of each (None without)."""
    params = {"id": id_, "grids": None if grids is None else list(grids), "counted": counted}
    return [dict(r) for r in conn.execute(text(_CAMPAIGNS), params).mappings()]


def campaign_grids(conn: Connection, campaign: int) -> list[str]:
    """The grids of a campaign's buildings."""
    rows = conn.execute(
        text("SELECT grid_code FROM campaign_grids WHERE campaign_id = :c ORDER BY grid_code"),
        {"c": campaign},
    )
    return list(rows.scalars())


# -- progress ------------------------------------------------------------------------------------
# Per grid of the snapshot: its buildings and households, and what the visits (of one round,
# or all) added: buildings first reached (any outcome but no_one_home), households, visits,
# revisits, no_one_home visits and flagged visits (campaign_progress: the visits' own sums,
# kept as each is recorded).
_PROGRESS = """
WITH done AS (
  SELECT grid_code, sum(buildings_done) AS buildings_done,
         sum(households_done) AS households_done, sum(visits) AS visits,
         sum(revisits) AS revisits, sum(no_one_home) AS no_one_home, sum(flagged) AS flagged
  FROM campaign_progress
  WHERE campaign_id = :c AND (CAST(:round AS int) IS NULL OR round = :round)
  GROUP BY grid_code
)
SELECT s.grid_code AS code,
       coalesce(g.name, (SELECT gv.name FROM grid_versions gv WHERE gv.code = s.grid_code
                         ORDER BY gv.valid_from DESC LIMIT 1)) AS name,
       s.community_code, c.name AS community_name, s.buildings, s.households,
       coalesce(d.buildings_done, 0)::int AS buildings_done,
       coalesce(d.households_done, 0)::int AS households_done,
       coalesce(d.visits, 0)::int AS visits, coalesce(d.revisits, 0)::int AS revisits,
       coalesce(d.no_one_home, 0)::int AS no_one_home, coalesce(d.flagged, 0)::int AS flagged
FROM campaign_grids s
LEFT JOIN done d ON d.grid_code = s.grid_code
LEFT JOIN grids g ON g.code = s.grid_code
LEFT JOIN communities c ON c.code = s.community_code
WHERE s.campaign_id = :c
ORDER BY s.grid_code
"""


def progress_per_grid(conn: Connection, campaign: int, round_: int | None) -> list[Row]:
    """The progress figures of each grid of the campaign (of one round, or all)."""
    found = conn.execute(text(_PROGRESS), {"c": campaign, "round": round_})
    names = list(found.keys())
    return [dict(zip(names, r, strict=True)) for r in found.all()]  # (4,000 rows: no mappings)


def grid_workers(conn: Connection, campaign: int) -> dict[str, list[tuple[str, str]]]:
    """The workers serving each grid of a campaign today, (code, name) by code."""
    rows = conn.execute(
        text(
            "SELECT w.grid_code, w.code, w.name FROM grid_workers w "
            "JOIN campaign_grids cg ON cg.campaign_id = :c AND cg.grid_code = w.grid_code "
            "ORDER BY w.grid_code, w.code"
        ),
        {"c": campaign},
    ).all()
    found: dict[str, list[tuple[str, str]]] = {}
    for grid, code, name in rows:
        found.setdefault(grid, []).append((code, name))
    return found


# -- visits --------------------------------------------------------------------------------------
# A visit is recorded in five round trips: BEGIN, `context` (what the checks need, the building
# locked), `round_so_far` (a statement of its own, so that it sees a visit committed while this
# one waited for the lock), `insert_visit` (the visit and its progress) and COMMIT; it took ten.
# Under load (tests/benchmarks/bench_visits.py) the round trips and the SQLAlchemy statements
# built per call cost far more than the SQL itself (each under 0.1 ms), so there are few, and
# the statements are made once, here.
_CONTEXT = text(
    """
SELECT earlier.id AS earlier_id, earlier.request_hash AS earlier_hash,
       c.rounds, c.starts_at, b.found AS building_found, b.distance_m,
       s.grid_code, s.community_code, s.households
FROM (VALUES (1)) AS one (x)
LEFT JOIN campaign_visits earlier
  ON earlier.idempotency_owner = :owner AND earlier.idempotency_key = :key
LEFT JOIN campaigns c ON c.id = :campaign
LEFT JOIN LATERAL (
  SELECT true AS found,
         ST_Distance(coalesce(b.footprint, b.geom)::geography,
                     ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography) AS distance_m
  FROM buildings b WHERE b.code = :building
) b ON true
LEFT JOIN LATERAL (
  SELECT cb.grid_code, cb.community_code, cb.households
  FROM campaign_buildings cb WHERE cb.campaign_id = :campaign AND cb.building_code = :building
  FOR UPDATE
) s ON true
"""
)


def context(
    conn: Connection, campaign: int, code: str, owner: str, key: str | None, x: float, y: float
) -> Row:
    """What recording a visit checks, in one statement: the visit `owner` already recorded
    under `key` (earlier_id, earlier_hash), the campaign's rounds and start (None: no such
    campaign), whether the building exists and how far (x, y) is from it (metres on the
    spheroid, from its footprint when it has one), and the campaign's snapshot row of the
    building (grid_code, community_code, households; None: outside the scope), locked until
    the transaction ends: visits of one building are recorded one after the other, so each
    knows whether it is a revisit (`round_so_far`, read after the lock is held)."""
    params = {"campaign": campaign, "building": code, "owner": owner, "key": key, "x": x, "y": y}
    return dict(conn.execute(_CONTEXT, params).mappings().one())


_BUILDING = text(
    """
SELECT b.code, b.address, b.name, b.households, ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat,
       ST_Distance(coalesce(b.footprint, b.geom)::geography,
                   ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography) AS distance_m
FROM buildings b WHERE b.code = :code
"""
)


def building(conn: Connection, code: str, x: float, y: float) -> Row | None:
    """A building (code, address, name, households, lon, lat) and how far the point (x, y)
    is from it, in metres on the spheroid (from its footprint when it has one)."""
    row = conn.execute(_BUILDING, {"code": code, "x": x, "y": y}).mappings().first()
    return dict(row) if row else None


_SO_FAR = text(
    "SELECT count(*) AS visits, coalesce(bool_or(outcome <> 'no_one_home'), false) AS reached, "
    "coalesce(sum(households_added), 0) AS households FROM campaign_visits "
    "WHERE campaign_id = :c AND round = :r AND building_code = :code"
)


def round_so_far(conn: Connection, campaign: int, round_: int, code: str) -> Row:
    """The building's round so far: visits, whether one reached someone, and the households
    its visits added up to."""
    params = {"c": campaign, "r": round_, "code": code}
    return dict(conn.execute(_SO_FAR, params).mappings().one())


def visit_by_key(conn: Connection, owner: str, key: str) -> Row | None:
    """The visit `owner` recorded under an Idempotency-Key: id and its request's hash."""
    row = conn.execute(
        select(campaign_visits.c.id, campaign_visits.c.request_hash).where(
            campaign_visits.c.idempotency_owner == owner,
            campaign_visits.c.idempotency_key == key,
        )
    ).first()
    return dict(row._mapping) if row else None


_COLUMNS = """
id, campaign_id, round, building_code, grid_code, community_code, households_reached, outcome,
note, at, recorded_at, recorded_by, ST_X(geom) AS lon, ST_Y(geom) AS lat, input_lon, input_lat,
input_crs, distance_m, flagged, flag_reason, revisit, first_reach, households_added,
incident_ref
"""
_STORED = (
    "campaign_id", "round", "building_code", "grid_code", "community_code",
    "households_reached", "outcome", "note", "at", "recorded_at", "recorded_by", "input_lon",
    "input_lat", "input_crs", "distance_m", "flagged", "flag_reason", "revisit", "first_reach",
    "households_added", "idempotency_key", "idempotency_owner", "request_hash",
)  # fmt: skip
_SUMS = ("buildings_done", "households_done", "visits", "revisits", "no_one_home", "flagged")
# The progress row of the visit's campaign, round and grid gets the visit's figures only when
# the visit is stored: a resend that meets its key (ON CONFLICT DO NOTHING) returns no row, so
# `progress` inserts nothing either.
_INSERT = text(
    f"""
WITH added AS (
  INSERT INTO campaign_visits ({", ".join(_STORED)}, geom)
  VALUES ({", ".join(":" + c for c in _STORED)}, ST_SetSRID(ST_MakePoint(:x, :y), 4326))
  ON CONFLICT (idempotency_owner, idempotency_key) DO NOTHING
  RETURNING {_COLUMNS}
), progress AS (
  INSERT INTO campaign_progress AS p (campaign_id, round, grid_code, {", ".join(_SUMS)})
  SELECT campaign_id, round, grid_code,
         {", ".join(f"CAST(:add_{c} AS int)" for c in _SUMS)}
  FROM added
  ON CONFLICT (campaign_id, round, grid_code) DO UPDATE
  SET {", ".join(f"{c} = p.{c} + excluded.{c}" for c in _SUMS)}
)
SELECT * FROM added
"""
)


def insert_visit(conn: Connection, values: Row, progress: Row) -> Row | None:
    """Insert a visit (with x, y: its point) and add `progress` (its figures: COUNTS' names
    ending in _done, visits, revisits, no_one_home, flagged) to its campaign, round and grid;
    the stored visit, or None when its caller's idempotency key is already taken (a
    concurrent resend waits for the first to commit, then yields)."""
    params = {**values, **{f"add_{c}": progress[c] for c in _SUMS}}
    row = conn.execute(_INSERT, params).mappings().first()
    return dict(row) if row else None


_VISITS = f"SELECT {_COLUMNS} FROM campaign_visits v"


def visit(conn: Connection, id_: int, *, lock: bool = False) -> Row | None:
    """One visit (locked until the transaction ends with `lock`)."""
    sql = _VISITS + " WHERE v.id = :id" + (" FOR UPDATE" if lock else "")
    row = conn.execute(text(sql), {"id": id_}).mappings().first()
    return dict(row) if row else None


def set_incident(conn: Connection, id_: int, ref: str) -> None:
    """Record the incident a visit became."""
    conn.execute(
        update(campaign_visits).where(campaign_visits.c.id == id_).values(incident_ref=ref)
    )


_FILTERS = """
WHERE (CAST(:campaign AS int) IS NULL OR v.campaign_id = :campaign)
  AND (CAST(:round AS int) IS NULL OR v.round = :round)
  AND (CAST(:grid AS text) IS NULL OR v.grid_code = :grid)
  AND (CAST(:building AS text) IS NULL OR v.building_code = :building)
  AND (CAST(:flagged AS boolean) IS NULL OR v.flagged = :flagged)
  AND (CAST(:grids AS text[]) IS NULL OR v.grid_code = ANY(:grids))
"""


def visits(conn: Connection, filters: Row, limit: int, offset: int) -> tuple[int, list[Row]]:
    """Visits matching the filters (campaign, round, grid, building, flagged, grids), newest
    first: the total and one page."""
    total = conn.execute(
        text("SELECT count(*) FROM campaign_visits v " + _FILTERS), filters
    ).scalar_one()
    page = conn.execute(
        text(_VISITS + _FILTERS + " ORDER BY v.id DESC LIMIT :limit OFFSET :offset"),
        {**filters, "limit": limit, "offset": offset},
    ).mappings()
    return int(total), [dict(r) for r in page]


# -- the route -----------------------------------------------------------------------------------
_TO_VISIT = """
SELECT cb.building_code AS code, b.address, b.name, cb.households, cb.grid_code,
       ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat,
       EXISTS (SELECT 1 FROM campaign_visits v
               WHERE v.campaign_id = :c AND v.round = :r AND v.building_code = cb.building_code)
         AS tried
FROM campaign_buildings cb
JOIN buildings b ON b.code = cb.building_code
WHERE cb.campaign_id = :c AND cb.grid_code = ANY(:grids)
  AND NOT EXISTS (SELECT 1 FROM campaign_visits v
                  WHERE v.campaign_id = :c AND v.round = :r
                    AND v.building_code = cb.building_code AND v.outcome <> 'no_one_home')
ORDER BY cb.building_code
"""


def to_visit(conn: Connection, campaign: int, round_: int, grids: Sequence[str]) -> list[Row]:
    """The buildings of these grids no visit has reached in the round (tried: someone went
    and nobody was home), with their points."""
    params = {"c": campaign, "r": round_, "grids": list(grids)}
    return [dict(r) for r in conn.execute(text(_TO_VISIT), params).mappings()]
