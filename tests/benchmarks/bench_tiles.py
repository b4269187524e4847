"""Vector tiles and OGC API Features items against tipg (PyPI), both serving the same `city`
tables from the same PostGIS, one server process each, requests one at a time over HTTP.

- tiles cold: every request makes its tile in PostGIS, ours on an instance with the tile
  cache off (`GEO_TILE_CACHE_MB=0`), tipg (which has no tile cache) as it comes; requests
  alternate between the two, tile by tile, the same tiles the same number of times;
- items: GeoJSON pages, alternating likewise.
There is no warm row: ours would answer from its cache and tipg has none, so it would
compare a cache with a database query (issue 21). tipg gets the same properties, ours' 64-unit
buffer, no cap on features per tile and, for buildings, the footprints with their own GiST
index. Every timed tile is first checked to hold the same features from both.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import mapbox_vector_tile
from shapely.geometry import box, shape
from sqlalchemy import text

from geo_service.ingest import ImportOptions, import_file
from geo_service.layers.tiles import BUFFER, EXTENT
from tests.benchmarks.common import (
    ROOT,
    Result,
    bench_url,
    city_dir,
    free_port,
    scratch_engine,
    settings,
    wait_until_up,
)

DATABASE = "geo_bench_tiles"  # not geo_bench: another benchmark may use that one meanwhile
CENTRE = (117.8101, 30.9300)  # the middle of the synthetic city
ROUNDS = 6
LAYERS = {
    # layer: (zooms, tipg collection, tipg query)
    "grids": (
        range(12, 17),
        "public.grids",
        "properties=code,name,community_code,area_m2",
    ),
    "buildings": (
        range(13, 17),  # the layer starts at zoom 13 (a z12 tile would hold ~13,000 houses)
        "public.buildings",
        "geom-column=footprint&properties=code,address,name,households",
    ),
}


def run() -> list[Result]:
    """Import the city, serve it with ours (tile cache off) and tipg, time tiles and items."""
    s = settings()
    folder = city_dir()
    engine = scratch_engine(s, DATABASE)
    for kind, name in (
        ("communities", "communities.shp"),
        ("grids", "grids.shp"),
        ("buildings", "buildings.shp"),
    ):
        import_file(engine, s, kind, folder / name, ImportOptions())
    with engine.begin() as conn:
        # tipg draws the footprint column: give it an index of its own, as ours has one.
        conn.execute(
            text("CREATE INDEX buildings_footprint_gist ON buildings USING gist (footprint)")
        )
        conn.execute(text("ANALYZE buildings"))
    url = bench_url(engine).replace("postgresql+psycopg://", "postgresql://")
    servers = []
    try:
        cold = _serve_ours(url, cache_mb=0)
        tipg = _serve_tipg(url)
        servers = [cold, tipg]
        for _, _, base in servers:
            wait_until_up(f"{base}/", 90)
        results = _tiles(cold[2], tipg[2]) + _items(cold[2], tipg[2])
    finally:
        for proc, _, _ in servers:
            proc.terminate()
            proc.wait(10)
        engine.dispose()
    return results


def _serve_ours(url: str, cache_mb: int) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    env = {**os.environ, "GEO_DATABASE_URL": url, "GEO_TILE_CACHE_MB": str(cache_mb)}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "geo-service"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return proc, port, f"http://127.0.0.1:{port}"


def _serve_tipg(url: str) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TIPG_DB_SCHEMAS": '["public"]',
        "TIPG_DB_TABLES": '["public.grids", "public.buildings"]',
        "TIPG_DB_FUNCTIONS": "[]",
        "TIPG_ADD_TILES_VIEWER": "false",
        # Every feature of the tile, as ours (tipg stops at 10,000 by default: a z13 tile of
        # the province's buildings would be cut short), clipped at ours' buffer.
        "TIPG_MAX_FEATURES_PER_TILE": "10000000",
        "TIPG_TILE_BUFFER": str(BUFFER),
    }
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "tipg.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/tmp",  # away from any .env of the repository
    )
    return proc, port, f"http://127.0.0.1:{port}"


def _tile_set(zooms: range) -> list[tuple[int, int, int]]:
    """2 x 2 tiles at the city's centre at each zoom."""
    tiles = []
    for z in zooms:
        n = 2**z
        x = int((CENTRE[0] + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(CENTRE[1]))) / math.pi) / 2 * n)
        tiles += [(z, x + dx, y + dy) for dx in (0, 1) for dy in (0, 1)]
    return tiles


def _time(client: httpx.Client, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    took = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
    return took * 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _tiles(cold: str, tipg: str) -> list[Result]:
    results = []
    headers = {"Accept-Encoding": "gzip"}
    with httpx.Client(headers=headers, timeout=60) as client:
        for layer, (zooms, collection, query) in LAYERS.items():
            tiles = _tile_set(zooms)

            def our_url(t: tuple[int, int, int], layer: str = layer) -> str:
                return f"{cold}/tiles/{layer}/{t[0]}/{t[1]}/{t[2]}.mvt"

            def tipg_url(t: tuple[int, int, int], c: str = collection, q: str = query) -> str:
                return f"{tipg}/collections/{c}/tiles/WebMercatorQuad/{t[0]}/{t[1]}/{t[2]}?{q}"

            for t in tiles:  # table and index pages into PostgreSQL's buffers, for both
                theirs = client.get(tipg_url(t)).content
                _same_features(client.get(our_url(t)).content, theirs, layer, t)
            times: dict[str, list[float]] = {"cold": [], "tipg": []}
            for r in range(ROUNDS):
                for t in tiles:  # in turns, who goes first changing every round
                    pair = [("tipg", tipg_url(t)), ("cold", our_url(t))]
                    for name, url in pair if r % 2 == 0 else pair[::-1]:
                        times[name].append(_time(client, url))
            label = (
                f"{layer} tiles z{zooms[0]}-{zooms[-1]} ({len(tiles)} tiles × {ROUNDS} rounds, "
                "cold: our tile cache off)"
            )
            for q, name in ((0.5, "p50"), (0.95, "p95")):
                results.append(
                    Result(
                        f"{label} {name}",
                        _pct(times["cold"], q),
                        "tipg",
                        _pct(times["tipg"], q),
                        "ms",
                    )
                )
    return results


# A feature that reaches this far into the tile proper (in tile units, 4096 a side) must be in
# both tiles: snapping to whole units can move a shape's edge by half a unit either way.
_EDGE = 1


def _same_features(ours: bytes, tipg: bytes, layer: str, t: tuple[int, int, int]) -> None:
    """Both servers draw the same features (else the comparison means nothing).

    Ours also hold the features that only reach into the tile's buffer (64 units around it,
    so that strokes meet across tile edges); tipg's stop at the tile's edge. So, at any scale:
    every feature of tipg's is one of ours, every one of ours that reaches into the tile
    proper is one of tipg's, and ours' others lie in the buffer, never farther."""
    a = mapbox_vector_tile.decode(ours).get(layer, {"features": []})["features"]
    b = mapbox_vector_tile.decode(tipg).get("default", {"features": []})["features"]
    tipg_codes = {f["properties"]["code"] for f in b}
    ours_codes = {f["properties"]["code"] for f in a}
    inner = box(_EDGE, _EDGE, EXTENT - _EDGE, EXTENT - _EDGE)
    reach = box(-BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
    inside, beyond = set(), set()
    for f in a:
        drawn = shape(f["geometry"])
        if drawn.intersects(inner):
            inside.add(f["properties"]["code"])
        if not reach.covers(drawn):
            beyond.add(f["properties"]["code"])
    problems = [
        f"{what}: {sorted(codes)[:5]}"
        for what, codes in (
            ("tipg's, not ours", tipg_codes - ours_codes),
            ("ours in the tile, not tipg's", inside - tipg_codes),
            ("ours beyond the buffer", beyond),
        )
        if codes
    ]
    if len(a) != len(ours_codes) or len(b) != len(tipg_codes):
        problems.append("a code drawn twice")
    if problems:
        raise RuntimeError(
            f"{layer} tile {t}: ours {len(ours_codes)} features ({len(inside)} in the tile "
            f"proper), tipg {len(tipg_codes)}; not the same features: {'; '.join(problems)}"
        )


def _items(ours: str, tipg: str) -> list[Result]:
    """GeoJSON pages of 100 grids, and of the buildings in a 1 km box."""
    w, s = CENTRE[0] - 0.005, CENTRE[1] - 0.0045
    bbox = f"{w},{s},{w + 0.01},{s + 0.009}"
    cases: list[tuple[str, Callable[[int], str], Callable[[int], str]]] = [
        (
            "items: 100 grids per page",
            lambda k: f"{ours}/ogc/collections/grids/items?limit=100&offset={100 * k}",
            lambda k: (
                f"{tipg}/collections/public.grids/items?f=geojson&limit=100"
                f"&offset={100 * k}&properties=code,name,community_code,area_m2"
            ),
        ),
        (
            "items: buildings in a 1 km bbox",
            lambda k: f"{ours}/ogc/collections/buildings/items?limit=500&bbox={bbox}",
            lambda k: (
                f"{tipg}/collections/public.buildings/items?f=geojson&limit=500"
                f"&bbox={bbox}&geom-column=footprint&properties=code,address,name,households"
            ),
        ),
    ]
    results = []
    with httpx.Client(headers={"Accept-Encoding": "gzip"}, timeout=60) as client:
        for name, our_url, tipg_url in cases:
            ours_n = client.get(our_url(0)).json()["numberReturned"]
            tipg_n = client.get(tipg_url(0)).json()["numberReturned"]
            if ours_n != tipg_n:
                raise RuntimeError(f"{name}: ours {ours_n} features, tipg {tipg_n}")
            mine, theirs = [], []
            for r in range(ROUNDS):
                for k in range(8):
                    if r % 2 == 0:
                        theirs.append(_time(client, tipg_url(k)))
                    mine.append(_time(client, our_url(k)))
                    if r % 2 == 1:
                        theirs.append(_time(client, tipg_url(k)))
            results.append(
                Result(
                    f"{name} p50 ({ours_n} features)",
                    statistics.median(mine),
                    "tipg",
                    statistics.median(theirs),
                    "ms",
                )
            )
    return results
