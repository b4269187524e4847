"""Visits: recorded from a grid worker's phone, where a connection drops in a stairwell, so
every one is safe to resend (idempotent per caller and key, as incident intake is); checked
against the campaign (its round, scope and start), the clock and the building's place (a
visit far from its building is kept but flagged); a follow_up visit made an incident in one
action."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from geo_service.coords import number, parse_point
from geo_service.crs import parse_input_crs
from geo_service.db.engine import reading
from geo_service.errors import Conflict, Forbidden, InvalidInput, NotFound
from geo_service.fieldwork import rules, store
from geo_service.fieldwork.bodies import VisitIn, VisitIncidentIn
from geo_service.fieldwork.campaigns import campaign_row
from geo_service.incidents import intake
from geo_service.incidents.bodies import validated
from geo_service.incidents.queries import case_file
from geo_service.incidents.workflow import iso_time, utc_now
from geo_service.settings import Settings
from geo_service.times import parse_instant

_MAX_KEY: Final = 255
OUTCOME_NAMES: Final = {
    "visited": "已走访",
    "no_one_home": "无人在家",
    "refused": "拒绝",
    "follow_up": "需跟进",
}


@dataclass
class Answer:
    """What a POST answers, and whether this call made it (False for a resend)."""

    body: dict[str, Any]
    created: bool


def record_visit(
    engine: Engine,
    settings: Settings,
    payload: Mapping[str, Any] | VisitIn,
    idempotency_key: str | None = None,
    *,
    recorded_by: str,
    grids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Answer:
    """Record a visit. A resend with the same Idempotency-Key and body answers the first
    visit; another body under that key is a Conflict. Unknown campaign or building:
    NotFound; a round outside the campaign's, a time in the future (beyond the clock skew)
    or before the campaign, a building outside its scope: InvalidInput; a building of a grid
    not in `grids` (a grid worker's own): Forbidden. A visit farther from its building than
    GEO_VISIT_MAX_DISTANCE_M is stored, flagged; a second visit of a building in a round is
    a revisit."""
    body = validated(VisitIn, payload)
    _check_key(idempotency_key)
    crs = parse_input_crs(body.crs)
    x, y = parse_point(body.lon, body.lat, crs)
    tz = _tz(settings)
    now = now or utc_now()
    at = parse_instant("at", body.at, tz) or now
    rules.check_not_future(at, now, settings.grids.visit_clock_skew_s)
    rules.check_households(body.outcome, body.households_reached)
    request_hash = _hash(body.model_dump(exclude_none=True))
    owner = recorded_by
    with engine.begin() as conn:
        found = store.context(conn, body.campaign, body.building, owner, idempotency_key, x, y)
        if found["earlier_id"] is not None:
            assert idempotency_key is not None
            earlier = {"id": found["earlier_id"], "request_hash": found["earlier_hash"]}
            return _replay(conn, settings, earlier, request_hash, idempotency_key)
        if found["rounds"] is None:
            raise NotFound(f"no campaign {body.campaign}")
        rules.check_round(body.round, found["rounds"], body.campaign)
        rules.check_started(at, found["starts_at"], body.campaign)
        if not found["building_found"]:
            raise NotFound(f"no building {body.building!r}")
        if found["grid_code"] is None:
            campaign = campaign_row(conn, body.campaign)
            raise InvalidInput(
                f"building {body.building!r} is outside the scope of campaign {body.campaign} "
                f"({_scope_text(campaign)})"
            )
        if grids is not None and found["grid_code"] not in grids:
            raise Forbidden(
                f"building {body.building!r} is in grid {found['grid_code']}, not one of "
                f"yours ({', '.join(sorted(grids))})"
            )
        reason = rules.flag(found["distance_m"], settings.grids.visit_max_distance_m)
        so_far = store.round_so_far(conn, body.campaign, body.round, body.building)
        first_reach, households_added = rules.added(
            body.outcome, body.households_reached, found["households"], so_far
        )
        values = {
            "campaign_id": body.campaign,
            "round": body.round,
            "building_code": body.building,
            "grid_code": found["grid_code"],
            "community_code": found["community_code"],
            "households_reached": body.households_reached,
            "outcome": body.outcome,
            "note": body.note,
            "at": at,
            "recorded_at": now,
            "recorded_by": recorded_by,
            "input_lon": number(body.lon),
            "input_lat": number(body.lat),
            "input_crs": crs.name,
            "x": x,
            "y": y,
            "distance_m": round(float(found["distance_m"]), 1),
            "flagged": reason is not None,
            "flag_reason": reason,
            "revisit": so_far["visits"] > 0,
            "first_reach": first_reach,
            "households_added": households_added,
            "idempotency_key": idempotency_key,
            "idempotency_owner": owner,
            "request_hash": request_hash,
        }
        stored = store.insert_visit(conn, values, rules.progress_of(values))
        if stored is None:  # a concurrent resend with the same key committed first
            assert idempotency_key is not None
            taken = store.visit_by_key(conn, owner, idempotency_key)
            assert taken is not None
            return _replay(conn, settings, taken, request_hash, idempotency_key)
        return Answer(visit_out(stored, _tz(settings)), created=True)


def visit_incident(
    engine: Engine,
    settings: Settings,
    visit_id: int,
    payload: Mapping[str, Any] | VisitIncidentIn,
    *,
    recorded_by: str,
    grids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Answer:
    """Make a follow_up visit an incident at its building (through incident intake, so it
    is routed to the building's grid like any report), and record the incident's ref on the
    visit. Asked again: the same incident (a different category is a Conflict). Another
    outcome than follow_up is a Conflict; a visit of another grid than `grids`: Forbidden."""
    body = validated(VisitIncidentIn, payload)
    now = now or utc_now()
    with engine.begin() as conn:  # the visit stays locked until its ref is written
        visit = store.visit(conn, visit_id, lock=True)
        if visit is None:
            raise NotFound(f"no visit {visit_id}")
        if grids is not None and visit["grid_code"] not in grids:
            raise Forbidden(f"visit {visit_id} is in grid {visit['grid_code']}, not one of yours")
        if visit["outcome"] != "follow_up":
            raise Conflict(
                f"visit {visit_id} has outcome {visit['outcome']!r}: only a follow_up visit "
                "becomes an incident"
            )
        if visit["incident_ref"] is not None:
            incident = case_file(conn, settings, visit["incident_ref"], now)
            if incident["category"] != body.category:
                raise Conflict(
                    f"visit {visit_id} became incident {visit['incident_ref']} of category "
                    f"{incident['category']!r}, not {body.category!r}"
                )
            return Answer(incident, created=False)
        place = store.building(conn, visit["building_code"], visit["lon"], visit["lat"])
        if place is None:
            raise NotFound(f"building {visit['building_code']!r} of visit {visit_id} is gone")
        report = {
            "category": body.category,
            "description": body.description or _description(conn, visit, place),
            "lon": place["lon"],
            "lat": place["lat"],
            "address": place["address"],
        }
        # Its own key, per caller: a retry after a lost answer finds the same incident even
        # if this transaction did not get to write the ref.
        taken = intake.create_incident(
            engine,
            settings,
            report,
            f"visit-{visit_id}",
            source="visit",
            recorded_by=recorded_by,
            now=now,
        )
        store.set_incident(conn, visit_id, taken.incident["ref"])
        return Answer(taken.incident, created=True)


def _description(conn: Connection, visit: Mapping[str, Any], place: Mapping[str, Any]) -> str:
    """What an incident from a visit says when the caller says nothing: the visit's note, or
    which campaign, round and building."""
    if visit["note"]:
        return str(visit["note"])
    name = campaign_row(conn, visit["campaign_id"])["name"]
    return f"{name} 第{visit['round']}轮走访{OUTCOME_NAMES[visit['outcome']]}: {place['address']}"


def get_visit(
    engine: Engine, settings: Settings, visit_id: int, *, grids: Sequence[str] | None = None
) -> dict[str, Any]:
    """One visit (NotFound for an unknown id, or one outside `grids`)."""
    with reading(engine) as conn:
        row = store.visit(conn, visit_id)
    if row is None or (grids is not None and row["grid_code"] not in grids):
        raise NotFound(f"no visit {visit_id}")
    return visit_out(row, _tz(settings))


def list_visits(
    engine: Engine,
    settings: Settings,
    *,
    campaign: int | None = None,
    round_: int | None = None,
    grid: str | None = None,
    building: str | None = None,
    flagged: bool | None = None,
    grids: Sequence[str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """Visits, newest first, filtered; a grid worker's (`grids`) only in their grids."""
    filters = {
        "campaign": campaign,
        "round": round_,
        "grid": grid,
        "building": building,
        "flagged": flagged,
        "grids": None if grids is None else list(grids),
    }
    with reading(engine) as conn:
        total, rows = store.visits(conn, filters, limit, offset)
    tz = _tz(settings)
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": [visit_out(r, tz) for r in rows],
    }


def visit_out(row: Mapping[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """The JSON form of a visit."""
    return {
        "id": row["id"],
        "campaign": row["campaign_id"],
        "round": row["round"],
        "building": row["building_code"],
        "grid_code": row["grid_code"],
        "community_code": row["community_code"],
        "households_reached": row["households_reached"],
        "outcome": row["outcome"],
        "note": row["note"],
        "at": iso_time(row["at"], tz),
        "recorded_at": iso_time(row["recorded_at"], tz),
        "recorded_by": row["recorded_by"],
        "lon": row["lon"],
        "lat": row["lat"],
        "input": {"lon": row["input_lon"], "lat": row["input_lat"], "crs": row["input_crs"]},
        "distance_m": row["distance_m"],
        "flagged": row["flagged"],
        "flag_reason": row["flag_reason"],
        "revisit": row["revisit"],
        "first_reach": row["first_reach"],
        "households_added": row["households_added"],
        "incident_ref": row["incident_ref"],
    }


def _visit(conn: Connection, settings: Settings, visit_id: int) -> dict[str, Any]:
    row = store.visit(conn, visit_id)
    assert row is not None
    return visit_out(row, _tz(settings))


def _replay(
    conn: Connection, settings: Settings, earlier: Mapping[str, Any], request_hash: str, key: str
) -> Answer:
    if earlier["request_hash"] != request_hash:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for visit {earlier['id']} with a "
            "different body; use a new key for a new visit"
        )
    return Answer(_visit(conn, settings, earlier["id"]), created=False)


def _scope_text(campaign: Mapping[str, Any]) -> str:
    codes = list(campaign["scope_codes"])
    shown = ", ".join(codes[:5]) + (f" and {len(codes) - 5} more" if len(codes) > 5 else "")
    return f"{campaign['scope_kind']} {shown}"


def _check_key(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= _MAX_KEY and key.isascii() and key.isprintable()):
        raise InvalidInput(f"Idempotency-Key must be 1-{_MAX_KEY} printable ASCII characters")


def _hash(body: Mapping[str, Any]) -> str:
    """A digest of what was asked (parsed, so key order and spacing do not matter)."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _tz(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.incidents.timezone)
