"""The bodies of the incident doors: a new report and a follow-up action, parsed into typed
values with every bad field named.
"""

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from geo_service.auth.policy import REPORTER_CONTACT
from geo_service.errors import (
    InvalidInput,
    describe_problems,
)

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


# Fields of a report stored as given, by column: what the reporter wrote, shown in listings
# and the case file under the field's name. (A new such field: its column in db/models.py and
# a migration, the field above, an entry here.) The reporter's contact is stored the same way
# but shown only in the case file (auth.policy.REPORTER_CONTACT).
STORED_AS_GIVEN: Final = {
    "description": "description",
    "address": "address_text",
    "media_url": "media_url",
}
REPORTER_COLUMNS: Final = {column: column for column in REPORTER_CONTACT}


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


_Model = TypeVar("_Model", bound=BaseModel)
MAX_KEY: Final = 255  # characters of an Idempotency-Key


def check_key(key: str | None) -> None:
    """An Idempotency-Key a caller may send: 1-255 printable ASCII characters (or none)."""
    if key is not None and not (0 < len(key) <= MAX_KEY and key.isascii() and key.isprintable()):
        raise InvalidInput(f"Idempotency-Key must be 1-{MAX_KEY} printable ASCII characters")


def digest(request: Mapping[str, Any]) -> str:
    """A digest of what was asked, parsed (so key order and spacing do not matter): a resend
    under the same Idempotency-Key must ask the same."""
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def validated(model: type[_Model], data: Any) -> _Model:
    """Parse a body; InvalidInput naming each bad field and value."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise InvalidInput(describe_problems(exc.errors())) from None
