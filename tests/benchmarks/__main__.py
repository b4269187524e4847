"""`make bench`: run every benchmark, print its rows, record them in docs/PERFORMANCE.md.

Each benchmark module owns a marked section of the document, so running one benchmark
(`python -m tests.benchmarks bench_import`) updates only its own rows.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time

from tests.benchmarks.common import ROOT

MODULES = (
    "bench_import",
    "bench_assign",
    "bench_locate",
    "bench_edits",
    "bench_geocode",
    "bench_tiles",
    "bench_coverage",
    "bench_load",
    "bench_division",
    "bench_visits",
)
DOC = ROOT / "docs" / "PERFORMANCE.md"
SHARED = 1.5  # a 1-minute load average above this at the start: others were working too
HEADER = "| benchmark | ours | peer | peer's | ours vs peer |\n|---|---|---|---|---|"


def main(names: list[str]) -> None:
    """Run the named benchmarks (all by default) and update the performance document."""
    for name in names or MODULES:
        module = importlib.import_module(f"tests.benchmarks.{name}")
        started = time.perf_counter()
        load = os.getloadavg()[0]  # before: the run's own work would count in later
        began = time.strftime("%Y-%m-%d %H:%M")
        results = module.run()
        rows = [r.row() for r in results]
        print("\n".join(rows), flush=True)
        took = time.perf_counter() - started
        shared = "" if load < SHARED else ", the machine shared with other work"
        stamp = (
            f"_{began}, {platform.machine()}, {os.cpu_count()} cores, "
            f"`python -m tests.benchmarks {name}` (part of `make bench`), {took:.0f} s, "
            f"load average {load:.1f} at the start{shared}._"
        )
        _record(name, "\n".join([stamp, "", HEADER, *rows]))


def _record(name: str, table: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{start}\n{table}\n{end}{tail}")


if __name__ == "__main__":
    main(sys.argv[1:])
