"""Reading incidents: one case file, listings, the supervision list and statistics, in the
working time zone, without personal data outside the case file.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from geo_service.errors import (
    InvalidInput,
    NotFound,
)
from geo_service.incidents import store
from geo_service.incidents.bodies import STORED_AS_GIVEN
from geo_service.incidents.config import category_of, known_categories
from geo_service.incidents.workflow import (
    STATUSES,
    allowed_actions,
    is_overdue,
    iso_time,
    utc_now,
)
from geo_service.settings import Settings
from geo_service.times import parse_instant


def get_incident(
    engine: Engine, settings: Settings, ref: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """One incident with its events, grid workers and reporter; NotFound for an unknown ref."""
    with engine.connect() as conn:
        return case_file(conn, settings, ref, now or utc_now())


def case_file(conn: Connection, settings: Settings, ref: str, now: datetime) -> dict[str, Any]:
    """The full case file of one incident (its reporter and events included)."""
    row = store.incident(conn, ref, personal=True)
    if row is None:
        raise NotFound(f"no incident {ref!r}")
    return case_file_of(row, store.events(conn, row["id"]), settings, now)


def case_file_of(
    row: Mapping[str, Any], events: Sequence[Mapping[str, Any]], settings: Settings, now: datetime
) -> dict[str, Any]:
    """The case file of an incident read with its personal data, and its events."""
    tz = ZoneInfo(settings.incidents.timezone)
    out = incident_out(row, settings, tz, now)
    out["reporter"] = {
        "name": row["reporter_name"],
        "phone": row["reporter_phone"],
        "email": row["reporter_email"],
    }
    out["events"] = [{**e, "at": iso_time(e["at"], tz)} for e in events]
    return out


def incident_out(
    row: Mapping[str, Any], settings: Settings, tz: ZoneInfo, now: datetime
) -> dict[str, Any]:
    """The JSON form of an incident row (no personal data)."""
    known = known_categories(settings)
    category = known.get(row["category"])
    out: dict[str, Any] = {
        "ref": row["ref"],
        "status": row["status"],
        "category": row["category"],
        "category_name": category.name if category else None,
        "time_limit": str(category.limit) if category else None,
        **{name: row[column] for name, column in STORED_AS_GIVEN.items()},
        "lon": row["lon"],
        "lat": row["lat"],
        "input": None
        if row["input_crs"] is None
        else {"lon": row["input_lon"], "lat": row["input_lat"], "crs": row["input_crs"]},
        "grid_code": row["grid_code"],
        "grid_name": row["grid_name"],
        "community_code": row["community_code"],
        "community_name": row["community_name"],
        "locate_status": row["locate_status"],
        "distance_m": row["distance_m"],
        "candidates": list(row["candidates"] or []),
        "address_candidates": list(row.get("address_candidates") or []),
        "needs_location": row["needs_location"],
        "near_boundary": row["near_boundary"],
        "near_grids": list(row["near_grids"] or []),
        "possible_duplicate_of": row["possible_duplicate_of"],
        "overdue": is_overdue(row["status"], row["due_at"], now),
        "received_at": iso_time(row["received_at"], tz),
        "filed_at": iso_time(row["filed_at"], tz),
        "dispatched_at": iso_time(row["dispatched_at"], tz),
        "due_at": iso_time(row["due_at"], tz),
        "closed_at": iso_time(row["closed_at"], tz),
        "updated_at": iso_time(row["updated_at"], tz),
        "source": row["source"],
        "allowed_actions": allowed_actions(row["status"]),
    }
    if "workers" in row:
        out["workers"] = row["workers"] or []
    return out


@dataclass(frozen=True)
class IncidentFilters:
    """What a listing asks for, as the caller gave it (checked by `list_incidents`): statuses
    (any of), a grid, a community, a category, overdue or not, received since/until (ISO 8601
    text, in the working time zone without an offset), and the page."""

    statuses: tuple[str, ...] = ()
    grid_code: str | None = None
    community_code: str | None = None
    category: str | None = None
    overdue: bool | None = None
    since: str | None = None
    until: str | None = None
    limit: int | None = None
    offset: int = 0


def list_incidents(
    engine: Engine,
    settings: Settings,
    filters: IncidentFilters,
    *,
    grids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A page of incidents (newest first) matching the filters, with the number matched;
    `grids` restricts it to those grids (a grid worker's scope)."""
    tz = ZoneInfo(settings.incidents.timezone)
    for status in filters.statuses:
        if status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
    if filters.category is not None:
        category_of(settings, filters.category)
    limit = _page(settings, filters.limit, filters.offset)
    query = store.IncidentQuery(
        statuses=list(filters.statuses),
        categories=[filters.category] if filters.category else [],
        grid_code=filters.grid_code,
        grid_codes=None if grids is None else list(grids),
        community_code=filters.community_code,
        overdue=filters.overdue,
        since=parse_instant("since", filters.since, tz),
        until=parse_instant("until", filters.until, tz),
        limit=limit,
        offset=filters.offset,
    )
    now = now or utc_now()
    with engine.connect() as conn:
        total, rows = store.find(conn, query, now)
    return {
        "total": total,
        "limit": limit,
        "offset": filters.offset,
        "items": [incident_out(r, settings, tz, now) for r in rows],
    }


def _page(settings: Settings, limit: int | None, offset: int) -> int:
    maximum = settings.incidents.page_max
    if limit is None:
        return min(100, maximum)
    if not 1 <= limit <= maximum:
        raise InvalidInput(f"limit {limit} is outside 1..{maximum}")
    if offset < 0:
        raise InvalidInput(f"offset {offset} is negative")
    return limit


def overdue_incidents(
    engine: Engine,
    settings: Settings,
    *,
    limit: int | None = None,
    grids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The supervision list (督办): open incidents past their deadline, oldest deadline first,
    each with its grid's workers (of `grids` only, when given)."""
    tz = ZoneInfo(settings.incidents.timezone)
    now = now or utc_now()
    limit = _page(settings, limit or settings.incidents.page_max, 0)
    with engine.connect() as conn:
        rows = store.overdue(conn, now, limit, grids)
    items = []
    for row in rows:
        item = incident_out(row, settings, tz, now)
        item["overdue_hours"] = round((now - row["due_at"]).total_seconds() / 3600, 1)
        items.append(item)
    return {"now": iso_time(now, tz), "count": len(items), "items": items}


def incident_stats(
    engine: Engine,
    settings: Settings,
    by: str = "grid",
    since: str | None = None,
    until: str | None = None,
    *,
    grids: str = "then",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Per grid or community, for incidents received in [since, until): counts by status and
    category, closures, on-time closure rate (closed by the deadline / closed with one) and
    overdue now. A group with code null holds incidents not routed to any grid yet.
    `grids`: "then" counts each incident in the grid it was routed to; "today" where it
    happened, among today's grids (a period that spans a grid edit, re-aggregated)."""
    if by not in store.STATS_GROUPS:
        raise InvalidInput(f"by {by!r} is not one of: {', '.join(store.STATS_GROUPS)}")
    if grids not in store.STATS_GRIDS:
        raise InvalidInput(f"grids {grids!r} is not one of: {', '.join(store.STATS_GRIDS)}")
    tz = ZoneInfo(settings.incidents.timezone)
    start, end = parse_instant("since", since, tz), parse_instant("until", until, tz)
    now = now or utc_now()
    with engine.connect() as conn:
        groups = store.stats(conn, by, start, end, now, grids)
    return {
        "by": by,
        "grids": grids,
        "since": iso_time(start, tz),
        "until": iso_time(end, tz),
        "now": iso_time(now, tz),
        "groups": groups,
    }
