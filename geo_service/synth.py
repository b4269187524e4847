"""Deterministic synthetic demo city at Tongling, Anhui: streets, river, railway, grids, buildings.

Everything is built in a metric CRS (UTM 50N by default) and returned in EPSG:4326. The same
seed gives equal frames and byte-identical files. Pure: no database, prints nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from geo_service.errors import InvalidInput

STORAGE_CRS = "EPSG:4326"
# The DBF header stores a "last update" date; pinning it keeps re-written files byte-identical.
DBF_DATE = "2024-01-01"
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


@dataclass(frozen=True)
class CityParams:
    """Size and shape of a synthetic city; every figure is a setting with a default."""

    nx: int  # lattice intersections west-east
    ny: int  # lattice intersections north-south
    spacing_m: float
    communities: int
    grids: int  # target; the lattice arithmetic decides the exact count
    buildings: int  # target; the realised count is close, not exact
    centers: int
    subdistricts: int = 2
    bridges: int = 2
    level_crossings: int = 2
    jitter_m: float = 3.0
    river_width_m: tuple[float, float] = (65.0, 95.0)
    rail_clearance_m: float = 15.0
    setback_m: float = 8.0
    building_gap_m: float = 3.0
    building_depth_m: tuple[float, float] = (12.0, 20.0)
    building_length_m: tuple[float, float] = (30.0, 60.0)
    max_tilt_deg: float = 5.0
    max_per_block: int = 4
    park_share: float = 0.05  # land blocks left without buildings (parks, schools)
    unserved_share: float = 0.3  # communities whose residents get no centre of their own
    district_code: str = "340705"
    address_prefix: str = "安徽省铜陵市铜官区"
    center_lon: float = 117.81
    center_lat: float = 30.93
    metric_crs: str = "EPSG:32650"


SCALES: dict[str, CityParams] = {
    "small": CityParams(
        nx=33,
        ny=33,
        spacing_m=80.0,
        communities=3,
        grids=60,
        buildings=3_000,
        centers=5,
        subdistricts=2,
        bridges=2,
        level_crossings=2,
    ),
    "city": CityParams(
        nx=225,
        ny=225,
        spacing_m=80.0,
        communities=56,
        grids=3_900,
        buildings=120_000,
        centers=61,
        subdistricts=8,
        bridges=8,
        level_crossings=8,
    ),
}


def cities_worth(n: int, city: CityParams = SCALES["city"]) -> CityParams:
    """`n` cities' worth on one lattice: its sides ×√n, every count ×n, river and railway
    crossings ×√n (they cross the lattice once, so they grow with its side)."""
    side = math.sqrt(n)
    return replace(
        city,
        nx=round((city.nx - 1) * side) + 1,
        ny=round((city.ny - 1) * side) + 1,
        communities=city.communities * n,
        grids=city.grids * n,
        buildings=city.buildings * n,
        centers=city.centers * n,
        subdistricts=city.subdistricts * n,
        bridges=round(city.bridges * side),
        level_crossings=round(city.level_crossings * side),
    )


# For the scale benchmark (issue 21): the middle point and ten cities' worth.
SCALES["city3"] = cities_worth(3)
SCALES["province"] = cities_worth(10)


@dataclass
class SynthCity:
    """The generated layers, all in EPSG:4326."""

    communities: gpd.GeoDataFrame
    grids: gpd.GeoDataFrame
    workers: pd.DataFrame
    buildings: gpd.GeoDataFrame
    centers: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    river: shapely.Geometry
    railway: shapely.LineString
    params: CityParams | None = None
    seed: int | None = None


# ---------------------------------------------------------------- name material

ROAD_BASES = (
    "长江", "黄河", "淮河", "石城", "铜官", "翠湖", "义安", "人民", "北京", "幸福", "金山",
    "天井湖", "螺蛳山", "狮子山", "五松", "笠帽山", "滨江", "映湖", "湖城", "建设", "解放",
    "新华", "和平", "友谊", "文化", "学苑", "杨家山", "鹞鹰", "凤凰", "梅园", "桂花", "银湖",
    "铜都", "钟鸣", "大通", "顺安", "朝阳", "胜利", "光明", "团结", "东风", "向阳", "淮海",
    "黄山", "九华", "皖江", "芜湖", "安庆", "合肥", "南京",
)  # fmt: skip
ROAD_FORMS = (
    "路",
    "街",
    "大道",
    "一路",
    "二路",
    "三路",
    "四路",
    "五路",
    "六路",
    "七路",
    "八路",
    "九路",
    "十路",
)
COMMUNITY_STEMS = (
    "金山", "幸福", "翠湖", "五松", "天井", "螺蛳", "狮子山", "铜官", "义安", "笠帽", "长江",
    "滨江", "映湖", "石城", "人民", "友好", "露采", "阳光", "朝阳", "红星", "建设", "和平",
    "东风", "新华", "光明", "团结", "胜利", "铜都", "杨家山", "钟鸣", "金口岭", "鹞鹰", "凤凰",
    "梅园", "桂花", "松林", "竹园", "荷花", "银湖", "锦江", "长青", "向阳", "春晖", "惠民",
    "安居", "乐园", "东苑", "西湖", "南苑", "北斗", "新桥", "金桥", "观湖", "望江", "青山",
    "白鹭", "紫竹", "丹凤", "福泉", "瑞园", "康乐", "永安", "丰收", "书院", "太平", "龙泉",
    "枫林", "桃源", "湖滨", "江南",
)  # fmt: skip
ESTATE_PREFIXES = (
    "金山", "幸福", "翠湖", "阳光", "锦绣", "和平", "书香", "碧水", "紫薇", "丽景", "御景",
    "春晓", "康居", "怡景", "华府", "银杏", "枫丹", "绿洲", "盛世", "东方", "天悦", "水岸",
    "香樟", "桂园", "梧桐", "玉兰", "明珠", "星河", "海棠", "清华", "宏图", "润泽", "瑞景",
    "馨苑", "嘉禾", "鼎盛", "新城", "龙湖", "铜华", "滨湖", "金湾", "富康", "安泰", "祥和",
    "长乐", "颐和", "聚福", "映山",
)  # fmt: skip
ESTATE_SUFFIXES = ("花园", "小区", "苑", "新村", "家园", "公寓", "名邸", "雅居", "嘉园", "华庭")
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭"
    "曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方汤"
)
GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
    "玉兰红梅建国志文辉鹏飞雪琳婷晨浩宇欣怡思雨佳俊凯"
)
PHONE_PREFIXES = (133, 135, 136, 137, 138, 139, 150, 151, 152, 153, 158, 159, 177, 180, 186, 189)
CN_ORDINALS = "一二三四五六七八九十"


# ---------------------------------------------------------------- public API


def generate_city(scale: str | CityParams = "small", seed: int = 42) -> SynthCity:
    """Build the synthetic city for a preset name or explicit parameters; same seed, same city."""
    p = _resolve(scale)
    rng = np.random.default_rng(seed)
    lat = _Lattice.build(p, rng)
    river = _river(p, lat, rng)
    railway = _railway(p, lat, rng)
    roads = _roads(p, lat, river, railway, rng)
    layout = _layout(p)
    communities, grids, stems = _areas(p, lat, layout, rng)
    workers = _workers(grids, rng)
    buildings, block_of_building = _buildings(p, lat, river, railway, roads, rng)
    centers = _centers(
        p, lat, layout, stems, roads, river, railway, buildings, block_of_building, rng
    )

    to_geo = Transformer.from_crs(p.metric_crs, STORAGE_CRS, always_xy=True)

    def geo(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        """Return the frame reprojected to the storage CRS with a clean index."""
        return frame.set_crs(p.metric_crs).to_crs(STORAGE_CRS).reset_index(drop=True)

    return SynthCity(
        communities=geo(communities),
        grids=geo(grids),
        workers=workers,
        buildings=geo(buildings),
        centers=geo(centers),
        roads=geo(roads.frame),
        river=shapely.transform(river, to_geo.transform, interleaved=False),
        railway=shapely.transform(railway, to_geo.transform, interleaved=False),
        params=p,
        seed=seed,
    )


def write_city(city: SynthCity, folder: Path, *, encoding: str = "UTF-8") -> list[Path]:
    """Write the five shapefiles (+ .prj, .cpg) and workers.csv into folder; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buildings = city.buildings.copy()
    # A 32-bit integer keeps the DBF field at the common N(11) width other tools expect.
    buildings["households"] = buildings["households"].astype("int32")
    layers = {
        "communities": city.communities,
        "grids": city.grids,
        "buildings": buildings,
        "centers": city.centers,
        "roads": city.roads,
    }
    written: list[Path] = []
    for stem, frame in layers.items():
        target = folder / f"{stem}.shp"
        for suffix in SHAPEFILE_PARTS:
            target.with_suffix(suffix).unlink(missing_ok=True)
        frame.to_file(
            target,
            driver="ESRI Shapefile",
            encoding=encoding,
            engine="pyogrio",
            DBF_DATE_LAST_UPDATE=DBF_DATE,
        )
        written.extend(
            target.with_suffix(s) for s in SHAPEFILE_PARTS if target.with_suffix(s).exists()
        )
    csv = folder / "workers.csv"
    city.workers[["code", "name", "phone", "grid"]].to_csv(
        csv, index=False, encoding="utf-8", lineterminator="\n"
    )
    written.append(csv)
    return written


# ---------------------------------------------------------------- lattice, river, railway


def _resolve(scale: str | CityParams) -> CityParams:
    """Turn a preset name into parameters and reject impossible ones."""
    if isinstance(scale, CityParams):
        p = scale
    elif scale in SCALES:
        p = SCALES[scale]
    else:
        raise InvalidInput(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    if min(p.nx, p.ny) < 8:
        raise InvalidInput("the lattice needs at least 8 x 8 intersections")
    if not 1 <= p.communities <= p.grids <= (p.nx - 1) * (p.ny - 1):
        raise InvalidInput("need 1 <= communities <= grids <= number of blocks")
    if not 1 <= p.subdistricts <= p.communities:
        raise InvalidInput("need 1 <= subdistricts <= communities")
    if p.centers < 1 or p.bridges < 1 or p.level_crossings < 1:
        raise InvalidInput("centers, bridges and level_crossings must be at least 1")
    if len(p.district_code) != 6 or not p.district_code.isdigit():
        raise InvalidInput("district_code must be 6 digits (GB/T 2260)")
    return p


@dataclass
class _Lattice:
    """Jittered intersections; node id = row * nx + col, row 0 is the northmost street."""

    nx: int
    ny: int
    x: np.ndarray  # (ny, nx) metric eastings
    y: np.ndarray  # (ny, nx) metric northings
    cx: float
    cy: float
    width: float
    height: float

    @classmethod
    def build(cls, p: CityParams, rng: np.random.Generator) -> _Lattice:
        """Place the jittered lattice centred on the configured lon/lat."""
        to_metric = Transformer.from_crs(STORAGE_CRS, p.metric_crs, always_xy=True)
        cx, cy = to_metric.transform(p.center_lon, p.center_lat)
        cx, cy = round(cx, -1), round(cy, -1)
        col = np.arange(p.nx) - (p.nx - 1) / 2
        row = (p.ny - 1) / 2 - np.arange(p.ny)
        jitter = rng.uniform(-p.jitter_m, p.jitter_m, size=(2, p.ny, p.nx))
        x = cx + col[None, :] * p.spacing_m + jitter[0]
        y = cy + row[:, None] * p.spacing_m + jitter[1]
        return cls(p.nx, p.ny, x, y, cx, cy, (p.nx - 1) * p.spacing_m, (p.ny - 1) * p.spacing_m)

    def xy(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Coordinates of nodes as an (..., 2) array."""
        return np.stack([self.x[rows, cols], self.y[rows, cols]], axis=-1)

    def ring(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Boundary nodes of the block rectangle rows [r0, r1), cols [c0, c1), clockwise."""
        top_c = np.arange(c0, c1 + 1)
        right_r = np.arange(r0 + 1, r1 + 1)
        bottom_c = np.arange(c1 - 1, c0 - 1, -1)
        left_r = np.arange(r1 - 1, r0, -1)
        rows = np.concatenate(
            [np.full(top_c.size, r0), right_r, np.full(bottom_c.size, r1), left_r]
        )
        cols = np.concatenate(
            [top_c, np.full(right_r.size, c1), bottom_c, np.full(left_r.size, c0)]
        )
        return self.xy(rows, cols)


def _river(p: CityParams, lat: _Lattice, rng: np.random.Generator) -> shapely.Polygon:
    """A meandering water band crossing the city west to east, south of the centre."""
    s = p.spacing_m
    xs = np.arange(lat.cx - lat.width / 2 - 3 * s, lat.cx + lat.width / 2 + 3 * s, 10.0)
    t = (xs - xs[0]) / (xs[-1] - xs[0])
    wavelength = max(1_800.0, min(4_000.0, lat.width / 1.3))
    cycles = (xs[-1] - xs[0]) / wavelength
    phases = rng.uniform(0, 2 * np.pi, size=4)
    # Amplitudes tied to the wavelength keep slopes below ~0.7 and bends wide, so the band stays
    # valid and its width stays close to the configured one.
    a1 = 0.065 * wavelength
    yc = (
        lat.cy
        - 0.12 * lat.height
        + a1 * np.sin(2 * np.pi * cycles * t + phases[0])
        + 0.2 * a1 * np.sin(2 * np.pi * 2.3 * cycles * t + phases[1])
        + 0.04 * lat.height * np.sin(np.pi * t + phases[2])
    )
    lo, hi = p.river_width_m
    half = (lo + hi) / 4 + (hi - lo) / 4 * np.sin(2 * np.pi * 0.7 * cycles * t + phases[3])
    dx, dy = np.gradient(xs), np.gradient(yc)
    norm = np.hypot(dx, dy)
    nxv, nyv = -dy / norm, dx / norm
    left = np.column_stack([xs + nxv * half, yc + nyv * half])
    right = np.column_stack([xs - nxv * half, yc - nyv * half])[::-1]
    poly = shapely.Polygon(np.vstack([left, right]))
    return poly if poly.is_valid else shapely.make_valid(poly)


def _railway(p: CityParams, lat: _Lattice, rng: np.random.Generator) -> shapely.LineString:
    """A gently bowed railway running north-north-east to south-south-west across the city."""
    s = p.spacing_m
    top = np.array(
        [lat.cx + (0.22 + rng.uniform(-0.02, 0.02)) * lat.width, lat.cy + lat.height / 2 + 3 * s]
    )
    bottom = np.array(
        [lat.cx - (0.05 + rng.uniform(-0.02, 0.02)) * lat.width, lat.cy - lat.height / 2 - 3 * s]
    )
    direction = bottom - top
    normal = np.array([-direction[1], direction[0]]) / np.hypot(*direction)
    control = (top + bottom) / 2 + normal * 0.03 * lat.height
    t = np.linspace(0, 1, 41)[:, None]
    pts = (1 - t) ** 2 * top + 2 * (1 - t) * t * control + t**2 * bottom
    return shapely.LineString(pts)


# ---------------------------------------------------------------- streets


@dataclass
class _Roads:
    """The kept street segments and what the later steps need to know about them."""

    frame: gpd.GeoDataFrame  # code, name, geometry (metric)
    ew_names: list[str]
    ns_names: list[str]
    u: np.ndarray  # node ids of kept edges
    v: np.ndarray


def _street_names(count: int, rng: np.random.Generator) -> list[str]:
    """Unique Chinese street names, shuffled deterministically."""
    pool = [b + f for b in ROAD_BASES for f in ROAD_FORMS]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    extra = 0
    while len(pool) < count:  # only for lattices far larger than the presets
        extra += 1
        pool.extend(f"{b}{extra}号路" for b in ROAD_BASES)
    return pool[:count]


def _spread(cands: np.ndarray, n: int, lo: float, hi: float, rng: np.random.Generator) -> list[int]:
    """Pick n distinct candidate positions spread evenly over [lo, hi], with a little noise."""
    avail = [int(c) for c in np.sort(cands)]
    if len(avail) < n:
        raise InvalidInput(f"only {len(avail)} places for {n} crossings; enlarge the lattice")
    chosen: list[int] = []
    for k in range(n):
        target = lo + (hi - lo) * (k + 0.5 + rng.uniform(-0.15, 0.15)) / n
        i = int(np.argmin(np.abs(np.asarray(avail) - target)))
        chosen.append(avail.pop(i))
    return sorted(chosen)


def _near(geoms: np.ndarray, target: shapely.Geometry, distance: float = 0.0) -> np.ndarray:
    """Whether each geometry comes within `distance` of `target` (intersects it at 0): the
    same answers as shapely's, asked only where the bounding boxes come that near (the river
    runs the province's whole width: asking every street of it took 20 s)."""
    x0, y0, x1, y1 = shapely.bounds(target)
    b = shapely.bounds(geoms)
    near = (
        (b[:, 0] <= x1 + distance)
        & (b[:, 2] >= x0 - distance)
        & (b[:, 1] <= y1 + distance)
        & (b[:, 3] >= y0 - distance)
    )
    out = np.zeros(len(geoms), dtype=bool)
    some = geoms[near]
    if distance > 0:
        out[near] = shapely.dwithin(some, target, distance)
    else:
        out[near] = shapely.intersects(some, target)
    return out


def _largest_component(n_nodes: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of the edges in the largest connected component (min-label propagation)."""
    lab = np.arange(n_nodes)
    while True:
        m = np.minimum(lab[u], lab[v])
        new = lab.copy()
        np.minimum.at(new, u, m)
        np.minimum.at(new, v, m)
        new = new[new]
        if np.array_equal(new, lab):
            break
        lab = new
    edge_lab = lab[u]
    values, counts = np.unique(edge_lab, return_counts=True)
    return edge_lab == values[np.argmax(counts)]


def _names_of(
    vertical: np.ndarray, street: np.ndarray, ew_names: list[str], ns_names: list[str]
) -> np.ndarray:
    """Street name of each edge or block side: row names for east-west, column names otherwise."""
    out = np.empty(street.size, dtype=object)
    out[vertical] = np.asarray(ns_names, dtype=object)[street[vertical]]
    out[~vertical] = np.asarray(ew_names, dtype=object)[street[~vertical]]
    return out


def _roads(
    p: CityParams,
    lat: _Lattice,
    river: shapely.Polygon,
    railway: shapely.LineString,
    rng: np.random.Generator,
) -> _Roads:
    """Lattice edges minus river and railway crossings, except the chosen bridges and crossings."""
    nx, ny = p.nx, p.ny
    # East-west edges of row r, then north-south edges of column c.
    hr, hc = (a.ravel() for a in np.meshgrid(np.arange(ny), np.arange(nx - 1), indexing="ij"))
    vc, vr = (a.ravel() for a in np.meshgrid(np.arange(nx), np.arange(ny - 1), indexing="ij"))
    u = np.concatenate([hr * nx + hc, vr * nx + vc])
    v = np.concatenate([hr * nx + hc + 1, (vr + 1) * nx + vc])
    vertical = np.concatenate([np.zeros(hr.size, bool), np.ones(vr.size, bool)])
    street = np.concatenate([hr, vc])  # row index for EW edges, column index for NS edges
    xy = np.stack([lat.x.ravel(), lat.y.ravel()], axis=-1)
    lines = shapely.linestrings(np.stack([xy[u], xy[v]], axis=1))

    shapely.prepare(river)
    shapely.prepare(railway)
    wet = _near(lines, river)
    on_rail = shapely.intersects(lines, railway)

    # Bridges: columns whose river crossing is well away from the railway.
    col_dist = np.full(nx, np.inf)
    idx = np.flatnonzero(vertical & wet)
    np.minimum.at(col_dist, street[idx], shapely.distance(lines[idx], railway))
    cols = np.arange(nx)
    ok_cols = np.flatnonzero(
        (col_dist > 2 * p.spacing_m) & np.isin(cols, street[idx]) & (cols >= 2) & (cols <= nx - 3)
    )
    bridge_cols = _spread(ok_cols, p.bridges, 2, nx - 3, rng)
    # Level crossings: rows whose railway crossing is well away from the river.
    row_dist = np.full(ny, np.inf)
    idx = np.flatnonzero(~vertical & on_rail)
    np.minimum.at(row_dist, street[idx], shapely.distance(lines[idx], river))
    ok_rows = np.flatnonzero((row_dist > 2 * p.spacing_m) & np.isin(np.arange(ny), street[idx]))
    level_rows = _spread(
        ok_rows[(ok_rows >= 2) & (ok_rows <= ny - 3)], p.level_crossings, 2, ny - 3, rng
    )

    bridge = vertical & wet & ~on_rail & np.isin(street, bridge_cols)
    level = ~vertical & on_rail & ~wet & np.isin(street, level_rows)
    keep = ~(wet | on_rail) | bridge | level
    keep_idx = np.flatnonzero(keep)
    keep_idx = keep_idx[_largest_component(nx * ny, u[keep_idx], v[keep_idx])]

    names = _street_names(nx + ny, rng)
    ew_names, ns_names = names[:ny], names[ny:]
    name = _names_of(vertical[keep_idx], street[keep_idx], ew_names, ns_names)
    frame = gpd.GeoDataFrame(
        {
            "code": [f"R{i:06d}" for i in range(1, keep_idx.size + 1)],
            "name": name,
        },
        geometry=lines[keep_idx],
    )
    return _Roads(frame, ew_names, ns_names, u[keep_idx], v[keep_idx])


# ---------------------------------------------------------------- communities and grids


@dataclass
class _Layout:
    """How blocks group into grids, grids into communities, communities into sub-districts."""

    grid_x: np.ndarray  # block-column boundaries of grid columns
    grid_y: np.ndarray  # block-row boundaries of grid rows
    comm_x: np.ndarray  # grid-column boundaries of community columns
    comm_y: np.ndarray
    sub_x: np.ndarray  # community-column boundaries of sub-district columns
    sub_y: np.ndarray

    def community_of_blocks(self, br: np.ndarray, bc: np.ndarray) -> np.ndarray:
        """Index (row-major over the community layout) of the community holding each block."""
        gr = np.searchsorted(self.grid_y, br, side="right") - 1
        gc = np.searchsorted(self.grid_x, bc, side="right") - 1
        cr = np.searchsorted(self.comm_y, gr, side="right") - 1
        cc = np.searchsorted(self.comm_x, gc, side="right") - 1
        return cr * (self.comm_x.size - 1) + cc


def _bounds(n: int, parts: int) -> np.ndarray:
    """Split n units into parts nearly equal consecutive runs; return the run boundaries."""
    return np.round(np.linspace(0, n, parts + 1)).astype(int)


def _factor(n: int, aspect: float, max_cols: int, max_rows: int) -> tuple[int, int]:
    """Columns x rows == n whose cell shape is closest to square for a region of this aspect."""
    best: tuple[float, int, int] | None = None
    for cols in range(1, n + 1):
        if n % cols or cols > max_cols or n // cols > max_rows:
            continue
        score = abs(math.log(aspect * (n // cols) / cols))
        if best is None or score < best[0] - 1e-9:
            best = (score, cols, n // cols)
    if best is None:
        raise InvalidInput(f"cannot arrange {n} parts on a {max_cols} x {max_rows} layout")
    return best[1], best[2]


def _layout(p: CityParams) -> _Layout:
    """Choose grid, community and sub-district rectangles from the target counts."""
    nbx, nby = p.nx - 1, p.ny - 1
    ccx, ccy = _factor(p.communities, nbx / nby, nbx, nby)
    best: tuple[float, int, int] | None = None
    for gx in range(ccx, nbx + 1):
        for gy in {max(ccy, p.grids // gx), max(ccy, -(-p.grids // gx))}:
            if gy > nby:
                continue
            score = abs(gx * gy - p.grids) / p.grids + 0.05 * abs(math.log(nbx * gy / (nby * gx)))
            if best is None or score < best[0] - 1e-12:
                best = (score, gx, gy)
    assert best is not None  # communities <= blocks guarantees gx = ccx, gy = ccy fits
    _, gx, gy = best
    sx, sy = _factor(p.subdistricts, ccx / ccy, ccx, ccy)
    return _Layout(
        _bounds(nbx, gx),
        _bounds(nby, gy),
        _bounds(gx, ccx),
        _bounds(gy, ccy),
        _bounds(ccx, sx),
        _bounds(ccy, sy),
    )


def _multi(rings: Sequence[np.ndarray]) -> np.ndarray:
    """One single-part MultiPolygon per ring."""
    polys = shapely.polygons([shapely.linearrings(r) for r in rings])
    return shapely.multipolygons(polys, indices=np.arange(len(rings)))


def _areas(
    p: CityParams, lat: _Lattice, lay: _Layout, rng: np.random.Generator
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, list[str]]:
    """Communities, grids (walked along shared lattice nodes, so they tile) and name stems."""
    ccx, ccy = lay.comm_x.size - 1, lay.comm_y.size - 1
    stems = [COMMUNITY_STEMS[i] for i in rng.permutation(len(COMMUNITY_STEMS))]
    stems += [
        f"{COMMUNITY_STEMS[i % len(COMMUNITY_STEMS)]}{i // len(COMMUNITY_STEMS) + 1}"
        for i in range(max(0, ccx * ccy - len(stems)))
    ]

    # Community codes: sub-district sequence, then community sequence inside the sub-district.
    comm_code: dict[tuple[int, int], str] = {}
    for si in range(lay.sub_y.size - 1):
        for sj in range(lay.sub_x.size - 1):
            sub = f"{si * (lay.sub_x.size - 1) + sj + 1:03d}"
            members = [
                (cr, cc)
                for cr in range(lay.sub_y[si], lay.sub_y[si + 1])
                for cc in range(lay.sub_x[sj], lay.sub_x[sj + 1])
            ]
            for k, key in enumerate(members, start=1):
                comm_code[key] = f"{p.district_code}{sub}{k:03d}"

    c_rows, g_rows = [], []
    c_rings, g_rings = [], []
    for cr in range(ccy):
        for cc in range(ccx):
            code = comm_code[(cr, cc)]
            name = f"{stems[cr * ccx + cc]}社区"
            g0, g1 = lay.comm_y[cr], lay.comm_y[cr + 1]
            h0, h1 = lay.comm_x[cc], lay.comm_x[cc + 1]
            c_rows.append((code, name))
            c_rings.append(lat.ring(lay.grid_y[g0], lay.grid_y[g1], lay.grid_x[h0], lay.grid_x[h1]))
            # DB11/T 2157: sequence west to east, then north to south, inside the community.
            seq = 0
            for gr in range(g0, g1):
                for gc in range(h0, h1):
                    seq += 1
                    if seq > 999:
                        raise InvalidInput("more than 999 grids in one community")
                    g_rows.append((f"{code}{seq:03d}", f"{name}第{seq}网格", code))
                    g_rings.append(
                        lat.ring(
                            lay.grid_y[gr], lay.grid_y[gr + 1], lay.grid_x[gc], lay.grid_x[gc + 1]
                        )
                    )
    communities = gpd.GeoDataFrame(
        pd.DataFrame(c_rows, columns=["code", "name"]), geometry=_multi(c_rings)
    )
    grids = gpd.GeoDataFrame(
        pd.DataFrame(g_rows, columns=["code", "name", "community"]), geometry=_multi(g_rings)
    )
    return (
        communities.sort_values("code", kind="stable").reset_index(drop=True),
        grids.sort_values("code", kind="stable").reset_index(drop=True),
        stems[: ccx * ccy],
    )


def _workers(grids: gpd.GeoDataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One or two grid workers per grid with synthetic names and unique mobile numbers."""
    per_grid = 1 + (rng.random(len(grids)) < 0.5)
    n = int(per_grid.sum())
    grid = np.repeat(grids["code"].to_numpy(), per_grid)
    surname = np.asarray(list(SURNAMES))[rng.integers(0, len(SURNAMES), n)]
    given = np.asarray(list(GIVEN_CHARS))[rng.integers(0, len(GIVEN_CHARS), (n, 2))]
    two = rng.random(n) < 0.7
    names = [s + g[0] + (g[1] if t else "") for s, g, t in zip(surname, given, two, strict=True)]
    prefix = np.asarray(PHONE_PREFIXES)[rng.integers(0, len(PHONE_PREFIXES), n)]
    phone = prefix.astype(np.int64) * 100_000_000 + rng.integers(0, 100_000_000, n)
    while True:  # redraw the rare duplicate numbers
        _, first = np.unique(phone, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if dup.size == 0:
            break
        phone[dup] = prefix[dup].astype(np.int64) * 100_000_000 + rng.integers(
            0, 100_000_000, dup.size
        )
    return pd.DataFrame(
        {
            "code": [f"W{i:06d}" for i in range(1, n + 1)],
            "name": names,
            "phone": phone.astype(str),
            "grid": grid,
        }
    )


# ---------------------------------------------------------------- buildings


def _block_counts(
    p: CityParams, land: np.ndarray, cap: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Buildings per block: a dense core, a second centre, sparse edges, some empty parks."""
    nbx, nby = p.nx - 1, p.ny - 1
    br, bc = np.divmod(np.arange(nbx * nby), nbx)
    u = (bc + 0.5) / nbx * 2 - 1
    v = 1 - (br + 0.5) / nby * 2
    d1 = (u + 0.1) ** 2 + (v - 0.25) ** 2
    d2 = (u - 0.45) ** 2 + (v + 0.45) ** 2
    f = 0.25 + np.exp(-d1 / 0.3) + 0.6 * np.exp(-d2 / 0.12) + 0.3 * rng.random(u.size)
    f[~land | (rng.random(u.size) < p.park_share)] = 0.0
    capf = cap.astype(float)
    lo, hi = 0.0, 4.0 * p.max_per_block / max(f.max(), 1e-9)
    for _ in range(60):  # scale the field so the capped expectation meets the target
        mid = (lo + hi) / 2
        if np.minimum(mid * f, capf).sum() < p.buildings:
            lo = mid
        else:
            hi = mid
    lam = np.minimum(hi * f, capf)
    return np.minimum(np.floor(lam + rng.random(u.size)), cap).astype(int)


def _buildings(
    p: CityParams,
    lat: _Lattice,
    river: shapely.Polygon,
    railway: shapely.LineString,
    roads: _Roads,
    rng: np.random.Generator,
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Slab footprints set back from the streets in dry blocks, with GB/T 37149 addresses."""
    nbx, nby = p.nx - 1, p.ny - 1
    br, bc = np.divmod(np.arange(nbx * nby), nbx)
    nw, ne = lat.xy(br, bc), lat.xy(br, bc + 1)
    se, sw = lat.xy(br + 1, bc + 1), lat.xy(br + 1, bc)
    quads = shapely.polygons(np.stack([nw, ne, se, sw, nw], axis=1))
    rail_zone = railway.buffer(p.rail_clearance_m)
    shapely.prepare(rail_zone)
    land = ~_near(quads, river) & ~shapely.intersects(quads, rail_zone)

    # Axis-aligned inner rectangle; the extra margin covers the tilt of the jittered block edges.
    tilt = math.atan2(2 * p.jitter_m, p.spacing_m - 2 * p.jitter_m)
    sb = p.setback_m / math.cos(tilt) + 0.01
    xl = np.maximum(nw[:, 0], sw[:, 0]) + sb
    xr = np.minimum(ne[:, 0], se[:, 0]) - sb
    yt = np.minimum(nw[:, 1], ne[:, 1]) - sb
    yb = np.maximum(sw[:, 1], se[:, 1]) + sb
    ew = rng.random(br.size) < 0.7  # slabs run east-west (stacked north to south) or north-south
    along = np.where(ew, xr - xl, yt - yb)
    across = np.where(ew, yt - yb, xr - xl)
    dmin, dmax = p.building_depth_m
    lmin, lmax = p.building_length_m
    gap = p.building_gap_m
    cap = np.clip(np.floor((across + gap) / (dmin + gap)), 0, p.max_per_block).astype(int)
    cap[along < lmin] = 0
    counts = _block_counts(p, land, cap, rng)

    blk = np.repeat(np.arange(br.size), counts)
    k = counts[blk]
    slot = np.arange(blk.size) - np.repeat(np.cumsum(counts) - counts, counts)
    n = blk.size
    sh = (across[blk] - (k - 1) * gap) / k
    depth = dmin + rng.random(n) * (np.minimum(dmax, sh) - dmin)
    length = lmin + rng.random(n) * (np.minimum(lmax, along[blk]) - lmin)
    # Small-angle bounds (sin t <= t, cos t <= 1) keep the rotated slab inside its slot.
    theta_max = np.minimum.reduce(
        [
            np.full(n, math.radians(p.max_tilt_deg)),
            (sh - depth) / length,
            (along[blk] - length) / depth,
        ]
    ).clip(min=0.0)
    theta = (2 * rng.random(n) - 1) * theta_max
    ct, st = np.cos(theta), np.sin(np.abs(theta))
    bw = length * ct + depth * st
    bh = length * st + depth * ct
    ca = bw / 2 + rng.random(n) * (along[blk] - bw)  # centre along the slab axis
    ct_off = slot * (sh + gap) + bh / 2 + rng.random(n) * (sh - bh)  # across, from north/west
    corners_a = np.array([-1, 1, 1, -1, -1])[None, :] * (length / 2)[:, None]
    corners_t = np.array([-1, -1, 1, 1, -1])[None, :] * (depth / 2)[:, None]
    ra = corners_a * ct[:, None] - corners_t * np.sin(theta)[:, None]
    rt = corners_a * np.sin(theta)[:, None] + corners_t * ct[:, None]
    is_ew = ew[blk][:, None]
    bx = np.where(
        is_ew, xl[blk][:, None] + ca[:, None] + ra, xl[blk][:, None] + ct_off[:, None] + rt
    )
    by = np.where(
        is_ew, yt[blk][:, None] - ct_off[:, None] - rt, yb[blk][:, None] + ca[:, None] + ra
    )
    footprints = shapely.polygons(np.stack([bx, by], axis=-1))

    area = shapely.area(footprints)
    floors = np.where(rng.random(n) < 0.25, rng.integers(11, 27, n), rng.integers(3, 8, n))
    households = np.clip(np.round(area * floors / 95.0), 6, 120).astype(np.int64)

    address, name = _addresses(p, br, bc, blk, slot, counts, roads, rng)
    frame = gpd.GeoDataFrame(
        {
            "code": [f"B{i:07d}" for i in range(1, n + 1)],
            "address": address,
            "name": name,
            "households": households,
        },
        geometry=footprints,
    )
    return frame, blk


def _addresses(
    p: CityParams,
    br: np.ndarray,
    bc: np.ndarray,
    blk: np.ndarray,
    slot: np.ndarray,
    counts: np.ndarray,
    roads: _Roads,
    rng: np.random.Generator,
) -> tuple[list[str], list[str]]:
    """Address and building name of each building: road, door number, estate, building number."""
    nb = br.size
    side = rng.integers(0, 4, nb)  # 0 north, 1 south, 2 west, 3 east street of the block
    on_ew = side < 2
    street = np.select([side == 0, side == 1, side == 2], [br, br + 1, bc], bc + 1)
    road_key = np.where(on_ew, street, p.ny + street)
    position = np.where(on_ew, bc, br)
    # Odd numbers on the north/west side of a street, even on the south/east side.
    odd = (side == 1) | (side == 3)
    door = 2 * (3 * position + rng.integers(0, 3, nb)) + np.where(odd, 1, 2)
    road_name = _names_of(~on_ew, street, roads.ew_names, roads.ns_names)

    # Estate names: consecutive entries of one shuffled pool per road, so unique along a road.
    pool = np.asarray([a + b for a in ESTATE_PREFIXES for b in ESTATE_SUFFIXES], dtype=object)
    pool = pool[rng.permutation(pool.size)]
    offset = rng.integers(0, pool.size, p.nx + p.ny)
    built = np.flatnonzero(counts > 0)
    order = built[np.lexsort((door[built], road_key[built]))]
    rank = pd.Series(road_key[order]).groupby(road_key[order]).cumcount().to_numpy()
    estate = np.empty(nb, dtype=object)
    estate[order] = pool[(offset[road_key[order]] + rank) % pool.size]

    number = slot + 1
    address = [
        f"{p.address_prefix}{r}{d}号{e}{k}栋"
        for r, d, e, k in zip(road_name[blk], door[blk], estate[blk], number, strict=True)
    ]
    named = rng.random(blk.size) >= 0.05  # the optional name field is left empty now and then
    name = [
        f"{e}{k}栋" if keep else "" for e, k, keep in zip(estate[blk], number, named, strict=True)
    ]
    return address, name


# ---------------------------------------------------------------- neighbourhood centres


def _centers(
    p: CityParams,
    lat: _Lattice,
    lay: _Layout,
    stems: list[str],
    roads: _Roads,
    river: shapely.Polygon,
    railway: shapely.LineString,
    buildings: gpd.GeoDataFrame,
    block_of_building: np.ndarray,
    rng: np.random.Generator,
) -> gpd.GeoDataFrame:
    """Centres at intersections near household clusters; some communities deliberately get none."""
    nbx = p.nx - 1
    ncomm = (lay.comm_x.size - 1) * (lay.comm_y.size - 1)
    n_unserved = min(ncomm - 1, round(p.unserved_share * ncomm))
    unserved = rng.choice(ncomm, size=n_unserved, replace=False)
    bbr, bbc = np.divmod(block_of_building, nbx)
    served = ~np.isin(lay.community_of_blocks(bbr, bbc), unserved)
    pts = shapely.get_coordinates(shapely.centroid(buildings.geometry.to_numpy()[served]))
    origin = pts.mean(0)
    pts = pts - origin  # small numbers keep the matrix-product distances exact enough
    w = buildings["households"].to_numpy()[served].astype(float)
    if pts.shape[0] < p.centers:
        raise InvalidInput("too few buildings to place the centres")

    # Weighted k-means with k-means++ seeding: centres follow where households live.
    first = rng.choice(pts.shape[0], p=w / w.sum())
    cent = [pts[first]]
    d2 = ((pts - cent[0]) ** 2).sum(1)
    for _ in range(1, p.centers):
        prob = w * d2
        nxt = pts[rng.choice(pts.shape[0], p=prob / prob.sum())]
        cent.append(nxt)
        d2 = np.minimum(d2, ((pts - nxt) ** 2).sum(1))
    c = np.asarray(cent)
    for _ in range(25):
        lab = _nearest(pts, c)
        sw = np.bincount(lab, weights=w, minlength=p.centers)
        for axis in range(2):
            s = np.bincount(lab, weights=w * pts[:, axis], minlength=p.centers)
            c[:, axis] = np.where(sw > 0, s / np.maximum(sw, 1e-9), c[:, axis])

    # Snap to distinct street intersections (degree >= 3) of the kept network.
    deg = np.bincount(np.concatenate([roads.u, roads.v]), minlength=p.nx * p.ny)
    cand = np.flatnonzero(deg >= 3)
    # Keep centres off the railway line and the river banks.
    node_pts = shapely.points(lat.x.ravel()[cand], lat.y.ravel()[cand])
    clear = ~shapely.dwithin(node_pts, railway, p.spacing_m / 2) & ~_near(
        node_pts, river, p.spacing_m / 2
    )
    cand = cand[clear]
    if cand.size < p.centers:
        raise InvalidInput(f"only {cand.size} intersections for {p.centers} centres")
    cxy = np.stack([lat.x.ravel()[cand], lat.y.ravel()[cand]], axis=-1) - origin
    taken = np.zeros(cand.size, bool)
    nodes = []
    for i in range(p.centers):
        d = ((cxy - c[i]) ** 2).sum(1)
        d[taken] = np.inf
        j = int(np.argmin(d))
        taken[j] = True
        nodes.append(cand[j])
    nodes_a = np.asarray(nodes)
    nr, nc = np.divmod(nodes_a, p.nx)
    nodes_a = nodes_a[np.lexsort((nc, nr))]  # codes run north to south, west to east
    nr, nc = np.divmod(nodes_a, p.nx)
    comm = lay.community_of_blocks(np.minimum(nr, p.ny - 2), np.minimum(nc, nbx - 1))
    names: list[str] = []
    seen: dict[int, int] = {}
    for ci in comm:
        seen[ci] = seen.get(ci, 0) + 1
        k = seen[ci]
        extra = (
            f"第{CN_ORDINALS[k - 1]}" if 1 < k <= len(CN_ORDINALS) else (f"第{k}" if k > 1 else "")
        )
        names.append(f"{stems[ci]}{extra}邻里中心")
    return gpd.GeoDataFrame(
        {
            "code": [f"C{i:03d}" for i in range(1, nodes_a.size + 1)],
            "name": names,
            "kind": ["邻里中心"] * nodes_a.size,
        },
        geometry=shapely.points(lat.x.ravel()[nodes_a], lat.y.ravel()[nodes_a]),
    )


def _nearest(pts: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for every point."""
    # A k-d tree, not a points x centres matrix: at the province (1.2M points, 600 centres)
    # the matrix would be 5.8 GB and each k-means round seconds.
    from scipy.spatial import cKDTree

    _, index = cKDTree(centres).query(pts, workers=-1)
    return np.asarray(index, dtype=np.intp)
