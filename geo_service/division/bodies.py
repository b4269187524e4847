"""The bodies of `POST /api/v1/grids/proposals` and `POST /api/v1/grids/proposals/{id}/apply`,
parsed into typed values (every bad field named: a 422)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
)

from geo_service.division.proposals import Request
from geo_service.errors import InvalidInput
from geo_service.grids.bodies import Name, Reason

MAX_COMMUNITIES = 10_000  # more than any city has
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Households = Annotated[StrictInt, Field(gt=0, le=10_000_000)]


class WholeAreaIn(BaseModel):
    """One community for the whole area of a city that has none (a first division)."""

    model_config = ConfigDict(extra="forbid")

    code: Code = Field(description="its code (GEO_COMMUNITY_CODE_PATTERN)")
    name: Name


class ProposalIn(BaseModel):
    """Which communities (or all, or one made for the whole area), the household range, the
    stability weight and the method; what is left out takes the settings' default."""

    model_config = ConfigDict(extra="forbid")

    communities: list[Code] | None = Field(
        None, min_length=1, max_length=MAX_COMMUNITIES, description="community codes"
    )
    all: StrictBool = Field(
        False, description="every community (answered 202 with a job to follow)"
    )
    whole_area: WholeAreaIn | None = Field(
        None,
        description="a city with no communities: one covering its streets and buildings is "
        "imported first, then divided",
    )
    target_households: Households | None = None
    min_households: Households | None = None
    max_households: Households | None = None
    stability: StrictFloat | StrictInt | None = Field(None, ge=0, le=1_000_000, allow_inf_nan=False)
    method: Literal["maxp", "tree"] | None = None

    def request(self) -> Request:
        """The domain's request (InvalidInput unless it names exactly one of communities,
        all and whole_area)."""
        given = [self.communities is not None, self.all, self.whole_area is not None]
        if sum(given) != 1:
            raise InvalidInput(
                "give communities (one or more), all: true or whole_area, only one of them"
            )
        return Request(
            [self.whole_area.code] if self.whole_area else None if self.all else self.communities,
            self.target_households,
            self.min_households,
            self.max_households,
            self.stability,
            self.method,
        )


class ApplyIn(BaseModel):
    """Apply a proposal as one grid edit: why, and whether only to preview."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="why the grids change (kept in the history)")
    preview: StrictBool = Field(False, description="answer what would change, store nothing")
