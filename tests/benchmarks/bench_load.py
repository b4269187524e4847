"""Mixed load at 256 concurrent connections (wrk, loopback, bounded) on the `city` data:
locate, geocode, vector tiles and incident reports (each with its own Idempotency-Key), all
with a bearer token, against the same server's trivial `/livez` under the same load.

Reported: throughput, p50/p99 latency and the error rate (non-2xx answers plus socket errors:
refused, reset, timed out) of both. Goal: no error at all at >= 200 clients on 2 cores.

Then incident intake on the same server: 50 clients (one asyncio loop, raw HTTP/1.1 on
keep-alive connections, uvloop), each posting reports one after another, every report with
an Idempotency-Key of its own, against the same clients sending `GET /livez` the same way;
rounds alternate (livez, intake, livez, intake). Afterwards each acknowledged report (201,
its ref) must be stored exactly once, under its key and with that ref, and nothing else
under the run's keys. Goal (issue 21): >= 300 req/s, p99 under 300 ms.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import uvloop
from sqlalchemy import Engine, text

from geo_service.auth.service import add_user
from geo_service.buildings.service import refresh_address_index
from geo_service.ingest import ImportOptions, import_file
from tests.benchmarks.bench_visits import Connection, request
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

INTAKE_CLIENTS = 50
INTAKE_SECONDS = 15
INTAKE_ROUNDS = 2

CONNECTIONS = 256
SECONDS = 15
TIMEOUT_S = 10  # wrk's own default (2 s) would count a slow answer as an error
WORKERS = 2  # server processes: one per core
MIX = {"locate": 40, "geocode": 20, "tile": 30, "report": 10}  # percent of requests
# Lua tables of prepared requests are filled in by `_script`.
LUA = """
local token = "%(token)s"
local locate = {%(locate)s}
local geocode = {%(geocode)s}
local tiles = {%(tiles)s}
local points = {%(points)s}
local mix = {%(mix)s}
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  math.randomseed(42 + tid)
  wrk.headers["Authorization"] = "Bearer " .. token
end

request = function()
  counter = counter + 1
  local kind = mix[math.random(#mix)]
  if kind == "locate" then
    return wrk.format("GET", locate[math.random(#locate)])
  elseif kind == "geocode" then
    return wrk.format("GET", geocode[math.random(#geocode)])
  elseif kind == "tile" then
    return wrk.format("GET", tiles[math.random(#tiles)])
  end
  local p = points[math.random(#points)]
  local body = string.format(
    '{"category":"exposed_rubbish","lon":%%s,"lat":%%s,"description":"load test"}', p[1], p[2])
  local headers = {  -- given headers replace wrk.headers: the token goes again
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("load-%(run)s-%%d-%%d", tid, counter),
  }
  return wrk.format("POST", "/api/v1/incidents", headers, body)
end
"""


def run() -> list[Result]:
    """Serve the city, load the mix and /livez in alternating rounds, report both."""
    wrk = need_command("wrk", "wrk")
    s = settings()
    folder = city_dir()
    engine = scratch_engine(s, "geo_bench_load")
    for kind, name in (
        ("communities", "communities.shp"),
        ("grids", "grids.shp"),
        ("workers", "workers.csv"),
        ("buildings", "buildings.shp"),
    ):
        import_file(engine, s, kind, folder / name, ImportOptions())
    refresh_address_index(engine)
    token = add_user(engine, s, "load-test", "dispatcher", expires_days=1).token
    script = _script(folder, token)
    port = free_port()
    env = {
        **os.environ,
        "GEO_DATABASE_URL": bench_url(engine),
        "GEO_WORKERS": str(WORKERS),
        "GEO_LOG_LEVEL": "WARNING",  # one log line per request would be measured too
    }
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
        _load(wrk, f"{base}/livez", None, 3)  # warm-up: connections, caches, plans
        _load(wrk, base, script, 5)
        rounds = [(_load(wrk, f"{base}/livez", None, SECONDS), _load(wrk, base, script, SECONDS))]
        rounds.append(
            (_load(wrk, f"{base}/livez", None, SECONDS), _load(wrk, base, script, SECONDS))
        )
        intake = _intake(engine, port, token, folder)
    finally:
        server.terminate()
        server.wait(20)
        engine.dispose()
        os.unlink(script)
    trivial = _total(r[0] for r in rounds)
    mixed = _total(r[1] for r in rounds)
    label = f"{CONNECTIONS} connections, {WORKERS} workers, 2 × {SECONDS} s"
    mix = ", ".join(f"{k} {v}%" for k, v in MIX.items())
    return [
        Result(
            f"mixed load ({mix}) throughput ({label})",
            mixed["rps"],
            "trivial /livez",
            trivial["rps"],
            "req/s",
            higher_is_better=True,
        ),
        Result("mixed load latency p50", mixed["p50"], "trivial /livez p50", trivial["p50"], "ms"),
        Result("mixed load latency p99", mixed["p99"], "trivial /livez p99", trivial["p99"], "ms"),
        # Shown as the share answered well (higher is better), so that 0 errors on both
        # sides reads 1.00x; the error rate is 100 % minus it.
        Result(
            f"mixed load answered 2xx, of {mixed['requests']:,.0f} requests "
            f"({mixed['errors']:,.0f} errors: non-2xx + socket)",
            100 - mixed["errors"] / mixed["requests"] * 100,
            f"/livez, of {trivial['requests']:,.0f} ({trivial['errors']:,.0f} errors)",
            100 - trivial["errors"] / trivial["requests"] * 100,
            "%",
            higher_is_better=True,
            digits=3,
        ),
        *intake,
    ]


def _script(folder: Path, token: str) -> str:
    """The wrk script with its prepared requests (points, addresses, tiles of the city)."""
    rng = random.Random(42)
    grids = gpd.read_file(folder / "grids.shp")
    west, south, east, north = grids.total_bounds
    points = [(rng.uniform(west, east), rng.uniform(south, north)) for _ in range(500)]
    locate = [f"/api/v1/locate?lon={x:.6f}&lat={y:.6f}" for x, y in points]
    addresses = gpd.read_file(folder / "buildings.shp", columns=["address"])["address"]
    geocode = [
        "/api/v1/geocode?q=" + urllib.parse.quote(a) for a in rng.sample(list(addresses), 300)
    ]
    tiles = [
        f"/tiles/grids/{z}/{x}/{y}.mvt"
        for z in (13, 14)
        for x, y in _tiles(west, south, east, north, z)
    ]
    mix = [kind for kind, share in MIX.items() for _ in range(share)]

    def lua_list(items: list[str]) -> str:
        return ",".join(f'"{item}"' for item in items)

    text = LUA % {
        "token": token,
        "locate": lua_list(locate),
        "geocode": lua_list(geocode),
        "tiles": lua_list(tiles),
        "points": ",".join(f"{{{x:.6f},{y:.6f}}}" for x, y in points),
        "mix": lua_list(mix),
        "run": f"{int(time.time())}",
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(text)
    return script.name


def _tiles(west: float, south: float, east: float, north: float, z: int) -> list[tuple[int, int]]:
    """The Web Mercator tiles (x, y) of zoom `z` covering a lon/lat box."""

    def tile(lon: float, lat: float) -> tuple[int, int]:
        n = 2**z
        y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
        return int((lon + 180) / 360 * n), int(y)

    (x0, y0), (x1, y1) = tile(west, north), tile(east, south)
    return [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def _load(wrk: str, url: str, script: str | None, seconds: int) -> dict[str, float]:
    """Run wrk: requests, requests/s, latency percentiles (ms) and errors."""
    cmd = [
        wrk,
        "-t2",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        f"--timeout={TIMEOUT_S}s",
        "--latency",
        url,
    ]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in sockets.groups()) if sockets else 0
    return {
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": wrk_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99": wrk_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        "errors": float(errors),
        "seconds": float(seconds),
    }


def _total(runs: object) -> dict[str, float]:
    """Rounds added up: requests and errors summed, rates over the whole time, percentiles
    the worse of the rounds (wrk gives no histogram to merge)."""
    runs = list(runs)  # type: ignore[call-overload]
    seconds = sum(r["seconds"] for r in runs)
    return {
        "requests": sum(r["requests"] for r in runs),
        "rps": sum(r["rps"] * r["seconds"] for r in runs) / seconds,
        "p50": max(r["p50"] for r in runs),
        "p99": max(r["p99"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


# -- incident intake ----------------------------------------------------------------------------
async def _client(
    port: int, token: str, run_id: str, n: int, until: float, points: list[tuple[float, float]],
    peer: bool, out: dict[str, Any],
) -> None:  # fmt: skip
    """One client: reports (or /livez) one after another until `until`."""
    conn = Connection(port)
    rng = random.Random(n)
    i = 0
    try:
        while time.perf_counter() < until:
            i += 1
            if peer:
                data = request("/livez", token, None, None)
            else:
                lon, lat = rng.choice(points)
                body = json.dumps(
                    {"category": "exposed_rubbish", "lon": lon, "lat": lat,
                     "description": "intake benchmark"}
                ).encode()  # fmt: skip
                data = request("/api/v1/incidents", token, f"{run_id}-{n}-{i}", body)
            started = time.perf_counter()
            await conn.send(data)
            status, _, answer = await conn.answer()
            out["latencies"].append((time.perf_counter() - started) * 1000)
            if status != (200 if peer else 201):
                out["failures"].append(f"{status} {answer[:200]!r}")
            elif not peer:
                out["refs"][f"{run_id}-{n}-{i}"] = json.loads(answer)["ref"]
    finally:
        await conn.close()


def _intake_round(
    port: int, token: str, run_id: str, points: list[tuple[float, float]], peer: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"latencies": [], "failures": [], "refs": {}}

    async def all_clients() -> None:
        until = time.perf_counter() + INTAKE_SECONDS
        await asyncio.gather(
            *(_client(port, token, run_id, n, until, points, peer, out)
              for n in range(INTAKE_CLIENTS))
        )  # fmt: skip

    started = time.perf_counter()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(all_clients())
    out["seconds"] = time.perf_counter() - started
    if out["failures"]:
        raise RuntimeError(f"{len(out['failures'])} failed: {out['failures'][:5]}")
    return out


def _intake(engine: Engine, port: int, token: str, folder: Path) -> list[Result]:
    """Reports from 50 clients beside /livez, in alternating rounds; each acknowledged
    report checked stored once."""
    rng = random.Random(21)
    grids = gpd.read_file(folder / "grids.shp")
    west, south, east, north = grids.total_bounds
    points = [(rng.uniform(west, east), rng.uniform(south, north)) for _ in range(2000)]
    run_id = f"intake-{int(time.time())}"
    _intake_round(port, token, f"{run_id}-warm", points, peer=False)  # connections, plans
    ours: list[dict[str, Any]] = []
    peer: list[dict[str, Any]] = []
    for r in range(INTAKE_ROUNDS):
        peer.append(_intake_round(port, token, run_id, points, peer=True))
        ours.append(_intake_round(port, token, f"{run_id}-{r}", points, peer=False))
    refs = {key: ref for o in ours for key, ref in o["refs"].items()}
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT idempotency_key, ref FROM incidents "
                "WHERE idempotency_key LIKE :run || '-%' AND idempotency_key NOT LIKE :warm"
            ),
            {"run": run_id, "warm": f"{run_id}-warm-%"},
        ).all()
    by_key: dict[str, list[str]] = {}
    for key, ref in stored:
        by_key.setdefault(key, []).append(ref)
    wrong = [k for k, ref in refs.items() if by_key.get(k) != [ref]]
    extra = set(by_key) - set(refs)
    if wrong or extra:
        raise RuntimeError(f"intake: {len(wrong)} acknowledged reports not stored once as "
                           f"answered, {len(extra)} stored without an answer")  # fmt: skip

    def rate(runs: list[dict[str, Any]]) -> float:
        return sum(len(o["latencies"]) for o in runs) / sum(o["seconds"] for o in runs)

    def pct(runs: list[dict[str, Any]], q: float) -> float:
        return float(np.percentile([x for o in runs for x in o["latencies"]], q))

    label = f"{INTAKE_CLIENTS} clients, {WORKERS} workers, {INTAKE_ROUNDS} × {INTAKE_SECONDS} s"
    return [
        Result(f"POST /api/v1/incidents throughput ({label}, {len(refs):,} reports; goal "
               "≥ 300 req/s)", rate(ours), "/livez, same clients", rate(peer), "req/s",
               higher_is_better=True),
        Result("POST /api/v1/incidents latency p50", pct(ours, 50), "/livez p50", pct(peer, 50),
               "ms", digits=1),
        Result("POST /api/v1/incidents latency p99 (goal < 300 ms)", pct(ours, 99), "/livez p99",
               pct(peer, 99), "ms", digits=1),
        Result(f"acknowledged reports stored exactly once under their key and ref: {len(refs):,} "
               f"of {len(refs):,}", 100.0, "/livez: every answer 200", 100.0, "%",
               higher_is_better=True, digits=1),
    ]  # fmt: skip
