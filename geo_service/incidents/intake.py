"""Intake: a report recorded and routed in one transaction, idempotent per caller and key
(a retry with the same key and body answers the first incident; another body is a conflict).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine

from geo_service.buildings.address import place_in_text
from geo_service.buildings.service import refresh_address_index, refresh_crossings
from geo_service.errors import (
    Conflict,
    InvalidInput,
)
from geo_service.incidents import store
from geo_service.incidents.bodies import (
    REPORTER_COLUMNS,
    STORED_AS_GIVEN,
    IncidentIn,
    check_key,
    digest,
    validated,
)
from geo_service.incidents.config import category_of
from geo_service.incidents.queries import case_file, case_file_of
from geo_service.incidents.routing import (
    SYSTEM,
    GivenPoint,
    Pending,
    geocode_address,
    join_notes,
    locate_report,
    point_of,
    route_to,
    with_recorder,
)
from geo_service.incidents.workflow import utc_now
from geo_service.settings import Settings


@dataclass
class Intake:
    """The outcome of a POST: the incident, and whether this call created it (False for a
    retry with the same Idempotency-Key and body)."""

    incident: dict[str, Any]
    created: bool


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
    report = validated(IncidentIn, payload)
    category = category_of(settings, report.category)
    _check_description(settings, report.description)
    check_key(idempotency_key)
    point = point_of(report.lon, report.lat, report.crs)
    if point is None and not report.address and not (report.description or "").strip():
        raise InvalidInput(
            "a report needs lon and lat (with crs when not WGS-84), an address, or a "
            "description that says where"
        )
    request_hash = _hash(report, source)
    owner = recorded_by or ""  # keys are the caller's own
    now = now or utc_now()
    if point is None:
        refresh_address_index(engine)  # geocoding below must read a current index
        refresh_crossings(engine)
    unusable = _unusable(point)
    with engine.connect() as conn:
        # Autocommit: the report and its history are stored by one statement, atomic on its
        # own; the lookups before it need no transaction (and BEGIN/COMMIT cost round trips).
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        located, earlier = None, None
        if point is not None and unusable is None:  # the key looked up with the locate
            located = locate_report(
                conn, settings, category, point, now, owner=owner, key=idempotency_key
            )
            earlier = located.earlier
        elif idempotency_key is not None:
            earlier = store.by_idempotency_key(conn, owner, idempotency_key)
        if earlier is not None:
            assert idempotency_key is not None
            return _replay(conn, settings, earlier, request_hash, idempotency_key, now)
        if unusable is not None:
            raise unusable
        given = {**STORED_AS_GIVEN, **REPORTER_COLUMNS}
        change = Pending(now)
        values = change.values
        values |= {
            **{column: getattr(report, name) for name, column in given.items()},
            "category": category.code,
            "received_at": now,
            "updated_at": now,
            "source": source,
            "idempotency_key": idempotency_key,
            "idempotency_owner": owner,
            "request_hash": request_hash,
        }
        geocoded = ""
        if point is None and report.address:
            point, geocoded, proposed = geocode_address(conn, settings, report.address)
            values["address_candidates"] = proposed
        elif point is None:  # only the description can say where (人民五路95号楼下垃圾…)
            said = place_in_text(report.description or "")
            if said is None:
                geocoded = "no place found in the description"
            else:
                point, geocoded, proposed = geocode_address(conn, settings, said)
                geocoded = f"place read from the description: {said}; {geocoded}"
                values["address_candidates"] = proposed
        if point is None:
            note = join_notes(f"received via {source}", geocoded, "waiting for a location")
            change.record("receive", None, "needs_location", SYSTEM, note)
            values.update(status="needs_location", needs_location=True)
        else:
            if located is None:  # geocoded from the address or the description
                located = locate_report(conn, settings, category, point, now)
            note = join_notes(f"received via {source}", geocoded, located.note)
            change.record("receive", None, "received", SYSTEM, note)
            values.update(located.values)
            values["status"] = route_to(settings, category, located, "received", change)
        created = store.insert_report(conn, values, with_recorder(change.events, recorded_by))
        if created is None:
            # A concurrent request with the same key committed first: answer as a retry.
            assert idempotency_key is not None
            taken = store.by_idempotency_key(conn, owner, idempotency_key)
            assert taken is not None
            return _replay(conn, settings, taken, request_hash, idempotency_key, now)
        row, history = created
        return Intake(case_file_of(row, history, settings, now), created=True)


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
    return Intake(case_file(conn, settings, earlier["ref"], now), created=False)


def _unusable(point: GivenPoint | None) -> InvalidInput | None:
    """Why the coordinates cannot be used, or None. Raised once the key is checked: a body
    sent again under a key that holds another is a conflict first."""
    try:
        if point is not None:
            point.wgs84()
    except InvalidInput as exc:
        return exc
    return None


def _conflict_key(key: str, ref: str) -> Conflict:
    return Conflict(
        f"Idempotency-Key {key!r} was already used for incident {ref} with a different body; "
        "use a new key for a new report"
    )


def _check_description(settings: Settings, description: str | None) -> None:
    limit = settings.incidents.description_max_chars
    if description is not None and len(description) > limit:
        raise InvalidInput(f"description has {len(description)} characters; the limit is {limit}")


def _hash(report: IncidentIn, source: str) -> str:
    """A digest of what was asked."""
    return digest({"source": source, **report.model_dump(exclude_none=True)})
