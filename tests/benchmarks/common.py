"""Shared benchmark plumbing: a scratch database, the cached `city` data, timing, results."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from geo_service.db.engine import database_url, ensure_schema, fresh_database, make_engine
from geo_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """One figure of ours against the same figure of a peer (lower is better)."""

    name: str
    ours: float
    peer_name: str
    peer: float
    unit: str = "s"

    @property
    def ratio(self) -> float:
        """How many times faster we are (peer / ours)."""
        return self.peer / self.ours if self.ours else float("inf")

    def row(self) -> str:
        """A markdown table row."""
        return (f"| {self.name} | {self.ours:.3f} {self.unit} | {self.peer_name} | "
                f"{self.peer:.3f} {self.unit} | {self.ratio:.2f}× |")


def settings() -> Settings:
    """Settings of the benchmark run (embedded cluster in the repo unless GEO_DATABASE_URL)."""
    base = Settings()
    return base if not base.embedded else Settings(data_dir=ROOT / ".geo-service")


def scratch_engine(s: Settings, name: str = "geo_bench") -> Engine:
    """A migrated, empty database for benchmarks."""
    url = database_url(s)
    engine = make_engine(fresh_database(url, name))
    ensure_schema(engine)
    return engine


def bench_url(engine: Engine) -> str:
    """The URL of `engine`, password included (peers need it)."""
    return make_url(engine.url).render_as_string(hide_password=False)


def city_dir(seed: int = 42) -> Path:
    """The `city` scale synthetic data as files, generated once and cached."""
    from geo_service.synth import generate_city, write_city

    folder = ROOT / ".geo-service" / "bench" / f"city-{seed}"
    if not (folder / "roads.shp").exists():
        write_city(generate_city("city", seed=seed), folder)
    return folder


def timed(fn: Callable[[], object], repeat: int = 3, setup: Callable[[], object] | None = None
          ) -> float:
    """Median wall time of `fn` over `repeat` runs (setup excluded)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
