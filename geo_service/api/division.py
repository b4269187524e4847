"""Re-division proposal routes: propose grids for some communities (stored, answered at once)
or for the whole city (a job: answered 202, followed by GET), read one beside today's grids,
export it in the grids import schema, apply it as one grid edit."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from geo_service.api.auth import PrincipalDep, require
from geo_service.api.deps import EngineDep, SettingsDep
from geo_service.division import proposals
from geo_service.division.bodies import ApplyIn, ProposalIn
from geo_service.grids import edits

router = APIRouter(prefix="/api/v1/grids/proposals", tags=["division"])
_PLAN = [require("grids.edit")]  # planners propose (and read what they proposed)
ProposalPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="a proposal's id")]
_EXAMPLE = {
    "communities": ["340705001001"],
    "target_households": 300,
    "min_households": 200,
    "max_households": 400,
    "stability": 1.0,
}
_MEDIA = {"gpkg": "application/geopackage+sqlite3", "shp": "application/zip"}


@router.post("", status_code=201, dependencies=_PLAN)
def propose(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    body: Annotated[ProposalIn, Body(examples=[_EXAMPLE])],
) -> Any:
    """Propose grids made of street blocks for the communities named: 201 with the stored
    proposal, its grids and figures beside today's. With `all`, every community: 202 with
    the proposal's id and progress, divided in the background (follow it with GET). With
    `whole_area`, a city with no communities first gets one covering its streets and
    buildings (409 when it has communities). 404 naming an unknown community; 422 for a range
    that is not one (min above max, a target outside it, a number that is not positive)."""
    request = body.request()
    if body.whole_area is not None:
        request.options(settings)  # bad input refused before the community is made
        proposals.whole_area(engine, settings, body.whole_area.code, body.whole_area.name)
    proposal = proposals.start(engine, settings, request, who.name)
    if not body.all:
        proposals.run(engine, settings, proposal, request)
        return proposals.get(engine, proposal)
    threading.Thread(
        target=_in_background,
        args=(engine, settings, proposal, request),
        name=f"proposal-{proposal}",
        daemon=True,
    ).start()
    return JSONResponse(proposals.get(engine, proposal, with_grids=False), status_code=202)


def _in_background(engine: Any, settings: Any, proposal: int, request: Any) -> None:
    try:
        proposals.run(engine, settings, proposal, request)
    except Exception:  # stored on the proposal (status failed, error) by run itself
        return


@router.get("", dependencies=_PLAN)
def list_proposals(
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="how many, newest first")] = 50,
) -> dict[str, Any]:
    """The latest proposals, newest first: id, status, who asked and when, what was asked,
    progress, how many grids, and the edit that applied it (`applied_edit`, null: not yet)."""
    return proposals.listing(engine, limit)


@router.get("/{proposal}", dependencies=_PLAN)
def get_proposal(
    engine: EngineDep,
    proposal: ProposalPath,
    grids: Annotated[bool, Query(description="include the grids (GeoJSON)")] = True,
) -> dict[str, Any]:
    """A proposal: what was asked, status and progress, the figures of its grids beside
    today's (per community and for all), notes, and its grids as GeoJSON."""
    return proposals.get(engine, proposal, with_grids=grids)


@router.get(
    "/{proposal}/export",
    dependencies=_PLAN,
    response_class=Response,
    responses={
        200: {
            "content": {"application/geopackage+sqlite3": {}, "application/zip": {}},
            "description": "a GeoPackage (gpkg), or a zipped shapefile (shp)",
        }
    },
)
def export_proposal(
    engine: EngineDep,
    proposal: ProposalPath,
    format: Annotated[Literal["gpkg", "shp"], Query(description="gpkg or shp (zipped)")] = "gpkg",
) -> Response:
    """The proposal's grids as a GeoPackage or a zipped shapefile in the grids import schema
    (code, name, community), ready for `geo-service import grids`."""
    folder = FilePath(tempfile.mkdtemp(prefix="proposal-"))
    path = proposals.export(engine, proposal, folder / f"proposal-{proposal}.{format}")
    if format == "shp":
        path = FilePath(shutil.make_archive(str(folder / f"proposal-{proposal}"), "zip", folder))
    content = path.read_bytes()
    return Response(
        content,
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{path.name}"'},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.post("/{proposal}/apply", dependencies=_PLAN)
def apply_proposal(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    proposal: ProposalPath,
    body: Annotated[ApplyIn, Body(examples=[{"reason": "按新方案重新划分网格", "preview": True}])],
) -> dict[str, Any]:
    """Replace the grids of the proposal's communities by its grids, as one grid edit (kind
    `redivide`): the grids created, changed and retired with households and workers, the
    buildings and open incidents that changed grid, the lineage (each new grid and the grids
    it took area from, m²), the workers moved or added, and warnings for grids with no
    worker. `preview` stores nothing. 409 with a finding per grid when the grids of its
    communities changed since the proposal was made (or it was applied already), or when
    the result would break the tiling; 404 for an unknown proposal."""
    by = edits.EditBy(who.name, body.reason, body.preview)
    return edits.apply_proposal(engine, settings, proposal, by)
