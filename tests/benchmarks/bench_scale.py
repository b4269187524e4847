"""How each cost grows with size: the synthetic `city` at 1×, `city3` at 3× and `province`
at 10× (issue 21). `make bench-scale`, or `python -m tests.benchmarks.bench_scale [SCALE ...]`
to run some scales only (the others' figures are kept from their last run); `--report` writes
the table and the plot again from the kept figures; `SCALE --again DATABASE` measures the
steps after the imports again on a database of that scale imported before.

At each scale, each through the user's door (the `geo-service` command in a process of its
own, its peak RSS from the kernel; or HTTP on a real `geo-service serve`):
- `geo-service synth --scale S`, timed into a scratch folder the imports then read;
- `geo-service import` of each kind, in a database of the scale's own (`geo_scale_S`);
- `coverage compute` twice (the second recorded), with the peak RSS of the process and,
  apart, PostgreSQL's: the peak sum of the private memory (RssAnon) of the backends serving
  that database, sampled every 0.2 s (shared_buffers, shared by all, not in it);
- what-if over HTTP (the first call of a fresh server, then a centre dragged 40 steps) and
  suggest k=5 over HTTP (first and warm), as bench_coverage asks them;
- `geo-service assign` of 1,000,000 points, and at the province of 10,000,000 too (streaming:
  its peak RSS should not grow with the points);
- geocode p50 on the full address register (the address test set, each query asked of ours
  and of pg_trgm in turn, as bench_geocode asks them);
- cold tiles p95 beside tipg at the city's centre (bench_tiles' tiles and servers).
Figures go to docs/PERFORMANCE.md (section bench_scale) and a plot, docs/scale.png; the
figures of each scale are also kept in the data folder (bench/scale-results.json).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from geo_service.auth.service import add_user
from geo_service.db.engine import database_url, drop_database, make_engine, reading
from geo_service.settings import Settings
from tests.benchmarks import bench_coverage, bench_geocode, bench_tiles
from tests.benchmarks.__main__ import _record
from tests.benchmarks.bench_assign import points_csv
from tests.benchmarks.bench_coverage import Client
from tests.benchmarks.common import (
    ROOT,
    bench_url,
    load_note,
    ready_after,
    scratch_engine,
    served,
    settings,
    wait_until_up,
)
from tests.geocode_cases import Register, cases

SCALES = {"city": 1, "city3": 3, "province": 10}  # preset: cities' worth
KINDS = ("communities", "grids", "workers", "buildings", "centers", "roads")
POINTS = 1_000_000
PROVINCE_POINTS = 10_000_000
SUGGEST_K = 5
SUGGEST_WARM = 3
GEOCODE_SAMPLE = 50  # register buildings whose address variants are asked (~500 queries)
SAMPLE_S = 0.2  # PostgreSQL memory sampling period
DOC_PLOT = ROOT / "docs" / "scale.png"


@dataclass
class Run:
    """One command's wall time, its peak RSS and PostgreSQL's peak private memory beside it."""

    seconds: float
    rss_mb: float
    pg_mb: float | None = None
    out: str = ""


@dataclass
class Figures:
    """What one scale measured."""

    scale: str
    sizes: dict[str, int] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)  # name -> seconds, ms or MB
    notes: dict[str, str] = field(default_factory=dict)
    load: float = 0.0  # 1-minute load average at the scale's start


def results_path(s: Settings) -> Path:
    """Where each scale's last figures are kept between runs."""
    return s.database.data_dir / "bench" / "scale-results.json"


# -- measuring a process ----------------------------------------------------------------------


class PgMemory:
    """Peak sum of RssAnon of the PostgreSQL backends serving one database (local cluster)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PgMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        query = text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        with self.engine.connect() as conn:
            while not self._stop.wait(SAMPLE_S):
                pids = conn.execute(query).scalars().all()
                conn.rollback()
                self.peak_kb = max(self.peak_kb, sum(_rss_anon_kb(p) for p in pids))


def _rss_anon_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass  # the backend ended, or the cluster is not on this machine
    return 0


def command(engine: Engine | None, *args: str, pg: bool = False) -> Run:
    """`geo-service ARGS` over `engine`'s database: wall time, peak RSS (wait4), PostgreSQL's
    peak private memory when `pg`; its stdout. A failure stops the benchmark."""
    env = {**os.environ, "GEO_LOG_LEVEL": "WARNING"}
    if engine is not None:
        env["GEO_DATABASE_URL"] = bench_url(engine)
    exe = str(Path(sys.executable).parent / "geo-service")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        memory = PgMemory(engine) if pg and engine is not None else None
        started = time.perf_counter()
        if memory is not None:
            memory.__enter__()
        try:
            proc = subprocess.Popen([exe, *args], env=env, stdout=out, stderr=err, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if memory is not None:
                memory.__exit__()
        took = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"geo-service {' '.join(args)}: exit {proc.returncode}: "
                               f"{err.read()[-2000:].decode(errors='replace')}")  # fmt: skip
        text_out = out.read().decode(errors="replace")
    pg_mb = memory.peak_kb / 1024 if memory is not None else None
    return Run(took, usage.ru_maxrss / 1024, pg_mb, text_out)


# -- one scale ----------------------------------------------------------------------------------


def measure(s: Settings, scale: str, keep: Callable[[Figures], None]) -> Figures:
    """Every figure of one scale (`keep` gets them after each step: a province run that
    fails late keeps what it measured), its database dropped after."""
    fig = Figures(scale, load=os.getloadavg()[0])
    bench = s.database.data_dir / "bench"
    bench.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"scale-{scale}-", dir=bench))
    engine = scratch_engine(s, f"geo_scale_{scale}")
    try:
        run = command(None, "synth", str(folder), "--scale", scale)
        fig.costs["synth_s"], fig.costs["synth_rss_mb"] = run.seconds, run.rss_mb
        print(f"{scale}: synth {run.seconds:.1f} s, {run.rss_mb:,.0f} MB", flush=True)
        _imports(engine, folder, fig)
        keep(fig)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
        _after_imports(s, engine, fig, keep)
    finally:
        engine.dispose()
        drop_database(bench_url(engine))
        shutil.rmtree(folder, ignore_errors=True)
    return fig


def _after_imports(
    s: Settings, engine: Engine, fig: Figures, keep: Callable[[Figures], None]
) -> None:
    """Every step after the imports, on `engine`'s database of `fig.scale`."""
    token = add_user(engine, s, f"bench-planner-{os.getpid()}", "planner", expires_days=1).token
    bench = s.database.data_dir / "bench"
    steps: list[Callable[[], None]] = [
        lambda: _compute(engine, fig),
        lambda: _what_if(engine, token, fig),
        lambda: _suggest(engine, token, fig),
        lambda: _assign(engine, bench / f"scale-points-{fig.scale}", fig),
        lambda: _geocode(engine, s, fig),
        lambda: _tiles(engine, fig),
    ]
    for step in steps:
        step()
        keep(fig)


def again(s: Settings, scale: str, database: str, keep: Callable[[Figures], None]) -> None:
    """The steps after the imports measured again on `database`, a database of `scale`
    imported before (a restored copy of a run's: the province's imports take 40 minutes);
    the kept synth and import figures stay, and the note says so."""
    fig = kept(results_path(s)).get(scale) or Figures(scale)
    fig.notes["again"] = (
        f"steps after the imports measured again {time.strftime('%Y-%m-%d %H:%M')} on "
        f"database {database} (load {os.getloadavg()[0]:.1f} at the start)"
    )
    url = make_url(database_url(s)).set(database=database)
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        _after_imports(s, engine, fig, keep)
    finally:
        engine.dispose()


def _imports(engine: Engine, folder: Path, fig: Figures) -> None:
    total = 0.0
    for kind in KINDS:
        name = "workers.csv" if kind == "workers" else f"{kind}.shp"
        run = command(engine, "import", kind, str(folder / name))
        fig.costs[f"import_{kind}_s"] = run.seconds
        fig.costs[f"import_{kind}_rss_mb"] = run.rss_mb
        total += run.seconds
        print(f"{fig.scale}: import {kind} {run.seconds:.1f} s, {run.rss_mb:,.0f} MB", flush=True)
    fig.costs["import_s"] = total
    with reading(engine) as conn:
        for table in ("communities", "grids", "buildings", "centers", "street_edges"):
            count = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            fig.sizes[table] = int(count)


def _compute(engine: Engine, fig: Figures) -> None:
    first = command(engine, "coverage", "compute", "--json", pg=True)
    again = command(engine, "coverage", "compute", "--json", pg=True)
    report = json.loads(again.out)
    fig.costs["compute_s"], fig.costs["compute_rss_mb"] = again.seconds, again.rss_mb
    fig.costs["compute_pg_mb"] = again.pg_mb or 0.0
    fig.costs["compute_first_s"] = first.seconds
    fig.costs["compute_inner_s"] = float(report["seconds"])
    stages = ", ".join(f"{k} {v:.2f}" for k, v in report["timings"].items())
    fig.notes["compute_stages"] = stages
    pg_mb = fig.costs["compute_pg_mb"]
    print(f"{fig.scale}: compute {again.seconds:.1f} s (first {first.seconds:.1f} s), "
          f"{again.rss_mb:,.0f} MB, PostgreSQL {pg_mb:,.0f} MB; {stages}", flush=True)  # fmt: skip


def _what_if(engine: Engine, token: str, fig: Figures) -> None:
    first, warm = bench_coverage.what_if_rows(engine, token)
    fig.costs["what_if_first_ms"], fig.costs["what_if_p95_ms"] = first.ours, warm.ours
    print(
        f"{fig.scale}: what-if first {first.ours:.0f} ms, warm p95 {warm.ours:.0f} ms", flush=True
    )


def _suggest(engine: Engine, token: str, fig: Figures) -> None:
    path = f"/api/v1/coverage/suggest?k={SUGGEST_K}"
    with served(engine, GEO_LOG_LEVEL="WARNING") as port:
        ready_after(port)
        client = Client(port, token, keep_alive=False)
        first, answer = client.call("GET", path)
        warm = sorted(client.call("GET", path)[0] for _ in range(SUGGEST_WARM))
        client.close()
    fig.costs["suggest_first_s"], fig.costs["suggest_s"] = first, warm[len(warm) // 2]
    fig.notes["suggest"] = f"{answer['households_gained']:,} households gained"
    print(f"{fig.scale}: suggest k={SUGGEST_K} first {first:.2f} s, warm {warm}", flush=True)


def _assign(engine: Engine, points: Path, fig: Figures) -> None:
    points.mkdir(parents=True, exist_ok=True)
    with reading(engine) as conn:
        box = conn.execute(text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                "(SELECT ST_Extent(geom) AS e FROM grids) x")).one()  # fmt: skip
    counts = (POINTS, PROVINCE_POINTS) if fig.scale == "province" else (POINTS,)
    for n in counts:
        source = points_csv(points, tuple(box), n)
        out = points / "assigned.csv"
        run = command(engine, "assign", str(source), "-o", str(out))
        out.unlink()
        fig.costs[f"assign_{n}_s"], fig.costs[f"assign_{n}_rss_mb"] = run.seconds, run.rss_mb
        print(f"{fig.scale}: assign {n:,} {run.seconds:.1f} s, {run.rss_mb:,.0f} MB", flush=True)


def _geocode(engine: Engine, s: Settings, fig: Figures) -> None:
    bench_geocode._peer_index(engine)
    with reading(engine) as conn:
        reg = Register.of(conn.execute(text("SELECT code, address FROM buildings")).all())
        queries = cases(reg, sample=GEOCODE_SAMPLE)
        ours = bench_geocode._ours(s)
        for q in queries[:50]:  # warm both: plans, caches
            ours(conn, q.text), bench_geocode._peer(conn, q.text)
        (_, mine), (_, theirs) = bench_geocode._cases_both(conn, queries, ours, bench_geocode._peer)
    fig.costs["geocode_p50_ms"] = bench_geocode._pct(mine, 50)
    fig.costs["geocode_peer_p50_ms"] = bench_geocode._pct(theirs, 50)
    fig.notes["geocode"] = f"{len(queries)} queries"
    print(f"{fig.scale}: geocode p50 {fig.costs['geocode_p50_ms']:.2f} ms, pg_trgm "
          f"{fig.costs['geocode_peer_p50_ms']:.2f} ms", flush=True)  # fmt: skip


def _tiles(engine: Engine, fig: Figures) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("CREATE INDEX buildings_footprint_gist ON buildings USING gist (footprint)")
        )
        conn.execute(text("ANALYZE buildings"))
    url = bench_url(engine).replace("postgresql+psycopg://", "postgresql://")
    servers = [bench_tiles._serve_ours(url, cache_mb=0), bench_tiles._serve_tipg(url)]
    try:
        for _, _, base in servers:
            wait_until_up(f"{base}/", 90)
        rows = bench_tiles._tiles(servers[0][2], servers[1][2])
    finally:
        for proc, _, _ in servers:
            proc.terminate()
            proc.wait(10)
    for row in rows:
        if row.name.endswith("p95"):
            layer = row.name.split()[0]
            fig.costs[f"tiles_{layer}_p95_ms"] = row.ours
            fig.costs[f"tiles_{layer}_tipg_p95_ms"] = row.peer
    print(f"{fig.scale}: tiles {[(r.name.split()[0], r.ours, r.peer) for r in rows]}", flush=True)


# -- the table and the plot ---------------------------------------------------------------------

# One row of the table a line: cost | unit | goal at the province | plotted? | what it is
_ROWS = """
synth_s | s | minutes | plot | `geo-service synth` (generate + write the files)
synth_rss_mb | MB | | | `synth` peak RSS
import_grids_s | s | | plot | import grids (+ shared-boundary topology)
import_buildings_s | s | | plot | import buildings (+ address index)
import_roads_s | s | | plot | import roads (+ street crossings)
import_s | s | | | imports, all six kinds
import_buildings_rss_mb | MB | | | import buildings, peak RSS
compute_s | s | < 30 s | plot | `coverage compute` (second run), wall of the command
compute_inner_s | s | | | `coverage compute`, its own clock (no start-up)
compute_rss_mb | MB | < 8 GB | | `coverage compute` peak RSS, the process
compute_pg_mb | MB | | | `coverage compute`, PostgreSQL backends' peak private memory
what_if_first_ms | ms | ≤ 3× the city | plot | what-if over HTTP, first call once ready
what_if_p95_ms | ms | ≤ 3× the city | plot | what-if over HTTP, warm p95 (40 calls)
suggest_first_s | s | ≤ 3× the city | plot | suggest k={k} over HTTP, first call once ready
suggest_s | s | ≤ 3× the city | | suggest k={k} over HTTP, warm (median of {warm})
assign_{points}_s | s | | plot | `assign` {points:,} points
assign_{points}_rss_mb | MB | | | `assign` {points:,} points, peak RSS
assign_{province}_s | s | | | `assign` {province:,} points
assign_{province}_rss_mb | MB | flat (as at 1M) | | `assign` {province:,} points, peak RSS
geocode_p50_ms | ms | < 10 ms | plot | geocode p50, full register
geocode_peer_p50_ms | ms | | | pg_trgm `<->` p50, same queries in turn
tiles_grids_p95_ms | ms | | plot | grid tiles cold p95
tiles_grids_tipg_p95_ms | ms | | | tipg grid tiles p95, in turn
tiles_buildings_p95_ms | ms | | plot | building tiles cold p95
tiles_buildings_tipg_p95_ms | ms | | | tipg building tiles p95, in turn
"""
# name, label, unit, goal at the province (a text), plotted
Row = tuple[str, str, str, str, bool]
ROWS: tuple[Row, ...] = tuple(
    (name, label, unit, goal, plotted == "plot")
    for name, unit, goal, plotted, label in (
        [cell.strip() for cell in line.format(
            k=SUGGEST_K, warm=SUGGEST_WARM, points=POINTS, province=PROVINCE_POINTS
        ).split("|")]
        for line in _ROWS.strip().splitlines()
    )
)  # fmt: skip


def growth(costs: Sequence[tuple[float, float]]) -> float | None:
    """Exponent b of cost ∝ size^b between the smallest and the largest size measured."""
    (s0, c0), (s1, c1) = costs[0], costs[-1]
    if c0 <= 0 or c1 <= 0 or s1 == s0:
        return None
    return math.log(c1 / c0) / math.log(s1 / s0)


def table(figures: dict[str, Figures]) -> str:
    """The section's markdown: sizes, then one row per cost with its growth exponent."""
    present = [k for k in SCALES if k in figures]
    head = " | ".join(f"{k} ({SCALES[k]}×)" for k in present)
    lines = [
        f"| measure | {head} | growth (size^b) | goal at the province |",
        "|---|" + "---|" * len(present) + "---|---|",
    ]
    for what in ("grids", "buildings", "street_edges", "centers"):
        cells = " | ".join(f"{figures[k].sizes.get(what, 0):,}" for k in present)
        lines.append(f"| {what.replace('_', ' ')} | {cells} | | |")
    loads = " | ".join(f"{figures[k].load:.1f}" for k in present)
    lines.append(f"| load average (1 min) at the scale's start | {loads} | | |")
    for name, label, unit, goal, _ in ROWS:
        values = [figures[k].costs.get(name) for k in present]
        if all(v is None for v in values):
            continue
        cells = " | ".join("–" if v is None else _fmt(v, unit) for v in values)
        known = [(figures[k].sizes["buildings"], v) for k, v in zip(present, values, strict=True)
                 if v is not None]  # fmt: skip
        b = growth(known) if len(known) > 1 else None
        lines.append(f"| {label} | {cells} | {'' if b is None else f'{b:.2f}'} | {goal} |")
    return "\n".join(lines)


def _fmt(value: float, unit: str) -> str:
    digits = 0 if unit == "MB" or value >= 100 else 2 if value < 10 else 1
    return f"{value:,.{digits}f} {unit}"


def plot(figures: dict[str, Figures], path: Path) -> None:
    """Cost against size (buildings), each relative to its 1× figure, log-log, with linear."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [k for k in SCALES if k in figures]
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    sizes = [figures[k].sizes["buildings"] for k in present]
    base = sizes[0]
    x = [n / base for n in sizes]
    ax.plot(x, x, "k--", lw=1, label="linear (cost ∝ size)")
    colours = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]
    drawn = 0
    for name, label, _, _, plotted in ROWS:
        values = [figures[k].costs.get(name) for k in present]
        if not plotted or any(v is None or v <= 0 for v in values):
            continue
        ax.plot(
            x,
            [v / values[0] for v in values],  # type: ignore[operator]
            marker="osD^v"[drawn % 5],
            color=colours[(2 * drawn) % 20 + (drawn // 10) % 2],
            label=label,
        )
        drawn += 1
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{SCALES[k]}× ({figures[k].sizes['buildings']:,})" for k in present])
    ax.minorticks_off()
    ax.set_xlabel("size: cities' worth (buildings)")
    ax.set_ylabel("cost, × its figure at the city")
    ax.set_title("geo-service: cost against size (city, 3×, 10× = province)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the run ------------------------------------------------------------------------------------


def kept(store: Path) -> dict[str, Figures]:
    """The figures of each scale as last measured."""
    if not store.exists():
        return {}
    return {k: Figures(**v) for k, v in json.loads(store.read_text()).items()}


def main(scales: list[str]) -> None:
    """Measure the scales asked (all by default), keep their figures, rewrite table and plot."""
    report_only = scales == ["--report"]  # the table and plot again from the kept figures
    if report_only:
        scales = []
    redo = scales[1:3] if scales[1:2] == ["--again"] and len(scales) == 3 else None
    if redo is not None:  # SCALE --again DATABASE: the steps after the imports, on DATABASE
        scales = scales[:1]
    unknown = [k for k in scales if k not in SCALES]
    if unknown:
        raise SystemExit(f"unknown scale {unknown[0]!r}; choose from {', '.join(SCALES)}")
    s = settings()
    store = results_path(s)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    began = time.strftime("%Y-%m-%d %H:%M")

    def keep(fig: Figures) -> None:
        figures = kept(store)  # read again: another scale may have been run meanwhile
        figures[fig.scale] = fig
        store.write_text(json.dumps({k: asdict(v) for k, v in figures.items()}, indent=1))

    for scale in [] if report_only else scales or list(SCALES):
        if redo is not None:
            again(s, scale, redo[1], keep)
        else:
            measure(s, scale, keep)
    figures = kept(store)
    took = time.perf_counter() - started
    plot(figures, DOC_PLOT)
    notes = [
        f"- {k}: compute stages (s): {f.notes.get('compute_stages', '')}; suggest: "
        f"{f.notes.get('suggest', '')}; geocode: {f.notes.get('geocode', '')}"
        + (f"; {f.notes['again']}" if "again" in f.notes else "")
        for k, f in figures.items()
    ]
    stamp = (
        f"_{began}, {os.cpu_count()} cores, `python -m tests.benchmarks.bench_scale "
        f"{' '.join(scales)}` (`make bench-scale`), {took:.0f} s, load average {load:.1f} at "
        f"the start ({load_note()} at the end). Plot: [scale.png](scale.png)._"
    )
    text_ = "\n".join(
        [stamp, "", table(figures), "", *notes, "", "![cost against size](scale.png)"]
    )
    print(text_, flush=True)
    _record("bench_scale", text_)


if __name__ == "__main__":
    main(sys.argv[1:])
