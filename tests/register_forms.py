"""A second building register, written in forms the synthetic city never produces, over the
demo city's grids and streets, and the queries residents would type for it.

The demo register comes from the same generator as the demo city (`road + door + estate +
building栋`); a geocoder tuned on it alone can look perfect. This one has: `号楼`, `幢` and
`座` buildings (letters too), buildings with a unit, lanes (`XX路12弄3号`), rural addresses
(`XX村三组12号`), estates without a road, buildings whose address is only a road and a door,
and estate names holding words the parser knows (书香门第, 东门花园, 五好家园), one of them on
several roads with the same building numbers. Deterministic for a seed.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import opencc
import shapely
from shapely.strtree import STRtree

from tests.geocode_cases import FULL_WIDTH, Case, chinese

DEMO = Path(__file__).resolve().parent.parent / "shapefiles" / "demo"
ADMIN = "安徽省铜陵市铜官区"
FORMS = (
    "haolou", "zhuang", "zuo", "unit", "lane", "rural", "estate_no_road", "door_only",
)  # fmt: skip
ESTATES = (
    "书香门第", "东门花园", "五好家园", "金色年华", "一品天下", "学府华庭", "馨园", "翠微苑",
    "新风小区", "港湾花园", "天和家园", "幸福里",
)  # fmt: skip
SHARED_ESTATE = "书香门第"  # on several roads, each with the same building numbers
VILLAGES = ("朱村", "杨家村", "新桥村", "大院村")
GROUPS = "一二三四五六七八"


@dataclass(frozen=True, slots=True)
class Building:
    """One building of the register: code, address, form, households, point."""

    code: str
    address: str
    form: str
    households: int
    point: shapely.Point


def register(seed: int = 11, per_grid: int = 10) -> list[Building]:
    """The register: `per_grid` buildings in each demo grid, forms in turn."""
    rng = random.Random(seed)
    grids = gpd.read_file(DEMO / "grids.shp").sort_values("code")
    roads = gpd.read_file(DEMO / "roads.shp").dropna(subset=["name"])
    tree = STRtree(list(roads.geometry))
    names = list(roads["name"])
    used: set[str] = set()
    doors: Counter[str] = Counter()
    out: list[Building] = []
    shared_roads: list[str] = []
    for g, shape in enumerate(grids.geometry):
        for k in range(per_grid):
            point = _inside(shape, rng)
            road = names[int(tree.nearest(point))]
            form = FORMS[(g * per_grid + k) % len(FORMS)]
            doors[road] += rng.randint(1, 6)
            door = doors[road]
            estate = ESTATES[(g + k) % len(ESTATES)]
            n = rng.randint(1, 30)
            if form == "haolou":
                address = f"{road}{door}号{estate}{n}号楼"
            elif form == "zhuang":
                address = f"{road}{door}号{estate}{n}幢"
            elif form == "zuo":
                address = f"{road}{door}号{estate}{rng.choice('ABCDEF')}座"
            elif form == "unit":
                address = f"{road}{door}号{estate}{n}栋{rng.randint(1, 4)}单元"
            elif form == "lane":
                address = f"{road}{rng.randint(1, 40)}弄{n}号"
            elif form == "rural":
                address = f"{rng.choice(VILLAGES)}{rng.choice(GROUPS)}组{rng.randint(1, 60)}号"
            elif form == "estate_no_road":
                address = f"{road[:2]}{estate}{n}栋"  # an estate named for its area, no road
            else:
                address = f"{road}{door}号"
            if form in ("haolou", "zhuang") and estate == SHARED_ESTATE:
                shared_roads.append(road)
            if address in used:
                continue
            used.add(address)
            code = f"R{len(out) + 1:05d}"
            full = ADMIN + address if rng.random() < 0.5 else address
            out.append(Building(code, full, form, rng.randint(8, 120), point))
    # The same estate name on three more roads, each with a building 5 (the trap of the issue).
    for i, road in enumerate(sorted(set(names))[:3]):
        point = _inside(grids.geometry.iloc[i * 7], rng)
        code = f"R{len(out) + 1:05d}"
        out.append(Building(code, f"{road}{200 + i}号{SHARED_ESTATE}5号楼", "shared", 40, point))
    return out


def _inside(shape: shapely.Geometry, rng: random.Random) -> shapely.Point:
    x0, y0, x1, y1 = shape.bounds
    while True:
        p = shapely.Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        if shape.contains(p):
            return p


def write(buildings: list[Building], folder: Path) -> Path:
    """The register as a GeoPackage in the buildings import schema."""
    frame = gpd.GeoDataFrame(
        {
            "code": [b.code for b in buildings],
            "address": [b.address for b in buildings],
            "households": [b.households for b in buildings],
        },
        geometry=[b.point for b in buildings],
        crs="EPSG:4326",
    )
    path = folder / "register_forms.gpkg"
    frame.to_file(path)
    return path


def queries(buildings: list[Building]) -> list[Case]:
    """Each address and its usual rewrites (variant = form:rewrite). A text that several
    buildings share names none of them for sure: its truth is None (answered well when no
    building comes back confident)."""
    s2t = opencc.OpenCC("s2t").convert
    by_text: dict[str, set[str]] = {}
    made: list[tuple[str, str, str]] = []
    for b in buildings:
        bare = b.address.removeprefix(ADMIN)
        rewrites = {
            "as_registered": b.address,
            "no_admin": bare,
            "with_admin": ADMIN + bare,
            "full_width": bare.translate(FULL_WIDTH),
            "traditional": s2t(bare),
            "spaced": re.sub(r"([0-9]+)", r" \1 ", bare).strip(),
            "chinese_numerals": _numerals_spoken(bare),
            "dong": bare.replace("号楼", "栋").replace("幢", "栋").replace("座", "栋"),
        }
        for name, text in rewrites.items():
            made.append((text, b.code, f"{b.form}:{name}"))
            by_text.setdefault(text, set()).add(b.code)
    # the shared estate without its road: several places, never a sure answer
    made += [(f"{SHARED_ESTATE}5座", "", "shared:estate_only"),
             (f"铜官区{SHARED_ESTATE}5号楼", "", "shared:estate_only")]  # fmt: skip
    return [
        Case(text, code if code and len(by_text.get(text, {code})) == 1 else None, variant)
        for text, code, variant in made
    ]


def _numerals_spoken(address: str) -> str:
    """Door and building numbers as people say them (18号 -> 十八号, 3幢 -> 三幢)."""
    return re.sub(r"(\d+)(?=号|幢|栋|号楼|单元|弄)", lambda m: chinese(int(m.group(1))), address)
