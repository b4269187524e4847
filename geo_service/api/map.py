"""The web map: three views (planner, grid worker, dispatcher) and their static files.

Thin: the pages are built by web_map's folium builders from settings and query parameters; the
browser then reads the API over HTTP like any other client (the page's `?token=` is passed on).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse

from geo_service.api.deps import SettingsDep
from geo_service.errors import NotFound
from geo_service.settings import Settings
from web_map import BASEMAPS, MapOptions, render
from web_map.assets import static_path
from web_map.views import ASSETS, View

router = APIRouter(prefix="/map", tags=["map"])

BasemapQuery = Annotated[
    str | None,
    Query(
        pattern="^(" + "|".join(BASEMAPS) + ")$",
        description="override GEO_MAP_BASEMAP for this page (osm, tianditu, amap, none)",
    ),
]


def _options(settings: Settings, basemap: str | None) -> MapOptions:
    return MapOptions(
        basemap=basemap or settings.map.basemap,
        tianditu_key=settings.map.tianditu_key,
        assets=ASSETS,
        refresh_s=settings.map.refresh_s,
    )


def _page(
    view: View, settings: Settings, basemap: str | None, **params: str | None
) -> HTMLResponse:
    html = render(view, _options(settings, basemap), **params)
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("", response_class=HTMLResponse, include_in_schema=False)
@router.get("/planner", response_class=HTMLResponse)
def planner(settings: SettingsDep, basemap: BasemapQuery = None) -> HTMLResponse:
    """Coverage share per grid, walking tiers, gaps, centres; click for a what-if, ask for
    suggested sites."""
    return _page("planner", settings, basemap)


@router.get("/worker", response_class=HTMLResponse)
def worker(
    settings: SettingsDep,
    grid: Annotated[str | None, Query(max_length=64, description="grid code")] = None,
    basemap: BasemapQuery = None,
) -> HTMLResponse:
    """One grid and its buildings, address search and "near me" (without `grid`: a picker)."""
    return _page("worker", settings, basemap, grid=grid)


@router.get("/dispatch", response_class=HTMLResponse)
def dispatcher(settings: SettingsDep, basemap: BasemapQuery = None) -> HTMLResponse:
    """Incidents by status and overdue, refreshed every GEO_MAP_REFRESH_S seconds."""
    return _page("dispatcher", settings, basemap)


@router.get("/static/{path:path}", include_in_schema=False)
async def static(path: str) -> FileResponse:
    """The pages' JS and CSS, and the vendored Leaflet (no CDN: the map works offline)."""
    try:
        found = static_path(path)
    except ValueError:
        raise NotFound(f"no map file {path!r}") from None
    return FileResponse(found, headers={"Cache-Control": "public, max-age=300"})
