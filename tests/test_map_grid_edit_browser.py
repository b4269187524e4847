# ruff: noqa: F811 (the fixtures browser, served and tab are test_map_browser's, imported and
# asked for by name: a parameter of that name is not a redefinition)
"""The planner's grid editing in a real browser: Debian's Chromium driven by Playwright against
a real server on the demo city (the fixtures of test_map_browser: every request off this
machine refused). The planner turns "edit grids" on, clicks grids, draws a split line, drags a
vertex (Leaflet-Geoman, vendored), previews each edit, commits it with a reason, and the API's
history then names the planner's edit; refused input is told in the panel, never an alert().

Screenshots go where test_map_browser puts its own (build/screenshots, or $GEO_SCREENSHOTS_DIR).
"""

from __future__ import annotations

import re
from typing import Any

from tests.test_map_browser import (  # noqa: F401 (fixtures used by name)
    Served,
    Tab,
    _shot,
    browser,
    playwright_api,
    served,
    tab,
)
from tests.test_web_map import config_of
from web_map import MapOptions, render
from web_map.assets import STATIC_DIR, static_path
from web_map.views import ASSETS

EDIT_MS = 30_000
PLANNER = "map-browser-test"  # the user whose token the served pages carry

# A point inside a grid, away from the centres (a centre's marker keeps its clicks).
_INSIDE = """
SELECT ST_X(p) AS lon, ST_Y(p) AS lat FROM (
  SELECT ST_PointOnSurface(ST_Difference(g.geom, coalesce(
    (SELECT ST_Union(ST_Buffer(c.geom, 0.0008)) FROM centers c),
    ST_GeomFromText('POLYGON EMPTY', ST_SRID(g.geom))))) AS p
  FROM grids g WHERE g.code = :code) q
"""
_BOX = (
    "SELECT ST_XMin(geom) AS w, ST_YMin(geom) AS s, ST_XMax(geom) AS e, ST_YMax(geom) AS n "
    "FROM grids WHERE code = :code"
)
# Grids no centre stands in, with their buildings west and east of the middle of their box.
_SPLITTABLE = """
SELECT g.code,
  (SELECT count(*) FROM buildings b WHERE ST_Covers(g.geom, b.geom)
     AND ST_X(b.geom) < (ST_XMin(g.geom) + ST_XMax(g.geom)) / 2) AS west,
  (SELECT count(*) FROM buildings b WHERE ST_Covers(g.geom, b.geom)
     AND ST_X(b.geom) > (ST_XMin(g.geom) + ST_XMax(g.geom)) / 2) AS east
FROM grids g
WHERE NOT EXISTS (SELECT 1 FROM centers c WHERE ST_Covers(g.geom, c.geom))
ORDER BY least(
  (SELECT count(*) FROM buildings b WHERE ST_Covers(g.geom, b.geom)
     AND ST_X(b.geom) < (ST_XMin(g.geom) + ST_XMax(g.geom)) / 2),
  (SELECT count(*) FROM buildings b WHERE ST_Covers(g.geom, b.geom)
     AND ST_X(b.geom) > (ST_XMin(g.geom) + ST_XMax(g.geom)) / 2)) DESC, g.code
"""
# Pairs of grids of one community sharing a stretch of boundary.
_ADJACENT = """
SELECT a.code AS a, b.code AS b FROM grids a JOIN grids b
  ON a.code < b.code AND a.community_code = b.community_code AND ST_Intersects(a.geom, b.geom)
WHERE ST_Dimension(ST_Intersection(a.geom, b.geom)) = 1
ORDER BY a.code, b.code
"""


# -- helpers ----------------------------------------------------------------------------------
def _open_editing(tab: Tab, served: Served) -> None:
    dialogs: list[str] = []
    tab.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.page.goto(served.page_url("/map/planner"))
    tab.ready()
    tab.page.click("#gm-edit-toggle")
    tab.page.wait_for_selector("body[data-geomap-editing='1']", state="attached", timeout=EDIT_MS)
    tab.dialogs = dialogs  # type: ignore[attr-defined]


def _screen(tab: Tab, lon: float, lat: float) -> tuple[float, float]:
    """Where a WGS-84 point is on the screen now."""
    at = tab.page.evaluate(
        "([lon, lat]) => { const p = GeoMap.pages[0]; "
        "return p.map.latLngToContainerPoint(p.toLatLng(lon, lat)); }",
        [lon, lat],
    )
    box = tab.page.locator(".leaflet-container").bounding_box()
    return box["x"] + at["x"], box["y"] + at["y"]


def _click(tab: Tab, lon: float, lat: float, shift: bool = False) -> None:
    x, y = _screen(tab, lon, lat)
    if shift:
        tab.page.keyboard.down("Shift")
    tab.page.mouse.click(x, y)
    if shift:
        tab.page.keyboard.up("Shift")


def _inside(served: Served, code: str) -> tuple[float, float]:
    row = served.rows(_INSIDE, code=code)[0]
    return float(row["lon"]), float(row["lat"])


def _select(tab: Tab, served: Served, *codes: str) -> None:
    """Click the first grid, shift-click the others; wait until the panel has their details."""
    for i, code in enumerate(codes):
        _click(tab, *_inside(served, code), shift=i > 0)
    tab.page.wait_for_selector(
        f"body[data-geomap-selected-grids='{','.join(codes)}']", state="attached", timeout=EDIT_MS
    )


def _wait_edit(tab: Tab, state: str) -> None:
    """Wait for the editor to reach `state`; on a timeout say where it is and what it shows."""
    try:
        tab.page.wait_for_selector(
            f"body[data-geomap-edit='{state}']", state="attached", timeout=EDIT_MS
        )
    except playwright_api.TimeoutError:
        now = tab.page.get_attribute("body", "data-geomap-edit")
        shown = tab.page.inner_text("#gm-edit")
        raise AssertionError(
            f"the editor is at {now!r}, not {state!r}; it shows:\n{shown}"
        ) from None


def _draw_line(tab: Tab, points: list[tuple[float, float]]) -> None:
    """Click each point in draw mode, then the last again: Geoman finishes the line."""
    tab.page.wait_for_selector("body[data-geomap-edit='drawing']", state="attached")
    for lon, lat in points:
        _click(tab, lon, lat)
        tab.page.wait_for_timeout(150)
    _click(tab, *points[-1])


def _commit(tab: Tab, reason: str) -> None:
    tab.page.fill("#gm-reason", reason)
    tab.page.click("#gm-commit")
    _wait_edit(tab, "committed")


def _check_clean(tab: Tab, refused: tuple[int, ...] = ()) -> None:
    """Nothing asked off this machine, no console error but the browser's own line for an API
    answer the test provoked on purpose (status in `refused`), and no alert() ever."""
    expected = [
        e
        for e in tab.errors
        if any(f"status of {s} " in e for s in refused) and "/api/v1/grids/" in e
    ]
    tab.errors[:] = [e for e in tab.errors if e not in expected]
    tab.check_clean()
    assert tab.dialogs == []  # type: ignore[attr-defined]


def _history(served: Served, code: str) -> list[dict[str, Any]]:
    return list(served.api("GET", f"/api/v1/grids/{code}/history")["versions"])


def _edit(served: Served, edit: int) -> dict[str, Any]:
    found = [e for e in served.api("GET", "/api/v1/grids/edits?limit=1000")["items"]]
    return next(e for e in found if e["id"] == edit)


def _grid_count(served: Served) -> int:
    return int(served.rows("SELECT count(*) AS n FROM grids")[0]["n"])


# -- the tests --------------------------------------------------------------------------------
def test_planner_splits_a_grid_along_a_drawn_line_previews_and_commits(tab: Tab, served: Served):
    code = served.rows(_SPLITTABLE)[0]["code"]
    before = served.api("GET", f"/api/v1/grids/{code}")
    grids = _grid_count(served)
    _open_editing(tab, served)
    _select(tab, served, code)
    selected = tab.page.inner_text("#gm-edit-selected")
    assert code in selected and before["name"] in selected
    assert f"{before['households']:,}" in selected
    for worker in before["workers"]:
        assert (worker if isinstance(worker, str) else worker["code"]) in selected

    # Split: a line north-south through the middle, from beyond one edge to beyond the other.
    tab.page.click("#gm-split")
    box = served.rows(_BOX, code=code)[0]
    x = (box["w"] + box["e"]) / 2
    margin = (box["n"] - box["s"]) * 0.25
    _draw_line(tab, [(x, box["s"] - margin), (x, box["n"] + margin)])
    _wait_edit(tab, "preview")
    pieces = tab.page.get_attribute("body", "data-geomap-edit-grids").split(",")
    assert len(pieces) == 2 and code not in pieces
    labels = tab.page.locator(".gm-edit-label")
    assert labels.count() == 2
    households = []
    for i in range(2):
        text_ = labels.nth(i).inner_text()
        assert "户 hh" in text_ and "网格员" in text_
        households.append(int(text_.split("户 hh")[0].split()[-1].replace(",", "")))
    assert all(h > 0 for h in households) and sum(households) == before["households"]
    result = tab.page.inner_text("#gm-edit-result")
    assert "Preview" in result and code in result and all(p in result for p in pieces)
    assert _grid_count(served) == grids  # a preview stores nothing
    assert tab.page.is_enabled("#gm-commit")
    _shot(tab, "planner-grid-edit-preview")

    # Commit with a reason: the edit is stored, the grids layer is drawn again from the server.
    reason = "浏览器测试：按道路切分 split along the road"
    _commit(tab, reason)
    tab.page.wait_for_selector("body[data-geomap-grids-loaded='2']", state="attached")
    assert _grid_count(served) == grids + 1
    assert tab.counts()["coverage"] == grids + 1
    drawn = tab.page.evaluate(
        "GeoMap.pages[0].groups.coverage.getLayers()[0].getLayers().map(l => l.feature.id)"
    )
    assert code not in drawn and all(p in drawn for p in pieces)
    # ... coloured by their own coverage figures, asked again (not "no buildings" grey).
    covered = {g["code"] for g in served.api("GET", "/api/v1/coverage/grids")["items"]}
    assert set(pieces) <= covered
    fills = tab.page.evaluate(
        "codes => GeoMap.pages[0].groups.coverage.getLayers()[0].getLayers()"
        ".filter(l => codes.includes(l.feature.id)).map(l => l.options.fillColor)",
        pieces,
    )
    assert len(fills) == 2 and "#bdbdbd" not in fills
    edit = int(tab.page.get_attribute("body", "data-geomap-edit-committed"))
    assert f"#{edit}" in tab.page.inner_text("#gm-edit-result")
    last = _history(served, code)[-1]
    assert last["ended_by"] == edit and last["ended_kind"] == "split"
    assert last["ended_actor"] == PLANNER
    assert sorted(g["code"] for g in last["went_to"]) == sorted(pieces)
    stored = _edit(served, edit)
    assert stored["kind"] == "split" and stored["actor"] == PLANNER and stored["reason"] == reason
    _shot(tab, "planner-grid-edit-commit")

    # As of the moment editing started: the grids as they were, the old one among them.
    assert tab.page.input_value("#gm-asof-code") == code
    tab.page.click("#gm-asof-show")
    tab.page.wait_for_selector(
        f"body[data-geomap-asof='{code}@{before['version']}']", state="attached"
    )
    assert tab.page.get_attribute("body", "data-geomap-asof-grids") == str(grids)
    dashed = "d => document.querySelectorAll(`.leaflet-overlay-pane path[stroke-dasharray='${d}']`)"
    assert tab.page.evaluate(f"({dashed})('3 6').length") == 1  # the old grid
    assert tab.page.evaluate(f"({dashed})('2 5').length") == grids  # every grid then
    assert before["name"] in tab.page.inner_text("#gm-asof-result")
    # Later on, the old code names no grid, and the city has one grid more.
    tab.page.fill("#gm-asof", "2199-01-01T00:00:00")
    tab.page.click("#gm-asof-show")
    tab.page.wait_for_selector("body[data-geomap-asof='none']", state="attached")
    assert "did not exist" in tab.page.inner_text("#gm-asof-result")
    assert tab.page.get_attribute("body", "data-geomap-asof-grids") == str(grids + 1)
    _check_clean(tab, refused=(404,))


def test_planner_merges_two_adjacent_grids_through_the_map(tab: Tab, served: Served):
    pair = served.rows(_ADJACENT)[0]
    a, b = pair["a"], pair["b"]
    figures = {c: served.api("GET", f"/api/v1/grids/{c}") for c in (a, b)}
    grids = _grid_count(served)
    _open_editing(tab, served)
    _select(tab, served, a, b)
    assert tab.page.is_enabled("#gm-merge") and tab.page.is_disabled("#gm-split")
    tab.page.click("#gm-merge")
    _wait_edit(tab, "preview")
    assert tab.page.get_attribute("body", "data-geomap-edit-grids") == a  # the smaller code
    label = tab.page.locator(".gm-edit-label")
    assert label.count() == 1
    total = sum(f["households"] for f in figures.values())
    assert f"{total:,} 户 hh" in label.inner_text()

    _commit(tab, "浏览器测试：合并 merge")
    tab.page.wait_for_selector("body[data-geomap-grids-loaded='2']", state="attached")
    assert _grid_count(served) == grids - 1 and tab.counts()["coverage"] == grids - 1
    edit = int(tab.page.get_attribute("body", "data-geomap-edit-committed"))
    last = _history(served, b)[-1]
    assert last["ended_by"] == edit and last["ended_kind"] == "merge"
    assert last["ended_actor"] == PLANNER
    assert _history(served, a)[-1]["edit_kind"] == "merge"
    _check_clean(tab)


def test_planner_redraws_a_grid_by_dragging_a_shared_vertex(tab: Tab, served: Served):
    # A corner a grid never edited shares with neighbours of its community, off the
    # community's edge; the grids that meet there.
    corner = served.rows(
        """
        SELECT g.code, ST_X(d.geom) AS lon, ST_Y(d.geom) AS lat,
               ST_X(ST_Centroid(g.geom)) AS cx, ST_Y(ST_Centroid(g.geom)) AS cy,
               (SELECT array_agg(o.code ORDER BY o.code) FROM grids o
                 WHERE o.community_code = g.community_code AND ST_DWithin(o.geom, d.geom, 1e-9))
                 AS meeting
        FROM grids g JOIN communities c ON c.code = g.community_code,
             LATERAL ST_DumpPoints(g.geom) d
        WHERE g.version = 1
          AND NOT EXISTS (SELECT 1 FROM centers x WHERE ST_Covers(g.geom, x.geom))
          AND ST_Distance(d.geom, ST_Boundary(c.geom)) > 0.0005
          AND EXISTS (SELECT 1 FROM grids o WHERE o.code <> g.code AND o.version = 1
                      AND o.community_code = g.community_code AND ST_DWithin(o.geom, d.geom, 1e-9))
        ORDER BY ST_Distance(d.geom, (SELECT ST_Centroid(ST_Collect(geom)) FROM grids)),
                 g.code, d.path
        LIMIT 1
        """
    )[0]
    code = corner["code"]
    _open_editing(tab, served)
    _select(tab, served, code)
    assert tab.page.is_hidden("#gm-neighbours-row")  # it matters to a redraw only
    tab.page.click("#gm-redraw")
    _wait_edit(tab, "redrawing")
    assert tab.page.input_value("#gm-neighbours") == "adjust"
    # Drag the corner a fifth of the way towards the grid's middle, and let go.
    x0, y0 = _screen(tab, corner["lon"], corner["lat"])
    lon = corner["lon"] + (corner["cx"] - corner["lon"]) * 0.2
    lat = corner["lat"] + (corner["cy"] - corner["lat"]) * 0.2
    x1, y1 = _screen(tab, lon, lat)
    tab.page.mouse.move(x0, y0)
    tab.page.mouse.down()
    tab.page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    tab.page.mouse.move(x1, y1, steps=5)
    tab.page.mouse.up()
    _wait_edit(tab, "preview")
    changed = tab.page.get_attribute("body", "data-geomap-edit-grids").split(",")
    # The grid gives the area it lost to neighbours meeting it at that corner.
    assert code in changed and set(changed) & set(corner["meeting"]) - {code}
    assert tab.page.locator(".gm-edit-label").count() == len(changed)
    _shot(tab, "planner-grid-edit-redraw")

    _commit(tab, "浏览器测试：移动共用顶点 move a shared corner")
    edit = int(tab.page.get_attribute("body", "data-geomap-edit-committed"))
    for c in changed:
        assert _history(served, c)[-1]["edit_id"] == edit
    assert _edit(served, edit)["kind"] == "redraw"
    moved = served.rows(
        "SELECT ST_Distance(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) AS d "
        "FROM grids WHERE code = :code",
        lon=corner["lon"],
        lat=corner["lat"],
        code=code,
    )[0]["d"]
    assert moved > 0  # the corner left the grid: it stands where it was dragged
    _check_clean(tab)


def test_a_line_that_does_not_cross_the_grid_is_told_in_the_panel(tab: Tab, served: Served):
    code = served.rows(_SPLITTABLE)[-1]["code"]
    grids = _grid_count(served)
    _open_editing(tab, served)
    _select(tab, served, code)
    tab.page.click("#gm-split")
    box = served.rows(_BOX, code=code)[0]
    x = box["w"] + (box["e"] - box["w"]) * 0.4
    height = box["n"] - box["s"]
    _draw_line(tab, [(x, box["s"] + height * 0.35), (x, box["s"] + height * 0.65)])
    _wait_edit(tab, "error")
    shown = tab.page.inner_text("#gm-edit-result")
    assert "422" in shown and "does not cross grid" in shown and code in shown
    message = tab.page.get_attribute("body", "data-geomap-edit-error")
    assert "ends inside the grid at lon" in message
    # Where the line ends inside the grid is marked on the map.
    assert tab.page.locator("path.gm-finding").count() >= 1
    assert tab.page.is_disabled("#gm-commit")
    assert tab.page.is_visible("#gm-edit-result")
    assert _grid_count(served) == grids
    _shot(tab, "planner-grid-edit-error")
    _check_clean(tab, refused=(422,))


def test_geoman_is_vendored_with_its_licence_and_version_and_loaded_only_to_edit():
    folder = STATIC_DIR / "vendor" / "leaflet-geoman"
    assert "Permission is hereby granted" in (folder / "LICENSE").read_text()  # MIT
    version = (folder / "VERSION").read_text()
    assert "2.20.2" in version and "Leaflet 1.9.4" in version
    assert "1.9.4" in (STATIC_DIR / "vendor" / "leaflet" / "VERSION").read_text()
    script = (folder / "leaflet-geoman.min.js").read_text()
    assert "L.PM" in script and "</script" not in script
    # The planner names it for its editing (page.plugin loads it from our files, no CDN) ...
    html = render("planner", MapOptions(basemap="none"))
    plugin = config_of(html)["plugins"]["geoman"]
    for path in plugin.values():
        assert path.startswith(ASSETS + "/vendor/leaflet-geoman/")
        assert static_path(path.removeprefix(ASSETS + "/")).stat().st_size > 0
    assert "leaflet-geoman" not in "".join(re.findall(r'<script src="([^"]+)"', html))
    # ... which a static export, that cannot edit, never carries.
    assert config_of(render("planner", MapOptions(basemap="none", data={})))["plugins"] == {}
