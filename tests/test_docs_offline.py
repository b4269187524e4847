"""The API docs without internet: /docs (Swagger UI) and /redoc load their scripts, styles and
icon from this service, never from a CDN. Plain HTTP checks of the pages and their assets, then
Debian's headless Chromium (driven by Playwright) against a real uvicorn with every request off
this machine refused: both pages must list the operations. /favicon.ico is served, so neither the
docs nor the map pages leave an unmatched 404 in the request log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from geo_service.api.app import create_app
from geo_service.auth.service import add_user
from geo_service.settings import Settings
from tests.conftest import ROOT, free_port
from tests.test_map_browser import _chromium, _wait_up, playwright_api

BIN = Path(sys.executable).parent
# A name that is not localhost, mapped to 127.0.0.1 inside the browser: Swagger UI behaves
# differently on local addresses (it skips its online validator), and a deployment is not local.
HOST = "docs.geo-service.test"
READY_MS = 20_000
REDOC_ATTRIBUTION_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
ASSET_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".ico": "image/png",
}


class _AssetLinks(HTMLParser):
    """Every URL a page loads by itself: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def _asset_urls(html: str) -> list[str]:
    parser = _AssetLinks()
    parser.feed(html)
    return parser.urls


# -- plain HTTP ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(settings: Settings, db_url: str) -> Iterator[TestClient]:
    # The docs need no token (headers={}); the app starts on the tests' database, never on
    # the user's own (its start migrates the database it is given).
    test_db = settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": db_url})}
    )
    with TestClient(create_app(test_db), headers={}) as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_same_origin_assets_and_need_no_token(client: TestClient, page: str):
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = _asset_urls(response.text)
    assert len(urls) >= 2, urls  # a script and the icon at least
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url}"
        asset = client.get(url)
        assert asset.status_code == 200, url
        expected = ASSET_TYPES[Path(url).suffix]
        assert asset.headers["content-type"].startswith(expected), (url, asset.headers)
        assert "cache-control" in asset.headers, url
    # Nothing else off-machine either (Google fonts, a validator, a CDN named in the page).
    assert not re.search(r"https?://", response.text), response.text
    assert client.get("/openapi.json").status_code == 200


def test_swagger_ui_oauth2_redirect_page_is_served(client: TestClient):
    response = client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "oauth2" in response.text.lower()


def test_favicon_is_an_image_cached_for_long(client: TestClient):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    max_age = re.search(r"max-age=(\d+)", response.headers["cache-control"])
    assert max_age and int(max_age.group(1)) >= 7 * 86400, response.headers["cache-control"]


def test_a_missing_docs_asset_is_a_404_naming_it(client: TestClient):
    for path in ("/docs/assets/nope.js", "/docs/assets/%2e%2e/__init__.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "no docs file" in response.json()["message"], response.text
    assert "nope.js" in client.get("/docs/assets/nope.js").json()["message"]


# -- a real server and a real browser ------------------------------------------------------------
@dataclass
class Server:
    """A `geo-service serve` on the test database, its request log in a file outside the tree."""

    base: str
    token: str
    log: Path

    def unmatched(self) -> list[str]:
        """Request-log lines of answers no route matched."""
        return [line for line in self.log.read_text().splitlines() if " unmatched " in line]


@pytest.fixture(scope="module")
def server(
    engine: Engine, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    port = free_port()
    log = tmp_path_factory.mktemp("docs-server") / "server.log"
    env = {
        **os.environ,
        "GEO_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "GEO_WORKERS": "1",
        "GEO_LOG_JSON": "false",
        "GEO_LOG_LEVEL": "INFO",  # the request log: one line per answer, with its route
    }
    token = add_user(engine, settings, "docs-browser-test", "admin", expires_days=1).token
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(BIN / "geo-service"), "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=sink,
        )
    try:
        _wait_up(f"http://127.0.0.1:{port}/livez", process)
        yield Server(f"http://{HOST}:{port}", token, log)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", f"--host-resolver-rules=MAP {HOST} 127.0.0.1"],
        )
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """A page, what it tried to fetch off this machine (all refused) and its errors."""

    page: Any
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: Any, server: Server) -> Iterator[Tab]:
    context = browser.new_context()
    page = context.new_page()
    result = Tab(page)

    def route(r: Any) -> None:
        if r.request.url.startswith((server.base + "/", "data:", "blob:")):
            r.continue_()
        else:
            result.outside.append(r.request.url)
            r.abort()

    def answered(response: Any) -> None:
        if response.status >= 400:
            result.missing.append(f"{response.status} {response.url}")

    def console(msg: Any) -> None:
        if msg.type == "error":
            result.errors.append(f"{msg.text} ({(msg.location or {}).get('url', '')})")

    context.route("**/*", route)
    page.on("response", answered)
    page.on("console", console)
    page.on("pageerror", lambda exc: result.errors.append(f"page error: {exc}"))
    yield result
    context.close()


def _operations(server: Server) -> int:
    with urllib.request.urlopen(server.base.replace(HOST, "127.0.0.1") + "/openapi.json") as r:
        paths = json.load(r)["paths"]
    return sum(len(methods) for methods in paths.values())


def test_swagger_ui_lists_every_operation_offline(tab: Tab, server: Server):
    tab.page.goto(server.base + "/docs")
    tab.page.wait_for_selector(".opblock", timeout=READY_MS)
    tab.page.wait_for_load_state("networkidle")
    assert tab.outside == [], "needed off-machine: " + ", ".join(tab.outside)
    blocks = tab.page.locator(".opblock").count()
    assert blocks > 20 and blocks == _operations(server)
    locate = tab.page.locator(".opblock-summary-path", has_text=re.compile(r"^/api/v1/locate$"))
    assert locate.first.is_visible()
    assert "geo-service" in tab.page.inner_text(".info .title")
    assert tab.missing == [] and tab.errors == []
    assert server.unmatched() == []


def test_redoc_menu_lists_the_operations_offline(tab: Tab, server: Server):
    tab.page.goto(server.base + "/redoc")
    menu = "li[data-item-id*='operation/']"
    tab.page.wait_for_selector(menu, state="attached", timeout=READY_MS)
    tab.page.wait_for_load_state("networkidle")
    # ReDoc's "API docs by Redocly" footer always asks its CDN for a logo; refused, the image
    # removes itself (its onError). Nothing the page needs comes from off the machine.
    needed = [url for url in tab.outside if url != REDOC_ATTRIBUTION_LOGO]
    assert needed == [], "needed off-machine: " + ", ".join(needed)
    # (the image goes once ReDoc has handled the refusal: wait for it, it is asynchronous)
    tab.page.wait_for_selector(f"img[src='{REDOC_ATTRIBUTION_LOGO}']", state="detached")
    assert tab.page.locator(menu).count() >= _operations(server) > 20
    assert tab.page.get_by_text("/api/v1/locate", exact=True).count() >= 1
    errors = [e for e in tab.errors if REDOC_ATTRIBUTION_LOGO not in e]
    assert tab.missing == [] and errors == []
    assert server.unmatched() == []


def test_the_icon_browsers_ask_for_is_served_and_logged_as_its_route(tab: Tab, server: Server):
    tab.page.goto(f"{server.base}/map/worker?access_token={server.token}")
    tab.page.wait_for_load_state("networkidle")
    # What a browser asks for on a page that names no icon (headless Chromium skips it).
    with urllib.request.urlopen(server.base.replace(HOST, "127.0.0.1") + "/favicon.ico") as r:
        assert r.status == 200 and r.headers["content-type"] == "image/png"
    deadline = time.monotonic() + 5
    while "/favicon.ico" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "GET /favicon.ico 200" in server.log.read_text()
    assert server.unmatched() == []
    assert tab.missing == []  # (the base map itself comes from OpenStreetMap's tile servers)
