"""Shared benchmark plumbing: a scratch database, the cached `city` data, timing, results."""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from geo_service.db.engine import database_url, ensure_schema, fresh_database, make_engine
from geo_service.settings import Settings, find_data_dir

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """One figure of ours against the same figure of a peer (lower is better)."""

    name: str
    ours: float
    peer_name: str
    peer: float
    unit: str = "s"
    higher_is_better: bool = False  # throughputs; times are lower-is-better
    digits: int | None = None  # decimals shown (default: 0 for throughputs, 3 for times)

    @property
    def ratio(self) -> float:
        """How many times better we are: peer/ours for times, ours/peer for throughputs."""
        num, den = (self.ours, self.peer) if self.higher_is_better else (self.peer, self.ours)
        return num / den if den else float("inf")

    def row(self) -> str:
        """A markdown table row."""
        digits = self.digits if self.digits is not None else 0 if self.higher_is_better else 3
        return (
            f"| {self.name} | {self.ours:,.{digits}f} {self.unit} | {self.peer_name} | "
            f"{self.peer:,.{digits}f} {self.unit} | {self.ratio:.2f}× |"
        )


def settings() -> Settings:
    """Settings of the benchmark run (the checkout's embedded cluster unless GEO_DATABASE_URL)."""
    base = Settings()
    if not base.database.embedded or os.environ.get("GEO_DATA_DIR"):
        return base
    return Settings().updated(database={"data_dir": find_data_dir(ROOT)})


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

    # In the data folder, never in the checkout: a `.geo-service` folder there would become
    # the checkout's data folder and want a cluster of its own.
    folder = settings().database.data_dir / "bench" / f"city-{seed}"
    if not (folder / "roads.shp").exists():
        write_city(generate_city("city", seed=seed), folder)
    return folder


def import_city(engine: Engine, s: Settings, kinds: tuple[str, ...], folder: Path) -> None:
    """Import the `city` files of these kinds (workers from their CSV), in the order given."""
    from geo_service.ingest import ImportOptions, import_file

    for kind in kinds:
        name = "workers.csv" if kind == "workers" else f"{kind}.shp"
        import_file(engine, s, kind, folder / name, ImportOptions())


@contextmanager
def served(engine: Engine, **env: str) -> Iterator[int]:
    """`geo-service serve` on a free port over `engine`'s database (more GEO_ variables in
    `env`), answering before this yields its port; stopped after."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "geo-service"), "serve", "--port", str(port)],
        env={**os.environ, "GEO_DATABASE_URL": bench_url(engine), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/livez")
        yield port
    finally:
        server.terminate()
        server.wait(20)


def timed(
    fn: Callable[[], object], repeat: int = 3, setup: Callable[[], object] | None = None
) -> float:
    """Median wall time of `fn` over `repeat` runs (setup excluded)."""
    return statistics.median(alternated({"fn": fn}, repeat, setup)["fn"])


def alternated(
    runs: Mapping[str, Callable[[], object]],
    repeat: int,
    setup: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """The wall times (s) of each of `runs`, each run `repeat` times in turns (a, b, a, b,
    ...), so that ours and a peer meet the same machine; `setup` runs before every run,
    outside the timing."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            if setup is not None:
                setup()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0-1) of `values`, by nearest rank (one of the values, never a mix)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: list[float], unit: str = "s", digits: int = 2) -> str:
    """The min-max of `values` for a row's label: how far the runs behind a median lie."""
    return f"{min(values):,.{digits}f}-{max(values):,.{digits}f} {unit} in {len(values)} runs"


def load_note() -> str:
    """The machine's load average now (1 min), for a row's label: 2 shared cores."""
    return f"load {os.getloadavg()[0]:.1f}"


def need_command(command: str, package: str) -> str:
    """Path of `command`, installing its Debian package first when root and it is missing."""
    import os
    import shutil
    import subprocess

    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit(f"{command} is needed: apt-get install {package}")
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", package],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
    )
    return shutil.which(command) or command


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout: float = 90) -> None:
    """Poll `url` until the server answers (any HTTP status counts as an answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not answer at {url}")


def ready_after(port: int, timeout: float = 300) -> float:
    """Seconds until the server on `port` answers /readyz 200 (its coverage model loaded):
    a load balancer sends it traffic from then on."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5):
                return time.monotonic() - started
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server on port {port} was not ready in {timeout:g} s")


def wrk_ms(value: str) -> float:
    """A wrk latency ("512.00us", "3.10ms", "1.20s", "1.01m") in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(\w+)", value)
    if match is None:
        raise ValueError(f"not a wrk latency: {value!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
