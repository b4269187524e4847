"""The bodies of the field-work doors: a new campaign, a visit, a follow-up visit made an
incident; parsed into typed values, every bad field named (a 422)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from geo_service.db.models import CAMPAIGN_MAX_ROUNDS

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ID = 2**31 - 1  # ids are int4 (campaigns) or fit in one (visits, for a while yet)
MAX_SCOPE = 10_000  # more codes than any city has grids


def _no_control(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"holds a control character ({found.group()!r} at {found.start()})")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_control),
]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Moment = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    Field(description="ISO 8601 date or date-time (no offset: the city's time zone)"),
]
Coordinate = StrictFloat | StrictInt | StrictStr
Kind = Literal["screening", "routine", "other"]
Target = Literal["buildings", "households"]
Outcome = Literal["visited", "no_one_home", "refused", "follow_up"]
_MODEL = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ScopeIn(BaseModel):
    """Where a campaign goes: whole communities, or some grids (one of the two)."""

    model_config = _MODEL

    communities: list[Code] | None = Field(None, max_length=MAX_SCOPE)
    grids: list[Code] | None = Field(None, max_length=MAX_SCOPE)


class CampaignIn(BaseModel):
    """A new campaign: what, where, counted in buildings or households, in how many rounds,
    from when to when."""

    model_config = _MODEL

    name: Name
    kind: Kind = "screening"
    scope: ScopeIn
    target: Target = Field("buildings", description="what progress counts")
    rounds: int = Field(1, ge=1, le=CAMPAIGN_MAX_ROUNDS)
    starts: Moment
    due: Moment = Field(description="a date (the whole day counts) or a date-time")


class VisitIn(BaseModel):
    """One visit to one building in one round of a campaign, where and when it was made."""

    model_config = _MODEL

    campaign: int = Field(ge=1, le=MAX_ID, description="the campaign's id")
    round: int = Field(ge=1, le=CAMPAIGN_MAX_ROUNDS, description="1 .. the campaign's rounds")
    building: Code = Field(description="the building's code")
    households_reached: int = Field(0, ge=0, le=100_000)
    outcome: Outcome
    note: str | None = Field(None, max_length=2000)
    at: Moment | None = Field(None, description="when (default now); ISO 8601")
    lon: Coordinate = Field(description="where the worker stood, in crs")
    lat: Coordinate
    crs: str | None = Field(
        None, max_length=64, description="wgs84 (default), cgcs2000, gcj02 (WeChat), bd09, EPSG:n"
    )


class VisitIncidentIn(BaseModel):
    """A follow-up visit made an incident: its category, and what to say (default: the
    visit's note)."""

    model_config = _MODEL

    category: str = Field(min_length=1, max_length=64)
    description: str | None = Field(None, max_length=4000)
