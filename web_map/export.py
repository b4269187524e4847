"""Static export: one self-contained HTML map (data embedded, Leaflet and the view's JS/CSS
inlined) that a planner can e-mail and open anywhere, offline included (basemap tiles aside).

The data comes from the API over HTTP: `collect` asks a `fetch` function for each path the
view reads (following OGC paging links), and the page's script answers its requests from
what was collected instead of the network.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from geo_service.api.errors import error_of_answer
from geo_service.errors import InvalidInput, Unavailable
from web_map.assets import inline
from web_map.views import ASSETS, SOURCES, MapOptions, View, build

Fetch = Callable[[str], Any]  # API path -> decoded JSON answer
EXPORTABLE: tuple[View, ...] = ("planner", "dispatcher")
_MAX_PAGES = 1000


def http_fetch(base_url: str, token: str | None = None, timeout_s: float = 120) -> Fetch:
    """GET from a running server (`base_url`, e.g. http://127.0.0.1:8000), with a bearer token."""
    root = base_url.rstrip("/")

    def fetch(path: str) -> Any:
        request = urllib.request.Request(root + path, headers={"Accept": "application/json"})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as exc:
            raise error_of_answer(exc.code, path, exc.read()) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable(f"cannot reach the API at {root}: {exc}") from exc

    return fetch


def _path_of(url: str) -> str:
    """A link's path and query (paging links are absolute)."""
    if "://" in url:
        url = "/" + url.split("://", 1)[1].split("/", 1)[1]
    return url


def collect(fetch: Fetch, paths: list[str]) -> dict[str, Any]:
    """Each path's answer; OGC item pages are followed to the end and merged into one."""
    data: dict[str, Any] = {}
    for path in paths:
        answer = fetch(path)
        if isinstance(answer, dict) and answer.get("type") == "FeatureCollection":
            features = list(answer.get("features") or [])
            pages = 1
            while (nxt := _next(answer)) is not None:
                pages += 1
                if pages > _MAX_PAGES:
                    raise InvalidInput(f"{path}: more than {_MAX_PAGES} pages")
                answer = fetch(_path_of(nxt))
                features.extend(answer.get("features") or [])
            answer = {"type": "FeatureCollection", "features": features}
        data[path] = answer
    return data


def _next(page: dict[str, Any]) -> str | None:
    for link in page.get("links") or []:
        if link.get("rel") == "next":
            return str(link["href"])
    return None


def export_html(
    view: str, fetch: Fetch, basemap: str = "osm", tianditu_key: str | None = None
) -> str:
    """The self-contained HTML of `view` with the data `fetch` answers today."""
    if view not in EXPORTABLE:
        raise InvalidInput(f"view {view!r} cannot be exported; exportable: {', '.join(EXPORTABLE)}")
    data = collect(fetch, list(SOURCES[view]().values()))
    options = MapOptions(basemap=basemap, tianditu_key=tianditu_key, assets=ASSETS, data=data)
    return inline(build(view, options).render(), ASSETS)
