"""The static files of the web map, and their inlining into a self-contained page (pure)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".gif": "image/gif"}


def static_path(relative: str) -> Path:
    """A file under web_map/static; ValueError for a path that leaves it."""
    path = (STATIC_DIR / relative).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise ValueError(f"no static file {relative!r}")
    return path


def _css_with_data_urls(css: str, folder: Path) -> str:
    """CSS whose relative url(...) images are embedded as data: URLs."""

    def embed(match: re.Match[str]) -> str:
        ref = match.group(2)
        if ref.startswith(("data:", "http:", "https:", "#")):
            return match.group(0)
        image = (folder / ref).resolve()
        if not image.is_relative_to(STATIC_DIR) or not image.is_file():
            return match.group(0)
        mime = _MIME.get(image.suffix.lower(), "application/octet-stream")
        data = base64.b64encode(image.read_bytes()).decode("ascii")
        return f"url({match.group(1)}data:{mime};base64,{data}{match.group(1)})"

    return re.sub(r"url\((['\"]?)([^'\")]+)\1\)", embed, css)


def inline(html: str, assets: str) -> str:
    """The page with every <script src> and stylesheet <link> under `assets` replaced by the
    file's content (CSS images as data: URLs), so that it needs no server and no CDN."""
    prefix = re.escape(assets.rstrip("/") + "/")

    def script(match: re.Match[str]) -> str:
        text = static_path(match.group(1)).read_text(encoding="utf-8")
        if "</script" in text.lower():
            raise ValueError(f"{match.group(1)} holds '</script': cannot be inlined")
        return f"<script>{text}</script>"

    def style(match: re.Match[str]) -> str:
        path = static_path(match.group(1))
        css = _css_with_data_urls(path.read_text(encoding="utf-8"), path.parent)
        return f"<style>{css}</style>"

    html = re.sub(rf'<script src="{prefix}([^"]+)"></script>', script, html)
    return re.sub(rf'<link rel="stylesheet" href="{prefix}([^"]+)"\s*/?>', style, html)
