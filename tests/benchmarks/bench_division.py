"""Re-division proposals on the `city` data (56 communities, 120,000 buildings): the chosen
method, spopt's max-p regions, beside gerrychain's default way to make a plan (the recursive
spanning-tree partition a ReCom chain starts from) on the same communities, at the issue's
range (300 households, 200-400) and at a coarser one (1,500, 1,000-2,000) where grids hold
many blocks: time, balance (CV), grids outside the range and compactness (Polsby-Popper);
then `grids propose --all` and one community against their goals (60 s and 2 s), and that
community's proposal previewed and applied as one grid edit (goal: as long as proposing it)."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from geo_service.division import proposals
from geo_service.division.partition import Range
from geo_service.division.plan import Community, Options, divide_community
from geo_service.grids import edits
from geo_service.ingest import ImportOptions, import_file
from tests.benchmarks.common import Result, city_dir, scratch_engine, settings

SAMPLE = 4  # communities the two methods are compared on (every 14th of the 56)
PEER_LIMIT_S = 60.0  # gerrychain's time on one community before it counts as not finished
RANGES = {"300 (200-400)": Range(300, 200, 400), "1,500 (1,000-2,000)": Range(1500, 1000, 2000)}


def _load(engine: Engine) -> None:
    s = settings()
    folder = city_dir()
    for kind in ("communities", "grids", "buildings", "roads"):
        import_file(engine, s, kind, folder / f"{kind}.shp", ImportOptions())


def _divide(community: Community, opt: Options, queue: Any) -> None:
    start = time.perf_counter()
    plan = divide_community(community, opt)
    queue.put((time.perf_counter() - start, plan.figures["proposal"], plan.failed))


def _timed_plan(community: Community, opt: Options) -> tuple[float, dict[str, Any] | None]:
    """Seconds and figures of one division, in a process of its own stopped at the limit
    (None: not finished, or the method found no division)."""
    queue: Any = multiprocessing.get_context("fork").Queue()
    worker = multiprocessing.get_context("fork").Process(
        target=_divide, args=(community, opt, queue)
    )
    worker.start()
    worker.join(PEER_LIMIT_S)
    if worker.is_alive():
        worker.kill()
        worker.join()
        return PEER_LIMIT_S, None
    seconds, figures, failed = queue.get()
    return seconds, None if failed else figures


def _compare(inputs: list[Community], base: Options) -> list[Result]:
    out = []
    for label, rng in RANGES.items():
        sides: dict[str, list[tuple[float, dict[str, Any] | None]]] = {}
        for method in ("maxp", "tree"):
            opt = replace(base, range=rng, method=method)
            sides[method] = [_timed_plan(c, opt) for c in inputs]
        ours, peer = sides["maxp"], sides["tree"]
        done = [i for i, (_, f) in enumerate(peer) if f is not None]
        name = f"target {label}, {len(inputs)} communities"
        out.append(
            Result(
                f"divide, {name}: seconds per community",
                statistics.mean(t for t, _ in ours),
                f"gerrychain recursive_tree_part (finished {len(done)} of {len(inputs)}; "
                f"a failure counts its time, a run past {PEER_LIMIT_S:.0f} s as "
                f"{PEER_LIMIT_S:.0f} s)",
                statistics.mean(t for t, _ in peer),
            )
        )
        if not done:
            continue
        for field, what, higher in (
            ("households_cv", "households CV", False),
            ("outside_range", "grids outside the range, share", False),
            ("polsby_popper_mean", "Polsby-Popper mean", True),
        ):

            def value(f: dict[str, Any], field: str = field) -> float:
                return float(f[field]) / (f["grids"] if field == "outside_range" else 1)

            out.append(
                Result(
                    f"divide, {name}: {what} (the communities gerrychain finished)",
                    statistics.mean(value(ours[i][1]) for i in done),  # type: ignore[arg-type]
                    "gerrychain recursive_tree_part",
                    statistics.mean(value(peer[i][1]) for i in done),  # type: ignore[arg-type]
                    unit="",
                    higher_is_better=higher,
                    digits=3,
                )
            )
    return out


def run() -> list[Result]:
    """The method comparison, then the whole city and one community against their goals."""
    s = settings()
    engine = scratch_engine(s, "geo_bench_division")
    try:
        _load(engine)
        found, inputs = proposals.prepare(engine, s, None)
        sample = inputs[:: max(1, len(inputs) // SAMPLE)][:SAMPLE]
        base = proposals.Request().options(s)
        results = _compare(sample, base)
        start = time.perf_counter()
        city = proposals.propose(engine, s, proposals.Request(), "bench")
        whole = time.perf_counter() - start
        one_code = sample[0].code
        times = []
        for _ in range(3):
            start = time.perf_counter()
            one = proposals.propose(engine, s, proposals.Request([one_code]), "bench")
            times.append(time.perf_counter() - start)
        previews = []
        for _ in range(3):
            start = time.perf_counter()
            edits.apply_proposal(engine, s, one["id"], edits.EditBy("bench", "preview", True))
            previews.append(time.perf_counter() - start)
        start = time.perf_counter()
        applied = edits.apply_proposal(engine, s, one["id"], edits.EditBy("bench", "apply"))
        apply_s = time.perf_counter() - start
        assert not applied["findings"], applied["findings"]
        grids = city["figures"]["all"]["proposal"]["grids"]
        results += [
            Result(
                f"`grids propose --all`: {len(found)} communities, {grids:,} grids, in-process",
                whole,
                "goal",
                60.0,
            ),
            Result(
                "`grids propose --community C` (one community), in-process, median of 3",
                statistics.median(times),
                "goal",
                2.0,
            ),
            Result(
                f"apply that proposal, preview (nothing stored), median of 3: "
                f"{len(applied['grids'])} grids made or changed, "
                f"{len(applied['retired'])} retired",
                statistics.median(previews),
                "goal",
                2.0,
            ),
            Result(
                f"apply that proposal as one grid edit: {applied['buildings_moved']:,} buildings "
                "change grid, topology and figures follow",
                apply_s,
                "goal",
                2.0,
            ),
        ]
        return results
    finally:
        engine.dispose()


if __name__ == "__main__":
    for r in run():
        print(r.row())
