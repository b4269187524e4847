"""The 15-minute life circle on the `city` data (120k buildings, 61 centres, ~100k edges).

Peers on the same stored network (coverage_edges, routable piece), to the widest tier:
(a) pgRouting `pgr_drivingDistance` run once per centre (it reads the edges each call; it
    gives node distances only, the buildings' walks would still be to do);
(b) networkx single-source Dijkstra per centre from its entry point, then every
    building's walk to it, keeping the least (the same answer as ours).
Ours: one multi-source Dijkstra from the exact entry points of all centres, then every
building's walk: (a) timed including reading the network from PostGIS, (b) in memory.
The full `coverage compute` and a warm what-if are printed against their goals (5 s, 0.5 s);
a warm suggest against the textbook MIP (each building a demand, HiGHS with its defaults,
started from greedy's sites) on the same candidates; and the slowest warm suggest of every k
on the demo city against its goal (1 s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import highspy
import networkx as nx
import numpy as np
from scipy.sparse import csc_matrix, csr_matrix, hstack, identity, vstack
from sqlalchemy import Engine, text

from geo_service.coverage import compute, network, planning, siting, store
from geo_service.coverage.network import Entries, Graph
from geo_service.coverage.params import CoverageParams
from geo_service.db.engine import reading
from geo_service.ingest import ImportOptions, import_file
from geo_service.packaged import demo_dir
from geo_service.settings import Settings
from tests.benchmarks.common import Result, city_dir, scratch_engine, settings, timed

DATABASE = "geo_bench_coverage"
DEMO_DATABASE = "geo_bench_coverage_demo"


# The models of what-if and suggest, held for the run as the app holds them.
MODELS = planning.Models()


def run() -> list[Result]:
    """Import the city, compute once, then time ours and the peers."""
    s = settings()
    folder = city_dir()
    engine = scratch_engine(s, DATABASE)
    for kind in ("communities", "grids", "buildings", "centers", "roads"):
        import_file(engine, s, kind, folder / f"{kind}.shp", ImportOptions())
    compute.compute(engine, s)
    # The database as a planner finds it: autovacuum has been through the fresh import (and
    # the first results), where it would otherwise take a core beside the timed computes.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE)"))
    limit = CoverageParams.from_settings(s).reach_m

    def load() -> tuple[Graph, Entries, Entries]:
        with reading(engine) as conn:
            a = store.model_arrays(conn)
        graph = Graph(a["n_nodes"], a["source"], a["target"], a["length"])
        return (
            graph,
            Entries(a["c_edge"], a["c_frac"], a["c_access"]),
            Entries(a["b_edge"], a["b_frac"], a["b_access"]),
        )

    graph, centers, buildings = load()

    def ours_from_db() -> None:
        g, c, b = load()
        network.nearest_source(g, c, b, limit)

    def ours_in_memory() -> None:
        network.nearest_source(graph, centers, buildings, limit)

    starts = graph.source[centers.edge[centers.edge >= 0]]  # a node of each centre's street

    def pgrouting() -> None:
        with reading(engine) as conn:
            for node in starts.tolist():
                conn.execute(
                    text(
                        "SELECT count(*) FROM pgr_drivingDistance('SELECT id, source, target, "
                        "length_m AS cost, length_m AS reverse_cost FROM coverage_edges "
                        "WHERE component = 0', CAST(:n AS bigint), CAST(:d AS float8))"
                    ),
                    {"n": node + 1, "d": limit},
                ).scalar_one()

    nxg = nx.Graph()
    nxg.add_weighted_edges_from(
        zip(graph.source.tolist(), graph.target.tolist(), graph.length.tolist(), strict=True)
    )
    b_ok = buildings.edge >= 0
    b_e, b_f, b_a = buildings.edge[b_ok], buildings.frac[b_ok], buildings.access[b_ok]
    b_u, b_v, b_len = graph.source[b_e], graph.target[b_e], graph.length[b_e]

    def networkx() -> None:
        """The same answer the networkx way: per centre, a Dijkstra from its entry point
        (a temporary node on its street), then every building's walk, keeping the least."""
        best = np.full(len(b_e), np.inf)
        for i in np.flatnonzero(centers.edge >= 0):
            e, f, a = centers.edge[i], centers.frac[i], centers.access[i]
            length = graph.length[e]
            nxg.add_edge("c", int(graph.source[e]), weight=a + f * length)
            nxg.add_edge("c", int(graph.target[e]), weight=a + (1 - f) * length)
            reached = nx.single_source_dijkstra_path_length(nxg, "c", cutoff=limit)
            nxg.remove_node("c")
            reached.pop("c")
            d = np.full(graph.n_nodes, np.inf)
            d[np.fromiter(reached.keys(), np.int64)] = np.fromiter(reached.values(), float)
            walk = np.minimum(d[b_u] + b_f * b_len, d[b_v] + (1 - b_f) * b_len) + b_a
            same = b_e == e  # a building on the centre's own street walks along it
            walk[same] = np.minimum(walk[same], a + np.abs(b_f[same] - f) * b_len[same] + b_a[same])
            np.minimum(best, walk, out=best)

    full = timed(lambda: compute.compute(engine, s), repeat=3)
    core = timed(lambda: compute.compute(engine, s, shapes_too=False), repeat=3)
    ours_db = timed(ours_from_db)
    ours_mem = timed(ours_in_memory)
    pgr = timed(pgrouting, repeat=1)
    nxs = timed(networkx, repeat=1)
    lon, lat = 117.80, 30.92
    planning.what_if(engine, s, [{"lon": lon, "lat": lat}], ["C001"], models=MODELS)  # load
    started = time.perf_counter()
    answers = [
        planning.what_if(engine, s, [{"lon": lon + 0.01 * i, "lat": lat}], ["C001"], models=MODELS)
        for i in range(5)
    ]
    what_if = (time.perf_counter() - started) / len(answers)
    siting_rows = suggest_rows(engine, s)
    with engine.connect() as conn:
        n_b = conn.execute(text("SELECT count(*) FROM coverage_buildings")).scalar_one()
    engine.dispose()
    n_c = len(starts)
    return [
        Result(
            f"walks of {n_b:,} buildings to the nearest of {n_c} centres, network read "
            "from PostGIS, one multi-source Dijkstra",
            ours_db,
            f"pgr_drivingDistance × {n_c} centres (node distances only)",
            pgr,
        ),
        Result(
            f"same, network in memory ({graph.n_nodes:,} nodes, {len(graph.source):,} edges)",
            ours_mem,
            f"networkx single-source Dijkstra × {n_c} centres + walks",
            nxs,
        ),
        Result(
            "`coverage compute` without shapes (topology, entries, walks, stored)",
            core,
            "goal: under 5 s",
            5.0,
        ),
        Result(
            "`coverage compute` full (+ isochrones per centre and tier, merged tiers, gaps)",
            full,
            "goal: under 5 s",
            5.0,
        ),
        Result("what-if (add one centre, remove one), warm", what_if, "goal: under 0.5 s", 0.5),
        *siting_rows,
    ]


def suggest_rows(engine: Engine, s: Settings, k: int = 3) -> list[Result]:
    """A warm suggest on the computed city against the textbook MIP on the same
    candidates, and the slowest warm suggest of every k on the demo city."""
    ours = planning.suggest(engine, s, k, models=MODELS)  # the model loaded
    suggest = timed(partial(planning.suggest, engine, s, k, models=MODELS), repeat=3)
    mip = textbook_mip(engine, s, k)
    demo_slowest, demo_k = demo_suggest(s)
    proven = (
        "proven optimal" if ours["optimal"] else f"proven ≤ {ours['upper_bound_households']:,.0f}"
    )
    return [
        Result(
            f"suggest k={k} of {ours['candidates']['count']:,} candidate sites, warm: "
            f"{ours['households_gained']:,} households, {ours['method']}, {proven}",
            suggest,
            f"textbook MIP (HiGHS, greedy start) on the same candidates: {mip.households:,.0f} "
            f"households, {mip.status}",
            mip.seconds,
        ),
        Result(
            f"suggest on the demo city, slowest of k=1-{s.coverage.suggest_max_k} "
            f"(k={demo_k}), warm",
            demo_slowest,
            "goal: under 1 s",
            1.0,
        ),
    ]


@dataclass
class _Solved:
    households: float
    status: str
    seconds: float


def textbook_mip(engine: Engine, s: Settings, k: int) -> _Solved:
    """The maximal covering MIP as textbooks write it (each building a demand, x binary,
    y continuous) on suggest's candidates, solved by HiGHS with its defaults (one thread,
    suggest's time limit) from greedy's sites; only HiGHS' run is timed."""
    p, _ = planning.siting_problem(engine, s, models=MODELS)
    site, target, weight = p.site, p.building, p.households
    n_s, n_b = len(p.lon), len(weight)
    reach = csr_matrix((np.ones(len(site)), (target, site)), shape=(n_b, n_s))
    # rows: y_b - sum of the x_s reaching b <= 0, then sum x_s = k
    cardinality = csr_matrix(np.r_[np.ones(n_s), np.zeros(n_b)][None, :])
    a = csc_matrix(vstack([hstack([-reach, identity(n_b)]), cardinality]))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_s + n_b, n_b + 1
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.r_[np.zeros(n_s), weight]
    lp.col_lower_, lp.col_upper_ = np.zeros(n_s + n_b), np.ones(n_s + n_b)
    lp.row_lower_ = np.r_[np.full(n_b, -highspy.kHighsInf), k]
    lp.row_upper_ = np.r_[np.zeros(n_b), k]
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n_s + [
        highspy.HighsVarType.kContinuous
    ] * n_b
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("time_limit", s.coverage.suggest_time_limit_s)
    h.passModel(lp)
    reduced = siting.model(n_s, site, target, weight)
    first, _ = siting.greedy(reduced, k)
    x = np.zeros(n_s + n_b)
    x[reduced.sites[first.sites]] = 1
    x[n_s:] = np.asarray(reach @ x[:n_s]).ravel() > 0
    start = highspy.HighsSolution()
    start.col_value = list(x)
    h.setSolution(start)
    started = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - started
    status = h.getModelStatus()
    return _Solved(
        float(h.getInfo().objective_function_value),
        "optimal"
        if status == highspy.HighsModelStatus.kOptimal
        else f"stopped: {h.modelStatusToString(status)}",
        seconds,
    )


def demo_suggest(s: Settings) -> tuple[float, int]:
    """The slowest warm suggest of every k on the demo city (each the median of 3), and
    its k."""
    engine = scratch_engine(s, DEMO_DATABASE)
    for kind in ("communities", "grids", "buildings", "centers", "roads"):
        import_file(engine, s, kind, demo_dir() / f"{kind}.shp", ImportOptions())
    compute.compute(engine, s, shapes_too=False)
    planning.suggest(engine, s, 1, models=MODELS)  # load the model
    times = {}
    for k in range(1, s.coverage.suggest_max_k + 1):
        times[k] = timed(partial(planning.suggest, engine, s, k, models=MODELS), repeat=3)
    engine.dispose()
    slowest = max(times, key=lambda k: times[k])
    return times[slowest], slowest
