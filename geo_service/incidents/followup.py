"""Follow-up (分流督办): one workflow action applied to an incident and recorded, or refused
with nothing changed. Sent with an Idempotency-Key (a grid worker's phone resending after a
dropped connection), an action is applied once: a resend answers the incident without applying
it again.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from geo_service.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from geo_service.incidents import store
from geo_service.incidents.bodies import IncidentChange, check_key, digest, validated
from geo_service.incidents.config import calendar_of, category_of
from geo_service.incidents.queries import case_file
from geo_service.incidents.routing import (
    Pending,
    join_notes,
    locate_report,
    point_of,
    route_to,
    with_recorder,
)
from geo_service.incidents.workflow import (
    due_at,
    iso_time,
    transition,
    utc_now,
)
from geo_service.settings import Settings


@dataclass
class Applied:
    """The incident after an action, and whether this call applied it (False for a resend
    under the same Idempotency-Key)."""

    incident: dict[str, Any]
    applied: bool


def change_incident(
    engine: Engine,
    settings: Settings,
    ref: str,
    change: Mapping[str, Any] | IncidentChange,
    idempotency_key: str | None = None,
    *,
    grids: Sequence[str] | None = None,
    recorded_by: str | None = None,
    now: datetime | None = None,
) -> Applied:
    """Apply one workflow action to an incident and record it; Conflict (nothing changed) when
    the action is illegal from its status, NotFound for an unknown ref (or, with `grids`, a
    grid worker's scope, for an incident of another grid). `recorded_by`: the authenticated
    caller, kept on the events beside the actor the request names.

    With an Idempotency-Key (the caller's own, as for reports), a resend of the same action
    answers the incident as it is now, applying nothing (`applied` False), whatever its status
    has become since; the key sent with another action or another incident is a Conflict."""
    request = validated(IncidentChange, change)
    check_key(idempotency_key)
    if request.grid_code is not None and request.action != "dispatch":
        raise InvalidInput(f"grid_code applies to dispatch only, not to {request.action!r}")
    if (request.lon, request.lat, request.crs) != (None, None, None) and request.action != "locate":
        raise InvalidInput(f"lon/lat/crs apply to locate only, not to {request.action!r}")
    now = now or utc_now()
    owner = recorded_by or ""  # keys are the caller's own
    request_hash = digest({"ref": ref, **request.model_dump(exclude_none=True)})
    with engine.begin() as conn:
        # The lock first: a resend racing the first send waits here, then finds its key.
        row = store.lock(conn, ref)
        if row is None or (grids is not None and row["grid_code"] not in grids):
            raise NotFound(f"no incident {ref!r}")
        if idempotency_key is not None:
            earlier = store.action_by_key(conn, owner, idempotency_key)
            if earlier is not None:
                if earlier["request_hash"] != request_hash:
                    raise _reused(idempotency_key, f"incident {earlier['ref']}")
                return Applied(case_file(conn, settings, ref, now), applied=False)
        status = row["status"]
        new = transition(request.action, status, ref)
        pending = Pending(now, {"updated_at": now})
        if request.action == "locate":
            new = _relocate(conn, settings, row, request, pending)
        elif request.action == "dispatch":
            _dispatch(conn, settings, row, request, pending)
        else:
            if request.action == "close":
                pending.values["closed_at"] = now
            elif request.action == "reopen":
                pending.values["closed_at"] = None
            pending.record(request.action, status, new, request.actor, request.note)
        pending.values["status"] = new
        store.update_incident(conn, row["id"], pending.values)
        events = with_recorder(pending.events, recorded_by)
        if idempotency_key is None:
            store.insert_events(conn, row["id"], events)
        else:
            key = {
                "idempotency_owner": owner,
                "idempotency_key": idempotency_key,
                "request_hash": request_hash,
            }
            if not store.insert_keyed_events(conn, row["id"], events, key):
                # Sent for another incident at the same moment: that one holds the key now.
                raise _reused(idempotency_key, "another incident")
        return Applied(case_file(conn, settings, ref, now), applied=True)


def _reused(key: str, where: str) -> Conflict:
    return Conflict(
        f"Idempotency-Key {key!r} was already used for another action on {where}; use a new "
        "key for a new action",
        details={"idempotency_key": key},
    )


def _relocate(
    conn: Connection,
    settings: Settings,
    row: Mapping[str, Any],
    request: IncidentChange,
    pending: Pending,
) -> str:
    """Locate an incident from the coordinates given, then route it as intake would."""
    point = point_of(request.lon, request.lat, request.crs)
    if point is None:
        raise InvalidInput("locate needs lon and lat (with crs when not WGS-84)")
    category = category_of(settings, row["category"])
    located = locate_report(conn, settings, category, point, pending.now, exclude_id=row["id"])
    note = join_notes(request.note, located.note)
    status = pending.step("locate", row["status"], request.actor, note)
    pending.values.update(located.values)
    return route_to(settings, category, located, status, pending)


def _dispatch(
    conn: Connection,
    settings: Settings,
    row: Mapping[str, Any],
    request: IncidentChange,
    pending: Pending,
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
    pending.values.update(grid_code=target["code"], community_code=target["community_code"])
    note = request.note
    if row["dispatched_at"] is None:
        category = category_of(settings, row["category"])
        deadline = due_at(pending.now, category.limit, calendar_of(settings))
        pending.values.update(dispatched_at=pending.now, due_at=deadline)
        note = join_notes(note, f"{category.limit} -> due {iso_time(deadline)}")
    elif row["grid_code"] != target["code"]:
        note = join_notes(note, f"re-routed from grid {row['grid_code']}")
    pending.step("dispatch", row["status"], request.actor, note, target["code"])
