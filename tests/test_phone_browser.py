# ruff: noqa: F811 (browser and served are test_map_browser's fixtures, imported and asked for
# by name: a parameter of that name is not a redefinition)
"""The grid worker's phone page (/m/) and the residents' grid notice (/find) in a real browser:
Debian's Chromium driven by Playwright as a phone (375 × 812, touch), against a real server on
the demo city (test_map_browser's fixtures: every request off this machine refused).

The phone page loses its connection: visits and an incident step recorded offline wait on the
phone (IndexedDB), the page opens again offline (its service worker), and once the connection
is back each reaches the server exactly once, even when the first answer is lost on the way and
the phone sends again, and when a queued action is sent twice more by hand with its key. The
notice answers by address and by location, and says what to do on no match, on a 429 and with
no connection. A plain test checks that every file the pages name is served by the service.

Screenshots go where test_map_browser puts its own (build/screenshots, or $GEO_SCREENSHOTS_DIR).
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from geo_service.api.app import create_app
from geo_service.auth.service import add_user
from geo_service.settings import Settings
from tests.test_map_browser import (  # noqa: F401 (fixtures used by name)
    _BIGGEST_GRID,
    READY_MS,
    Served,
    Tab,
    _shot,
    _tab,
    browser,
    served,
)

PHONE = {
    "viewport": {"width": 375, "height": 812},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "timezone_id": "Asia/Shanghai",
}
SYNC_MS = 30_000  # the phone's first retry comes 1 s after a lost answer
# What a browser logs when a request gets no answer: the test cuts the network on purpose.
_NO_ANSWER = ("ERR_INTERNET_DISCONNECTED", "ERR_FAILED")


@dataclass
class Worker:
    """A grid worker of the demo city's biggest grid, with work to do there."""

    token: str
    grid: str
    campaign: int
    incidents: list[str]

    def call(self, served: Served, method: str, path: str, body: Any, key: str) -> Any:
        """The API as the worker's phone calls it: (status, replayed header, answer)."""
        request = urllib.request.Request(
            served.base + path, data=json.dumps(body).encode(), method=method
        )
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", "application/json")
        request.add_header("Idempotency-Key", key)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers.get("Idempotent-Replayed"), json.load(answer)


@pytest.fixture(scope="module")
def worker(served: Served, settings: Settings) -> Worker:
    """A worker token for the grid where the phone stands, two incidents dispatched there and
    a campaign over the grid (started yesterday, two rounds, counted in households)."""
    grid = served.rows(_BIGGEST_GRID)[0]["code"]
    token = add_user(served.engine, settings, "phone-test", "worker", [grid], 1).token
    spot = served.rows(
        "SELECT ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat FROM buildings b JOIN grids g "
        "ON ST_Covers(g.geom, b.geom) WHERE g.code = :g ORDER BY b.code DESC LIMIT 2",
        g=grid,
    )
    refs = [
        served.api(
            "POST",
            "/api/v1/incidents",
            {"category": "exposed_rubbish", "description": f"楼下垃圾堆放 {i}", **s},
        )["ref"]
        for i, s in enumerate(spot)
    ]
    today = date.today()
    campaign = served.api(
        "POST",
        "/api/v1/campaigns",
        {
            "name": "入户排查 phone test",
            "scope": {"grids": [grid]},
            "target": "households",
            "rounds": 2,
            "starts": (today - timedelta(days=1)).isoformat(),
            "due": (today + timedelta(days=30)).isoformat(),
        },
    )
    return Worker(token, grid, campaign["id"], refs)


@pytest.fixture
def phone(served: Served, browser: Any) -> Iterator[Tab]:
    """A phone-sized tab standing in the worker's grid. (The server before the browser: torn
    down after it, so that no open connection of the browser holds the server's shutdown.)"""
    with _tab(browser, served, **PHONE) as result:
        yield result


def _ready(tab: Tab, prefix: str) -> None:
    tab.page.wait_for_selector(f"body[data-{prefix}-ready]", state="attached", timeout=READY_MS)


def _attr(tab: Tab, name: str) -> str | None:
    return tab.page.get_attribute("body", f"data-{name}")


def _errors(tab: Tab) -> list[str]:
    """Console errors other than requests the test left without an answer on purpose."""
    return [e for e in tab.errors if not any(n in e for n in _NO_ANSWER)]


def _scroll_to(tab: Tab, element_id: str) -> None:
    """Scroll a section to the top of the screen (under the phone page's header)."""
    tab.page.evaluate("id => document.getElementById(id).scrollIntoView()", element_id)


def _tap(tab: Tab, selector: str) -> None:
    tab.page.locator(selector).tap()


# -- the phone page ---------------------------------------------------------------------------
def test_phone_page_keeps_work_offline_and_the_server_holds_each_action_once(
    phone: Tab, served: Served, worker: Worker
):
    page = phone.page
    page.goto(f"{served.base}/m?access_token={worker.token}")  # /m is the folder /m/
    _ready(phone, "phone")
    page.wait_for_selector(
        "body[data-phone-route-from='phone']", state="attached", timeout=READY_MS
    )
    assert page.url == f"{served.base}/m/"  # the token is kept on the phone, not in the URL
    # Its own service worker controls the page once it has kept the page's files.
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=READY_MS)
    assert _attr(phone, "phone-user") == "phone-test"
    open_here = served.api(
        "GET", f"/api/v1/incidents?grid={worker.grid}&status=dispatched&status=in_progress"
        "&status=reported",
    )["total"]  # fmt: skip
    assert int(_attr(phone, "phone-incidents")) == open_here >= 2
    route = served.api("GET", f"/api/v1/campaigns/{worker.campaign}/route?round=1&grid="
                       f"{worker.grid}&lon=117.8&lat=30.93")  # fmt: skip
    assert int(_attr(phone, "phone-stops")) == route["buildings"] > 3
    _scroll_to(phone, "gp-visits")
    _shot(phone, "phone")

    # In a stairwell: two visits (a tap on the building, a tap on the outcome) and a start.
    phone.page.context.set_offline(True)
    page.wait_for_selector("body[data-phone-online='0']", state="attached")
    first = page.locator(".gp-stop").nth(0).get_attribute("data-code")
    _tap(phone, ".gp-stop >> nth=0")
    assert page.locator("#gp-sheet").is_visible()
    _shot(phone, "phone-sheet")
    _tap(phone, ".gp-outcome-visited")
    second = page.locator(".gp-stop").nth(1).get_attribute("data-code")
    _tap(phone, ".gp-stop >> nth=1")
    _tap(phone, ".gp-outcome-no_one_home")
    ref = page.locator(".gp-incident:has(.gp-act[data-action='start'])").first.get_attribute(
        "data-ref"
    )
    _tap(phone, f".gp-incident[data-ref='{ref}'] .gp-act")
    page.wait_for_selector("body[data-phone-outbox='3']", state="attached")
    assert page.locator("#gp-outbox .gp-outbox-item").count() == 3
    assert "待发送 to send 3" in page.inner_text("#gp-outbox-badge")
    # The started incident offers its next step already; the visited building says it waits.
    assert page.locator(f".gp-incident[data-ref='{ref}'] .gp-act[data-action='report']").count()
    assert "待发送" in page.inner_text(f".gp-stop[data-code='{first}']")

    # The page opens again without a connection, with what waits still waiting.
    page.reload()
    _ready(phone, "phone")
    assert _attr(phone, "phone-outbox") == "3"
    assert int(_attr(phone, "phone-stops")) == route["buildings"]
    queued = page.evaluate("GeoMap.phonePage.items")
    assert [q["kind"] for q in queued] == ["visit", "visit", "incident"]
    assert len({q["key"] for q in queued}) == 3  # one key each, made when it was queued
    page.evaluate("window.scrollTo(0, 0)")
    _shot(phone, "phone-offline")

    # The connection comes back, but the answer to the first visit is lost on the way: the
    # server stored it, the phone never heard, so it sends it again with the same key.
    lost: list[int] = []

    def lose_first_answer(r: Any) -> None:
        if r.request.method == "POST" and not lost:
            lost.append(r.fetch().status)
            r.abort()
        else:
            r.continue_()

    page.route("**/api/v1/visits", lose_first_answer)
    phone.page.context.set_offline(False)
    page.wait_for_selector("body[data-phone-outbox='0']", state="attached", timeout=SYNC_MS)
    assert lost == [201]

    keys = [q["key"] for q in queued]
    stored = served.rows(
        "SELECT building_code, outcome, idempotency_key FROM campaign_visits "
        "WHERE campaign_id = :c ORDER BY id",
        c=worker.campaign,
    )
    assert [(v["building_code"], v["outcome"]) for v in stored] == [
        (first, "visited"),
        (second, "no_one_home"),
    ]
    assert [v["idempotency_key"] for v in stored] == keys[:2]
    starts = served.rows(
        "SELECT e.idempotency_key FROM incident_events e JOIN incidents i "
        "ON i.id = e.incident_id WHERE i.ref = :r AND e.action = 'start'",
        r=ref,
    )
    assert [s["idempotency_key"] for s in starts] == [keys[2]]

    # Each queued action sent twice more with its key: answered, never applied again.
    for q in queued:
        for _ in range(2):
            status, replayed, answer = worker.call(
                served, q["method"], q["path"], q["body"], q["key"]
            )
            assert (status, replayed) == ((201 if q["kind"] == "visit" else 200), "true")
            assert answer.get("building", answer.get("ref")) == q.get("building", q.get("ref"))
    assert len(served.rows("SELECT id FROM campaign_visits WHERE campaign_id = :c",
                           c=worker.campaign)) == 2  # fmt: skip
    assert len(served.rows("SELECT e.id FROM incident_events e JOIN incidents i ON "
                           "i.id = e.incident_id WHERE i.ref = :r AND e.action = 'start'",
                           r=ref)) == 1  # fmt: skip
    assert served.api("GET", f"/api/v1/incidents/{ref}")["status"] == "in_progress"
    progress = served.api("GET", f"/api/v1/campaigns/{worker.campaign}/progress?round=1")
    assert progress["city"]["buildings_done"] == 1 and progress["city"]["no_one_home"] == 1

    # Read again after sending: the visited building has left the list, the other stays.
    page.wait_for_function(
        f"!document.querySelector(\".gp-stop[data-code='{first}']\")", timeout=READY_MS
    )
    page.locator(f".gp-stop[data-code='{second}']", has_text="上次无人").wait_for()
    assert _errors(phone) == [] and phone.outside == []


def test_phone_page_reports_work_done_and_finds_buildings(
    phone: Tab, served: Served, worker: Worker
):
    page = phone.page
    page.goto(f"{served.base}/m/?access_token={worker.token}")
    _ready(phone, "phone")
    ref = worker.incidents[-1]
    sent = 0
    if served.api("GET", f"/api/v1/incidents/{ref}")["status"] == "dispatched":
        _tap(phone, f".gp-incident[data-ref='{ref}'] .gp-act[data-action='start']")
        sent += 1
    # Online, the start goes at once and the next step shows before it is even sent.
    _tap(phone, f".gp-incident[data-ref='{ref}'] .gp-act[data-action='report']")
    page.locator(f".gp-incident[data-ref='{ref}'] textarea").fill("垃圾已清运")
    _tap(phone, f".gp-incident[data-ref='{ref}'] .gp-confirm")
    page.wait_for_selector(f"body[data-phone-sent='{sent + 1}']", state="attached", timeout=SYNC_MS)
    assert _attr(phone, "phone-outbox") == "0"
    done = served.api("GET", f"/api/v1/incidents/{ref}")
    assert done["status"] == "reported"
    assert [e["note"] for e in done["events"] if e["action"] == "report"] == ["垃圾已清运"]
    # Reported: awaiting verification, no more steps for the worker.
    page.wait_for_function(
        f"!document.querySelector(\".gp-incident[data-ref='{ref}'] .gp-act\")", timeout=READY_MS
    )

    # The building search: a building of the grid by its estate's name opens its outcomes.
    name = served.rows(
        "SELECT b.name FROM buildings b JOIN grids g ON ST_Covers(g.geom, b.geom) "
        "WHERE g.code = :g AND b.name IS NOT NULL ORDER BY b.code LIMIT 1",
        g=worker.grid,
    )[0]["name"]
    page.fill("#gp-q", name)
    page.locator("#gp-search-form button").tap()
    page.wait_for_selector("body[data-phone-found]", state="attached")
    assert name in page.inner_text("#gp-found")
    page.locator("#gp-found .gp-stop:not([disabled])").first.tap()
    assert page.locator("#gp-sheet").is_visible() and name in page.inner_text("#gp-sheet-title")
    _tap(phone, "#gp-sheet-cancel")
    assert not page.locator("#gp-sheet").is_visible()

    # A follow-up with a category: one tap records the visit, and the incident follows it
    # (queued once the server holds the visit), routed to the building's grid.
    page.locator("#gp-found .gp-stop:not([disabled])").first.tap()
    page.select_option("#gp-follow-category", "exposed_rubbish")
    _tap(phone, ".gp-outcome-follow_up")
    page.wait_for_selector(f"body[data-phone-sent='{sent + 3}']", state="attached", timeout=SYNC_MS)
    followed = served.rows(
        "SELECT v.incident_ref, i.category, i.grid_code FROM campaign_visits v "
        "JOIN incidents i ON i.ref = v.incident_ref "
        "WHERE v.campaign_id = :c AND v.outcome = 'follow_up'",
        c=worker.campaign,
    )
    assert [(f["category"], f["grid_code"]) for f in followed] == [("exposed_rubbish", worker.grid)]

    # An action the server refuses (a 4xx) is not sent again: it stays, with the server's
    # message, until the worker discards it.
    refusal = "at 2099-01-01T00:00:00+08:00 is in the future"
    page.route(
        "**/api/v1/visits",
        lambda r: r.fulfill(
            status=422,
            headers={"Content-Type": "application/json"},
            body=json.dumps({"error": "invalid_input", "message": refusal}),
        ),
    )
    page.locator("#gp-found .gp-stop:not([disabled])").first.tap()
    _tap(phone, ".gp-outcome-refused")
    page.wait_for_selector(".gp-outbox-item[data-state='failed']", timeout=SYNC_MS)
    assert refusal in page.inner_text("#gp-outbox")
    assert "失败 failed 1" in page.inner_text("#gp-outbox-badge")
    _tap(phone, "#gp-outbox [data-discard]")
    page.wait_for_selector("body[data-phone-outbox='0']", state="attached")
    assert page.locator("#gp-outbox").is_hidden()
    # Tap targets a thumb can hit: every button at least 40 px high, nothing wider than the
    # phone.
    small = page.evaluate(
        "[...document.querySelectorAll('button')].filter(b => b.offsetParent)"
        ".map(b => b.getBoundingClientRect()).filter(r => r.height < 40).length"
    )
    assert small == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert [e for e in _errors(phone) if "422" not in e] == [] and phone.outside == []


# -- the residents' grid notice --------------------------------------------------------------
def _notice(served: Served, **query: str) -> dict[str, Any]:
    url = f"{served.base}/api/v1/public/grid?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=30) as answer:
        return dict(json.load(answer))


def test_find_answers_by_address_and_by_location(phone: Tab, served: Served, worker: Worker):
    page = phone.page
    address, lon, lat = served.rows(
        "SELECT b.address, ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat FROM buildings b "
        "JOIN grids g ON ST_Covers(g.geom, b.geom) WHERE g.code = :g ORDER BY b.code LIMIT 1",
        g=worker.grid,
    )[0].values()
    expected = _notice(served, address=address)
    page.goto(f"{served.base}/find")
    _ready(phone, "find")
    page.fill("#gp-address", address)
    _tap(phone, "#gp-search")
    page.wait_for_selector("body[data-find-map]", state="attached", timeout=READY_MS)
    assert _attr(phone, "find-result") == expected["grid"]["code"] == worker.grid
    shown = page.inner_text("#gp-result")
    assert expected["grid"]["name"] in shown and expected["community"]["name"] in shown
    assert expected["workers"] and all(w["name"] in shown for w in expected["workers"])
    assert "phone" not in expected["workers"][0]  # phones stay private unless published
    centre = expected["nearest_center"]
    assert centre["name"] in shown and f"{max(1, round(centre['walk_minutes']))} 分钟" in shown
    # The map draws the grid's outline and the centre (the public layers).
    assert _attr(phone, "find-map") == "grid,center"
    assert page.locator("#gp-map path.leaflet-interactive, #gp-map path").count() >= 2
    assert "/api/v1/incidents" in page.inner_text("#gp-report")
    _scroll_to(phone, "gp-result")
    _shot(phone, "find")

    # By location: the phone stands at a building of the same grid.
    phone.page.context.set_geolocation({"longitude": lon, "latitude": lat})
    page.fill("#gp-address", "")
    _tap(phone, "#gp-locate")
    page.wait_for_selector("body[data-find-done='2']", state="attached", timeout=READY_MS)
    assert _attr(phone, "find-result") == worker.grid
    assert "您的位置" in page.inner_text("#gp-result")

    # A link with the address (a QR code on a notice board) opens on its answer.
    page.goto(f"{served.base}/find?" + urllib.parse.urlencode({"address": address}))
    page.wait_for_selector("body[data-find-result]", state="attached", timeout=READY_MS)
    assert _attr(phone, "find-result") == worker.grid
    assert _errors(phone) == [] and all("tile.openstreetmap.org" in u for u in phone.outside)


def test_find_says_what_to_do_on_no_match_too_many_lookups_and_no_connection(
    phone: Tab, served: Served
):
    page = phone.page
    page.goto(f"{served.base}/find")
    _ready(phone, "find")

    page.fill("#gp-address", "不存在路9999号")
    _tap(phone, "#gp-search")
    page.wait_for_selector("body[data-find-error='404']", state="attached", timeout=READY_MS)
    assert "没有找到对应的网格" in page.inner_text("#gp-message")
    assert page.locator("#gp-result").is_hidden()

    # The service's limit per address answers 429 with Retry-After: the page counts down.
    def too_many(r: Any) -> None:
        r.fulfill(
            status=429,
            headers={"Retry-After": "17", "Content-Type": "application/json"},
            body=json.dumps({"error": "too_many_requests", "message": "30 requests a minute"}),
        )

    page.route("**/api/v1/public/grid?*", too_many)
    page.fill("#gp-address", "皖江街1号")
    _tap(phone, "#gp-search")
    page.wait_for_selector("body[data-find-error='429']", state="attached", timeout=READY_MS)
    assert re.search(r"请在 1[67] 秒后重试", page.inner_text("#gp-message"))
    assert page.locator("#gp-search").is_disabled() and page.locator("#gp-locate").is_disabled()
    page.unroute("**/api/v1/public/grid?*")

    # No connection at all.
    page.evaluate("GeoMap.findPage.wait && clearInterval(GeoMap.findPage.wait)")
    page.evaluate("GeoMap.findPage.wait = null; GeoMap.findPage.busy(false)")
    phone.page.context.set_offline(True)
    _tap(phone, "#gp-search")
    page.wait_for_selector("body[data-find-error='0']", state="attached", timeout=READY_MS)
    assert "网络连接失败" in page.inner_text("#gp-message")
    phone.page.context.set_offline(False)
    assert [e for e in _errors(phone) if "404" not in e and "429" not in e] == []


# -- every file the pages name is the service's own ------------------------------------------
_NAMED = re.compile(r'(?:src|href)="([^"]+)"')


def test_pages_manifest_and_service_worker_name_only_files_the_service_serves(
    served: Served, settings: Settings, worker: Worker
):
    with TestClient(create_app(settings, engine=served.engine), headers={}) as client:
        moved = client.get("/m?access_token=x&grid=G1", follow_redirects=False)
        assert (moved.status_code, moved.headers["location"]) == (307, "/m/?access_token=x&grid=G1")
        named: set[str] = set()
        for path in ("/find", "/m/"):
            page = client.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            named |= {n for n in _NAMED.findall(page.text) if not n.startswith("#")}
        manifest = client.get("/m/manifest.webmanifest")
        assert manifest.headers["content-type"].startswith("application/manifest+json")
        app = manifest.json()
        assert (app["start_url"], app["scope"], app["display"]) == ("/m/", "/m/", "standalone")
        assert {"192x192", "512x512"} <= {i["sizes"] for i in app["icons"]}
        named |= {i["src"] for i in app["icons"]} | {app["start_url"]}
        worker_js = client.get("/m/sw.js")
        assert worker_js.headers["content-type"].startswith("text/javascript")
        shell = json.loads(re.match(r"var SHELL = (\{.*?\});\n", worker_js.text).group(1))
        named |= set(shell["files"])
        assert all(n.startswith("/") and not n.startswith("//") for n in named), named
        for path in sorted(named):
            answer = client.get(path)
            assert answer.status_code == 200, path
            if path.endswith(".png"):
                assert answer.content[:8] == b"\x89PNG\r\n\x1a\n", path
        # Who the phone page's token names; without one, a 401 that says how to sign in.
        anonymous = client.get("/m/session")
        assert anonymous.status_code == 401 and "?access_token=" in anonymous.json()["message"]
        me = client.get("/m/session", headers={"Authorization": f"Bearer {worker.token}"}).json()
        assert (me["name"], me["role"], me["grids"]) == ("phone-test", "worker", [worker.grid])
        assert (me["actions"], me["records_visits"]) == (["start", "report"], True)
