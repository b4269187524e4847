"""Basemaps of the web map (pure): tile URLs, attribution, and the coordinate system each is in.

Tianditu draws in CGCS2000, which differs from WGS-84 by centimetres: the overlays go on it
unshifted. Amap (Gaode) draws in GCJ-02, offset 300-600 m from WGS-84 in Chinese cities: the
page shifts every overlay into GCJ-02 before drawing it (web_map/static/geomap.js).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from geo_service.errors import InvalidInput

BASEMAPS = ("osm", "tianditu", "amap", "none")
MapCrs = Literal["wgs84", "gcj02"]


@dataclass(frozen=True)
class TileSource:
    """One XYZ tile layer."""

    url: str
    attribution: str
    subdomains: str = "abc"
    max_zoom: int = 19


@dataclass(frozen=True)
class Basemap:
    """A basemap: its tiles (none for `none`), optional label tiles, and its coordinate system."""

    id: str
    title_zh: str
    title_en: str
    crs: MapCrs = "wgs84"
    tiles: TileSource | None = None
    labels: TileSource | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        """The bilingual name shown in the layer switcher."""
        return f"{self.title_zh} {self.title_en}"


_TIANDITU = (
    "https://t{s}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
    "&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles"
    "&TILEMATRIX={{z}}&TILEROW={{y}}&TILECOL={{x}}&tk={key}"
)


def basemap(name: str, tianditu_key: str | None = None) -> Basemap:
    """The basemap called `name` (osm, tianditu, amap, none); a message naming a bad one."""
    if name == "osm":
        return Basemap(
            "osm",
            "开放街图",
            "OpenStreetMap",
            tiles=TileSource(
                "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                "&copy; OpenStreetMap contributors",
                subdomains="",
            ),
        )
    if name == "tianditu":
        if not tianditu_key:
            raise InvalidInput(
                "the tianditu basemap needs a key: set GEO_MAP_TIANDITU_KEY (a Tianditu tk)"
            )
        attribution = "&copy; 天地图 Tianditu"
        return Basemap(
            "tianditu",
            "天地图",
            "Tianditu",
            tiles=TileSource(
                _TIANDITU.format(s="{s}", layer="vec", key=tianditu_key),
                attribution,
                subdomains="01234567",
                max_zoom=18,
            ),
            labels=TileSource(
                _TIANDITU.format(s="{s}", layer="cva", key=tianditu_key),
                attribution,
                subdomains="01234567",
                max_zoom=18,
            ),
        )
    if name == "amap":
        return Basemap(
            "amap",
            "高德地图",
            "Amap",
            crs="gcj02",
            tiles=TileSource(
                "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1"
                "&style=8&x={x}&y={y}&z={z}",
                "&copy; 高德地图 AutoNavi",
                subdomains="1234",
                max_zoom=18,
            ),
            notes=["overlays shifted WGS-84 → GCJ-02 to line up with the Amap tiles"],
        )
    if name == "none":
        return Basemap("none", "无底图", "No basemap")
    raise InvalidInput(f"unknown basemap {name!r}; expected one of: {', '.join(BASEMAPS)}")
