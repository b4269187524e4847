# ruff: noqa: F811 (the fixtures browser, served and tab are test_map_browser's, imported and
# asked for by name: a parameter of that name is not a redefinition)
"""The planner's workload overlay in a real browser: Debian's Chromium driven by Playwright
against a real server on the demo city (the fixtures of test_map_browser: every request off
this machine refused). The planner turns the overlay "网格工作量 Workload (households per
worker)" on: the grids are coloured by households per worker in classes of the city's standard
(GET /api/v1/workload's target_households_per_worker, GEO_GRID_TARGET_HOUSEHOLDS), the legend
names that standard, a grid's popup gives the API's figures, the panel the city's imbalance and
a CSV link that answers; after a committed grid edit the overlay is asked again.

Screenshots go where test_map_browser puts its own (build/screenshots, or $GEO_SCREENSHOTS_DIR).
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

from geo_service.grids.workload import CSV_COLUMNS
from tests.test_map_browser import (  # noqa: F401 (fixtures used by name)
    BIN,
    Served,
    Tab,
    _run,
    _shot,
    browser,
    served,
    tab,
)
from tests.test_map_grid_edit_browser import (
    _ADJACENT,
    EDIT_MS,
    _check_clean,
    _click,
    _commit,
    _inside,
    _select,
    _wait_edit,
)

OVERLAY = "网格工作量 Workload (households per worker)"
WORKLOAD = "/api/v1/workload?by=grid"


# -- helpers ----------------------------------------------------------------------------------
def _open(tab: Tab, served: Served) -> None:
    dialogs: list[str] = []
    tab.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.dialogs = dialogs  # type: ignore[attr-defined]
    tab.page.goto(served.page_url("/map/planner"))
    tab.ready()


def _switch(tab: Tab, name: str) -> Any:
    """The layer switcher's checkbox of an overlay."""
    label = tab.page.locator(".leaflet-control-layers-overlays label", has_text=name)
    assert label.count() == 1, f"no overlay {name!r} in the layer switcher"
    return label.locator("input")


def _turn_on(tab: Tab, loads: int = 1) -> None:
    _switch(tab, OVERLAY).check()
    tab.page.wait_for_selector(
        f"body[data-geomap-workload-loaded='{loads}']", state="attached", timeout=EDIT_MS
    )
    failed = tab.page.get_attribute("body", "data-geomap-workload-error")
    assert failed is None, failed


def _legend_colours(tab: Tab) -> list[str]:
    """The swatches of the workload legend, in order: five classes, then "no worker"."""
    styles = tab.page.eval_on_selector_all(
        "#gm-legend-workload .gm-swatch", "els => els.map(e => e.getAttribute('style'))"
    )
    return [re.search(r"background:\s*(#[0-9a-fA-F]{6})", s).group(1).lower() for s in styles]


def _expected(item: dict[str, Any], target: float, colours: list[str]) -> str:
    """A grid's colour: its class of households per worker as a share of the standard
    (< 50%, 50-80%, 80-100%, 100-120%, > 120%; at the standard is not over it), or no worker."""
    hpw = item["households_per_worker"]
    if not item["workers"] or hpw is None:
        return colours[5]
    share = hpw / target
    if share < 0.5:
        return colours[0]
    if share < 0.8:
        return colours[1]
    if share <= 1.0:
        return colours[2]
    if share <= 1.2:
        return colours[3]
    return colours[4]


def _fills(tab: Tab) -> dict[str, str]:
    """Grid code -> fill colour of the workload overlay as drawn."""
    pairs = tab.page.evaluate(
        "GeoMap.pages[0].groups.workload.getLayers()[0].getLayers()"
        ".map(l => [l.feature.id, l.options.fillColor])"
    )
    return {code: colour.lower() for code, colour in pairs}


def _check_colours(tab: Tab, answer: dict[str, Any]) -> None:
    colours = _legend_colours(tab)
    assert len(colours) == 6 and len(set(colours)) == 6
    target = answer["target_households_per_worker"]
    fills = _fills(tab)
    items = {i["code"]: i for i in answer["items"]}
    assert set(fills) == set(items)
    for code, item in items.items():
        assert fills[code] == _expected(item, target, colours), (code, item)


def _number(text: str, after: str) -> float:
    found = re.search(re.escape(after) + r"\s*([\d,]+(?:\.\d+)?)", text)
    assert found, f"no number after {after!r} in {text!r}"
    return float(found.group(1).replace(",", ""))


# -- the tests --------------------------------------------------------------------------------
def test_workload_overlay_colours_grids_against_the_citys_standard(tab: Tab, served: Served):
    answer = served.api("GET", WORKLOAD)
    target = answer["target_households_per_worker"]
    grids = int(served.rows("SELECT count(*) AS n FROM grids")[0]["n"])
    assert len(answer["items"]) == grids > 0
    _open(tab, served)
    # Off by default (the planner has seven overlays already): nothing drawn, nothing asked.
    assert not _switch(tab, OVERLAY).is_checked()
    assert tab.page.locator("path.gm-workload").count() == 0
    assert tab.page.locator("#gm-legend-workload").count() == 0
    assert tab.page.is_hidden("#gm-workload")

    _turn_on(tab)
    assert tab.page.locator(".leaflet-overlay-pane path.gm-workload").count() == grids
    assert tab.page.get_attribute("body", "data-geomap-workload") == str(grids)
    _check_colours(tab, answer)
    fills = set(_fills(tab).values())
    assert len(fills) >= 2  # the demo city's grids are not all alike

    # The legend names the standard the API answers (GEO_GRID_TARGET_HOUSEHOLDS, default 300).
    legend = tab.page.inner_text("#gm-legend-workload")
    assert f"标准 {target:,} 户/人" in legend and f"standard {target:,}" in legend
    assert "无网格员" in legend and "no worker" in legend
    assert f"> {target * 1.2:,.0f}" in legend and "100–120%" in legend
    # The panel: the city's imbalance, as the API has it, and the CSV.
    panel = tab.page.inner_text("#gm-workload")
    city = answer["city"]
    assert f"标准 {target:,} 户/人" in panel
    assert abs(_number(panel, "CV") - city["cv"]) < 0.006
    assert abs(_number(panel, "max/median") - city["max_over_median"]) < 0.006
    over = sum(1 for i in answer["items"] if i["over_target"])
    assert f"{over}/{grids}" in panel

    # A grid's popup: its households per worker is the API's; the click runs no what-if.
    busiest = max(
        (i for i in answer["items"] if i["households_per_worker"] is not None),
        key=lambda i: (i["households_per_worker"], i["code"]),
    )
    _click(tab, *_inside(served, busiest["code"]))
    popup = tab.page.locator(".gm-workload-popup")
    popup.wait_for(timeout=5_000)
    assert popup.get_attribute("data-code") == busiest["code"]
    shown = float(popup.locator(".gm-workload-hpw").inner_text().replace(",", ""))
    assert shown == busiest["households_per_worker"]
    text_ = popup.inner_text()
    assert f"{busiest['households']:,}" in text_ and busiest["name"] in text_
    assert all(w in text_ for w in busiest["worker_codes"])
    assert "Open incidents" in text_ and "Overdue" in text_
    assert tab.page.get_attribute("body", "data-geomap-whatif") is None

    # The CSV link carries the page's token (a plain link sends no header) and answers.
    href = tab.page.get_attribute("#gm-workload-csv", "href")
    assert "format=csv" in href and f"access_token={served.token}" in href
    with urllib.request.urlopen(served.base + href, timeout=30) as got:
        assert got.status == 200 and got.headers["content-type"].startswith("text/csv")
        lines = got.read().decode("utf-8").splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS["grid"]) and len(lines) == grids + 1

    # The picture: the workload on its own (coverage off), the busiest grid's popup open.
    _switch(tab, "网格覆盖率").uncheck()
    assert tab.page.locator(".leaflet-overlay-pane path.gm-workload").count() == grids
    popup.wait_for(timeout=5_000)
    _shot(tab, "planner-workload")
    # Off again: the legend and the panel's section go with it; coverage comes back under it.
    _switch(tab, "网格覆盖率").check()
    _switch(tab, OVERLAY).uncheck()
    assert tab.page.is_hidden("#gm-legend-workload") and tab.page.is_hidden("#gm-workload")
    assert tab.page.locator("path.gm-workload").count() == 0
    _check_clean(tab)


def test_a_static_export_carries_the_workload(tab: Tab, served: Served, tmp_path: Path):
    out = tmp_path / "planner.html"
    _run([str(BIN / "geo-service"), "map", "export", str(out), "--view", "planner"], served.env)
    answer = served.api("GET", WORKLOAD)
    tab.dialogs = []  # type: ignore[attr-defined]
    tab.page.goto(out.as_uri())
    tab.ready()
    _turn_on(tab)
    _check_colours(tab, answer)
    assert f"标准 {answer['target_households_per_worker']:,} 户/人" in tab.page.inner_text(
        "#gm-legend-workload"
    )
    # No server behind a file: no CSV link.
    assert tab.page.locator("#gm-workload-csv").count() == 0
    _check_clean(tab)


def test_workload_overlay_follows_a_committed_grid_edit(tab: Tab, served: Served):
    pair = served.rows(_ADJACENT)[0]
    a, b = pair["a"], pair["b"]
    _open(tab, served)
    _turn_on(tab)
    tab.page.click("#gm-edit-toggle")
    tab.page.wait_for_selector("body[data-geomap-editing='1']", state="attached", timeout=EDIT_MS)
    # Dimmed while editing, and clicks go through its fills to the editor.
    opacities = tab.page.evaluate(
        "[...new Set(GeoMap.pages[0].groups.workload.getLayers()[0].getLayers()"
        ".map(l => l.options.fillOpacity))]"
    )
    assert opacities == [0.25]
    _select(tab, served, a, b)
    assert tab.page.locator(".gm-workload-popup").count() == 0
    tab.page.click("#gm-merge")
    _wait_edit(tab, "preview")
    assert tab.page.get_attribute("body", "data-geomap-workload-loaded") == "1"  # a preview
    _commit(tab, "浏览器测试：合并后工作量 merge, then the workload")
    # Committed: the grids and the workload were asked again, and agree with the API.
    tab.page.wait_for_selector(
        "body[data-geomap-workload-loaded='2']", state="attached", timeout=EDIT_MS
    )
    answer = served.api("GET", WORKLOAD)
    codes = {i["code"] for i in answer["items"]}
    assert a in codes and b not in codes
    _check_colours(tab, answer)
    panel = tab.page.inner_text("#gm-workload")
    assert abs(_number(panel, "CV") - answer["city"]["cv"]) < 0.006
    grids = len(answer["items"])
    assert tab.page.get_attribute("body", "data-geomap-workload") == str(grids)
    # Editing off: full colour again, and a click shows the merged grid's figures.
    tab.page.click("#gm-edit-toggle")
    tab.page.wait_for_selector("body[data-geomap-edit='off']", state="attached")
    merged = next(i for i in answer["items"] if i["code"] == a)
    _click(tab, *_inside(served, a))
    popup = tab.page.locator(".gm-workload-popup")
    popup.wait_for(timeout=5_000)
    assert popup.get_attribute("data-code") == a
    assert f"{merged['households']:,}" in popup.inner_text()
    _check_clean(tab)
