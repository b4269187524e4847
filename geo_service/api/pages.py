"""The residents' grid notice page `/find` and the grid worker's phone page `/m/` (with its web
app manifest, service worker and who is signed in): doors, not domains. Thin: the pages are
built by web_map's page builders from settings; in the browser they read the API like any
other client (the phone page sends the worker's token, kept on the phone).

The pages hold no data, so no token is checked to serve them (like /docs): the installed phone
page opens /m/ without one, and a link with an expired token still opens the page that says
so. `/m/session` answers only to a token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from geo_service.api.auth import PrincipalDep
from geo_service.api.deps import SettingsDep
from geo_service.auth.policy import ACTIONS, ANONYMOUS, allowed, grid_scope
from geo_service.errors import Unauthorized
from geo_service.settings import Settings
from web_map import pages
from web_map.basemaps import BASEMAPS

router = APIRouter(tags=["pages"])
_NO_CACHE = {"Cache-Control": "no-cache"}

BasemapQuery = Annotated[
    str | None,
    Query(
        pattern="^(" + "|".join(BASEMAPS) + ")$",
        description="override GEO_MAP_BASEMAP for this page (osm, tianditu, amap, none)",
    ),
]


def _options(settings: Settings, basemap: str | None = None) -> pages.PageOptions:
    return pages.PageOptions(
        basemap=basemap or settings.map.basemap, tianditu_key=settings.map.tianditu_key
    )


@router.get(pages.FIND, response_class=HTMLResponse)
def find(settings: SettingsDep, basemap: BasemapQuery = None) -> HTMLResponse:
    """网格信息公示: your grid, community, grid workers and nearest neighbourhood centre, by
    address or by your location (anonymous; the page asks GET /api/v1/public/grid)."""
    return HTMLResponse(pages.find_page(_options(settings, basemap)), headers=_NO_CACHE)


@router.get(pages.PHONE.rstrip("/"), include_in_schema=False)
def phone_folder(request: Request) -> RedirectResponse:
    """/m is the folder /m/ (the service worker's scope), with the query kept."""
    query = request.url.query
    return RedirectResponse(pages.PHONE + (f"?{query}" if query else ""), status_code=307)


@router.get(pages.PHONE, response_class=HTMLResponse)
def phone(settings: SettingsDep) -> HTMLResponse:
    """The grid worker's phone page: incidents of their grids (start, report), campaign
    visits due in walking order, a building search; actions queued on the phone and sent,
    each with its Idempotency-Key, when there is a connection. Open it once with
    `?access_token=` (the phone keeps the token)."""
    return HTMLResponse(pages.phone_page(_options(settings)), headers=_NO_CACHE)


@router.get(pages.MANIFEST, include_in_schema=False)
def manifest(settings: SettingsDep) -> JSONResponse:
    """The phone page's web app manifest (installable, standalone)."""
    return JSONResponse(
        pages.manifest(_options(settings)),
        media_type="application/manifest+json",
        headers=_NO_CACHE,
    )


@router.get(pages.SERVICE_WORKER, include_in_schema=False)
def service_worker(settings: SettingsDep) -> Response:
    """The phone page's service worker: keeps the page and its files for opening offline."""
    return Response(
        pages.service_worker(_options(settings)),
        media_type="text/javascript",
        headers=_NO_CACHE,
    )


@router.get(pages.SESSION)
def session(who: PrincipalDep) -> dict[str, Any]:
    """Who the phone page's token names: user name, role, the grids a grid worker is held to
    (null: every grid), and the workflow actions the role may take on the phone. 401
    without a token."""
    if who is ANONYMOUS:
        raise Unauthorized(
            "the phone page needs a token: open it once with ?access_token= (a grid "
            "worker's token, from `geo-service users add NAME --role worker --grid CODE`)"
        )
    limited = ACTIONS.get(who.role)
    return {
        "name": who.name,
        "role": who.role,
        "grids": grid_scope(who),
        "actions": [a for a in ("start", "report") if limited is None or a in limited]
        if allowed(who, "incidents.act")
        else [],
        "records_visits": allowed(who, "visits.record"),
    }
