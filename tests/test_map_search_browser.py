# ruff: noqa: F811 (the fixtures browser, served and tab are test_map_browser's, imported and
# taken by name as arguments)
"""The map pages' address search in a real browser, with what residents actually write: where
two streets meet, an estate's gate, a named place. Each shows its point on the map with a
popup naming what was found (the match type in Chinese and English, the grid, how sure), and
candidates without a building are listed and clickable like buildings. On the demo city as
`geo-service demo` sets it up (roads included), served by a real server, every request off
this machine refused (the fixtures and helpers of tests/test_map_browser.py)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from geo_service.buildings.address import parse
from tests.test_map_browser import (  # noqa: F401 (fixtures used by name)
    _BIGGEST_GRID,
    Served,
    Tab,
    _shot,
    browser,
    served,
    tab,
)

CROSSING = "解放九路与胜利八路交叉口"
NEVER_MEET = "合肥九路与银湖八路交叉口"


def _estates(served: Served) -> tuple[str, str]:
    """An estate on one road only, and one whose name stands on several roads (namesakes)."""
    roads: dict[str, set[str | None]] = defaultdict(set)
    for row in served.rows("SELECT address FROM buildings"):
        p = parse(row["address"])
        if p.estate:
            roads[p.estate].add(p.road)
    alone = next(e for e, r in sorted(roads.items()) if len(r) == 1)
    shared = next(e for e, r in sorted(roads.items()) if len(r) > 1)
    return alone, shared


def _search(tab: Tab, q: str) -> int:
    """Type `q` in the page's search box and submit it; the number of pins it shows."""
    tab.page.evaluate("document.body.removeAttribute('data-geomap-search')")
    tab.page.fill("#gm-q", q)
    tab.page.press("#gm-q", "Enter")
    tab.page.wait_for_selector("body[data-geomap-search]", state="attached")
    return int(tab.page.get_attribute("body", "data-geomap-search") or 0)


def _pins(tab: Tab) -> list[list[float]]:
    """[lon, lat] of each search pin (the osm basemap: no shift)."""
    return list(
        tab.page.evaluate(
            "GeoMap.pages[0].groups.search.getLayers()"
            ".map(m => [m.getLatLng().lng, m.getLatLng().lat])"
        )
    )


def _popup(tab: Tab) -> str:
    """The text of the open popup (the one closed before it may still be fading out)."""
    tab.page.wait_for_function("document.querySelectorAll('.leaflet-popup-content').length === 1")
    popup = tab.page.locator(".leaflet-popup-content")
    assert popup.is_visible()
    return str(popup.inner_text())


def _answer(served: Served, q: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    return list(served.api("GET", f"/api/v1/geocode?limit=5&q={quote(q)}")["candidates"])


def _close(pin: list[float], candidate: dict[str, Any]) -> bool:
    return abs(pin[0] - candidate["lon"]) < 1e-6 and abs(pin[1] - candidate["lat"]) < 1e-6


def test_worker_search_shows_a_crossing_an_estate_gate_and_a_place(tab: Tab, served: Served):
    grid = served.rows(_BIGGEST_GRID)[0]["code"]
    tab.page.goto(served.page_url(f"/map/worker?grid={grid}"))
    tab.ready()

    # Where two streets meet: one pin there, its popup says so in both languages.
    [crossing] = _answer(served, CROSSING)
    assert _search(tab, CROSSING) == 1
    assert tab.page.get_attribute("body", "data-geomap-search-type") == "intersection"
    assert _close(_pins(tab)[0], crossing)
    text_ = _popup(tab)
    assert "intersection" in text_ and "路口" in text_ and CROSSING in text_
    assert crossing["grid_code"] in text_ and "95.0%" in text_
    assert tab.page.locator(".gm-site-search").count() == 1
    assert "intersection" in tab.page.inner_text("#gm-list")
    _shot(tab, "worker-search-crossing")

    # An estate's gate: the estate's point, its buildings and grid.
    alone, shared = _estates(served)
    [gate] = _answer(served, alone + "门口")[:1]
    assert _search(tab, alone + "门口") >= 1
    assert tab.page.get_attribute("body", "data-geomap-search-type") == "landmark"
    assert _close(_pins(tab)[0], gate)
    text_ = _popup(tab)
    assert "landmark" in text_ and "地标" in text_ and alone in text_ and "门口" in text_
    assert gate["grid_code"] in text_

    # A name on several roads: a pin each, none sure, each listed and clickable.
    namesakes = _answer(served, shared + "附近")
    assert len(namesakes) > 1
    assert _search(tab, shared + "附近") == len(namesakes)
    items = tab.page.locator("#gm-list li")
    assert items.count() == len(namesakes)
    items.nth(1).click()
    text_ = _popup(tab)
    assert namesakes[1]["address"] in text_ and "landmark" in text_ and "待确认" in text_
    assert tab.page.evaluate(
        "GeoMap.pages[0].groups.search.getLayers()[1].isPopupOpen()"
    )  # the second pin's

    # A named place (a neighbourhood centre) by its name and a place word.
    centre = served.rows("SELECT code, name FROM centers ORDER BY code LIMIT 1")[0]
    assert _search(tab, centre["name"] + "门口") >= 1
    assert tab.page.get_attribute("body", "data-geomap-search-type") == "place"
    text_ = _popup(tab)
    assert "place" in text_ and "地点" in text_ and centre["name"] in text_
    assert centre["code"] in text_

    # Streets that never meet: no pin, and the answer's message.
    assert _search(tab, NEVER_MEET) == 0
    assert "do not meet" in tab.page.inner_text("#gm-list")
    assert tab.page.locator(".gm-site-search").count() == 0

    # A building still reads as before: its address and grid in the popup.
    building = served.api("GET", f"/api/v1/buildings?grid={grid}&limit=1")["items"][0]
    assert _search(tab, building["address"]) >= 1
    text_ = _popup(tab)
    assert building["address"] in text_ and grid in text_ and building["code"] in text_
    tab.check_clean()


def test_dispatcher_search_shows_a_crossing_and_an_estate_gate(tab: Tab, served: Served):
    located = served.rows("SELECT count(*) AS n FROM incidents WHERE geom IS NOT NULL")[0]["n"]
    tab.page.goto(served.page_url("/map/dispatch"))
    tab.ready()
    assert tab.counts()["incidents"] == located
    assert "搜索结果 Search results" in tab.page.inner_text(".leaflet-control-layers")

    [crossing] = _answer(served, CROSSING)
    assert _search(tab, CROSSING) == 1
    assert tab.page.get_attribute("body", "data-geomap-search-type") == "intersection"
    assert _close(_pins(tab)[0], crossing)
    text_ = _popup(tab)
    assert "intersection" in text_ and crossing["grid_code"] in text_
    _shot(tab, "dispatcher-search-crossing")

    alone, _ = _estates(served)
    assert _search(tab, alone + "门口") >= 1
    assert tab.page.get_attribute("body", "data-geomap-search-type") == "landmark"
    text_ = _popup(tab)
    assert "landmark" in text_ and alone in text_
    items = tab.page.locator("#gm-found li")
    assert items.count() >= 1 and "landmark" in items.first.inner_text()
    # The incidents are still there, refreshed apart from the search.
    assert tab.counts()["incidents"] == located
    tab.check_clean()
