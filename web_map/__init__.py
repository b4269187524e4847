"""The interactive web map: folium builders per view (planner, grid worker, dispatcher), the
static JS/CSS they load (Leaflet vendored: no CDN), and the self-contained static export.

It talks to the API over HTTP only: the pages fetch from the server that served them, the
export fetches from a running server (or one it starts for the purpose)."""

from web_map.basemaps import BASEMAPS, Basemap, basemap
from web_map.views import VIEWS, MapOptions, build, planner_sources, render

__all__ = [
    "BASEMAPS",
    "VIEWS",
    "Basemap",
    "MapOptions",
    "basemap",
    "build",
    "planner_sources",
    "render",
]
