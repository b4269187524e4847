"""Forward geocoding on the `city` register (≈120k buildings): ours against a plain pg_trgm
similarity query over the full addresses (GiST trigram index, nearest by `<->`), on the
same data and the same queries: latency p50/p99 and accuracy side by side.

The queries are the test set of tests/geocode_cases.py drawn from the city's own register:
each sampled address rewritten the ways people write it, plus addresses that do not exist.
The demo register's figures (the test set the goals are stated on) come first.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

from geo_service.buildings.service import geocode_on, refresh_address_index
from geo_service.db.engine import reading
from geo_service.ingest import import_file
from geo_service.settings import Settings
from tests.benchmarks.common import ROOT, Result, city_dir, scratch_engine, settings
from tests.geocode_cases import Case, Figures, Register, cases, measure

Answer = tuple[str | None, float]  # top building code (None: no building), its confidence

_PEER = text(
    "SELECT code, similarity(address, :q) AS s FROM buildings ORDER BY address <-> :q LIMIT 1"
)


def _load(engine: Engine, s: Settings, folder) -> float:
    for kind in ("communities", "grids", "buildings"):
        import_file(engine, s, kind, folder / f"{kind}.shp")
    started = time.perf_counter()
    refresh_address_index(engine)
    return time.perf_counter() - started


def _peer_index(engine: Engine) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX peer_trgm ON buildings USING gist (address gist_trgm_ops)"))
    return time.perf_counter() - started


def _run(
    conn: Connection, queries: list[Case], ask: Callable[[Connection, str], Answer]
) -> tuple[Figures, list[float]]:
    results, times = [], []
    for case in queries:
        started = time.perf_counter()
        code, confidence = ask(conn, case.text)
        times.append(time.perf_counter() - started)
        results.append((case, code, confidence))
    return measure(results), times


def _pct(times: list[float], q: float) -> float:
    return 1000 * statistics.quantiles(times, n=100)[int(q) - 1]


def run() -> list[Result]:
    """Accuracy on the demo register; latency and accuracy on the city, ours vs pg_trgm."""
    s = settings()

    def ours(conn: Connection, q: str) -> Answer:
        found = geocode_on(conn, s, q, 1)["candidates"]
        return (found[0]["building_code"], found[0]["confidence"]) if found else (None, 0.0)

    def peer(conn: Connection, q: str) -> Answer:
        row = conn.execute(_PEER, {"q": q}).first()
        return (row.code, float(row.s)) if row else (None, 0.0)

    rows: list[Result] = []
    for label, folder, sample in (
        ("demo", ROOT / "shapefiles" / "demo", 600),
        ("city", city_dir(), 150),
    ):
        engine = scratch_engine(s, "geo_bench_geocode")
        ours_index = _load(engine, s, folder)
        peer_index = _peer_index(engine)
        with reading(engine) as conn:
            reg = Register.of(conn.execute(text("SELECT code, address FROM buildings")).all())
            n = len(reg.parts)
            queries = cases(reg, sample=sample)
            for q in queries[:50]:  # warm both: plans, caches
                ours(conn, q.text), peer(conn, q.text)
            mine, my_times = _run(conn, queries, ours)
            theirs, their_times = _run(conn, queries, peer)
        engine.dispose()
        what = f"{label} register ({n:,} buildings, {mine.queries:,} queries)"
        peer_name = "plain pg_trgm `<->` on full address"
        rows += [
            Result(f"geocode top-1 accuracy, {what}", 100 * mine.top1, peer_name,
                   100 * theirs.top1, "%", higher_is_better=True, digits=1),
            Result(f"geocode confident (≥ 0.8) wrong answers, {what}",
                   100 * mine.confident_wrong, peer_name, 100 * theirs.confident_wrong, "%",
                   digits=2),
        ]  # fmt: skip
        if label == "city":
            rows += [
                Result(f"geocode latency p50, {what}", _pct(my_times, 50), peer_name,
                       _pct(their_times, 50), "ms", digits=2),
                Result(f"geocode latency p99, {what}", _pct(my_times, 99), peer_name,
                       _pct(their_times, 99), "ms", digits=2),
                Result(f"address index build, {n:,} addresses", ours_index,
                       "pg_trgm GiST index on full address", peer_index),
            ]  # fmt: skip
        worst = sorted(mine.by_variant.items(), key=lambda kv: kv[1])[:3]
        print(f"{label}: weakest variants (ours): {worst}", flush=True)
    return rows
