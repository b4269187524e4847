"""The web map in a real browser: Debian's headless Chromium driven by Playwright, against a real
uvicorn serving the demo city from the test database, with every request off this machine
refused (no basemap reachable, no CDN). Each view must draw its layers from the API with no
console errors; the screenshots land in docs/screenshots/ for the README."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from geo_service.auth.service import add_user
from geo_service.crs import gcj02_to_wgs84, wgs84_to_gcj02
from geo_service.settings import Settings
from tests.conftest import DATA_TABLES, ROOT

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: run `make setup`"
)

SHOTS = ROOT / "docs" / "screenshots"
TILE_HOSTS = ("tile.openstreetmap.org", "is.autonavi.com", "tianditu.gov.cn")
VIEWPORT = {"width": 1280, "height": 800}
READY_MS = 20_000
BIN = Path(sys.executable).parent


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip(
            "Debian's chromium is not installed and could not be: `make test` installs it as "
            "root (apt-get install chromium fonts-wqy-microhei)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """The demo city behind a real server."""

    base: str
    token: str
    engine: Engine
    env: dict[str, str]
    incidents: list[str] = field(default_factory=list)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def page_url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}access_token={self.token}"

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(command[1:])} failed:\n{done.stderr[-3000:]}"


def _wait_up(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def _report_incidents(served: Served) -> None:
    """Incidents through the real intake and workflow, at demo buildings across the city;
    three made overdue the way the incident tests do (their deadline moved into the past)."""
    buildings = served.rows(
        "SELECT code, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM buildings ORDER BY code"
    )
    picks = buildings[:: max(1, len(buildings) // 16)][:16]
    categories = [c["code"] for c in served.api("GET", "/api/v1/incidents/categories")]
    for i, b in enumerate(picks):
        incident = served.api(
            "POST",
            "/api/v1/incidents",
            {
                "category": categories[i % len(categories)],
                "description": f"浏览器测试 browser test {i}",
                "lon": b["lon"],
                "lat": b["lat"],
            },
        )
        served.incidents.append(incident["ref"])
    steps = {1: ["start"], 2: ["start", "report"], 3: ["start", "report", "close"], 4: ["cancel"]}
    for i, ref in enumerate(served.incidents):
        for action in steps.get(i % 6, []):
            served.api("PATCH", f"/api/v1/incidents/{ref}", {"action": action, "actor": "test"})
    with served.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE incidents SET due_at = now() - interval '3 hours' WHERE ref = ANY(:refs)"
                " AND status NOT IN ('closed', 'cancelled')"
            ),
            {"refs": served.incidents[::5][:3]},
        )


@pytest.fixture(scope="module")
def served(engine: Engine, settings: Settings) -> Iterator[Served]:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    url = engine.url.render_as_string(hide_password=False)
    env = {
        **os.environ,
        "GEO_DATABASE_URL": url,
        "GEO_MAP_BASEMAP": "osm",
        "GEO_MAP_REFRESH_S": "5",
        "GEO_LOG_JSON": "false",
        "GEO_LOG_LEVEL": "WARNING",
    }
    # The demo city exactly as `geo-service demo` sets it up (import + coverage), no serving.
    _run([str(BIN / "geo-service"), "demo", "--no-serve"], env)
    token = add_user(engine, settings, "map-browser-test", "admin", expires_days=1).token
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "geo-service"), "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(f"{base}/livez", server)
        result = Served(base, token, engine, env)
        _report_incidents(result)
        yield result
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """A page with everything it asked off this machine and every console error."""

    page: Any
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def ready(self) -> None:
        self.page.wait_for_selector("body[data-geomap-ready]", state="attached", timeout=READY_MS)
        failed = self.page.get_attribute("body", "data-geomap-error")
        assert failed is None, failed

    def counts(self) -> dict[str, int]:
        return dict(self.page.evaluate("GeoMap.pages[0].counts"))

    def svg_paths(self) -> int:
        return int(
            self.page.evaluate("document.querySelectorAll('.leaflet-overlay-pane path').length")
        )

    def check_clean(self) -> None:
        # Offline: only basemap tiles were asked of the outside world, and no CDN at all.
        assert all(any(h in url for h in TILE_HOSTS) for url in self.outside), self.outside
        assert self.errors == []


@pytest.fixture
def tab(browser: Any, served: Served) -> Iterator[Tab]:
    lon, lat = _a_building(served)
    context = browser.new_context(
        viewport=VIEWPORT,
        geolocation={"longitude": lon, "latitude": lat},
        permissions=["geolocation"],
        locale="zh-CN",
    )
    page = context.new_page()
    result = Tab(page)

    def route(r: Any) -> None:
        if r.request.url.startswith(("http://127.0.0.1", "file:", "data:")):
            r.continue_()
        else:
            result.outside.append(r.request.url)
            r.abort()

    def console(msg: Any) -> None:
        where = (msg.location or {}).get("url", "")
        if msg.type == "error" and not any(h in where for h in TILE_HOSTS):
            result.errors.append(f"{msg.text} ({where})")

    context.route("**/*", route)
    page.on("console", console)
    page.on("pageerror", lambda exc: result.errors.append(f"page error: {exc}"))
    yield result
    context.close()


_BIGGEST_GRID = (
    "SELECT g.code FROM grids g JOIN buildings b ON ST_Covers(g.geom, b.geom) "
    "GROUP BY g.code ORDER BY count(*) DESC, g.code LIMIT 1"
)


def _a_building(served: Served) -> tuple[float, float]:
    """A building in the grid with the most buildings (where the worker view opens)."""
    row = served.rows(
        "SELECT ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat, b.address FROM buildings b "
        f"JOIN grids g ON ST_Covers(g.geom, b.geom) WHERE g.code = ({_BIGGEST_GRID}) "
        "ORDER BY b.code LIMIT 1"
    )[0]
    return float(row["lon"]), float(row["lat"])


def _shot(tab: Tab, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.wait_for_timeout(300)  # let the last popup or marker finish drawing
    tab.page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_planner_draws_coverage_runs_a_what_if_and_suggests_sites(tab: Tab, served: Served):
    grids = served.rows("SELECT count(*) AS n FROM grids")[0]["n"]
    centres = served.rows("SELECT count(*) AS n FROM centers")[0]["n"]
    tab.page.goto(served.page_url("/map/planner"))
    tab.ready()
    counts = tab.counts()
    assert counts["coverage"] == grids and counts["centres"] == centres
    assert counts["tiers"] > 0 and counts["gaps"] > 0
    assert tab.svg_paths() >= grids + centres
    legend = tab.page.inner_text(".gm-legend")
    assert "图例" in legend and "Legend" in legend and "邻里中心" in legend
    assert "%" in tab.page.inner_text("#gm-summary")
    assert tab.page.locator(".leaflet-control-scale").count() == 1
    assert tab.page.locator(".leaflet-control-layers").count() == 1

    # A click on the map adds a centre there (what-if): in the largest gap, it gains households.
    gap = served.rows(
        "SELECT ST_X(p) AS lon, ST_Y(p) AS lat FROM (SELECT ST_PointOnSurface(geom) AS p "
        "FROM coverage_gaps ORDER BY households DESC LIMIT 1) g"
    )[0]
    at = tab.page.evaluate(
        "([lon, lat]) => { const p = GeoMap.pages[0]; "
        "return p.map.latLngToContainerPoint(p.toLatLng(lon, lat)); }",
        [gap["lon"], gap["lat"]],
    )
    box = tab.page.locator(".leaflet-container").bounding_box()
    tab.page.mouse.click(box["x"] + at["x"], box["y"] + at["y"])
    tab.page.wait_for_selector("body[data-geomap-whatif='1']", state="attached")
    assert tab.page.locator(".gm-site-whatif").count() == 1
    result = tab.page.inner_text("#gm-whatif")
    assert "What-if result" in result and "(+0 " not in result.splitlines()[-1]

    tab.page.click("#gm-suggest")
    tab.page.wait_for_selector("body[data-geomap-suggested]", state="attached", timeout=30_000)
    assert tab.page.locator(".gm-site-suggested").count() == 3
    _shot(tab, "planner")
    tab.check_clean()


def test_worker_view_shows_the_grid_its_buildings_search_and_near_me(tab: Tab, served: Served):
    code = served.rows(_BIGGEST_GRID)[0]["code"]
    listed = served.api("GET", f"/api/v1/buildings?grid={code}&limit=1000")
    grid = {"code": code, "n": listed["total"]}
    assert grid["n"] > 0
    worker = served.rows("SELECT name FROM workers WHERE grid_code = :g", g=code)
    address = listed["items"][-1]["address"]
    tab.page.goto(served.page_url(f"/map/worker?grid={grid['code']}"))
    tab.ready()
    assert tab.counts()["buildings"] == grid["n"]
    assert tab.svg_paths() >= grid["n"] + 1
    tab.page.wait_for_function("document.querySelector('#gm-grid').innerText.includes('网格员')")
    assert worker[0]["name"] in tab.page.inner_text("#gm-grid")

    # Near me: the browser's position -> the buildings around it.
    tab.page.click("#gm-near")
    tab.page.wait_for_selector("body[data-geomap-near]", state="attached")
    assert int(tab.page.get_attribute("body", "data-geomap-near")) > 0

    # Address search (forward geocoding): the building is found and its popup opened.
    tab.page.fill("#gm-q", address)
    tab.page.press("#gm-q", "Enter")
    tab.page.wait_for_selector("body[data-geomap-search]", state="attached")
    assert tab.page.locator(".gm-site-search").count() >= 1
    popup = tab.page.inner_text(".leaflet-popup-content")
    assert address in popup and grid["code"] in popup
    _shot(tab, "worker")
    tab.check_clean()


def test_dispatcher_colours_incidents_refreshes_and_shows_grid_and_workers(
    tab: Tab, served: Served
):
    located = served.rows("SELECT count(*) AS n FROM incidents WHERE geom IS NOT NULL")[0]["n"]
    overdue = served.rows(
        "SELECT count(*) AS n FROM incidents WHERE geom IS NOT NULL AND due_at < now() "
        "AND status NOT IN ('closed', 'cancelled')"
    )[0]["n"]
    assert overdue >= 1
    tab.page.goto(served.page_url("/map/dispatch"))
    tab.ready()
    assert tab.counts()["incidents"] == located
    rings = tab.page.locator(".leaflet-overlay-pane path[stroke='#e41a1c']").count()
    assert rings == overdue
    statuses = tab.page.inner_text("#gm-counts")
    assert "超期" in statuses and "Overdue" in statuses

    # Click an incident: its grid is highlighted, the popup names the grid and its workers.
    ref, grid = next(
        (r["ref"], r["grid_code"])
        for r in served.rows(
            "SELECT ref, grid_code FROM incidents WHERE grid_code IS NOT NULL AND "
            "due_at < now() AND status NOT IN ('closed', 'cancelled') ORDER BY ref"
        )
    )
    tab.page.evaluate(
        """ref => GeoMap.pages[0].groups.incidents.eachLayer(l => {
            if (l.getTooltip().getContent().startsWith(ref + ' '))
                l.fire('click', {latlng: l.getLatLng()});
        })""",
        ref,
    )
    tab.page.wait_for_selector(f"body[data-geomap-selected='{ref}']", state="attached")
    detail = tab.page.inner_text("#gm-detail")
    workers = served.rows("SELECT name FROM workers WHERE grid_code = :g", g=grid)
    assert grid in detail and all(w["name"] in detail for w in workers)
    assert tab.page.evaluate("GeoMap.pages[0].groups.selected.getLayers().length") == 1
    _shot(tab, "dispatcher")

    # Auto-refresh: a new report appears without reloading the page.
    lon, lat = _a_building(served)
    served.api(
        "POST",
        "/api/v1/incidents",
        {"category": "exposed_rubbish", "description": "刷新 refresh", "lon": lon, "lat": lat},
    )
    tab.page.wait_for_function(
        f"GeoMap.pages[0].counts.incidents === {located + 1}", timeout=15_000
    )
    tab.check_clean()


def test_amap_basemap_shifts_overlays_to_gcj02(tab: Tab, served: Served):
    tab.page.goto(served.page_url("/map/planner?basemap=amap"))
    tab.ready()
    centres = served.rows("SELECT code, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM centers")
    drawn = tab.page.evaluate(
        "GeoMap.pages[0].groups.centres.getLayers()"
        ".map(l => [l.getLatLng().lng, l.getLatLng().lat])"
    )
    expected = [tuple(float(v) for v in wgs84_to_gcj02(c["lon"], c["lat"])) for c in centres]
    assert len(drawn) == len(expected)
    for lon, lat in sorted(drawn):
        near = min(expected, key=lambda e: abs(e[0] - lon) + abs(e[1] - lat))
        # GeoJSON carries 7 decimals (about 1 cm): the shift itself matches to float rounding.
        assert abs(near[0] - lon) < 2e-7 and abs(near[1] - lat) < 2e-7
    # Shifted by hundreds of metres, not by nothing.
    assert abs(expected[0][0] - centres[0]["lon"]) > 0.001
    # The page's transforms are geo_service.crs's, both ways (clicks go back to WGS-84).
    points = [(117.8, 30.9), (116.4, 39.9), (121.47, 31.23), (2.35, 48.85)]
    js = tab.page.evaluate(
        "pts => pts.map(p => [GeoMap.wgs84ToGcj02(p[0], p[1]), GeoMap.gcj02ToWgs84(p[0], p[1])])",
        points,
    )
    for (lon, lat), (fwd, inv) in zip(points, js, strict=True):
        assert fwd == pytest.approx([float(v) for v in wgs84_to_gcj02(lon, lat)], abs=1e-9)
        assert inv == pytest.approx([float(v) for v in gcj02_to_wgs84(lon, lat)], abs=1e-8)
    assert "GCJ-02" in tab.page.inner_text(".gm-panel")
    tab.check_clean()


def test_static_export_opens_offline_from_a_file(tab: Tab, served: Served, tmp_path: Path):
    out = tmp_path / "planner.html"
    _run([str(BIN / "geo-service"), "map", "export", str(out), "--view", "planner"], served.env)
    html = out.read_text(encoding="utf-8")
    assert "<script src=" not in html and 'rel="stylesheet" href=' not in html
    tab.page.goto(out.as_uri())
    tab.ready()
    grids = served.rows("SELECT count(*) AS n FROM grids")[0]["n"]
    assert tab.counts()["coverage"] == grids
    assert tab.svg_paths() >= grids
    assert "静态导出" in tab.page.inner_text(".gm-panel")
    tab.check_clean()
