"""Grid routes: QA, the edits that keep the tiling (split, merge, redraw, create, retire,
rename/recode), and the history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from geo_service.api.auth import PrincipalDep, require
from geo_service.api.deps import EngineDep, ReadEngineDep, SettingsDep
from geo_service.auth.policy import Principal
from geo_service.grids import edits
from geo_service.grids import workload as grid_workload
from geo_service.grids.bodies import (
    CreateIn,
    MergeIn,
    MoveVertexIn,
    RedrawIn,
    RenameIn,
    RetireIn,
    SplitIn,
)
from geo_service.grids.qa import grid_qa

router = APIRouter(prefix="/api/v1", tags=["grids"])
CodePath = Annotated[str, Path(max_length=64, description="a grid code")]
PreviewQuery = Annotated[
    bool, Query(description="answer what would change and store nothing (as body.preview)")
]
_EDIT = [require("grids.edit")]
_READ = [require("grids.read")]

_SPLIT_EXAMPLE = {
    "line": {"type": "LineString", "coordinates": [[117.7988, 30.9390], [117.7988, 30.9420]]},
    "reason": "新建小区，按道路分开",
}


@router.get("/qa", dependencies=[require("qa")])
async def qa(engine: ReadEngineDep, settings: SettingsDep) -> dict[str, object]:
    """Grid QA: overlaps, gaps, grids outside their community, buildings in no grid."""
    report = await run_in_threadpool(grid_qa, engine, settings)
    return report.to_dict()


def _by(who: Principal, body: Any, preview: bool, versions: dict[str, int] | None) -> edits.EditBy:
    return edits.EditBy(who.name, body.reason, body.preview or preview, versions or {})


@router.post("/grids/{code}/split", dependencies=_EDIT)
def split(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    code: CodePath,
    body: Annotated[SplitIn, Body(examples=[_SPLIT_EXAMPLE])],
    preview: PreviewQuery = False,
) -> dict[str, Any]:
    """Cut a grid in pieces along a line drawn across it (beyond its edge on both sides).
    Answers the grids created and retired, their households and workers, the buildings and
    open incidents that changed grid, and the lineage; 409 with findings if the result would
    break the tiling; 422 naming where the line fails to cross."""
    versions = {code: body.version} if body.version else None
    return edits.split(
        engine,
        settings,
        code,
        body.line,
        _by(who, body, preview, versions),
        crs=body.crs,
        codes=body.codes,
        names=body.names,
        workers=body.workers,
    )


@router.post("/grids/merge", dependencies=_EDIT)
def merge(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    body: MergeIn,
    preview: PreviewQuery = False,
) -> dict[str, Any]:
    """Join adjacent grids of one community into one."""
    by = _by(who, body, preview, body.versions)
    return edits.merge(engine, settings, body.codes, by, code=body.code, name=body.name)


@router.put("/grids/{code}/geometry", dependencies=_EDIT)
def redraw(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    code: CodePath,
    body: RedrawIn,
    preview: PreviewQuery = False,
) -> dict[str, Any]:
    """Give a grid a new shape. `neighbours: adjust` takes the area from, or gives it to, the
    touching grids of its community (the tiling stays whole); `strict` refuses any change to
    them."""
    versions = {code: body.version} if body.version else None
    by = _by(who, body, preview, versions)
    return edits.redraw(
        engine, settings, code, body.geometry, by, neighbours=body.neighbours, crs=body.crs
    )


@router.post("/grids/vertex", dependencies=_EDIT)
def move_vertex(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    body: MoveVertexIn,
    preview: PreviewQuery = False,
) -> dict[str, Any]:
    """Move one vertex of the grid boundaries (within 10 cm of `vertex`) to `to`: a boundary
    is stored once, so every grid along it follows and none parts from or overlaps another.
    409 with findings if the result breaks the tiling (e.g. a vertex of the community's
    edge moved inwards); 422 if no boundary vertex is there."""
    by = _by(who, body, preview, body.versions)
    return edits.move_vertex(engine, settings, body.vertex, body.to, by, crs=body.crs)


@router.post("/grids", status_code=201, dependencies=_EDIT)
def create(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    body: CreateIn,
    preview: PreviewQuery = False,
) -> dict[str, Any]:
    """A new grid from area of its community that no grid holds (the drawn shape is cut to
    it)."""
    return edits.create(
        engine,
        settings,
        body.community,
        body.geometry,
        _by(who, body, preview, None),
        name=body.name,
        code=body.code,
        crs=body.crs,
        workers=body.workers,
    )


@router.post("/grids/{code}/retire", dependencies=_EDIT)
def retire(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    code: CodePath,
    body: RetireIn,
    preview: PreviewQuery = False,
) -> dict[str, Any]:
    """End a grid, handing its area and workers to the named neighbours."""
    versions = {code: body.version} if body.version else None
    by = _by(who, body, preview, versions)
    return edits.retire(engine, settings, code, body.to, by, workers=body.workers)


@router.patch("/grids/{code}", dependencies=_EDIT)
def rename(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    code: CodePath,
    body: RenameIn,
    preview: PreviewQuery = False,
) -> dict[str, Any]:
    """Rename a grid, or give it a new code (its history and lineage follow)."""
    versions = {code: body.version} if body.version else None
    by = _by(who, body, preview, versions)
    return edits.rename(engine, settings, code, by, name=body.name, new_code=body.code)


MomentQuery = Annotated[
    str | None,
    Query(max_length=64, description="ISO 8601 (no offset: the city's time zone)"),
]


@router.get("/grids/edits", dependencies=_READ)
def edit_list(
    engine: EngineDep,
    settings: SettingsDep,
    since: MomentQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The grid edits from `since` on (imports that changed grids included), oldest first."""
    return edits.edits(engine, settings, since, limit)


@router.get(
    "/workload",
    dependencies=_READ,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}},
)
def workload(
    engine: ReadEngineDep,
    settings: SettingsDep,
    by: Literal["grid", "worker"] = "grid",
    community: Annotated[str | None, Query(max_length=64)] = None,
    as_of: MomentQuery = None,
    since: MomentQuery = None,
    until: MomentQuery = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Per grid or per worker: households, buildings, area, workers, open and overdue
    incidents, incidents received and closed (on time) over [since, until) (default the 30
    days up to the moment), households per worker against GEO_GRID_TARGET_HOUSEHOLDS; and
    how unevenly it is spread (coefficient of variation, max/median) per community and city.
    `as_of`: the grids and assignments of that moment."""
    answer = grid_workload.workload(
        engine, settings, by=by, community=community, as_of=as_of, since=since, until=until
    )
    if format == "csv":
        return Response(
            grid_workload.to_csv(answer),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="workload-{by}.csv"'},
        )
    return answer


@router.get("/grids/{code}/history", dependencies=_READ)
def history(engine: EngineDep, code: CodePath) -> dict[str, Any]:
    """Every version of a grid: valid from/to, the edit, actor and reason that made and ended
    it, and its lineage (the grids it came from, those that replaced it)."""
    return edits.history(engine, code)


@router.get("/grids/{code}", dependencies=_READ)
def grid(
    engine: EngineDep, settings: SettingsDep, code: CodePath, as_of: MomentQuery = None
) -> dict[str, Any]:
    """A grid today (name, community, version, area, shape, buildings, households, workers),
    or as it was `as_of` a moment (its version then)."""
    return edits.grid(engine, settings, code, as_of)
