"""Where a report goes: its coordinates (any supported CRS) or its address located in a grid,
and the workflow steps that file and dispatch it there. Shared by intake and follow-up.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection

from geo_service.buildings.service import geocode_on
from geo_service.coords import number, parse_point
from geo_service.crs import WGS84, InputCRS, parse_input_crs
from geo_service.errors import (
    InvalidInput,
)
from geo_service.grids.locate import Location, location_of
from geo_service.incidents import store
from geo_service.incidents.categories import Category
from geo_service.incidents.config import calendar_of
from geo_service.incidents.workflow import (
    due_at,
    iso_time,
    transition,
)
from geo_service.settings import Settings

SYSTEM: Final = "system"


# Locate outcomes that route the report to a grid at once, and the one that needs a person.
_ROUTED: Final = ("inside", "boundary", "nearest")


@dataclass
class GivenPoint:
    """A report's coordinates as the caller gave them, in a known CRS."""

    lon: Any
    lat: Any
    crs: InputCRS

    def wgs84(self) -> tuple[float, float]:
        """The point in WGS-84; InvalidInput quoting the values when they are unusable."""
        return parse_point(self.lon, self.lat, self.crs)


def point_of(lon: Any, lat: Any, crs: str | None) -> GivenPoint | None:
    """Both coordinates, or neither; the CRS checked now so a typo is a 422 before any work."""
    if lon is None and lat is None:
        return None
    if lon is None or lat is None:
        raise InvalidInput(f"lon and lat go together: got lon={lon!r}, lat={lat!r}")
    return GivenPoint(lon, lat, parse_input_crs(crs))


@dataclass
class _Located:
    location: Location
    values: dict[str, Any]
    note: str
    earlier: dict[str, Any] | None = None  # made under the key `locate_report` was given


def geocode_address(
    conn: Connection, settings: Settings, address: str
) -> tuple[GivenPoint | None, str, list[dict[str, Any]]]:
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
    if best["confidence"] < settings.geocode.dispatch_confidence:
        return None, f"{summary}: below {settings.geocode.dispatch_confidence:g}", proposed
    return GivenPoint(best["lon"], best["lat"], WGS84), summary, proposed


_CANDIDATE_FIELDS = (
    "building_code", "address", "match_type", "confidence", "lon", "lat", "grid_code",
)  # fmt: skip


def locate_report(
    conn: Connection,
    settings: Settings,
    category: Category,
    point: GivenPoint,
    now: datetime,
    exclude_id: int | None = None,
    *,
    owner: str = "",
    key: str | None = None,
) -> _Located:
    """Where a report is: its grid, and whether it is near another grid or a likely duplicate;
    with `key`, also the incident `owner` made under it (`_Located.earlier`)."""
    x, y = point.wgs84()
    # The key, the grids near the point, a likely duplicate and the locate: one statement.
    facts, at = store.report_facts(
        conn,
        (x, y),
        category=category.code,
        near_m=settings.incidents.near_boundary_m,
        radius_m=settings.incidents.duplicate_radius_m,
        since=now - timedelta(hours=settings.incidents.duplicate_window_h),
        tolerance_m=settings.grids.locate_tolerance_m,
        owner=owner,
        key=key,
        exclude_id=exclude_id,
    )
    found = location_of(x, y, at)
    near = [code for code in facts["near_grids"] if code != found.grid_code]
    if not found.grid_code:
        near = []
    duplicate = facts["duplicate"]
    routed = found.status in _ROUTED
    values = {
        "x": found.lon,
        "y": found.lat,
        "input_lon": number(point.lon),
        "input_lat": number(point.lat),
        "input_crs": point.crs.name,
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
        notes.append(f"no grid within {settings.grids.locate_tolerance_m:g} m")
    if near:
        notes.append(f"within {settings.incidents.near_boundary_m:g} m of grid {', '.join(near)}")
    if duplicate:
        notes.append(f"possible duplicate of {duplicate}")
    earlier = None
    if facts["earlier_id"] is not None:
        earlier = {"ref": facts["earlier_ref"], "request_hash": facts["earlier_hash"]}
    return _Located(found, values, "; ".join(notes), earlier)


@dataclass
class Pending:
    """A change being made to one incident in one transaction: the column values to write,
    the events to record, and the one time they all carry."""

    now: datetime
    values: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self,
        action: str,
        from_status: str | None,
        to_status: str,
        actor: str,
        note: str | None,
        grid_code: str | None = None,
    ) -> None:
        """Record one event of the history."""
        self.events.append(
            event_row(action, from_status, to_status, actor, note, self.now, grid_code)
        )

    def step(
        self, action: str, status: str, actor: str, note: str | None, grid_code: str | None = None
    ) -> str:
        """Apply one workflow action, recording its event; returns the new status."""
        new = transition(action, status)
        self.record(action, status, new, actor, note, grid_code)
        return new


def route_to(
    settings: Settings, category: Category, located: _Located, status: str, change: Pending
) -> str:
    """File and dispatch automatically as far as the location allows; returns the new status."""
    found, now = located.location, change.now
    if found.status in (*_ROUTED, "ambiguous"):
        status = change.step("file", status, SYSTEM, None)
        change.values["filed_at"] = now
    if found.status in _ROUTED:
        deadline = due_at(now, category.limit, calendar_of(settings))
        note = f"dispatched to grid {found.grid_code}; {category.limit} -> due {iso_time(deadline)}"
        status = change.step("dispatch", status, SYSTEM, note, found.grid_code)
        change.values.update(dispatched_at=now, due_at=deadline)
    return status


def event_row(
    action: str,
    from_status: str | None,
    to_status: str,
    actor: str,
    note: str | None,
    at: datetime,
    grid_code: str | None = None,
) -> dict[str, Any]:
    """One row of the incident\'s history."""
    return {
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "actor": actor,
        "note": note,
        "grid_code": grid_code,
        "at": at,
    }


def with_recorder(events: list[dict[str, Any]], by: str | None) -> list[dict[str, Any]]:
    """The events, each marked with who recorded it."""
    return [{**e, "recorded_by": by} for e in events]


def join_notes(*parts: str | None) -> str:
    """The notes given, in one line."""
    return "; ".join(p for p in parts if p)
