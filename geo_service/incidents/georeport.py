"""The Open311 GeoReport v2 door onto the same intake and reads (its formats live in
open311.py).
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from geo_service.auth.policy import ANONYMOUS, Principal, allowed, sees_incident
from geo_service.auth.service import authenticate
from geo_service.errors import (
    NotFound,
    Unauthorized,
)
from geo_service.incidents import open311, store
from geo_service.incidents.config import known_categories
from geo_service.incidents.intake import create_incident
from geo_service.incidents.queries import incident_out
from geo_service.incidents.workflow import utc_now
from geo_service.settings import Settings


def open311_services(settings: Settings) -> list[dict[str, Any]]:
    """GET services: the categories as Open311 services."""
    known = known_categories(settings)
    return open311.service_list(known, settings.open311.language)


def open311_service(settings: Settings, code: str) -> dict[str, Any]:
    """GET services/{code}: the service definition; NotFound for an unknown code."""
    known = known_categories(settings)
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
    known = known_categories(settings)
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
    return [open311.receipt(intake.incident, settings.open311.language)]


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
    known = known_categories(settings)
    tz = ZoneInfo(settings.incidents.timezone)
    now = now or utc_now()
    search = open311.request_search(
        params,
        known,
        tz=tz,
        now=now,
        window_days=settings.open311.window_days,
        max_requests=settings.open311.max_requests,
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
    language = settings.open311.language
    return [
        open311.request_record(
            incident_out(r, settings, tz, now),
            known,
            language,
            free_text=sees_incident(viewer, r["grid_code"]),
            public_decimals=settings.open311.public_decimals,
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
