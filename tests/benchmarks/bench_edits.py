"""Living grids at city scale: a split, a merge and a redraw (buildings and open incidents
following) against what a city does without edits, re-importing its grids file with one grid
changed; and `GET /api/v1/locate?as_of=` (the grids of a past moment, from `grid_versions`)
against today's locate on the same server, under wrk."""

from __future__ import annotations

import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import shapely
from shapely.geometry import mapping
from sqlalchemy import Engine, text

from geo_service.auth.service import add_user
from geo_service.grids import edits
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests.benchmarks.common import (
    ROOT,
    Result,
    bench_url,
    city_dir,
    free_port,
    need_command,
    scratch_engine,
    settings,
    wait_until_up,
    wrk_ms,
)

INCIDENTS = 20_000  # open ones, spread over the city, for the edits to move
REPEAT = 7  # edits of each kind, each alternated with a re-import
SHIFT_DEG = 0.0001  # a redraw moves a shared boundary by this much (about 10 m)
BY = edits.EditBy("bench", "bench")
CONNECTIONS = 32  # wrk, as bench_locate
SECONDS = 10
ROUNDS = 5  # more than bench_locate's 3: the two sides differ by less than the noise
# wrk picks a random point in the city's bounding box for every request (the same points for
# both sides: one seed); %(as_of)s is "" for today's locate.
LUA = """
local x0, y0, x1, y1 = %(x0)f, %(y0)f, %(x1)f, %(y1)f
math.randomseed(42)
request = function()
  local lon = x0 + math.random() * (x1 - x0)
  local lat = y0 + math.random() * (y1 - y0)
  local path = string.format("/api/v1/locate?lon=%%.6f&lat=%%.6f", lon, lat)
  return wrk.format("GET", path .. "%(as_of)s")
end
"""


def run() -> list[Result]:
    """Import the city, plant open incidents, time the edits against re-imports, then load
    locate with and without `as_of`."""
    s = settings()
    folder = city_dir()
    engine = scratch_engine(s, "geo_bench_edits")
    try:
        for kind, name in (
            ("communities", "communities.shp"),
            ("grids", "grids.shp"),
            ("workers", "workers.csv"),
            ("buildings", "buildings.shp"),
        ):
            import_file(engine, s, kind, folder / name, ImportOptions())
        planted = _plant_incidents(engine)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))  # fresh tables: no autovacuum during the timings
        with engine.connect() as conn:  # the grids as imported: as_of for locate
            before = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        time.sleep(0.01)
        picks = _Picks(engine)
        with tempfile.TemporaryDirectory() as tmp:
            timings = _edits_against_imports(engine, s, picks, Path(tmp))
        served = _locate_load(engine, s, folder, before)
    finally:
        engine.dispose()
    peer = "re-import of the grids file, one grid changed"
    scale = f"3,906 grids, 119,871 buildings, {planted:,} open incidents; median of {REPEAT}"
    results = [
        Result(f"grid {kind} ({what}; {scale})", ours, peer, theirs)
        for kind, what, ours, theirs in timings
    ]
    today, as_of = served
    label = f"{CONNECTIONS} connections, median of {ROUNDS} × {SECONDS} s"
    results += [
        Result(
            f"GET /api/v1/locate?as_of= throughput ({label})",
            as_of["rps"],
            "today's locate",
            today["rps"],
            "req/s",
            higher_is_better=True,
        ),
        Result(
            "GET /api/v1/locate?as_of= latency p50",
            as_of["p50"],
            "today's locate p50",
            today["p50"],
            "ms",
        ),
    ]
    return results


# -- the data -------------------------------------------------------------------------------------
def _plant_incidents(engine: Engine) -> int:
    """Dispatched incidents at random points of the communities, routed by the locate rule
    (the smallest grid code covering the point)."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    """
                    WITH pts AS (
                      SELECT (ST_Dump(ST_GeneratePoints(ST_Union(geom), :n, 17))).geom AS geom
                      FROM communities
                    ), routed AS (
                      SELECT p.geom, g.code, g.community_code FROM pts p
                      LEFT JOIN LATERAL (SELECT code, community_code FROM grids
                                         WHERE ST_Covers(geom, p.geom) ORDER BY code LIMIT 1) g
                        ON true
                    ), planted AS (
                      INSERT INTO incidents (category, description, input_lon, input_lat,
                        input_crs, geom, grid_code, community_code, locate_status, distance_m,
                        status, received_at, dispatched_at, due_at, updated_at, source)
                      SELECT 'bench', 'planted by bench_edits', ST_X(geom), ST_Y(geom), 'wgs84',
                             geom, code, community_code,
                             CASE WHEN code IS NULL THEN 'outside' ELSE 'inside' END, 0,
                             'dispatched', now() - interval '2 days', now() - interval '1 day',
                             now() + interval '5 days', now(), 'bench'
                      FROM routed
                      RETURNING 1
                    )
                    SELECT count(*) FROM planted
                    """
                ),
                {"n": INCIDENTS},
            ).scalar_one()
        )


class _Picks:
    """Grids for the edits and the re-imports, each used once and apart from the others (an
    edit changes the data: no two timed changes touch the same grid or its neighbours)."""

    def __init__(self, engine: Engine) -> None:
        with engine.connect() as conn:
            pairs = conn.execute(
                text(
                    "SELECT a.code, b.code FROM grids a JOIN grids b ON a.code < b.code "
                    "AND a.community_code = b.community_code AND a.geom && b.geom "
                    "WHERE ST_Relate(a.geom, b.geom, 'F***1****') ORDER BY a.code, b.code"
                )
            ).all()
        self.near: dict[str, set[str]] = {}
        for a, b in pairs:
            self.near.setdefault(a, set()).add(b)
            self.near.setdefault(b, set()).add(a)
        self.order = sorted(self.near)
        random.Random(42).shuffle(self.order)  # spread over the city
        self.used: set[str] = set()

    def _free(self, code: str) -> bool:
        return code not in self.used and not (self.near[code] & self.used)

    def _take(self, *codes: str) -> None:
        for code in codes:
            self.used |= {code, *self.near[code]}

    def one(self) -> str:
        """A grid whose neighbours no other pick touched."""
        code = next(c for c in self.order if self._free(c))
        self._take(code)
        return code

    def two(self) -> tuple[str, str]:
        """Two grids of one community sharing a boundary line."""
        for a in self.order:
            if self._free(a):
                b = next((b for b in sorted(self.near[a]) if self._free(b)), None)
                if b is not None:
                    self._take(a, b)
                    return a, b
        raise RuntimeError("no two adjacent grids left")


def _shapes(engine: Engine, *codes: str) -> list[Any]:
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                text("SELECT code, ST_AsBinary(geom) FROM grids WHERE code = ANY(:c)"),
                {"c": list(codes)},
            ).all()
        )
    return [shapely.from_wkb(bytes(rows[c])) for c in codes]


# -- the edits, each against a re-import ----------------------------------------------------------
def _edits_against_imports(
    engine: Engine, s: Settings, picks: _Picks, tmp: Path
) -> list[tuple[str, str, float, float]]:
    """Median seconds of each edit kind and of as many re-imports, alternated."""

    def split() -> Callable[[], object]:
        code = picks.one()
        [shape] = _shapes(engine, code)
        x0, y0, x1, y1 = shape.bounds
        x = (x0 + x1) / 2
        line = {"type": "LineString", "coordinates": [[x, y0 - 0.001], [x, y1 + 0.001]]}
        return lambda: edits.split(engine, s, code, line, BY)

    def merge() -> Callable[[], object]:
        a, b = picks.two()
        return lambda: edits.merge(engine, s, [a, b], BY)

    def redraw() -> Callable[[], object]:
        a, b = picks.two()
        shape_a, shape_b = _shapes(engine, a, b)
        shared = shape_a.boundary.intersection(shape_b.boundary)
        strip = shape_b.intersection(shared.buffer(SHIFT_DEG, cap_style="flat"))
        grown = shapely.union_all([shape_a, strip])
        return lambda: edits.redraw(engine, s, a, mapping(grown), BY, neighbours="adjust")

    kinds = (
        ("split", "a line across its middle", split),
        ("merge", "two adjacent grids", merge),
        ("redraw", "a shared boundary moved ~10 m, neighbours adjust", redraw),
    )
    out = []
    for kind, what, prepare in kinds:
        ours, theirs = [], []
        moved = {"changed": 0, "created": 0, "retired": 0, "buildings": 0, "incidents": 0}
        for i in range(REPEAT):
            edit = prepare()
            start = time.perf_counter()
            answer: Any = edit()
            ours.append(time.perf_counter() - start)
            for key in ("changed", "created", "retired"):
                moved[key] += len(answer[key])
            moved["buildings"] += answer["buildings_moved"]
            moved["incidents"] += answer["incidents_moved"]
            path = _grids_file(engine, picks.one(), tmp / f"grids-{kind}-{i}.shp")
            start = time.perf_counter()
            report = import_file(engine, s, "grids", path, ImportOptions())
            theirs.append(time.perf_counter() - start)
            if (report.updated, report.inserted, report.deleted) != (1, 0, 0):
                raise RuntimeError(f"the re-import changed more than one grid: {report}")
        print(
            f"  {REPEAT} × {kind}: " + ", ".join(f"{n} {k}" for k, n in moved.items()), flush=True
        )
        out.append((kind, what, statistics.median(ours), statistics.median(theirs)))
    return out


def _grids_file(engine: Engine, changed: str, path: Path) -> Path:
    """Today's grids as the city keeps them (a shapefile of code, name, community), with one
    grid's shape changed: a vertex added in the middle of its first edge (same area, so the
    tiling holds, but a new geometry that the import stores as a new version)."""
    with engine.connect() as conn:
        frame = gpd.read_postgis(
            text("SELECT code, name, community_code AS community, geom FROM grids ORDER BY code"),
            conn,
            geom_col="geom",
        )
    row = frame.index[frame["code"] == changed][0]
    frame.loc[row, "geom"] = _with_midpoint(frame.loc[row, "geom"])
    frame.rename_geometry("geometry").to_file(path, encoding="utf-8")
    return path


def _with_midpoint(shape: Any) -> Any:
    polygon = shapely.get_parts(shape)[0]
    ring = list(polygon.exterior.coords)
    (x0, y0), (x1, y1) = ring[0], ring[1]
    ring.insert(1, ((x0 + x1) / 2, (y0 + y1) / 2))
    others = list(shapely.get_parts(shape)[1:])
    first = shapely.Polygon(ring, [i.coords for i in polygon.interiors])
    return shapely.MultiPolygon([first, *others])


# -- locate as of a moment, against today's ------------------------------------------------------
def _locate_load(
    engine: Engine, s: Settings, folder: Path, at: datetime
) -> tuple[dict[str, float], dict[str, float]]:
    """wrk on today's locate and on locate as of `at`, alternating rounds; medians."""
    wrk = need_command("wrk", "wrk")
    bounds = gpd.read_file(folder / "grids.shp").total_bounds
    token = add_user(engine, s, "bench", "dispatcher").token
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    scripts = []
    for as_of in ("", f"&as_of={stamp}"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            x0, y0, x1, y1 = bounds
            script.write(LUA % {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "as_of": as_of})
            scripts.append(script.name)
    port = free_port()
    env = {**os.environ, "GEO_DATABASE_URL": bench_url(engine)}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "geo-service"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/livez")
        for script in scripts:  # warm-up: connections, plans
            _load(wrk, base, script, token, 2)
        # Alternating rounds (today first, then as_of first, ...), medians: other load on a
        # 2-core machine moves single runs a lot.
        rounds = []
        for i in range(ROUNDS):
            order = scripts if i % 2 == 0 else scripts[::-1]
            measured = {script: _load(wrk, base, script, token, SECONDS) for script in order}
            rounds.append([measured[script] for script in scripts])
    finally:
        server.terminate()
        server.wait(10)
        for script in scripts:
            os.unlink(script)
    today = _median([r[0] for r in rounds])
    as_of = _median([r[1] for r in rounds])
    return today, as_of


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _load(wrk: str, url: str, script: str, token: str, seconds: int) -> dict[str, float]:
    """Run wrk; requests/s and latency percentiles in ms; fail on any error response."""
    cmd = [wrk, "-s", script, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    cmd += ["-H", f"Authorization: Bearer {token}", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": wrk_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99": wrk_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
    }
