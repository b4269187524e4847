"""Siting (coverage/siting.py and suggest): answers against brute force, the bound proven on
every k of the demo city, and a search stopped by its time limit saying so."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from geo_service.coverage import compute, figures, planning, siting
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests.conftest import DATA_TABLES


def pairs(covers: dict[int, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(site, building) pairs of {site: buildings it reaches}."""
    site = np.array([s for s, bs in covers.items() for _ in bs], dtype=np.int64)
    building = np.array([b for bs in covers.values() for b in bs], dtype=np.int64)
    return site, building


def best_by_brute_force(reach: np.ndarray, weights: np.ndarray, k: int) -> float:
    """The most weight any k sites (or fewer) reach: every choice tried."""
    return max(
        float(weights[reach[list(chosen)].any(axis=0)].sum()) if chosen else 0.0
        for size in range(min(k, len(reach)) + 1)
        for chosen in itertools.combinations(range(len(reach)), size)
    )


# -- the pure core -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("covers", "k", "total"),
    [
        # sites far apart: greedy covers what the k best would alone
        ({0: [0, 1], 1: [2], 2: [3, 4, 5]}, 2, 5),
        # the trap: greedy takes site 0 (4 buildings), then 1 more; sites 1 + 2 cover 6
        ({0: [0, 1, 3, 4], 1: [0, 1, 2], 2: [3, 4, 5]}, 2, 6),
        # a second site would gain nothing: fewer sites than asked, said so
        ({0: [0, 1], 1: []}, 2, 2),
        # site 1 reaches only what site 0 reaches, site 3 the same as site 2
        ({0: [0, 1, 2], 1: [1, 2], 2: [3, 4], 3: [3, 4]}, 2, 5),
    ],
)
def test_small_cases_are_proven_optimal(covers: dict[int, list[int]], k: int, total: int):
    site, building = pairs(covers)
    choice = siting.mclp(len(covers), site, building, np.ones(6), k, time_limit_s=10)
    assert (choice.optimal, choice.stopped, choice.total, choice.upper_bound) == (
        True,
        None,
        total,
        total,
    )
    assert sum(choice.gains) == total and choice.gap == 0
    assert (len(choice.sites) < k) == any(n.startswith("only") for n in choice.notes)


def test_sites_reaching_only_what_another_reaches_are_left_out_and_said_so():
    site, building = pairs({0: [1, 2], 1: [0, 1, 2], 2: [0, 1, 2], 3: [3]})
    choice = siting.mclp(4, site, building, np.ones(4), 2, time_limit_s=10)
    # site 0 is inside site 1, site 2 the same as site 1: the answer names original sites
    assert sorted(choice.sites) == [1, 3] and choice.total == 4 and choice.optimal
    assert any(n.startswith("2 of 4 candidate sites left out") for n in choice.notes)


@pytest.mark.parametrize("seed", range(12))
def test_random_cases_match_brute_force(seed: int):
    rng = np.random.default_rng(seed)
    n, n_b = int(rng.integers(3, 10)), int(rng.integers(4, 30))
    reach = rng.random((n, n_b)) < rng.uniform(0.1, 0.5)
    reach[rng.integers(n)] = reach[rng.integers(n)]  # often two sites alike
    # whole households, or any weights (then no rounding of the bound)
    weights = rng.integers(0, 40, n_b).astype(float) if seed % 2 else rng.uniform(0, 9, n_b)
    site, building = np.nonzero(reach)
    for k in range(1, n + 1):
        best = best_by_brute_force(reach, weights, k)
        exact = siting.mclp(n, site, building, weights, k, time_limit_s=10)
        got = float(weights[reach[exact.sites].any(axis=0)].sum()) if exact.sites else 0.0
        assert exact.optimal and got == pytest.approx(best) and len(exact.sites) <= k
        assert exact.upper_bound == pytest.approx(best)
        # allowed 20% short: the answer is at least that good, the bound at least the best
        close = siting.mclp(n, site, building, weights, k, time_limit_s=10, gap=0.2)
        got = float(weights[reach[close.sites].any(axis=0)].sum()) if close.sites else 0.0
        assert close.upper_bound is not None and close.upper_bound >= best - 1e-9
        assert got >= 0.8 * best - 1e-9
        assert close.optimal or (close.stopped == "gap" and (close.gap or 0) <= 0.2)


def test_the_exact_solver_stopped_by_its_time_limit_says_so():
    # 150 sites, 600 buildings, each reached by a few sites far apart: greedy is not proven
    # optimal, and HiGHS, started from greedy, cannot finish in a millisecond
    rng = np.random.default_rng(7)
    reach = rng.random((150, 600)) < 0.03
    weights = rng.integers(1, 60, 600).astype(float)
    site, building = np.nonzero(reach)
    m = siting.model(150, site, building, weights)
    best, _ = siting.greedy(m, 12)
    start, bound = best.value, best.bound
    assert siting._highs(m, 12, best, 0.0, time_limit_s=1e-3) == "time_limit"
    assert best.value >= start and start < best.bound <= bound


def scattered(
    seed: int, n: int = 40, n_b: int = 250, whole: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """`n` sites each reaching a few of `n_b` buildings, and whole households (or any
    weights): greedy is seldom optimal and the Lagrangian bound seldom closes."""
    rng = np.random.default_rng(seed)
    reach = rng.random((n, n_b)) < 0.05
    return reach, rng.integers(1, 60, n_b).astype(float) if whole else rng.uniform(0, 60, n_b)


def optimum(reach: np.ndarray, weights: np.ndarray, k: int) -> float:
    """The most weight k sites reach, by HiGHS on the whole model (no narrowing, no
    Lagrangian): the reference for the staged search."""
    site, building = np.nonzero(reach)
    m = siting.model(len(reach), site, building, weights)
    best = siting.Best(np.zeros(0, np.int64), 0.0, np.inf, "none")
    assert siting._highs(m, k, best, 0.0, time_limit_s=120) is None
    return best.value


def test_interchange_takes_the_sites_greedy_misses():
    # greedy takes site 0 (4 buildings), then one more: 5; one swap finds sites 1 + 2: 6
    site, building = pairs({0: [0, 1, 3, 4], 1: [0, 1, 2], 2: [3, 4, 5]})
    m = siting.model(3, site, building, np.ones(6))
    best, _ = siting.greedy(m, 2)
    assert best.value == 5
    siting.interchange(m, 2, best, deadline=np.inf)
    assert (best.value, best.method, sorted(m.sites[best.sites])) == (6, "interchange", [1, 2])


@pytest.mark.parametrize("seed", range(4))
def test_no_single_swap_improves_the_interchanged_sites(seed: int):
    reach, weights = scattered(seed, n=25, n_b=150)
    site, building = np.nonzero(reach)
    m = siting.model(len(reach), site, building, weights)
    best, _ = siting.greedy(m, 4)
    siting.interchange(m, 4, best, deadline=np.inf)
    chosen = list(best.sites)
    for out, into in itertools.product(range(len(chosen)), range(m.n)):
        if into not in chosen:
            swapped = np.array([*chosen[:out], into, *chosen[out + 1 :]])
            assert m.value(swapped) <= best.value


@pytest.mark.parametrize("seed", range(6))
def test_the_staged_search_finds_the_optimum_of_the_whole_model(seed: int):
    # the exact stage leaves out the sites the bounds rule out: never the optimum
    reach, weights = scattered(seed)
    site, building = np.nonzero(reach)
    for k in (3, 6, 9):
        best = optimum(reach, weights, k)
        choice = siting.mclp(len(reach), site, building, weights, k, time_limit_s=60)
        got = float(weights[reach[choice.sites].any(axis=0)].sum())
        assert choice.optimal and choice.stopped is None
        assert got == choice.total == choice.upper_bound == best


@pytest.mark.parametrize("seed", range(4))
def test_the_staged_search_finds_the_optimum_with_weights_not_whole(seed: int):
    # no rounding of the bounds down to whole households: the narrowing still keeps the optimum
    reach, weights = scattered(seed, whole=False)
    site, building = np.nonzero(reach)
    for k in (4, 8):
        best = optimum(reach, weights, k)
        choice = siting.mclp(len(reach), site, building, weights, k, time_limit_s=60)
        got = float(weights[reach[choice.sites].any(axis=0)].sum())
        assert choice.optimal and choice.stopped is None
        assert got == pytest.approx(best) and choice.upper_bound == pytest.approx(best)


@pytest.mark.parametrize("seed", range(4))
def test_the_stated_bound_holds_and_a_time_limited_answer_says_so(seed: int):
    reach, weights = scattered(seed)
    site, building = np.nonzero(reach)
    k = 8
    best = optimum(reach, weights, k)
    # no time for anything past greedy: the answer says the limit stopped it, and its bound
    # is at least the best any k sites bring
    hurried = siting.mclp(len(reach), site, building, weights, k, time_limit_s=1e-9)
    got = float(weights[reach[hurried.sites].any(axis=0)].sum())
    assert hurried.upper_bound is not None and hurried.upper_bound >= best >= got
    assert got == hurried.total and hurried.gap == pytest.approx(1 - got / hurried.upper_bound)
    if not hurried.optimal:
        assert hurried.stopped == "time_limit" and hurried.gap > 0
        assert any(n.startswith("stopped at the time limit") for n in hurried.notes)
    # the exact stage cut short: its bound (HiGHS' or the Lagrangian's) still holds
    m = siting.model(len(reach), site, building, weights)
    start, multipliers = siting.greedy(m, k)
    _, multipliers = siting.lagrangian(m, k, start, multipliers, 0.0, deadline=np.inf)
    if not m.reaches(start.value, start.bound):
        assert siting._exact(m, k, start, multipliers, 0.0, deadline=0.0) == "time_limit"
    assert m.floor(start.bound) >= best >= start.value == m.value(start.sites)


# -- the demo city -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(engine: Engine, settings: Settings) -> Engine:
    """The packaged demo city, imported and computed once for this module."""
    from geo_service.packaged import demo_dir

    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    for kind in ("communities", "grids", "buildings", "centers", "roads"):
        import_file(engine, settings, kind, Path(demo_dir()) / f"{kind}.shp", ImportOptions())
    compute.compute(engine, settings, shapes_too=False)
    return engine


@pytest.mark.slow
def test_every_k_on_the_demo_city_comes_with_a_proven_bound(demo: Engine, settings: Settings):
    exact = settings.updated(coverage={"suggest_gap": 0.0})
    best = 0
    for k in range(1, settings.coverage.suggest_max_k + 1):
        proven = planning.suggest(demo, exact, k)
        # proven optimal: nothing more is possible with k sites, and k + 1 do no worse
        assert proven["optimal"] and proven["stopped"] is None and proven["gap"] == 0
        assert proven["upper_bound_households"] == proven["households_gained"] >= best
        best = proven["households_gained"]
        body = planning.suggest(demo, settings, k)
        gained, bound = body["households_gained"], body["upper_bound_households"]
        # the bound holds for what the exact search reached, and the answer is as close
        # as the answer says
        assert bound >= best >= gained > 0
        assert gained >= (1 - settings.coverage.suggest_gap) * best
        assert body["gap"] == pytest.approx(1 - gained / bound, abs=1e-6)
        assert body["optimal"] == (gained == bound) == (body["stopped"] is None)
        assert body["optimal"] or body["stopped"] == "gap"
        gains = [s["households_gained"] for s in body["sites"]]
        assert len(gains) <= k and min(gains) > 0 and sum(gains) == gained


@pytest.mark.slow
def test_a_suggest_stopped_by_the_time_limit_says_so(demo: Engine, settings: Settings):
    # asked for the optimum with no time for it: only greedy's own proof can come in time
    hurried = settings.updated(coverage={"suggest_time_limit_s": 1e-9, "suggest_gap": 0.0})
    stopped = []
    for k in range(1, 6):
        body = planning.suggest(demo, hurried, k)
        gained, bound = body["households_gained"], body["upper_bound_households"]
        assert bound >= gained and body["gap"] == pytest.approx(1 - gained / bound, abs=1e-6)
        if not body["optimal"]:
            # never passed off as optimal: it says where it stopped and how far off it may be
            assert body["stopped"] == "time_limit" and body["gap"] > 0
            assert any("stopped at the time limit" in n for n in body["notes"])
            stopped.append(k)
        else:  # greedy proved it before any time was needed
            assert body["stopped"] is None
    assert stopped  # some k needs more than greedy


# -- what-if: the held model's shortcuts answer what a full walk answers ----------------------
@settings_(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    picks=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=0, max_size=3),
    removed=st.sets(st.integers(0, 100), max_size=3),
)
def test_what_if_figures_equal_a_full_walk_from_every_centre(
    demo: Engine, settings, picks, removed
):
    """Centres added (walked only as far as the widest tier, figures moved by the buildings
    whose tier changed) and removed (walked again): the city's and each community's figures
    are exactly those of a multi-source walk from every centre there would be."""
    models = planning.Models()
    m, _ = models.get(demo, settings)
    x0, y0, x1, y1 = _extent(demo)
    add = [{"lon": x0 + a * (x1 - x0), "lat": y0 + b * (y1 - y0)} for a, b in picks]
    codes = sorted(m.center_codes.tolist())
    remove = sorted({codes[i % len(codes)] for i in removed})
    answer = planning.what_if(demo, settings, add, remove, models=models)
    new = m.entries(np.array([p["lon"] for p in add]), np.array([p["lat"] for p in add]))
    keep = np.flatnonzero(~np.isin(m.center_codes, remove))
    walk, tier = m.walks(planning.Entries.concat([m.centers.take(keep), new]))
    city = figures.with_shares(figures.figures(tier, walk, m.households, m.tiers))
    per = figures.by_group(m.community_index, tier, walk, m.households, m.tiers)
    assert answer["city"]["after"] == city
    assert {c["code"]: c["after"] for c in answer["communities"]} == {
        code: figures.with_shares(f) for code, f in per.items()
    }


def _extent(engine: Engine) -> tuple[float, float, float, float]:
    with engine.connect() as conn:
        box = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                "FROM (SELECT ST_Extent(geom) AS e FROM buildings) b"
            )
        ).one()
    return tuple(box)  # type: ignore[return-value]


def test_a_starting_server_loads_the_model_before_the_first_what_if(demo: Engine, settings):
    import time

    from fastapi.testclient import TestClient

    from geo_service.api.app import create_app

    app = create_app(settings, engine=demo)
    with TestClient(app):
        deadline = time.monotonic() + 60
        while not app.state.coverage_models.holds(demo) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.coverage_models.holds(demo)
