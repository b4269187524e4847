"""The web map without a browser: the folium builders (no CDN, the right basemap and CRS),
the inlining of a static export, and the routes serving the pages and their files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from geo_service.api.app import create_app
from geo_service.errors import InvalidInput
from geo_service.settings import Settings
from web_map import MapOptions, basemap, render
from web_map.assets import STATIC_DIR, inline, static_path
from web_map.export import collect, export_html
from web_map.views import ASSETS, VIEWS, planner_sources


def config_of(html: str) -> dict:
    """The configuration a page starts its view with."""
    found = re.search(r"config:(\{.*\})\}\);", html)
    assert found, "no GeoMap.start(...) in the page"
    return json.loads(found.group(1).replace("<\\/", "</"))


CLUSTER = "vendor/leaflet.markercluster"


@pytest.mark.parametrize("view", VIEWS)
def test_pages_load_leaflet_and_their_scripts_from_our_own_files(view):
    html = render(view, MapOptions(basemap="none"))
    sources = re.findall(r'<script src="([^"]+)"', html)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    # The dispatcher clusters incidents at one spot (Leaflet.markercluster, after Leaflet).
    plugin_js = [f"{ASSETS}/{CLUSTER}/leaflet.markercluster.js"] if view == "dispatcher" else []
    plugin_css = [f"{ASSETS}/{CLUSTER}/MarkerCluster.css"] if view == "dispatcher" else []
    # The planner shows re-division proposals (proposal.js, before its own script).
    extra_js = [f"{ASSETS}/proposal.js"] if view == "planner" else []
    assert sources == [
        f"{ASSETS}/vendor/leaflet/leaflet.js",
        *plugin_js,
        f"{ASSETS}/geomap.js",
        *extra_js,
        f"{ASSETS}/{view}.js",
    ]
    assert styles == [
        f"{ASSETS}/vendor/leaflet/leaflet.css",
        *plugin_css,
        f"{ASSETS}/geomap.css",
    ]
    assert "cdn" not in html.lower() and "jquery" not in html.lower()
    for path in sources + styles:
        assert static_path(path.removeprefix(ASSETS + "/")).stat().st_size > 0
    assert "L.control.scale()" in html and "L.control.layers(" in html
    config = config_of(html)
    assert config["view"] == view and config["crs"] == "wgs84" and config["interactive"]
    # What the city has (every layer's extent) comes from one request, whatever the view.
    assert config["sources"]["catalogue"] == "/ogc/collections"


@pytest.mark.parametrize("view", VIEWS)
def test_pages_name_the_servers_icon_and_a_static_export_names_none(view):
    html = render(view, MapOptions(basemap="none"))
    assert re.findall(r'<link rel="icon" href="([^"]+)"', html) == ["/favicon.ico"]
    assert 'rel="icon"' not in render(view, MapOptions(basemap="none", data={}))


def test_leaflet_is_vendored_with_its_licence():
    leaflet = STATIC_DIR / "vendor" / "leaflet"
    assert "BSD 2-Clause" in (leaflet / "LICENSE").read_text()
    assert (leaflet / "images" / "layers.png").is_file()


def test_markercluster_is_vendored_with_its_licence_and_version():
    cluster = STATIC_DIR / CLUSTER
    assert "Permission is hereby granted" in (cluster / "LICENSE").read_text()  # MIT
    assert "1.5.3" in (cluster / "VERSION").read_text()
    script = (cluster / "leaflet.markercluster.js").read_text()
    assert "MarkerClusterGroup" in script and "</script" not in script  # inlinable
    for css in ("MarkerCluster.css", "MarkerCluster.Default.css"):
        assert (cluster / css).stat().st_size > 0


@pytest.mark.slow
def test_basemaps_and_the_crs_each_is_drawn_in():
    osm = render("planner", MapOptions(basemap="osm"))
    assert "tile.openstreetmap.org" in osm and config_of(osm)["crs"] == "wgs84"
    amap = render("planner", MapOptions(basemap="amap"))
    assert "autonavi.com" in amap and config_of(amap)["crs"] == "gcj02"
    assert "tianditu" not in render("planner", MapOptions(basemap="none"))
    tianditu = render("planner", MapOptions(basemap="tianditu", tianditu_key="k123"))
    assert "tk=k123" in tianditu and config_of(tianditu)["crs"] == "wgs84"
    with pytest.raises(InvalidInput, match="GEO_MAP_TIANDITU_KEY"):
        basemap("tianditu")
    with pytest.raises(InvalidInput, match="'google'"):
        basemap("google")


def test_worker_page_carries_its_grid_and_data_never_breaks_the_script_element():
    html = render("worker", MapOptions(basemap="none"), grid="340705001001001")
    assert config_of(html)["grid"] == "340705001001001"
    data = {"/x": {"name": "</script><script>alert(1)</script>"}}
    page = render("planner", MapOptions(basemap="none", data=data))
    assert "</script><script>alert(1)" not in page
    assert config_of(page)["data"] == data and config_of(page)["interactive"] is False


def test_export_collects_every_page_and_inlines_everything():
    pages = {
        "/ogc/collections/grids/items?limit=10000": {
            "type": "FeatureCollection",
            "features": [{"id": 1}],
            "links": [{"rel": "next", "href": "http://h:1/ogc/collections/grids/items?offset=1"}],
        },
        "/ogc/collections/grids/items?offset=1": {
            "type": "FeatureCollection",
            "features": [{"id": 2}],
            "links": [],
        },
    }
    merged = collect(pages.__getitem__, ["/ogc/collections/grids/items?limit=10000"])
    assert [f["id"] for f in merged["/ogc/collections/grids/items?limit=10000"]["features"]] == [
        1,
        2,
    ]

    asked: list[str] = []

    def fetch(path: str):
        asked.append(path)
        return {"type": "FeatureCollection", "features": []} if "/items" in path else {}

    html = export_html("planner", fetch, basemap="none")
    assert sorted(asked) == sorted(planner_sources().values())
    assert "<script src=" not in html and "<link rel=" not in html
    assert "data:image/png;base64," in html  # Leaflet's CSS images travel with the page
    with pytest.raises(InvalidInput, match="worker"):
        export_html("worker", fetch)


def test_inline_refuses_files_outside_the_static_folder():
    with pytest.raises(ValueError):
        inline(f'<script src="{ASSETS}/../assets.py"></script>', ASSETS)


@pytest.fixture(scope="module")
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


def test_routes_serve_the_views_and_their_files_without_a_token(client: TestClient):
    for path in ("/map", "/map/planner", "/map/worker?grid=1", "/map/dispatch"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "GeoMap.start(" in answer.text
    assert config_of(client.get("/map/planner?basemap=amap").text)["crs"] == "gcj02"
    assert client.get("/map/planner?basemap=google").status_code == 422
    js = client.get("/map/static/vendor/leaflet/leaflet.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    cluster = client.get(f"/map/static/{CLUSTER}/leaflet.markercluster.js")
    assert cluster.status_code == 200 and "javascript" in cluster.headers["content-type"]
    icon = client.get(re.findall(r'<link rel="icon" href="([^"]+)"', client.get("/map").text)[0])
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
    assert client.get("/map/static/geomap.css").status_code == 200
    assert client.get("/map/static/nothing.js").status_code == 404
    assert client.get("/map/static/..%2F..%2Fgeo_service%2Fsettings.py").status_code == 404
