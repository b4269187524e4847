"""Open311 GeoReport v2 (pure): services from categories, form parsing, request records, XML.

Nothing here touches the database. Personal data (reporter name, phone, email) never enters
a record built here: `request_record` copies a whitelist of public fields only.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from geo_service import errors as domain_errors
from geo_service.coords import number
from geo_service.errors import InvalidInput
from geo_service.incidents.categories import Category
from geo_service.incidents.workflow import OPEN, TERMINAL, open311_status
from geo_service.times import parse_instant

Format = Literal["json", "xml"]
FORMATS: Final = ("json", "xml")
MAX_FORM_FIELDS: Final = 100
MAX_IDS: Final = 1000

# Public wording of each status (status_notes): free-text notes of staff stay internal.
STATUS_NOTES: Final = {
    "zh": {
        "needs_location": "已受理，待确认位置",
        "received": "已受理，待派遣",
        "filed": "已立案，待派遣",
        "dispatched": "已派遣至网格",
        "in_progress": "处置中",
        "reported": "已处置，待核查",
        "closed": "已核查结案",
        "cancelled": "已撤销",
    },
    "en": {
        "needs_location": "received; waiting for a location",
        "received": "received; waiting to be dispatched",
        "filed": "filed; waiting to be dispatched",
        "dispatched": "dispatched to the grid",
        "in_progress": "being handled",
        "reported": "handled; waiting for verification",
        "closed": "verified and closed",
        "cancelled": "cancelled",
    },
}


class Forbidden(domain_errors.Forbidden):
    """A missing or unknown api_key (Open311 answers 403)."""


def output_format(text: str) -> Format:
    """The format of a resource suffix (.json or .xml)."""
    if text not in FORMATS:
        raise InvalidInput(f"unknown format {text!r}; use .json or .xml")
    return text  # type: ignore[return-value]


# -- services -------------------------------------------------------------------------------------
def service_list(categories: Mapping[str, Category], language: str) -> list[dict[str, Any]]:
    """GET services: one realtime service per category; no attributes (metadata false)."""
    return [
        {
            "service_code": c.code,
            "service_name": c.text("name", language),
            "description": c.text("description", language),
            "metadata": False,
            "type": "realtime",
            "keywords": ", ".join(c.keywords),
            "group": c.text("group", language),
        }
        for c in categories.values()
    ]


def service_definition(category: Category) -> dict[str, Any]:
    """GET services/{code}: categories define no attributes."""
    return {"service_code": category.code, "attributes": []}


# -- POST requests --------------------------------------------------------------------------------
def parse_form(body: bytes, content_type: str | None) -> dict[str, list[str]]:
    """Fields of an application/x-www-form-urlencoded body (UTF-8, per the spec)."""
    kind = (content_type or "application/x-www-form-urlencoded").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput(
            f"POST requests takes application/x-www-form-urlencoded, not {kind!r} "
            "(send photos as media_url)"
        )
    try:
        text = body.decode("utf-8")
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise InvalidInput("the form is not UTF-8") from None
    except ValueError as exc:
        raise InvalidInput(f"cannot read the form: {exc}") from None


def _one(form: Mapping[str, Sequence[str]], name: str) -> str | None:
    """A single form value, stripped; blank counts as absent."""
    values = form.get(name) or []
    if len(values) > 1:
        raise InvalidInput(f"{name} is given {len(values)} times")
    value = values[0].strip() if values else ""
    return value or None


def _number(name: str, value: str) -> float:
    parsed = number(value)
    if not math.isfinite(parsed):
        raise InvalidInput(f"{name} {value!r} is not a number")
    return parsed


def api_key(form: Mapping[str, Sequence[str]]) -> str:
    """The form's api_key (a token of the service); 403 when missing."""
    key = _one(form, "api_key")
    if key is None:
        raise Forbidden("api_key is required")
    return key


def submission(
    form: Mapping[str, Sequence[str]], categories: Mapping[str, Category]
) -> dict[str, Any]:
    """The incident payload (see service.IncidentIn) of a POST requests form."""
    code = _one(form, "service_code")
    if code is None:
        raise InvalidInput("service_code is required")
    if code not in categories:
        raise InvalidInput(f"unknown service_code {code!r}; see GET services")
    lat, lon = _one(form, "lat"), _one(form, "long")
    address, address_id = _one(form, "address_string"), _one(form, "address_id")
    if (lat is None) != (lon is None):
        raise InvalidInput("lat and long go together: give both or neither")
    if lat is None and address is None and address_id is None:
        raise InvalidInput("a location is required: lat and long, address_string or address_id")
    if address is None and address_id is not None:
        # Address ids point into a building/address register that geocoding will connect;
        # until then the id is kept as the address text and the report waits for a location.
        address = f"address_id {address_id}"
    media_url = _one(form, "media_url")
    if media_url is not None and urlsplit(media_url).scheme not in ("http", "https"):
        raise InvalidInput(f"media_url {media_url[:80]!r} is not an http(s) URL")
    name = " ".join(n for n in (_one(form, "first_name"), _one(form, "last_name")) if n)
    payload: dict[str, Any] = {
        "category": code,
        "description": _one(form, "description"),
        "address": address,
        "media_url": media_url,
        "reporter_name": name or None,
        "reporter_phone": _one(form, "phone"),
        "reporter_email": _one(form, "email"),
    }
    if lat is not None and lon is not None:
        payload.update(lon=_number("long", lon), lat=_number("lat", lat), crs="wgs84")
    return {k: v for k, v in payload.items() if v is not None}


def receipt(incident: Mapping[str, Any], language: str) -> dict[str, Any]:
    """The POST requests answer: the id, and a notice saying where the report went."""
    return {
        "service_request_id": incident["ref"],
        "service_notice": _notice(incident, language),
        "account_id": None,
    }


def _notice(incident: Mapping[str, Any], language: str) -> str:
    agency = agency_responsible(incident)
    due = incident.get("due_at") or ""
    if incident["status"] == "dispatched" and agency:
        if language == "en":
            return f"dispatched to {agency}; expected by {due}"
        return f"已派遣至{agency}，预计{due}前处置"
    return STATUS_NOTES.get(language, STATUS_NOTES["zh"])[incident["status"]]


# -- GET requests ---------------------------------------------------------------------------------
@dataclass
class RequestSearch:
    """What GET requests asks for, resolved to internal terms."""

    refs: list[str]
    categories: list[str]
    statuses: list[str]
    since: datetime | None
    until: datetime | None
    limit: int


def _list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def request_search(
    params: Mapping[str, str | None],
    categories: Mapping[str, Category],
    *,
    tz: ZoneInfo,
    now: datetime,
    window_days: int,
    max_requests: int,
) -> RequestSearch:
    """Validate GET requests parameters; without dates: the last `window_days` days."""
    refs = _list(params.get("service_request_id"))
    if len(refs) > MAX_IDS:
        raise InvalidInput(f"{len(refs)} service_request_id values; the limit is {MAX_IDS}")
    if refs:
        # The spec: with ids, every other parameter is ignored.
        return RequestSearch(refs, [], [], None, None, max_requests)
    codes = _list(params.get("service_code"))
    unknown = [c for c in codes if c not in categories]
    if unknown:
        raise InvalidInput(f"unknown service_code {unknown[0]!r}; see GET services")
    statuses: list[str] = []
    for status in _list(params.get("status")):
        if status == "open":
            statuses += OPEN
        elif status == "closed":
            statuses += sorted(TERMINAL)
        else:
            raise InvalidInput(f"status {status!r} is neither open nor closed")
    start, end = params.get("start_date"), params.get("end_date")
    window = timedelta(days=window_days)
    until = parse_instant("end_date", end, tz) if end else None
    since = parse_instant("start_date", start, tz) if start else None
    if since is None:
        since = (until or now) - window
    if until is not None and until < since:
        raise InvalidInput(f"end_date {end!r} is before start_date {start!r}")
    if (until or now) - since > window:
        raise InvalidInput(f"the date range may not span more than {window_days} days")
    return RequestSearch([], codes, statuses, since, until, max_requests)


def agency_responsible(incident: Mapping[str, Any]) -> str | None:
    """'金山社区第3网格 (340705001001003)': the grid in charge, with its community's name."""
    code = incident.get("grid_code")
    if not code:
        return None
    grid = incident.get("grid_name") or ""
    community = incident.get("community_name") or ""
    # Grid names often repeat the community name already ("金山社区第3网格").
    name = grid if grid.startswith(community) else f"{community}{grid}"
    return f"{name} ({code})" if name else code


def request_record(
    incident: Mapping[str, Any],
    categories: Mapping[str, Category],
    language: str,
    *,
    free_text: bool = False,
    public_decimals: int = 3,
) -> dict[str, Any]:
    """One Open311 service request from an incident (public fields only). The texts a
    resident wrote (description, address, media_url) and the exact point only with
    `free_text`: for callers who may read the incident; others get the point rounded to
    `public_decimals` decimal degrees (3: about 100 m, enough to show the street, not the
    door)."""
    category = categories.get(incident["category"])
    notes = STATUS_NOTES.get(language, STATUS_NOTES["zh"])
    return {
        "service_request_id": incident["ref"],
        "status": open311_status(incident["status"]),
        "status_notes": notes.get(incident["status"]),
        "service_name": category.text("name", language) if category else incident["category"],
        "service_code": incident["category"],
        "description": incident.get("description") if free_text else None,
        "agency_responsible": agency_responsible(incident),
        "service_notice": None,
        "requested_datetime": incident.get("received_at"),
        "updated_datetime": incident.get("updated_at"),
        "expected_datetime": incident.get("due_at"),
        "address": incident.get("address") if free_text else None,
        "address_id": None,
        "zipcode": None,
        "lat": _coarse(incident.get("lat"), None if free_text else public_decimals),
        "long": _coarse(incident.get("lon"), None if free_text else public_decimals),
        "media_url": incident.get("media_url") if free_text else None,
    }


def _coarse(value: float | None, decimals: int | None) -> float | None:
    return value if value is None or decimals is None else round(value, decimals)


# -- rendering ------------------------------------------------------------------------------------
def errors(status: int, message: str) -> list[dict[str, Any]]:
    """The Open311 error list."""
    return [{"code": status, "description": message}]


# What XML 1.0 cannot carry, even escaped: C0 controls but tab, newline and carriage return,
# lone surrogates, U+FFFE and U+FFFF. Residents' text may hold them (pasted from elsewhere).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: Any) -> str | None:
    """An element's text: stored text is kept as given; in XML each character XML cannot
    carry shows as U+FFFD (the JSON answers carry it escaped, as given)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _element(tag: str, value: Any) -> ET.Element:
    node = ET.Element(tag)
    if isinstance(value, Mapping):
        node.extend(_element(k, v) for k, v in value.items())
    elif isinstance(value, list):
        # Lists nest under their field (attributes -> attribute).
        node.extend(_element(tag[:-1] if tag.endswith("s") else "item", v) for v in value)
    else:
        node.text = _text(value)
    return node


def to_xml(root: str, item: str, items: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> bytes:
    """UTF-8 XML with declaration: <root><item>..</item>..</root>, or <root>..</root> for one
    mapping (a service definition)."""
    if isinstance(items, Mapping):
        tree = _element(root, items)
    else:
        tree = ET.Element(root)
        tree.extend(_element(item, entry) for entry in items)
    return ET.tostring(tree, encoding="utf-8", xml_declaration=True)
