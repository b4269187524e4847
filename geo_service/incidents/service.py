"""Incident operations, one function per door action: intake, follow-up, listings, statistics,
and the Open311 GeoReport v2 door onto the same intake.

Every write is one transaction: a report that was acknowledged is committed, and a refused
transition changes nothing. Times come from one clock (`now`, injectable for tests) so that
received/filed/dispatched and the deadline agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Connection, Engine

from geo_service.auth.policy import ANONYMOUS, Principal, allowed, sees_incident
from geo_service.auth.service import authenticate
from geo_service.buildings.service import geocode_on, refresh_address_index
from geo_service.crs import parse_input_crs
from geo_service.errors import (
    Conflict,
    GeoServiceError,
    InvalidInput,
    NotFound,
    Unauthorized,
    describe_problems,
)
from geo_service.grids.locate import Location, locate_points
from geo_service.grids.store import grids_near
from geo_service.incidents import open311, store
from geo_service.incidents.categories import Category, categories_for
from geo_service.incidents.workflow import (
    STATUSES,
    WorkCalendar,
    allowed_actions,
    due_at,
    is_overdue,
    parse_instant,
    transition,
)
from geo_service.settings import Settings

SYSTEM: Final = "system"
# Locate outcomes that route the report to a grid at once, and the one that needs a person.
_ROUTED: Final = ("inside", "boundary", "nearest")
_MAX_KEY: Final = 255

Coordinate = StrictFloat | StrictInt | StrictStr | None


class IncidentIn(BaseModel):
    """A new report: a category, and coordinates (any supported CRS) or an address."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    category: str = Field(min_length=1, max_length=64)
    description: str | None = None  # length checked against the setting (Open311: 4,000)
    lon: Coordinate = None
    lat: Coordinate = None
    crs: str | None = Field(None, max_length=64)
    address: str | None = Field(None, max_length=500)
    reporter_name: str | None = Field(None, max_length=100)
    reporter_phone: str | None = Field(None, max_length=40)
    reporter_email: str | None = Field(None, max_length=254)
    media_url: str | None = Field(None, max_length=2000)


class IncidentChange(BaseModel):
    """A follow-up action by someone (a dispatcher, a grid worker, a verifier)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    action: str = Field(min_length=1, max_length=32)
    actor: str = Field(min_length=1, max_length=100)
    note: str | None = Field(None, max_length=2000)
    grid_code: str | None = Field(None, max_length=64)  # dispatch: route or re-route
    lon: Coordinate = None  # locate: coordinates for an address-only report
    lat: Coordinate = None
    crs: str | None = Field(None, max_length=64)


@dataclass
class Intake:
    """The outcome of a POST: the incident, and whether this call created it (False for a
    retry with the same Idempotency-Key and body)."""

    incident: dict[str, Any]
    created: bool


_Model = TypeVar("_Model", bound=BaseModel)


def _validated(model: type[_Model], data: Any) -> _Model:
    """Parse a body; InvalidInput naming each bad field and value."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise InvalidInput(describe_problems(exc.errors())) from None


def _now() -> datetime:
    return datetime.now(UTC)


def calendar_of(settings: Settings) -> WorkCalendar:
    """The working calendar the settings describe."""
    with _configuration("incident working calendar"):
        return WorkCalendar.parse(
            settings.incident_timezone,
            settings.incident_work_periods,
            settings.incident_work_weekdays,
            settings.incident_holidays,
            settings.incident_makeup_days,
        )


def _known(settings: Settings) -> Mapping[str, Category]:
    """The categories in force."""
    with _configuration("incident categories"):
        return categories_for(settings.incident_categories_file)


@contextmanager
def _configuration(what: str) -> Iterator[None]:
    """Bad settings are the operator's fault, not the caller's: a server error (500), not 422."""
    try:
        yield
    except InvalidInput as exc:
        raise GeoServiceError(f"{what} misconfigured: {exc.message}") from exc


def categories(settings: Settings) -> list[dict[str, Any]]:
    """The incident categories in force, with their time limits."""
    return [c.to_dict() for c in _known(settings).values()]


def _category(settings: Settings, code: str) -> Category:
    known = _known(settings)
    if code not in known:
        raise InvalidInput(
            f"unknown category {code!r}; known: {', '.join(known)}",
            details={"value": code, "accepted": list(known)},
        )
    return known[code]


# -- intake ---------------------------------------------------------------------------------------
# What a caller who may not read incidents (a resident's app, a reporter token) learns of the
# case it just reported: where it went and by when, nothing about other people (no workers'
# names and phones, no likely duplicate of someone else's case, no address candidates).
REPORTER_FIELDS: Final = (
    "ref",
    "status",
    "category",
    "category_name",
    "grid_name",
    "community_name",
    "received_at",
    "due_at",
)


def reporter_view(incident: Mapping[str, Any]) -> dict[str, Any]:
    """The reporter's view of their own case (REPORTER_FIELDS)."""
    return {name: incident.get(name) for name in REPORTER_FIELDS}


def create_incident(
    engine: Engine,
    settings: Settings,
    payload: Mapping[str, Any] | IncidentIn,
    idempotency_key: str | None = None,
    *,
    source: str = "api",
    recorded_by: str | None = None,
    now: datetime | None = None,
) -> Intake:
    """Record a report and route it: located in a grid -> filed and dispatched with a deadline;
    in overlapping grids -> filed for a dispatcher; outside -> received; address only ->
    needs_location. Flags near-boundary reports and likely duplicates; never drops a report.

    With an Idempotency-Key, a retry with the same body returns the first incident and a
    different body is a Conflict; keys are the caller's (`recorded_by`, the authenticated
    caller, also kept on each event): another caller's key is a different key.
    """
    report = _validated(IncidentIn, payload)
    category = _category(settings, report.category)
    _check_description(settings, report.description)
    _check_key(idempotency_key)
    point = _coordinates(report.lon, report.lat, report.crs)
    if point is None and not report.address:
        raise InvalidInput("a report needs lon and lat (with crs when not WGS-84) or an address")
    request_hash = _hash(report, source)
    owner = recorded_by or ""  # keys are the caller's own
    now = now or _now()
    if point is None:
        refresh_address_index(engine)  # geocoding below must read a current index
    with engine.begin() as conn:
        if idempotency_key is not None:
            earlier = store.by_idempotency_key(conn, owner, idempotency_key)
            if earlier is not None:
                return _replay(conn, settings, earlier, request_hash, idempotency_key, now)
        values: dict[str, Any] = {
            "category": category.code,
            "description": report.description,
            "reporter_name": report.reporter_name,
            "reporter_phone": report.reporter_phone,
            "reporter_email": report.reporter_email,
            "address_text": report.address,
            "media_url": report.media_url,
            "received_at": now,
            "updated_at": now,
            "source": source,
            "idempotency_key": idempotency_key,
            "idempotency_owner": owner,
            "request_hash": request_hash,
        }
        events: list[dict[str, Any]] = []
        geocoded = ""
        if point is None:
            assert report.address is not None
            point, geocoded, proposed = _geocode(conn, settings, report.address)
            values["address_candidates"] = proposed
        if point is None:
            note = _joined(
                f"received via {source}", geocoded, "address only: waiting for a location"
            )
            events.append(_event("receive", None, "needs_location", SYSTEM, note, now))
            values.update(status="needs_location", needs_location=True)
        else:
            located = _locate(conn, settings, category, point, now)
            note = _joined(f"received via {source}", geocoded, located.note)
            events.append(_event("receive", None, "received", SYSTEM, note, now))
            values.update(located.values)
            values["status"] = _route(settings, category, located, "received", values, events, now)
        created = store.insert_incident(conn, values)
        if created is None:
            # A concurrent request with the same key committed first: answer as a retry.
            assert idempotency_key is not None
            earlier = store.by_idempotency_key(conn, owner, idempotency_key)
            assert earlier is not None
            return _replay(conn, settings, earlier, request_hash, idempotency_key, now)
        store.insert_events(conn, created["id"], _recorded(events, recorded_by))
        return Intake(_detail(conn, settings, created["ref"], now), created=True)


def _replay(
    conn: Connection,
    settings: Settings,
    earlier: Mapping[str, Any],
    request_hash: str,
    key: str,
    now: datetime,
) -> Intake:
    if earlier["request_hash"] != request_hash:
        raise _conflict_key(key, earlier["ref"])
    return Intake(_detail(conn, settings, earlier["ref"], now), created=False)


def _conflict_key(key: str, ref: str) -> Conflict:
    return Conflict(
        f"Idempotency-Key {key!r} was already used for incident {ref} with a different body; "
        "use a new key for a new report"
    )


def _check_description(settings: Settings, description: str | None) -> None:
    limit = settings.incident_description_max_chars
    if description is not None and len(description) > limit:
        raise InvalidInput(f"description has {len(description)} characters; the limit is {limit}")


def _check_key(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= _MAX_KEY and key.isascii() and key.isprintable()):
        raise InvalidInput(f"Idempotency-Key must be 1-{_MAX_KEY} printable ASCII characters")


def _hash(report: IncidentIn, source: str) -> str:
    """A digest of what was asked (parsed, so key order and spacing do not matter)."""
    canonical = json.dumps(
        {"source": source, **report.model_dump(exclude_none=True)},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class _Point:
    lon: Any
    lat: Any
    crs: str


def _coordinates(lon: Any, lat: Any, crs: str | None) -> _Point | None:
    """Both coordinates, or neither; the CRS checked now so a typo is a 422 before any work."""
    if lon is None and lat is None:
        return None
    if lon is None or lat is None:
        raise InvalidInput(f"lon and lat go together: got lon={lon!r}, lat={lat!r}")
    return _Point(lon, lat, parse_input_crs(crs).name)


@dataclass
class _Located:
    location: Location
    values: dict[str, Any]
    note: str


def _geocode(
    conn: Connection, settings: Settings, address: str
) -> tuple[_Point | None, str, list[dict[str, Any]]]:
    """Geocode an address-only report: (its point when the best candidate is sure enough,
    the note for its history, the candidates to keep for a dispatcher)."""
    try:
        answer = geocode_on(conn, settings, address, 5)
    except InvalidInput as exc:  # the report is kept all the same
        return None, f"address not geocoded: {exc.message}", []
    proposed = [{k: c.get(k) for k in _CANDIDATE_FIELDS} for c in answer["candidates"]]
    if not proposed:
        return None, f"address not geocoded: {answer.get('message', 'no candidates')}", []
    best = answer["candidates"][0]
    what = best["building_code"] or best["address"]
    summary = f"geocoded to {what} ({best['match_type']}, confidence {best['confidence']:.2f})"
    if best["confidence"] < settings.geocode_dispatch_confidence:
        return None, f"{summary}: below {settings.geocode_dispatch_confidence:g}", proposed
    return _Point(best["lon"], best["lat"], "wgs84"), summary, proposed


_CANDIDATE_FIELDS = (
    "building_code", "address", "match_type", "confidence", "lon", "lat", "grid_code",
)  # fmt: skip


def _locate(
    conn: Connection,
    settings: Settings,
    category: Category,
    point: _Point,
    now: datetime,
    exclude_id: int | None = None,
) -> _Located:
    """Where a report is: its grid, and whether it is near another grid or a likely duplicate."""
    crs = parse_input_crs(point.crs)
    [found] = locate_points(conn, [point.lon], [point.lat], crs, settings.locate_tolerance_m)
    if found.status == "invalid" or found.lon is None or found.lat is None:
        raise InvalidInput(found.message or f"invalid coordinates: {point.lon!r}, {point.lat!r}")
    near: list[str] = []
    if found.grid_code:
        near = grids_near(
            conn, found.lon, found.lat, settings.incident_near_boundary_m, found.grid_code
        )
    window = timedelta(hours=settings.incident_duplicate_window_h)
    duplicate = store.possible_duplicate(
        conn,
        category.code,
        found.lon,
        found.lat,
        settings.incident_duplicate_radius_m,
        now - window,
        exclude_id,
    )
    routed = found.status in _ROUTED
    values = {
        "x": found.lon,
        "y": found.lat,
        "input_lon": float(point.lon),
        "input_lat": float(point.lat),
        "input_crs": crs.name,
        "locate_status": found.status,
        "distance_m": found.distance_m,
        "grid_code": found.grid_code if routed else None,
        "community_code": found.community_code if routed else None,
        "candidates": found.candidates if found.status == "ambiguous" else [],
        "needs_location": False,
        "near_boundary": bool(near),
        "near_grids": near,
        "possible_duplicate_of": duplicate,
    }
    notes = [f"located {found.status}" + (f" in grid {found.grid_code}" if routed else "")]
    if found.status == "ambiguous":
        notes.append(f"overlapping grids {', '.join(found.candidates)}: a dispatcher must choose")
    elif found.status == "outside":
        notes.append(f"no grid within {settings.locate_tolerance_m:g} m")
    if near:
        notes.append(f"within {settings.incident_near_boundary_m:g} m of grid {', '.join(near)}")
    if duplicate:
        notes.append(f"possible duplicate of {duplicate}")
    return _Located(found, values, "; ".join(notes))


def _route(
    settings: Settings,
    category: Category,
    located: _Located,
    status: str,
    values: dict[str, Any],
    events: list[dict[str, Any]],
    now: datetime,
) -> str:
    """File and dispatch automatically as far as the location allows; returns the new status."""
    found = located.location
    if found.status in (*_ROUTED, "ambiguous"):
        status = _step(events, "file", status, SYSTEM, None, now)
        values["filed_at"] = now
    if found.status in _ROUTED:
        deadline = due_at(now, category.limit, calendar_of(settings))
        note = f"dispatched to grid {found.grid_code}; {category.limit} -> due {_iso(deadline)}"
        status = _step(events, "dispatch", status, SYSTEM, note, now, found.grid_code)
        values.update(dispatched_at=now, due_at=deadline)
    return status


def _step(
    events: list[dict[str, Any]],
    action: str,
    status: str,
    actor: str,
    note: str | None,
    now: datetime,
    grid_code: str | None = None,
) -> str:
    """Apply one workflow action, recording its event; returns the new status."""
    new = transition(action, status)
    events.append(_event(action, status, new, actor, note, now, grid_code))
    return new


def _event(
    action: str,
    from_status: str | None,
    to_status: str,
    actor: str,
    note: str | None,
    at: datetime,
    grid_code: str | None = None,
) -> dict[str, Any]:
    return {
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "actor": actor,
        "note": note,
        "grid_code": grid_code,
        "at": at,
    }


def _recorded(events: list[dict[str, Any]], by: str | None) -> list[dict[str, Any]]:
    """The events, each marked with who recorded it."""
    return [{**e, "recorded_by": by} for e in events]


def _joined(*parts: str | None) -> str:
    return "; ".join(p for p in parts if p)


# -- follow-up ------------------------------------------------------------------------------------
def change_incident(
    engine: Engine,
    settings: Settings,
    ref: str,
    change: Mapping[str, Any] | IncidentChange,
    *,
    grids: Sequence[str] | None = None,
    recorded_by: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Apply one workflow action to an incident and record it; Conflict (nothing changed) when
    the action is illegal from its status, NotFound for an unknown ref (or, with `grids`, a
    grid worker's scope, for an incident of another grid). `recorded_by`: the authenticated
    caller, kept on the events beside the actor the request names."""
    request = _validated(IncidentChange, change)
    if request.grid_code is not None and request.action != "dispatch":
        raise InvalidInput(f"grid_code applies to dispatch only, not to {request.action!r}")
    if (request.lon, request.lat, request.crs) != (None, None, None) and request.action != "locate":
        raise InvalidInput(f"lon/lat/crs apply to locate only, not to {request.action!r}")
    now = now or _now()
    with engine.begin() as conn:
        row = store.lock(conn, ref)
        if row is None or (grids is not None and row["grid_code"] not in grids):
            raise NotFound(f"no incident {ref!r}")
        status = row["status"]
        new = transition(request.action, status, ref)
        values: dict[str, Any] = {"updated_at": now}
        events: list[dict[str, Any]] = []
        if request.action == "locate":
            new = _relocate(conn, settings, row, request, values, events, now)
        elif request.action == "dispatch":
            _dispatch(conn, settings, row, request, values, events, now)
        else:
            if request.action == "close":
                values["closed_at"] = now
            elif request.action == "reopen":
                values["closed_at"] = None
            events.append(_event(request.action, status, new, request.actor, request.note, now))
        values["status"] = new
        store.update_incident(conn, row["id"], values)
        store.insert_events(conn, row["id"], _recorded(events, recorded_by))
        return _detail(conn, settings, ref, now)


def _relocate(
    conn: Connection,
    settings: Settings,
    row: Mapping[str, Any],
    request: IncidentChange,
    values: dict[str, Any],
    events: list[dict[str, Any]],
    now: datetime,
) -> str:
    """Locate an incident from the coordinates given, then route it as intake would."""
    point = _coordinates(request.lon, request.lat, request.crs)
    if point is None:
        raise InvalidInput("locate needs lon and lat (with crs when not WGS-84)")
    category = _category(settings, row["category"])
    located = _locate(conn, settings, category, point, now, exclude_id=row["id"])
    status = _step(
        events, "locate", row["status"], request.actor, _joined(request.note, located.note), now
    )
    values.update(located.values)
    return _route(settings, category, located, status, values, events, now)


def _dispatch(
    conn: Connection,
    settings: Settings,
    row: Mapping[str, Any],
    request: IncidentChange,
    values: dict[str, Any],
    events: list[dict[str, Any]],
    now: datetime,
) -> None:
    """Route to a grid (a dispatcher's choice, or the located one); the deadline is set at the
    first dispatch only, so re-routing never extends it."""
    if row["status"] == "dispatched" and request.grid_code is None:
        raise InvalidInput(f"re-routing incident {row['ref']} needs the new grid_code")
    code = request.grid_code or row["grid_code"]
    if code is None:
        candidates = ", ".join(row["candidates"] or []) or "none"
        raise InvalidInput(
            f"dispatching incident {row['ref']} needs a grid_code (candidates: {candidates})"
        )
    target = store.grid(conn, code)
    if target is None:
        raise InvalidInput(f"unknown grid_code {code!r}", details={"value": code})
    values.update(grid_code=target["code"], community_code=target["community_code"])
    note = request.note
    if row["dispatched_at"] is None:
        category = _category(settings, row["category"])
        deadline = due_at(now, category.limit, calendar_of(settings))
        values.update(dispatched_at=now, due_at=deadline)
        note = _joined(note, f"{category.limit} -> due {_iso(deadline)}")
    elif row["grid_code"] != target["code"]:
        note = _joined(note, f"re-routed from grid {row['grid_code']}")
    _step(events, "dispatch", row["status"], request.actor, note, now, target["code"])


# -- reads ----------------------------------------------------------------------------------------
def get_incident(
    engine: Engine, settings: Settings, ref: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """One incident with its events, grid workers and reporter; NotFound for an unknown ref."""
    with engine.connect() as conn:
        return _detail(conn, settings, ref, now or _now())


def _detail(conn: Connection, settings: Settings, ref: str, now: datetime) -> dict[str, Any]:
    row = store.incident(conn, ref, personal=True)
    if row is None:
        raise NotFound(f"no incident {ref!r}")
    tz = ZoneInfo(settings.incident_timezone)
    out = _incident_out(row, settings, tz, now)
    out["reporter"] = {
        "name": row["reporter_name"],
        "phone": row["reporter_phone"],
        "email": row["reporter_email"],
    }
    out["events"] = [{**e, "at": _iso(e["at"], tz)} for e in store.events(conn, row["id"])]
    return out


def _iso(value: datetime | None, tz: ZoneInfo | None = None) -> str | None:
    """ISO 8601 with the offset, to the second, in the working time zone."""
    if value is None:
        return None
    return (value.astimezone(tz) if tz else value).isoformat(timespec="seconds")


def _incident_out(
    row: Mapping[str, Any], settings: Settings, tz: ZoneInfo, now: datetime
) -> dict[str, Any]:
    """The JSON form of an incident row (no personal data)."""
    known = _known(settings)
    category = known.get(row["category"])
    out: dict[str, Any] = {
        "ref": row["ref"],
        "status": row["status"],
        "category": row["category"],
        "category_name": category.name if category else None,
        "time_limit": str(category.limit) if category else None,
        "description": row["description"],
        "address": row["address_text"],
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
        "received_at": _iso(row["received_at"], tz),
        "filed_at": _iso(row["filed_at"], tz),
        "dispatched_at": _iso(row["dispatched_at"], tz),
        "due_at": _iso(row["due_at"], tz),
        "closed_at": _iso(row["closed_at"], tz),
        "updated_at": _iso(row["updated_at"], tz),
        "source": row["source"],
        "media_url": row["media_url"],
        "allowed_actions": allowed_actions(row["status"]),
    }
    if "workers" in row:
        out["workers"] = row["workers"] or []
    return out


def list_incidents(
    engine: Engine,
    settings: Settings,
    *,
    statuses: Sequence[str] = (),
    grid_code: str | None = None,
    community_code: str | None = None,
    category: str | None = None,
    overdue: bool | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    grids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A page of incidents (newest first) matching the filters, with the number matched;
    `grids` restricts it to those grids (a grid worker's scope)."""
    tz = ZoneInfo(settings.incident_timezone)
    for status in statuses:
        if status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
    if category is not None:
        _category(settings, category)
    limit = _page(settings, limit, offset)
    query = store.IncidentQuery(
        statuses=list(statuses),
        categories=[category] if category else [],
        grid_code=grid_code,
        grid_codes=None if grids is None else list(grids),
        community_code=community_code,
        overdue=overdue,
        since=parse_instant("since", since, tz),
        until=parse_instant("until", until, tz),
        limit=limit,
        offset=offset,
    )
    now = now or _now()
    with engine.connect() as conn:
        total, rows = store.find(conn, query, now)
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": [_incident_out(r, settings, tz, now) for r in rows],
    }


def _page(settings: Settings, limit: int | None, offset: int) -> int:
    maximum = settings.incident_page_max
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
    tz = ZoneInfo(settings.incident_timezone)
    now = now or _now()
    limit = _page(settings, limit or settings.incident_page_max, 0)
    with engine.connect() as conn:
        rows = store.overdue(conn, now, limit, grids)
    items = []
    for row in rows:
        item = _incident_out(row, settings, tz, now)
        item["overdue_hours"] = round((now - row["due_at"]).total_seconds() / 3600, 1)
        items.append(item)
    return {"now": _iso(now, tz), "count": len(items), "items": items}


def incident_stats(
    engine: Engine,
    settings: Settings,
    by: str = "grid",
    since: str | None = None,
    until: str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Per grid or community, for incidents received in [since, until): counts by status and
    category, closures, on-time closure rate (closed by the deadline / closed with one) and
    overdue now. A group with code null holds incidents not routed to any grid yet."""
    if by not in store.STATS_GROUPS:
        raise InvalidInput(f"by {by!r} is not one of: {', '.join(store.STATS_GROUPS)}")
    tz = ZoneInfo(settings.incident_timezone)
    start, end = parse_instant("since", since, tz), parse_instant("until", until, tz)
    now = now or _now()
    with engine.connect() as conn:
        groups = store.stats(conn, by, start, end, now)
    return {
        "by": by,
        "since": _iso(start, tz),
        "until": _iso(end, tz),
        "now": _iso(now, tz),
        "groups": groups,
    }


# -- Open311 GeoReport v2 -------------------------------------------------------------------------
def open311_services(settings: Settings) -> list[dict[str, Any]]:
    """GET services: the categories as Open311 services."""
    known = _known(settings)
    return open311.service_list(known, settings.open311_language)


def open311_service(settings: Settings, code: str) -> dict[str, Any]:
    """GET services/{code}: the service definition; NotFound for an unknown code."""
    known = _known(settings)
    if code not in known:
        raise NotFound(f"no service {code!r}")
    return open311.service_definition(known[code])


def open311_submit(
    engine: Engine,
    settings: Settings,
    body: bytes,
    content_type: str | None,
    idempotency_key: str | None = None,
    *,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """POST requests: a form-encoded report through the same intake as the JSON API."""
    form = open311.parse_form(body, content_type)
    caller = _check_api_key(engine, open311.api_key(form))
    known = _known(settings)
    payload = open311.submission(form, known)
    intake = create_incident(
        engine,
        settings,
        payload,
        idempotency_key,
        source="open311",
        recorded_by=caller.name,
        now=now,
    )
    return [open311.receipt(intake.incident, settings.open311_language)]


def _check_api_key(engine: Engine, key: str) -> Principal:
    """An Open311 api_key is a token of the service whose role may report (403 otherwise);
    returns its caller."""
    try:
        caller = authenticate(engine, key)
    except Unauthorized:
        raise open311.Forbidden("api_key is not valid") from None
    if not allowed(caller, "open311.submit"):
        raise open311.Forbidden(f"api_key of role {caller.role!r} may not submit requests")
    return caller


def open311_requests(
    engine: Engine,
    settings: Settings,
    params: Mapping[str, str | None],
    *,
    viewer: Principal = ANONYMOUS,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """GET requests: by ids, or by service code, status and date range (default 90 days).
    What residents wrote only for a `viewer` who may read the incident."""
    known = _known(settings)
    tz = ZoneInfo(settings.incident_timezone)
    now = now or _now()
    search = open311.request_search(
        params,
        known,
        tz=tz,
        now=now,
        window_days=settings.open311_window_days,
        max_requests=settings.open311_max_requests,
    )
    query = store.IncidentQuery(
        refs=search.refs,
        statuses=search.statuses,
        categories=search.categories,
        since=search.since,
        until=search.until,
        limit=search.limit,
    )
    with engine.connect() as conn:
        _, rows = store.find(conn, query, now)
    language = settings.open311_language
    return [
        open311.request_record(
            _incident_out(r, settings, tz, now),
            known,
            language,
            free_text=sees_incident(viewer, r["grid_code"]),
            public_decimals=settings.open311_public_decimals,
        )
        for r in rows
    ]


def open311_request(
    engine: Engine,
    settings: Settings,
    request_id: str,
    *,
    viewer: Principal = ANONYMOUS,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """GET requests/{id}: a list of one request; NotFound for an unknown id."""
    found = []
    if "," not in request_id:
        found = open311_requests(
            engine, settings, {"service_request_id": request_id}, viewer=viewer, now=now
        )
    if not found:
        raise NotFound(f"no service request {request_id!r}")
    return found
