"""All SQL of the incidents domain (SQLAlchemy Core and text(), bound parameters only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from psycopg.types.json import Jsonb
from sqlalchemy import (
    Connection,
    Select,
    bindparam,
    column,
    func,
    select,
    table,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.sql.elements import ColumnElement

from geo_service.auth.policy import REPORTER_CONTACT
from geo_service.db.models import communities, grids, incident_events, incidents
from geo_service.grids.store import LOCATE_ONE

TERMINAL: Final = ("closed", "cancelled")
_JOINED = incidents.outerjoin(grids, grids.c.code == incidents.c.grid_code).outerjoin(
    communities, communities.c.code == incidents.c.community_code
)
# Personal data lives in these columns; only the internal detail view selects them.
_PERSONAL: Final = REPORTER_CONTACT
_PUBLIC: Final = tuple(
    c
    for c in incidents.c
    if c.name not in (*_PERSONAL, "geom", "idempotency_key", "idempotency_owner", "request_hash")
)


# The workers serving each grid today (a view of worker_assignments, migration
# 0004_worker_assignments).
_grid_workers = table(
    "grid_workers", column("grid_code"), column("code"), column("name"), column("phone")
)


def _workers_json() -> ColumnElement[Any]:
    """The workers of the incident's grid as a JSON list (one correlated subquery)."""
    w = _grid_workers.c
    worker = func.json_build_object("code", w.code, "name", w.name, "phone", w.phone)
    return (
        select(func.json_agg(aggregate_order_by(worker, w.code)))
        .where(w.grid_code == incidents.c.grid_code)
        .scalar_subquery()
        .label("workers")
    )


def _select(*, personal: bool = False, with_workers: bool = False) -> Select[Any]:
    columns: list[Any] = [
        *_PUBLIC,
        func.ST_X(incidents.c.geom).label("lon"),
        func.ST_Y(incidents.c.geom).label("lat"),
        grids.c.name.label("grid_name"),
        communities.c.name.label("community_name"),
    ]
    if personal:
        columns += [incidents.c[name] for name in _PERSONAL]
    if with_workers:
        columns.append(_workers_json())
    return select(*columns).select_from(_JOINED)


def _point(x: float, y: float) -> ColumnElement[Any]:
    return func.ST_SetSRID(func.ST_MakePoint(x, y), 4326)


# The history of an incident as the case file shows it, in this order.
EVENT_FIELDS: Final = (
    "action", "from_status", "to_status", "actor", "recorded_by", "note", "grid_code", "at",
)  # fmt: skip

# -- intake ---------------------------------------------------------------------------------------
# What a report meets where it is, in one statement: the incident its caller already made under
# its Idempotency-Key, every grid within the near-boundary distance of its point (the caller
# leaves out the grid the report goes to), the open incident of the same category close by that
# it likely repeats, and the point's locate (`grids.store.LOCATE_ONE`, its columns in their
# order after these five). Written for the driver (%(name)s placeholders): see `report_facts`.
_REPORT_FACTS = f"""
    SELECT earlier.id AS earlier_id, earlier.ref AS earlier_ref,
           earlier.request_hash AS earlier_hash,
           ARRAY(
               SELECT g.code FROM grids g
               -- degrees first, so the GiST index finds the few candidates (never a smaller
               -- radius than the metric one); the spheroid test alone scans every grid
               WHERE ST_DWithin(g.geom, p.geom, %(near)s / p.m_per_deg)
                 AND ST_DWithin(g.geom::geography, p.geom::geography, %(near)s)
               ORDER BY g.code
           ) AS near_grids,
           (
               SELECT i.ref FROM incidents i
               WHERE i.category = %(category)s
                 AND i.status NOT IN ('closed', 'cancelled')
                 AND i.received_at >= %(since)s
                 AND i.id IS DISTINCT FROM CAST(%(exclude)s AS bigint)
                 AND ST_DWithin(i.geom, p.geom, %(radius)s / p.m_per_deg)
                 AND ST_DWithin(i.geom::geography, p.geom::geography, %(radius)s)
               -- prefer the original report over one that is itself a duplicate, then the
               -- closest
               ORDER BY i.possible_duplicate_of IS NOT NULL,
                        ST_Distance(i.geom::geography, p.geom::geography),
                        i.received_at
               LIMIT 1
           ) AS duplicate,
           located.*
    FROM (
        SELECT ST_SetSRID(ST_MakePoint(CAST(%(x)s AS float8), CAST(%(y)s AS float8)), 4326)
                   AS geom,
               110000.0 * cos(radians(least(abs(CAST(%(y)s AS float8)), 89))) AS m_per_deg
    ) p
    CROSS JOIN ({LOCATE_ONE}) located
    LEFT JOIN incidents earlier
           ON earlier.idempotency_owner = %(owner)s AND earlier.idempotency_key = %(key)s
"""
_FACT_NAMES: Final = ("earlier_id", "earlier_ref", "earlier_hash", "near_grids", "duplicate")


def report_facts(
    conn: Connection,
    point: tuple[float, float],
    *,
    category: str,
    near_m: float,
    radius_m: float,
    since: datetime,
    tolerance_m: float,
    owner: str = "",
    key: str | None = None,
    exclude_id: int | None = None,
) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """For a report at `point` (WGS-84): earlier_id, earlier_ref and earlier_hash of the
    incident `owner` made under `key` (None when there is none); near_grids, the codes of
    every grid within `near_m` metres; duplicate, the ref of an open incident of `category`
    within `radius_m` received since `since` (not `exclude_id`); and the point's locate facts
    within `tolerance_m` (a row of `grids.store.locate_rows_async`, for
    `grids.locate.location_of`). One round trip, prepared, on the driver connection (as
    `grids.store.locate`)."""
    params = {
        "x": point[0],
        "y": point[1],
        "near": near_m,
        "radius": radius_m,
        "category": category,
        "since": since,
        "tol": tolerance_m,
        "exclude": exclude_id,
        "owner": owner,
        "key": key,
    }
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute(_REPORT_FACTS, params, prepare=True)
        return _split(cur.fetchone())


def _split(row: tuple[Any, ...] | None) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """(the facts by name, the locate facts) of a row of `_REPORT_FACTS`."""
    assert row is not None
    n = len(_FACT_NAMES)
    return dict(zip(_FACT_NAMES, row[:n], strict=True)), tuple(row[n:])


def by_idempotency_key(conn: Connection, owner: str, key: str) -> dict[str, Any] | None:
    """The incident `owner` created under an Idempotency-Key: id, ref and the hash of its
    request."""
    row = conn.execute(
        select(incidents.c.id, incidents.c.ref, incidents.c.request_hash).where(
            incidents.c.idempotency_owner == owner, incidents.c.idempotency_key == key
        )
    ).first()
    return dict(row._mapping) if row else None


# The columns a report is stored with, and each one's value when intake gives none (x and y
# become the point; none for a report not located).
REPORT_DEFAULTS: Final[dict[str, Any]] = {
    **dict.fromkeys(
        (
            "category", "description", "reporter_name", "reporter_phone", "reporter_email",
            "address_text", "media_url", "input_lon", "input_lat", "input_crs", "grid_code",
            "community_code", "locate_status", "distance_m", "possible_duplicate_of", "status",
            "received_at", "filed_at", "dispatched_at", "due_at", "updated_at", "source",
            "idempotency_key", "idempotency_owner", "request_hash", "x", "y",
        )
    ),
    "candidates": [],
    "address_candidates": [],
    "needs_location": False,
    "near_boundary": False,
    "near_grids": [],
}  # fmt: skip
_STORED = [name for name in REPORT_DEFAULTS if name not in ("x", "y")]
_CASE_FILE = [c.name for c in _PUBLIC] + list(_PERSONAL)
_EVENT_ARRAYS = ", ".join(
    f"CAST(%(event_{name})s AS {'timestamptz' if name == 'at' else 'text'}[])"
    for name in EVENT_FIELDS
)
# A report, its history and what its case file shows, in one statement: the incident (none
# when its caller's Idempotency-Key is already taken: ON CONFLICT DO NOTHING makes a concurrent
# retry wait for the first insert to commit, then yield instead of failing or creating a
# second incident), its events in order, then the incident with its grid's and community's
# names and the grid's workers (as `incident` reads it).
_INSERT_REPORT = f"""
    WITH new AS (
        INSERT INTO incidents ({", ".join(_STORED)}, geom)
        VALUES ({", ".join(f"%({name})s" for name in _STORED)},
                ST_SetSRID(ST_MakePoint(CAST(%(x)s AS float8), CAST(%(y)s AS float8)), 4326))
        ON CONFLICT (idempotency_owner, idempotency_key) DO NOTHING
        RETURNING *
    ), history AS (
        INSERT INTO incident_events (incident_id, {", ".join(EVENT_FIELDS)})
        SELECT new.id, {", ".join(f"e.{name}" for name in EVENT_FIELDS)}
        FROM new, unnest(
            {_EVENT_ARRAYS}
        ) WITH ORDINALITY AS e({", ".join(EVENT_FIELDS)}, n)
        ORDER BY e.n
    )
    SELECT {", ".join(f"new.{name}" for name in _CASE_FILE)},
           ST_X(new.geom) AS lon, ST_Y(new.geom) AS lat,
           g.name AS grid_name, c.name AS community_name,
           (SELECT json_agg(json_build_object('code', w.code, 'name', w.name, 'phone', w.phone)
                            ORDER BY w.code)
            FROM grid_workers w WHERE w.grid_code = new.grid_code) AS workers
    FROM new
    LEFT JOIN grids g ON g.code = new.grid_code
    LEFT JOIN communities c ON c.code = new.community_code
"""


def insert_report(
    conn: Connection, values: dict[str, Any], events: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """Store a new report (`values`: columns of REPORT_DEFAULTS) and its first events;
    (the incident as `incident` reads it with personal data, its events as `events` reads
    them), or None, with nothing stored, when its caller's Idempotency-Key is already taken.
    One statement: atomic on an autocommit connection."""
    unknown = values.keys() - REPORT_DEFAULTS.keys()
    if unknown:
        raise ValueError(f"not columns of a report: {sorted(unknown)}")
    params = REPORT_DEFAULTS | values
    params["address_candidates"] = Jsonb(params["address_candidates"])
    history = [{name: e[name] for name in EVENT_FIELDS} for e in events]
    for name in EVENT_FIELDS:
        params[f"event_{name}"] = [e[name] for e in history]
    row = conn.exec_driver_sql(_INSERT_REPORT, params).mappings().first()
    return (dict(row), history) if row else None


def insert_events(conn: Connection, incident_id: int, events: Sequence[dict[str, Any]]) -> None:
    """Append events (action, from_status, to_status, actor, note, grid_code, at) in order."""
    if events:
        conn.execute(insert(incident_events), [{"incident_id": incident_id, **e} for e in events])


def action_by_key(conn: Connection, owner: str, key: str) -> dict[str, Any] | None:
    """The workflow action `owner` sent under an Idempotency-Key: the incident's id and ref,
    and the digest of the request."""
    row = conn.execute(
        select(incidents.c.id, incidents.c.ref, incident_events.c.request_hash)
        .select_from(incident_events.join(incidents))
        .where(
            incident_events.c.idempotency_owner == owner,
            incident_events.c.idempotency_key == key,
        )
    ).first()
    return dict(row._mapping) if row else None


def insert_keyed_events(
    conn: Connection, incident_id: int, events: Sequence[dict[str, Any]], key: dict[str, str]
) -> bool:
    """Append the events of one action, the first carrying its Idempotency-Key (`key`:
    idempotency_owner, idempotency_key, request_hash); False, with nothing written, when
    that key is already taken (the same key sent for another incident at the same moment)."""
    first, *rest = events
    taken = conn.execute(
        insert(incident_events)
        .values(incident_id=incident_id, **first, **key)
        .on_conflict_do_nothing(
            index_elements=[
                incident_events.c.idempotency_owner,
                incident_events.c.idempotency_key,
            ]
        )
        .returning(incident_events.c.id)
    ).first()
    if taken is None:
        return False
    insert_events(conn, incident_id, rest)
    return True


def grid(conn: Connection, code: str) -> dict[str, Any] | None:
    """A grid's code, name and community, or None."""
    row = conn.execute(
        select(grids.c.code, grids.c.name, grids.c.community_code).where(grids.c.code == code)
    ).first()
    return dict(row._mapping) if row else None


# -- follow-up ------------------------------------------------------------------------------------
def lock(conn: Connection, ref: str) -> dict[str, Any] | None:
    """The incident row by ref, locked until the transaction ends (one change at a time)."""
    row = conn.execute(
        select(
            incidents.c.id,
            incidents.c.ref,
            incidents.c.status,
            incidents.c.category,
            incidents.c.grid_code,
            incidents.c.candidates,
            incidents.c.dispatched_at,
            incidents.c.due_at,
        )
        .where(incidents.c.ref == ref)
        .with_for_update()
    ).first()
    return dict(row._mapping) if row else None


def open_near_grids(conn: Connection, area_wkb: bytes, codes: list[str]) -> list[dict[str, Any]]:
    """Open incidents with a point inside `area` or routed to one of `codes`, locked."""
    rows = conn.execute(
        text(
            """
            SELECT id, ref, status, grid_code, ST_X(geom) AS lon, ST_Y(geom) AS lat
            FROM incidents
            WHERE status NOT IN ('closed', 'cancelled') AND geom IS NOT NULL
              AND (ST_Intersects(geom, ST_GeomFromWKB(:area, 4326)) OR grid_code = ANY(:codes))
            ORDER BY id FOR UPDATE
            """
        ),
        {"area": area_wkb, "codes": codes},
    ).mappings()
    return [dict(r) for r in rows]


def update_incident(conn: Connection, incident_id: int, values: dict[str, Any]) -> None:
    """Set columns of one incident (x/y become its point)."""
    values = dict(values)
    if "x" in values:
        values["geom"] = _point(values.pop("x"), values.pop("y"))
    conn.execute(update(incidents).where(incidents.c.id == incident_id).values(**values))


# -- reads ----------------------------------------------------------------------------------------
# Made once: building a statement of this many columns costs more than running it.
_INCIDENT = {
    personal: _select(personal=personal, with_workers=True).where(
        incidents.c.ref == bindparam("ref")
    )
    for personal in (False, True)
}


def incident(conn: Connection, ref: str, *, personal: bool = False) -> dict[str, Any] | None:
    """One incident with its grid/community names and the grid's workers."""
    row = conn.execute(_INCIDENT[personal], {"ref": ref}).first()
    return dict(row._mapping) if row else None


_EVENTS = (
    select(*(incident_events.c[name] for name in EVENT_FIELDS))
    .where(incident_events.c.incident_id == bindparam("incident_id"))
    .order_by(incident_events.c.id)
)


def events(conn: Connection, incident_id: int) -> list[dict[str, Any]]:
    """The incident's events (EVENT_FIELDS), oldest first."""
    rows = conn.execute(_EVENTS, {"incident_id": incident_id})
    return [dict(r._mapping) for r in rows]


@dataclass
class IncidentQuery:
    """Filters of an incident listing; empty/None filters do not restrict."""

    refs: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    grid_code: str | None = None
    grid_codes: list[str] | None = None  # a grid worker's scope (None: every grid)
    community_code: str | None = None
    overdue: bool | None = None
    since: datetime | None = None  # received_at >= since
    until: datetime | None = None  # received_at < until
    limit: int = 100
    offset: int = 0


def _conditions(query: IncidentQuery, now: datetime) -> list[ColumnElement[bool]]:
    c = incidents.c
    conditions: list[ColumnElement[bool]] = []
    if query.refs:
        conditions.append(c.ref.in_(query.refs))
    if query.statuses:
        conditions.append(c.status.in_(query.statuses))
    if query.categories:
        conditions.append(c.category.in_(query.categories))
    if query.grid_code is not None:
        conditions.append(c.grid_code == query.grid_code)
    if query.grid_codes is not None:
        conditions.append(c.grid_code.in_(query.grid_codes))
    if query.community_code is not None:
        conditions.append(c.community_code == query.community_code)
    if query.since is not None:
        conditions.append(c.received_at >= query.since)
    if query.until is not None:
        conditions.append(c.received_at < query.until)
    overdue = c.status.not_in(TERMINAL) & (c.due_at < now)
    if query.overdue is True:
        conditions.append(overdue)
    elif query.overdue is False:
        conditions.append(~overdue | c.due_at.is_(None))
    return conditions


def find(
    conn: Connection, query: IncidentQuery, now: datetime, *, with_workers: bool = False
) -> tuple[int, list[dict[str, Any]]]:
    """(number matched, one page of incidents), newest received first; no personal data."""
    conditions = _conditions(query, now)
    total = conn.execute(select(func.count()).select_from(incidents).where(*conditions)).scalar()
    statement = (
        _select(with_workers=with_workers)
        .where(*conditions)
        .order_by(incidents.c.received_at.desc(), incidents.c.id.desc())
        .limit(query.limit)
        .offset(query.offset)
    )
    return int(total or 0), [dict(r._mapping) for r in conn.execute(statement)]


def overdue(
    conn: Connection, now: datetime, limit: int, grid_codes: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Open incidents past their deadline, the longest overdue first, with grid workers
    (of the grids `grid_codes` only, when given)."""
    scope = [] if grid_codes is None else [incidents.c.grid_code.in_(list(grid_codes))]
    statement = (
        _select(with_workers=True)
        .where(incidents.c.status.not_in(TERMINAL), incidents.c.due_at < now, *scope)
        .order_by(incidents.c.due_at, incidents.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(statement)]


# -- statistics -----------------------------------------------------------------------------------
# Grouping column and name table per `by`: fixed identifiers, never user text. By the grids
# of the time, an incident counts where it was routed; by today's grids, where it happened
# (its point in today's grids; a report in no grid today keeps its grid if that still exists).
STATS_GROUPS: Final = {
    "grid": ("i.grid_code", "grids"),
    "community": ("i.community_code", "communities"),
}
STATS_TODAY: Final = {
    "grid": "coalesce(now_.code, (SELECT x.code FROM grids x WHERE x.code = i.grid_code))",
    "community": "coalesce(now_.community_code, "
    "(SELECT x.community_code FROM grids x WHERE x.code = i.grid_code), i.community_code)",
}
STATS_GRIDS: Final = ("then", "today")
_TODAY_JOIN = """
    LEFT JOIN LATERAL (
        SELECT g.code, g.community_code FROM grids g
        WHERE i.geom IS NOT NULL AND g.geom && i.geom AND ST_Covers(g.geom, i.geom)
        ORDER BY g.code LIMIT 1
    ) now_ ON true"""

_STATS = """
WITH base AS (
    SELECT {key} AS key, status, category, due_at, closed_at
    FROM incidents i{join}
    WHERE received_at >= COALESCE(CAST(:since AS timestamptz), '-infinity')
      AND received_at < COALESCE(CAST(:until AS timestamptz), 'infinity')
), by_status AS (
    SELECT key, jsonb_object_agg(status, n) AS by_status
    FROM (SELECT key, status, count(*) AS n FROM base GROUP BY key, status) s
    GROUP BY key
), by_category AS (
    SELECT key, jsonb_object_agg(category, n) AS by_category
    FROM (SELECT key, category, count(*) AS n FROM base GROUP BY key, category) s
    GROUP BY key
), totals AS (
    SELECT key,
           count(*) AS total,
           count(*) FILTER (WHERE status = 'closed') AS closed,
           count(*) FILTER (WHERE status = 'closed' AND due_at IS NOT NULL)
               AS closed_with_deadline,
           count(*) FILTER (WHERE status = 'closed' AND closed_at <= due_at) AS closed_on_time,
           count(*) FILTER (WHERE status NOT IN ('closed', 'cancelled') AND due_at < :now)
               AS overdue
    FROM base GROUP BY key
)
SELECT t.key AS code, n.name, t.total, t.closed, t.closed_with_deadline, t.closed_on_time,
       round(t.closed_on_time::numeric / NULLIF(t.closed_with_deadline, 0), 4)::float8
           AS on_time_rate,
       t.overdue, s.by_status, c.by_category
FROM totals t
JOIN by_status s ON s.key IS NOT DISTINCT FROM t.key
JOIN by_category c ON c.key IS NOT DISTINCT FROM t.key
LEFT JOIN {names} n ON n.code = t.key
ORDER BY t.key NULLS LAST
"""
_STATS_SQL = {
    (by, "then"): text(_STATS.format(key=key, names=names, join=""))
    for by, (key, names) in STATS_GROUPS.items()
} | {
    (by, "today"): text(_STATS.format(key=STATS_TODAY[by], names=names, join=_TODAY_JOIN))
    for by, (_, names) in STATS_GROUPS.items()
}


def stats(
    conn: Connection,
    by: str,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    grids: str = "then",
) -> list[dict[str, Any]]:
    """Per grid or community (NULL code: not routed yet), by the grids of the time or of
    today: counts by status and category, closures, on-time closure rate and overdue now,
    for incidents received in the window."""
    rows = conn.execute(_STATS_SQL[by, grids], {"since": since, "until": until, "now": now})
    return [dict(r._mapping) for r in rows]
