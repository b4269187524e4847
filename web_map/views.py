"""Folium builders of the three map views (pure: options in, folium Figure out).

Folium lays out the Leaflet scaffolding: the map, the basemap, one empty feature group per
overlay, the layer switcher and the scale bar. The overlays are filled in the browser by the
view's script (web_map/static/*.js), which reads the API over HTTP: OGC API Features for the
geometry and styles, the coverage, building and incident APIs for the figures. A static export
embeds the API answers the script would fetch (`MapOptions.data`), so the same script draws it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import folium
from branca.element import Element, Figure, MacroElement
from folium.elements import JSCSSMixin
from folium.template import Template

from web_map.basemaps import Basemap, basemap

View = Literal["planner", "worker", "dispatcher"]
VIEWS: tuple[View, ...] = ("planner", "worker", "dispatcher")
ASSETS = "/map/static"
LEAFLET_JS = "vendor/leaflet/leaflet.js"
LEAFLET_CSS = "vendor/leaflet/leaflet.css"
# Leaflet plugins (vendored beside Leaflet) a view needs before its own script: (js, css).
_PLUGINS: dict[View, list[tuple[str, str]]] = {
    "dispatcher": [
        (
            "vendor/leaflet.markercluster/leaflet.markercluster.js",
            "vendor/leaflet.markercluster/MarkerCluster.css",
        )
    ],
}
# Plugins a view loads only when the user asks for what needs them (page.plugin in geomap.js):
# from our own static files like the rest, but not listed in the page, so that viewing it, and
# a static export (which cannot edit), never carry them. name -> (js, css).
_ON_DEMAND: dict[View, dict[str, tuple[str, str]]] = {
    # The planner's grid editing: drawing a split line, dragging a grid's vertices.
    "planner": {
        "geoman": (
            "vendor/leaflet-geoman/leaflet-geoman.min.js",
            "vendor/leaflet-geoman/leaflet-geoman.css",
        )
    },
}
# Scripts a view runs besides geomap.js and its own, before its own (web_map/static).
_SCRIPTS: dict[View, list[str]] = {
    # Re-division proposals beside today's grids, previewed and applied (the planner only).
    "planner": ["proposal.js"],
}
# Where the server answers the icon of its pages (geo_service/api/app.py).
FAVICON = "/favicon.ico"
# Every layer the viewer may see, with its extent and style: what the city has, in one request.
CATALOGUE = "/ogc/collections"
# Where the map opens before the script fits it to the data (the data's own extent).
_WORLD = (20.0, 110.0)
FEATURES_PAGE = 10_000  # GEO_FEATURES_MAX_LIMIT's default: the fewest round trips


@dataclass(frozen=True)
class MapOptions:
    """What a view needs besides its own parameters."""

    basemap: str = "osm"
    tianditu_key: str | None = None
    assets: str = ASSETS  # URL prefix of web_map/static
    api: str = ""  # the API's base URL; "" = the server that served the page
    refresh_s: int = 30
    data: Mapping[str, Any] | None = None  # path -> API answer, for a static export
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Overlay:
    key: str
    zh: str
    en: str
    shown: bool = True


_TITLES: dict[View, tuple[str, str]] = {
    "planner": ("十五分钟生活圈规划", "15-minute life circle planner"),
    "worker": ("网格员地图", "Grid worker map"),
    "dispatcher": ("事件调度地图", "Dispatcher map"),
}

_OVERLAYS: dict[View, list[_Overlay]] = {
    "planner": [
        _Overlay("coverage", "网格覆盖率", "Coverage share per grid"),
        # Off at first: the planner has seven overlays already, and its popups take the
        # clicks on the grids that otherwise run a what-if (planner.js).
        _Overlay("workload", "网格工作量", "Workload (households per worker)", shown=False),
        _Overlay("tiers", "步行等时圈", "Walking tiers"),
        _Overlay("gaps", "覆盖盲区", "Coverage gaps"),
        _Overlay("communities", "社区边界", "Communities"),
        _Overlay("centers", "邻里中心", "Neighbourhood centres"),
        _Overlay("whatif", "情景分析", "What-if centres"),
        _Overlay("suggested", "建议选址", "Suggested sites"),
        _Overlay("campaign", "走访进度", "Campaign progress"),
        # Off until a proposal is shown (proposal.js): the proposal's grids, and today's, both
        # coloured by households.
        _Overlay("proposal", "划分方案", "Proposed grids (households)", shown=False),
        _Overlay("today", "现有网格户数", "Today's grids (households)", shown=False),
    ],
    "worker": [
        _Overlay("context", "周边楼栋", "Nearby buildings"),
        _Overlay("grid", "网格", "Grid"),
        _Overlay("buildings", "本网格楼栋", "Buildings of the grid"),
        _Overlay("search", "搜索结果", "Search results"),
        _Overlay("near", "附近楼栋", "Buildings near me"),
    ],
    "dispatcher": [
        _Overlay("grids", "网格", "Grids"),
        _Overlay("selected", "所选事件网格", "Grid of the selected incident"),
        _Overlay("incidents", "网格事件", "Incidents"),
        _Overlay("campaign", "走访进度", "Campaign progress"),
    ],
}


def planner_sources() -> dict[str, str]:
    """The API paths the planner view reads (also what a static export embeds)."""
    items = f"/items?limit={FEATURES_PAGE}"
    return {
        "catalogue": CATALOGUE,
        "grids": "/ogc/collections/grids" + items,
        "tiers": "/ogc/collections/coverage_tiers" + items,
        "gaps": "/ogc/collections/coverage_gaps" + items,
        "communities": "/ogc/collections/communities" + items,
        "centers": "/ogc/collections/centers" + items,
        "summary": "/api/v1/coverage/summary",
        "figures": "/api/v1/coverage/grids",
        # Households per worker per grid against the city's standard (the workload overlay,
        # asked when it is first shown; a static export carries it).
        "workload": "/api/v1/workload?by=grid",
    }


def dispatcher_sources() -> dict[str, str]:
    """The API paths the dispatcher view reads (also what a static export embeds)."""
    items = f"/items?limit={FEATURES_PAGE}"
    return {
        "catalogue": CATALOGUE,
        "incidents": "/ogc/collections/incidents" + items,
        "grids": "/ogc/collections/grids" + items,
    }


def worker_sources() -> dict[str, str]:
    """The API paths the worker view reads whatever its grid (the rest depend on the grid)."""
    return {"catalogue": CATALOGUE, "grids": f"/ogc/collections/grids/items?limit={FEATURES_PAGE}"}


SOURCES = {
    "planner": planner_sources,
    "dispatcher": dispatcher_sources,
    "worker": worker_sources,
}


class _ViewScript(JSCSSMixin, MacroElement):  # type: ignore[misc]
    """Loads the view's scripts and starts the view with its configuration."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            GeoMap.start({{ this.start_args }});
        {% endmacro %}
        """
    )

    def __init__(self, view: View, assets: str, start_args: str) -> None:
        super().__init__()
        self._name = "GeoMapView"
        self.start_args = start_args
        plugins = _PLUGINS.get(view, [])
        self.default_js = [
            *((f"plugin_{i}", f"{assets}/{js}") for i, (js, _) in enumerate(plugins)),
            ("geomap", f"{assets}/geomap.js"),
            *((f"geomap_{js[:-3]}", f"{assets}/{js}") for js in _SCRIPTS.get(view, [])),
            (f"geomap_{view}", f"{assets}/{view}.js"),
        ]
        self.default_css = [
            *((f"plugin_css_{i}", f"{assets}/{css}") for i, (_, css) in enumerate(plugins)),
            ("geomap_css", f"{assets}/geomap.css"),
        ]


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no `</script>`, no HTML comment openers)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _add_basemap(m: folium.Map, base: Basemap) -> None:
    if base.tiles is None:
        return
    folium.TileLayer(
        tiles=base.tiles.url,
        attr=base.tiles.attribution,
        name=base.title,
        subdomains=base.tiles.subdomains or "abc",
        max_zoom=22,
        max_native_zoom=base.tiles.max_zoom,
    ).add_to(m)
    if base.labels is not None:
        folium.TileLayer(
            tiles=base.labels.url,
            attr=base.labels.attribution,
            name=f"{base.title_zh}注记 {base.title_en} labels",
            subdomains=base.labels.subdomains,
            overlay=True,
            max_zoom=22,
            max_native_zoom=base.labels.max_zoom,
        ).add_to(m)


def build(view: View, options: MapOptions, **params: Any) -> Figure:
    """The page of one view: a folium Figure holding the map (render() gives the HTML)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {', '.join(VIEWS)}")
    base = basemap(options.basemap, options.tianditu_key)
    zh, en = _TITLES[view]
    figure = Figure(title=f"{zh} {en} · geo-service")
    if options.data is None:
        # A static export opened from a file has no server to ask for the icon.
        figure.header.add_child(
            Element(f'<link rel="icon" href="{options.api}{FAVICON}">'), name="favicon"
        )
    m = folium.Map(
        location=_WORLD,
        zoom_start=4,
        tiles=None,
        control_scale=True,
        max_zoom=22,
        prefer_canvas=False,
        zoom_snap=0.25,  # fit the data snugly, not to the next whole zoom level
    )
    # Leaflet only, from our own static files: no CDN (folium's defaults load Leaflet, jQuery,
    # Bootstrap and Font Awesome from CDNs, none of which these pages use).
    m.default_js = [("leaflet", f"{options.assets}/{LEAFLET_JS}")]
    m.default_css = [("leaflet_css", f"{options.assets}/{LEAFLET_CSS}")]
    m.add_to(figure)
    _add_basemap(m, base)
    groups = {}
    for overlay in _OVERLAYS[view]:
        group = folium.FeatureGroup(name=f"{overlay.zh} {overlay.en}", show=overlay.shown)
        group.add_to(m)
        groups[overlay.key] = group
    control = folium.LayerControl(collapsed=False, position="topright")
    control.add_to(m)
    config: dict[str, Any] = {
        "view": view,
        "title": {"zh": zh, "en": en},
        "api": options.api,
        "assets": options.assets,
        "crs": base.crs,
        "basemap": {"id": base.id, "zh": base.title_zh, "en": base.title_en, "notes": base.notes},
        "refreshS": options.refresh_s,
        "interactive": options.data is None,
        "data": dict(options.data) if options.data is not None else None,
        "plugins": {
            name: {"js": f"{options.assets}/{js}", "css": f"{options.assets}/{css}"}
            for name, (js, css) in _ON_DEMAND.get(view, {}).items()
            if options.data is None
        },
        **({"sources": SOURCES[view]()} if view in SOURCES else {}),
        **{k: v for k, v in params.items() if v is not None},
        **options.extra,
    }
    handles = ",".join(f"{json.dumps(key)}:{group.get_name()}" for key, group in groups.items())
    start_args = (
        f"{{map:{m.get_name()},control:{control.get_name()},groups:{{{handles}}},"
        f"config:{script_json(config)}}}"
    )
    _ViewScript(view, options.assets, start_args).add_to(m)
    return figure


def render(view: View, options: MapOptions, **params: Any) -> str:
    """The HTML page of one view."""
    return build(view, options, **params).render()  # type: ignore[no-any-return]
