"""The request bodies of grid edits, typed, so `/docs` shows each field and a bad one is a 422
naming it. Shapes are GeoJSON in `crs` (default WGS-84); the checks of what they mean (a line
that crosses its grid, a valid polygon inside its community) are the edits' own."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"holds a control character ({found.group()!r} at {found.start()})")
    return value


# Text a person types into a form: trimmed, bounded, no control characters.
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_no_control),
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_control),
]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Version = Annotated[int, Field(ge=1, le=2**31 - 1)]
GeoJSON = Annotated[dict[str, Any], Field(description="a GeoJSON geometry (or Feature)")]
Crs = Annotated[
    str | None,
    Field(None, max_length=64, description="wgs84 (default), cgcs2000, gcj02, bd09 or EPSG:n"),
]

_MODEL = ConfigDict(extra="forbid")


class _Edit(BaseModel):
    model_config = _MODEL

    reason: Reason = Field(description="why the grids change (kept in the history)")
    preview: bool = Field(False, description="answer what would change, store nothing")


class SplitIn(_Edit):
    """Cut a grid along a line drawn across it, from boundary to boundary."""

    line: GeoJSON
    crs: Crs = None
    codes: list[Code] | None = Field(
        None,
        max_length=50,
        description="one per piece, west to east; default the community's next free codes",
    )
    names: list[Name] | None = Field(None, max_length=50)
    workers: dict[Code, Code] | None = Field(
        None, description="worker code -> new grid code (default: the largest piece)"
    )
    version: Version | None = Field(None, description="the grid's version you edited (older: 409)")


class MergeIn(_Edit):
    """Join adjacent grids of one community."""

    codes: list[Code] = Field(min_length=2, max_length=50)
    code: Code | None = Field(
        None,
        description="the merged grid's code: one of `codes` (kept) or a new one; "
        "default the smallest",
    )
    name: Name | None = None
    versions: dict[Code, Version] | None = Field(
        None, description="grid code -> the version you edited"
    )


class RedrawIn(_Edit):
    """A grid's new shape; the neighbours adjust (or must not change, with strict)."""

    geometry: GeoJSON
    crs: Crs = None
    neighbours: Literal["adjust", "strict"] = "adjust"
    version: Version | None = None


class MoveVertexIn(_Edit):
    """Move one vertex of the grid boundaries; every grid along it follows."""

    vertex: list[StrictFloat | StrictInt] = Field(
        min_length=2, max_length=2, description="where the vertex is: [x, y] (lon, lat in WGS-84)"
    )
    to: list[StrictFloat | StrictInt] = Field(
        min_length=2, max_length=2, description="where it goes: [x, y]"
    )
    crs: Crs = None
    versions: dict[Code, Version] | None = Field(
        None, description="grid code -> the version you edited"
    )


class CreateIn(_Edit):
    """A new grid from the area of its community no grid holds."""

    community: Code
    geometry: GeoJSON
    crs: Crs = None
    name: Name
    code: Code | None = Field(None, description="default the community's next free code")
    workers: list[Code] = Field(default_factory=list, max_length=50)


class RetireIn(_Edit):
    """End a grid: its area and workers go to the named neighbours."""

    to: list[Code] = Field(min_length=1, max_length=50)
    workers: dict[Code, Code] | None = Field(
        None, description="worker code -> receiving grid (default the first of `to`)"
    )
    version: Version | None = None


class RenameIn(_Edit):
    """A new name, a new code (history and lineage follow), or both."""

    name: Name | None = None
    code: Code | None = None
    version: Version | None = None


Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=40),
    AfterValidator(_no_control),
]


class WorkerIn(BaseModel):
    """A new grid worker and the grids they serve (the first is their home grid)."""

    model_config = _MODEL

    code: Annotated[Code, AfterValidator(_no_control)]
    name: Name
    phone: Phone | None = None
    grids: list[Code] = Field(default_factory=list, max_length=50)


class WorkerChange(BaseModel):
    """A worker's new name or phone."""

    model_config = _MODEL

    name: Name | None = None
    phone: Phone | None = None


class GridsIn(BaseModel):
    """Grids to assign a worker to, or to take them off."""

    model_config = _MODEL

    grids: list[Code] = Field(min_length=1, max_length=50)
