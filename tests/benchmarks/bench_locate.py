"""`GET /api/v1/locate` under concurrent load (wrk, loopback, 32 connections) against the
`city` grids, beside two peers on the same database, machine and load:

- the same server's `/livez`, a handler that touches nothing: the ceiling of its HTTP stack;
- a minimal endpoint: the same SQL (`grids.store.locate_async`, prepared, on an asyncio
  psycopg pool of the same size and options) behind a bare ASGI handler under the same
  uvicorn, answering the facts as JSON with no token check, no rules and no validation.
  It lives here, in the benchmark, not in the product: it is what a hand-written service
  with our query would reach, so ours at ≥ 1× of it means the product adds nothing costly.

All three run in alternating rounds (livez, minimal, locate, livez, ...), each round 10 s of
wrk with the same random points; medians of the rounds are reported.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import geopandas as gpd

from geo_service.auth.service import add_user
from geo_service.ingest import ImportOptions, import_file
from tests.benchmarks.common import (
    ROOT,
    Result,
    bench_url,
    city_dir,
    free_port,
    load_note,
    need_command,
    scratch_engine,
    served,
    settings,
    wait_until_up,
    wrk_ms,
)

CONNECTIONS = 32
AUTHORIZATION = ""  # a dispatcher's bearer token, issued by run()
SECONDS = 10
ROUNDS = 5
# wrk picks a random point in the city's bounding box for every request.
LUA = """
local x0, y0, x1, y1 = %f, %f, %f, %f
math.randomseed(42)
request = function()
  local lon = x0 + math.random() * (x1 - x0)
  local lat = y0 + math.random() * (y1 - y0)
  return wrk.format("GET", string.format("%s?lon=%%.6f&lat=%%.6f", lon, lat))
end
"""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def minimal_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The minimal locate endpoint (`uvicorn --factory`): GET ?lon=&lat= → the facts of
    `grids.store.locate_async` as JSON, on a pool of the product's size and options."""
    from psycopg_pool import AsyncConnectionPool

    from geo_service.grids import store
    from geo_service.settings import Settings

    s = Settings()
    conninfo = os.environ["GEO_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    pool = AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=s.database.pool_size,
        open=False,
        kwargs={"autocommit": True, "options": "-c plan_cache_mode=force_generic_plan"},
    )
    tolerance = s.grids.locate_tolerance_m

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await pool.open()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await pool.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        query = parse_qs(scope["query_string"].decode())
        lon, lat = float(query["lon"][0]), float(query["lat"][0])
        async with pool.connection() as conn:
            rows = await store.locate_async(conn, [lon], [lat], tolerance)
        body = json.dumps(rows, default=str).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def run() -> list[Result]:
    """Serve the city grids two ways and load the three endpoints in turn."""
    wrk = need_command("wrk", "wrk")
    s = settings()
    folder = city_dir()
    engine = scratch_engine(s)
    for kind, name in (
        ("communities", "communities.shp"),
        ("grids", "grids.shp"),
        ("workers", "workers.csv"),
    ):
        import_file(engine, s, kind, folder / name, ImportOptions())
    bounds = tuple(gpd.read_file(folder / "grids.shp").total_bounds)
    global AUTHORIZATION
    AUTHORIZATION = "Authorization: Bearer " + add_user(engine, s, "bench", "dispatcher").token
    scripts = {}
    for name, path in (("locate", "/api/v1/locate"), ("minimal", "/")):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(LUA % (*bounds, path))
        scripts[name] = script.name
    minimal = _serve_minimal(bench_url(engine))
    rounds: dict[str, list[dict[str, float]]] = {"livez": [], "minimal": [], "locate": []}
    loads = []
    try:
        with served(engine, GEO_LOG_LEVEL="WARNING") as port:
            base, bare = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{minimal[1]}"
            wait_until_up(f"{bare}/?lon=0&lat=0")
            targets = {
                "livez": (f"{base}/livez", None),
                "minimal": (bare, scripts["minimal"]),
                "locate": (base, scripts["locate"]),
            }
            for url, lua in targets.values():  # warm-up: connections, plans, caches
                _load(wrk, url, lua, 2)
            # Alternating rounds, medians: other load on a 2-core machine moves single runs.
            for _ in range(ROUNDS):
                loads.append(os.getloadavg()[0])
                for name, (url, lua) in targets.items():
                    rounds[name].append(_load(wrk, url, lua, SECONDS))
    finally:
        minimal[0].terminate()
        minimal[0].wait(10)
        engine.dispose()
        for path in scripts.values():
            os.unlink(path)
    med = {name: _median(r) for name, r in rounds.items()}
    rps = {name: [r["rps"] for r in runs] for name, runs in rounds.items()}
    label = (
        f"{CONNECTIONS} connections, median of {ROUNDS} alternating rounds × {SECONDS} s, "
        f"load average {min(loads):.1f}-{max(loads):.1f} before the rounds; {load_note()} after"
    )
    bare_label = "minimal endpoint: the same SQL behind a bare ASGI handler, same uvicorn"
    throughputs = (
        (f"({label}; rounds {_range(rps['locate'])} req/s)", "trivial /livez", "livez"),
        ("(same rounds)", bare_label, "minimal"),
    )
    return [
        *(
            Result(
                f"GET /api/v1/locate throughput {what}",
                med["locate"]["rps"],
                f"{peer} (rounds {_range(rps[name])} req/s)",
                med[name]["rps"],
                "req/s",
                higher_is_better=True,
            )
            for what, peer, name in throughputs
        ),
        *(
            Result(
                f"GET /api/v1/locate latency {q}",
                med["locate"][q],
                f"{peer} {q}",
                med[name][q],
                "ms",
                digits=1,
            )
            for q in ("p50", "p99")
            for name, peer in (("livez", "trivial /livez"), ("minimal", "minimal endpoint"))
        ),
    ]


def _range(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


def _serve_minimal(url: str) -> tuple[subprocess.Popen[bytes], int]:
    """The minimal endpoint under uvicorn with its defaults, as `geo-service serve` (one
    process, uvloop and httptools when installed, no access log)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "tests.benchmarks.bench_locate:minimal_app"),
            *("--factory", "--port", str(port), "--log-level", "warning", "--no-access-log"),
        ],
        env={**os.environ, "GEO_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return proc, port


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _load(wrk: str, url: str, script: str | None, seconds: int) -> dict[str, float]:
    """Run wrk; requests/s and latency percentiles in ms; fail on any error response."""
    cmd = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-H", AUTHORIZATION, url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    return {
        "rps": float(_found(r"Requests/sec:\s+([\d.]+)", out)),
        "p50": wrk_ms(_found(r"50%\s+([\d.]+\w+)", out)),
        "p99": wrk_ms(_found(r"99%\s+([\d.]+\w+)", out)),
    }


def _found(pattern: str, out: str) -> str:
    match = re.search(pattern, out)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in wrk's output:\n{out}")
    return match.group(1)
