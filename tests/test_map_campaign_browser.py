# ruff: noqa: F811 (the fixtures browser, served and tab are test_map_browser's, imported and
# asked for by name: a parameter of that name is not a redefinition)
"""The campaign overlay of the dispatcher and planner maps in a real browser (Debian's
Chromium driven by Playwright against a real server on the demo city; every request off this
machine refused): a door-to-door campaign is picked from the panel and its buildings are drawn
done, flagged or not yet in its current round, with the counts, as the campaign_buildings
layer and the progress API say.

Screenshots go where test_map_browser puts its own (build/screenshots, or $GEO_SCREENSHOTS_DIR).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests.test_map_browser import (  # noqa: F401 (fixtures used by name)
    Served,
    Tab,
    _shot,
    browser,
    served,
    tab,
)

COMMUNITY = "340705001001"  # 石城社区


def _campaign_with_visits(served: Served) -> tuple[int, dict[str, int]]:
    """A campaign over one community with a visit that reached someone, one recorded far from
    its building (flagged) and one where nobody was home; what the layer should count."""
    made = served.api(
        "POST",
        "/api/v1/campaigns",
        {
            "name": "石城社区入户排查",
            "kind": "screening",
            "scope": {"communities": [COMMUNITY]},
            "target": "buildings",
            "rounds": 2,
            "starts": "2020-01-01",
            "due": "2099-12-31",
        },
    )
    buildings = served.rows(
        "SELECT cb.building_code AS code, ST_X(b.geom) AS x, ST_Y(b.geom) AS y "
        "FROM campaign_buildings cb JOIN buildings b ON b.code = cb.building_code "
        "WHERE cb.campaign_id = :c ORDER BY cb.building_code LIMIT 4",
        c=made["id"],
    )
    sent = [
        ("visited", 3, 0.0),
        ("visited", 2, 0.0),
        ("visited", 1, 0.005),  # about 480 m away: flagged
        ("no_one_home", 0, 0.0),
    ]
    for b, (outcome, households, off) in zip(buildings, sent, strict=True):
        served.api(
            "POST",
            "/api/v1/visits",
            {
                "campaign": made["id"],
                "round": 1,
                "building": b["code"],
                "outcome": outcome,
                "households_reached": households,
                "lon": b["x"] + off,
                "lat": b["y"],
            },
        )
    expected = {"done": 2, "flagged": 1, "not_yet": made["buildings"] - 3}
    return made["id"], expected


@pytest.mark.parametrize("view", ["dispatch", "planner"])
def test_a_campaign_is_drawn_done_flagged_or_not_yet(tab: Tab, served: Served, view: str):
    campaign, expected = _campaign_with_visits(served)
    try:
        tab.page.goto(served.page_url(f"/map/{view}"))
        tab.ready()
        tab.page.wait_for_selector(
            f"#gm-campaign-pick option[value='{campaign}']", state="attached"
        )
        tab.page.select_option("#gm-campaign-pick", str(campaign))
        tab.page.wait_for_selector("body[data-geomap-campaign]", state="attached")
        counts = json.loads(tab.page.get_attribute("body", "data-geomap-campaign") or "{}")
        assert counts == expected
        panel = tab.page.inner_text("#gm-campaign")
        assert "已走访" in panel and "Flagged" in panel and "Round 1" in panel
        legend = tab.page.inner_text(".gm-legend")
        assert "走访进度" in legend and "Not yet" in legend
        tab.page.evaluate("document.querySelector('#gm-campaign-pick').scrollIntoView()")
        _shot(tab, f"{'dispatcher' if view == 'dispatch' else 'planner'}-campaign")
        tab.check_clean()
    finally:
        with served.engine.begin() as conn:  # the other tests see no campaign
            conn.execute(text("DELETE FROM campaigns WHERE id = :c"), {"c": campaign})
