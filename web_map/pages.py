"""The pages that are not map views (pure: options in, HTML out): the residents' grid notice
`/find` (网格信息公示) and the grid worker's phone page `/m/`, with the phone page's web app
manifest and service worker.

Like the map views they read the API over HTTP like any client: the notice the anonymous
`GET /api/v1/public/grid` (and the public grids and centres layers for its small map); the
phone page the incident, campaign and building APIs with the worker's token. The phone page
is the same HTML for everyone (who is signed in comes from the API), so that its service
worker can keep it and its files for opening without a connection.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from typing import Any, Final

from web_map.assets import static_path
from web_map.basemaps import TileSource, basemap
from web_map.views import ASSETS, FAVICON, LEAFLET_CSS, LEAFLET_JS, script_json

FIND: Final = "/find"
PHONE: Final = "/m/"  # a folder: the service worker's scope, which /map/... must stay out of
MANIFEST: Final = PHONE + "manifest.webmanifest"
SERVICE_WORKER: Final = PHONE + "sw.js"
SESSION: Final = PHONE + "session"
# Icons of the installed phone page (PNG, under web_map/static), by size in pixels.
ICONS: Final = {192: "phone-192.png", 512: "phone-512.png"}
MASKABLE_ICON: Final = "phone-maskable-512.png"
THEME: Final = "#1f5fa8"
# The files each page loads, under the assets prefix, in order (stylesheets, then scripts).
FIND_FILES: Final = (LEAFLET_CSS, "pages.css", LEAFLET_JS, "geomap.js", "find.js")
PHONE_FILES: Final = ("pages.css", "geomap.js", "outbox.js", "phone.js")
# A queued action that got no answer is sent again after this many seconds, doubling up to
# the most; a 429 or 503 answer's Retry-After wins when it says longer.
RETRY_FIRST_S: Final = 1
RETRY_MAX_S: Final = 60


@dataclass(frozen=True)
class PageOptions:
    """What a page needs besides its own parameters."""

    basemap: str = "osm"
    tianditu_key: str | None = None
    assets: str = ASSETS  # URL prefix of web_map/static
    api: str = ""  # the API's base URL; "" = the server that served the page


def _tiles(source: TileSource | None) -> dict[str, Any] | None:
    if source is None:
        return None
    return {
        "url": source.url,
        "attribution": source.attribution,
        "subdomains": source.subdomains,
        "maxZoom": source.max_zoom,
    }


def _page(
    title: str,
    body_class: str,
    body: str,
    files: tuple[str, ...],
    start: str,
    config: dict[str, Any],
    assets: str,
    head: str = "",
) -> str:
    """An HTML page: its stylesheets and scripts from our own static files (no CDN), its
    markup, and the call that starts its script with its configuration."""
    links = "".join(
        f'<link rel="stylesheet" href="{escape(assets)}/{escape(f)}">'
        for f in files
        if f.endswith(".css")
    )
    scripts = "".join(
        f'<script src="{escape(assets)}/{escape(f)}"></script>' for f in files if f.endswith(".js")
    )
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">'
        f'<meta name="theme-color" content="{THEME}">'
        f"<title>{escape(title)} · geo-service</title>"
        f'<link rel="icon" href="{FAVICON}">{head}{links}</head>'
        f'<body class="gp {body_class}">{body}{scripts}'
        f"<script>{start}({script_json(config)});</script></body></html>"
    )


_FIND_BODY = """
<header class="gp-bar"><h1>网格信息公示 <small class="gm-en">Your grid</small></h1></header>
<main class="gp-main">
<p class="gp-lead">输入住址或使用当前位置，查看您所在的网格、社区、网格员和最近的邻里中心。
<span class="gm-en">Type your address or use your location: your grid, community, grid workers and
the nearest neighbourhood centre.</span></p>
<form id="gp-find-form" class="gp-card" role="search" autocomplete="on">
<label class="gp-label" for="gp-address">您的住址 <span class="gm-en">Your address</span></label>
<input id="gp-address" name="address" type="search" maxlength="200" enterkeyhint="search"
 placeholder="例如 皖江街1号3栋" autocomplete="street-address">
<div class="gp-buttons">
<button type="submit" class="gp-primary" id="gp-search">查询
 <span class="gm-en">Search</span></button>
<button type="button" id="gp-locate">使用我的位置
 <span class="gm-en">Use my location</span></button>
</div></form>
<div id="gp-message" class="gp-message" role="status" aria-live="polite" hidden></div>
<section id="gp-result" class="gp-card" hidden aria-live="polite"></section>
<div id="gp-map" class="gp-map" hidden></div>
<section id="gp-report" class="gp-card" hidden></section>
</main>
"""

_PHONE_BODY = """
<header class="gp-bar gp-bar-phone">
<h1>网格员工作台 <small class="gm-en">Grid worker</small></h1>
<div class="gp-status"><span id="gp-who">…</span>
<span id="gp-net" class="gp-net">…</span>
<button type="button" id="gp-outbox-badge" class="gp-badge" hidden></button></div>
<nav class="gp-nav"><a href="#gp-incidents">事件 <b id="gp-n-incidents"></b></a>
<a href="#gp-visits">走访 <b id="gp-n-stops"></b></a><a href="#gp-search">搜索</a></nav>
</header>
<main class="gp-main">
<div id="gp-message" class="gp-message" role="status" aria-live="polite" hidden></div>
<section id="gp-outbox" class="gp-card" hidden>
<h2>待发送 <small class="gm-en">Waiting to send</small></h2>
<ol id="gp-outbox-list" class="gp-list"></ol>
</section>
<section id="gp-incidents" class="gp-card">
<h2>我的事件 <small class="gm-en">Incidents of my grids</small></h2>
<div id="gp-incident-list" class="gp-list-wrap"><p class="gp-note">加载中… Loading…</p></div>
</section>
<section id="gp-visits" class="gp-card">
<h2>今日走访 <small class="gm-en">Visits due, in walking order</small></h2>
<div class="gp-row"><select id="gp-campaign" aria-label="走访任务 Campaign"></select>
<select id="gp-round" aria-label="轮次 Round"></select></div>
<p id="gp-route-note" class="gp-note"></p>
<ol id="gp-stops" class="gp-list gp-stops"></ol>
</section>
<section id="gp-search" class="gp-card">
<h2>楼栋搜索 <small class="gm-en">Find a building</small></h2>
<form id="gp-search-form" role="search"><div class="gp-row">
<input id="gp-q" type="search" maxlength="100" enterkeyhint="search"
 placeholder="地址、小区或楼号 e.g. 3栋">
<button type="submit" class="gp-primary">搜索 <span class="gm-en">Search</span></button>
</div></form>
<ol id="gp-found" class="gp-list"></ol>
</section>
</main>
<div id="gp-sheet" class="gp-sheet" hidden role="dialog" aria-modal="true"
 aria-labelledby="gp-sheet-title">
<div class="gp-sheet-card">
<h2 id="gp-sheet-title"></h2><p id="gp-sheet-sub" class="gp-note"></p>
<label class="gp-label" for="gp-households">入户数
 <span class="gm-en">Households reached</span></label>
<input id="gp-households" type="number" min="0" max="100000" inputmode="numeric">
<div id="gp-outcomes" class="gp-outcomes"></div>
<label class="gp-label" for="gp-follow-category">需跟进时上报事件
 <span class="gm-en">A follow-up becomes an incident of</span></label>
<select id="gp-follow-category"><option value="">不上报 Not reported</option></select>
<button type="button" id="gp-sheet-cancel" class="gp-cancel">取消
 <span class="gm-en">Cancel</span></button>
</div></div>
"""


def find_page(options: PageOptions) -> str:
    """The residents' grid notice: an address box and "use my location", the answer of the
    public notice API, and a small map of the grid."""
    base = basemap(options.basemap, options.tianditu_key)
    config = {
        "api": options.api,
        "notice": "/api/v1/public/grid",
        "grid": "/ogc/collections/grids/items/",
        "center": "/ogc/collections/centers/items/",
        "basemap": {
            "id": base.id,
            "crs": base.crs,
            "zh": base.title_zh,
            "en": base.title_en,
            "tiles": _tiles(base.tiles),
            "labels": _tiles(base.labels),
        },
    }
    return _page(
        "网格信息公示 Your grid",
        "gp-find",
        _FIND_BODY,
        FIND_FILES,
        "GeoMap.find",
        config,
        options.assets,
    )


def phone_page(options: PageOptions) -> str:
    """The grid worker's phone page: incidents of their grids, campaign visits due in walking
    order, a building search; actions queued on the phone and sent when there is a
    connection. The same HTML for everyone: who is signed in comes from the API."""
    config = {
        "api": options.api,
        "page": PHONE,
        "session": SESSION,
        "serviceWorker": SERVICE_WORKER,
        "workerMap": "/map/worker",
        "retry": {"firstS": RETRY_FIRST_S, "maxS": RETRY_MAX_S},
    }
    return _page(
        "网格员工作台 Grid worker",
        "gp-phone",
        _PHONE_BODY,
        PHONE_FILES,
        "GeoMap.phone",
        config,
        options.assets,
        head=f'<link rel="manifest" href="{MANIFEST}">'
        f'<link rel="apple-touch-icon" href="{escape(options.assets)}/{ICONS[192]}">',
    )


def manifest(options: PageOptions) -> dict[str, Any]:
    """The phone page's web app manifest: installable, opening standalone on the page."""
    icons = [
        {"src": f"{options.assets}/{path}", "sizes": f"{n}x{n}", "type": "image/png"}
        for n, path in ICONS.items()
    ]
    icons.append(
        {
            "src": f"{options.assets}/{MASKABLE_ICON}",
            "sizes": "512x512",
            "type": "image/png",
            "purpose": "maskable",
        }
    )
    return {
        "name": "网格员工作台 · geo-service",
        "short_name": "网格员",
        "description": "网格员的事件、走访与楼栋搜索，断网时也能记录 (grid worker: incidents, "
        "visits, building search; works with a bad connection)",
        "lang": "zh-CN",
        "start_url": PHONE,
        "scope": PHONE,
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#ffffff",
        "theme_color": THEME,
        "icons": icons,
    }


def shell_files(options: PageOptions) -> list[str]:
    """What the phone page needs to open without a connection: the page, its manifest, its
    scripts and stylesheet, its icons."""
    return [
        PHONE,
        MANIFEST,
        FAVICON,
        *(f"{options.assets}/{f}" for f in PHONE_FILES),
        *(f"{options.assets}/{p}" for p in (*ICONS.values(), MASKABLE_ICON)),
    ]


@lru_cache(maxsize=8)
def shell_version(options: PageOptions) -> str:
    """A digest of the phone page and its files: a new release makes the service worker fetch
    them again (and drop the old copies)."""
    digest = hashlib.sha256(phone_page(options).encode())
    digest.update(script_json(manifest(options)).encode())
    for name in (*PHONE_FILES, "sw.js", *ICONS.values(), MASKABLE_ICON):
        digest.update(static_path(name).read_bytes())
    return digest.hexdigest()[:16]


def service_worker(options: PageOptions) -> str:
    """The phone page's service worker (web_map/static/sw.js) with the files it keeps and
    their version."""
    shell = {"version": shell_version(options), "page": PHONE, "files": shell_files(options)}
    code = static_path("sw.js").read_text(encoding="utf-8")
    return f"var SHELL = {script_json(shell)};\n{code}"
