"""Grid worker routes: who serves which grids, from when to when."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from geo_service.api.auth import require
from geo_service.api.deps import EngineDep, OffsetQuery, SettingsDep
from geo_service.grids import workers
from geo_service.grids.bodies import GridsIn, WorkerChange, WorkerIn

router = APIRouter(prefix="/api/v1/workers", tags=["workers"])
CodePath = Annotated[str, Path(max_length=64, description="a worker code")]
CodeQuery = Annotated[str | None, Query(max_length=64)]
_EDIT = [require("grids.edit")]
_READ = [require("grids.read")]


@router.get("", dependencies=_READ)
def list_workers(
    engine: EngineDep,
    settings: SettingsDep,
    grid: CodeQuery = None,
    community: CodeQuery = None,
    as_of: Annotated[
        str | None,
        Query(max_length=64, description="ISO 8601 (no offset: the city's time zone)"),
    ] = None,
    include_left: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: OffsetQuery = 0,
) -> dict[str, Any]:
    """Workers with the grids they serve (today, or as of a moment), by code."""
    return workers.list_workers(
        engine,
        settings,
        grid=grid,
        community=community,
        as_of=as_of,
        include_left=include_left,
        limit=limit,
        offset=offset,
    )


@router.post("", status_code=201, dependencies=_EDIT)
def add_worker(engine: EngineDep, body: WorkerIn) -> dict[str, Any]:
    """A new worker serving the given grids (the first is their home grid)."""
    return workers.add_worker(engine, body.code, body.name, body.phone, body.grids)


@router.get("/{code}", dependencies=_READ)
def worker(engine: EngineDep, code: CodePath) -> dict[str, Any]:
    """A worker, the grids served today, and every assignment with its from and to."""
    return workers.worker(engine, code)


@router.patch("/{code}", dependencies=_EDIT)
def update_worker(engine: EngineDep, code: CodePath, body: WorkerChange) -> dict[str, Any]:
    """Change a worker's name or phone."""
    return workers.update_worker(engine, code, body.name, body.phone)


@router.post("/{code}/assign", dependencies=_EDIT)
def assign(engine: EngineDep, code: CodePath, body: GridsIn) -> dict[str, Any]:
    """The worker serves these grids too, from now on."""
    return workers.assign(engine, code, body.grids)


@router.post("/{code}/unassign", dependencies=_EDIT)
def unassign(engine: EngineDep, code: CodePath, body: GridsIn) -> dict[str, Any]:
    """The worker no longer serves these grids (a grid left without a worker is warned of)."""
    return workers.unassign(engine, code, body.grids)


@router.post("/{code}/leave", dependencies=_EDIT)
def leave(engine: EngineDep, code: CodePath) -> dict[str, Any]:
    """The worker leaves: every assignment ends now."""
    return workers.leave(engine, code)
