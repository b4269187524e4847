"""Siting new centres: the maximal covering location problem (pure: arrays in, choice out).

Choose k candidate sites maximising the households newly covered, the existing centres being
kept (only buildings they leave uncovered count). Solved exactly as a MIP with HiGHS
(highspy) within a time limit; buildings with the same set of covering candidates are merged
into one demand first, which shrinks the model a lot. When HiGHS is stopped by the time
limit the best site set found is kept and the answer says how far from proven optimal it
may be. Greedy comes first: when its sites cover as much as the k best sites would each
alone, it is optimal and the solver is skipped. The greedy order (each site's marginal gain)
is used to report the gain of each site; greedy alone is within (1 - 1/e) of the optimum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Choice:
    """Sites chosen (candidate indices, in reporting order) and what they gain."""

    sites: list[int]
    gains: list[int]  # households newly covered by each site, beyond the sites before it
    total: int
    method: str  # "highs" or "greedy"
    optimal: bool
    upper_bound: float | None  # proven bound on the best total (None when unknown)
    notes: list[str] = field(default_factory=list)


def demands(
    site: np.ndarray, building: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge buildings with equal covering-site sets: returns the (site, demand) pairs and
    each demand's weight."""
    order = np.lexsort((site, building))
    site, building = site[order], building[order]
    starts = np.r_[0, np.flatnonzero(np.diff(building)) + 1]
    groups: dict[tuple[int, ...], int] = {}
    dem_of = np.empty(len(starts), dtype=np.int64)
    for i, (s, e) in enumerate(zip(starts, np.r_[starts[1:], len(site)], strict=True)):
        dem_of[i] = groups.setdefault(tuple(site[s:e].tolist()), len(groups))
    weight = np.bincount(dem_of, weights=weights[building[starts]], minlength=len(groups))
    pairs_site = (
        np.concatenate([np.asarray(key, dtype=np.int64) for key in groups])
        if groups
        else np.zeros(0, np.int64)
    )
    pairs_dem = np.repeat(np.arange(len(groups)), [len(key) for key in groups])
    return pairs_site, pairs_dem, weight


def greedy_order(
    chosen: list[int], site: np.ndarray, dem: np.ndarray, weight: np.ndarray
) -> tuple[list[int], list[int]]:
    """Order `chosen` by marginal gain (largest first); returns sites and their gains."""
    covered = np.zeros(len(weight), bool)
    left, order, gains = list(chosen), [], []
    members = {s: dem[site == s] for s in chosen}
    while left:
        gain = [float(weight[members[s][~covered[members[s]]]].sum()) for s in left]
        best = int(np.argmax(gain))
        s = left.pop(best)
        covered[members[s]] = True
        order.append(s)
        gains.append(round(gain[best]))
    return order, gains


def greedy(
    n_sites: int, site: np.ndarray, dem: np.ndarray, weight: np.ndarray, k: int
) -> list[int]:
    """k sites by repeated best marginal gain."""
    covered = np.zeros(len(weight), bool)
    chosen: list[int] = []
    for _ in range(min(k, n_sites)):
        live = ~covered[dem]
        gain = np.bincount(site[live], weights=weight[dem[live]], minlength=n_sites)
        gain[chosen] = -1
        best = int(np.argmax(gain))
        if gain[best] <= 0:
            break
        chosen.append(best)
        covered[dem[site == best]] = True
    return chosen


def mclp(
    n_sites: int,
    site: np.ndarray,
    building: np.ndarray,
    weights: np.ndarray,
    k: int,
    time_limit_s: float,
    gap: float = 0.0,
) -> Choice:
    """Choose k of n_sites covering the most weight; (site, building) pairs say which site
    covers which building, `weights` are per building. Greedy's sites are kept without the
    solver when they are proven within `gap` (a fraction) of the best possible."""
    s_pairs, d_pairs, w = demands(site, building, weights)
    start = greedy(n_sites, s_pairs, d_pairs, w, k)
    found = _value(start, s_pairs, d_pairs, w)
    # No k sites cover more than the k best sites each cover alone: when the greedy sites
    # reach that, they are optimal (sites far enough apart not to share buildings), and the
    # solver is not needed. Otherwise both this and greedy's (1 - 1/e) bound the optimum.
    alone = np.bincount(s_pairs, weights=w[d_pairs], minlength=n_sites)
    bound = min(float(np.sort(alone)[::-1][:k].sum()), found / (1 - 1 / np.e))
    chosen, method, notes = start, "greedy", []
    optimal = found >= bound * (1 - 1e-12)
    if optimal:
        notes.append("greedy is optimal: its sites cover as much as the k best sites alone")
    elif found >= bound * (1 - gap):
        notes.append(
            f"greedy is within {1 - found / bound:.2%} of the best possible: "
            "the exact solver was not needed"
        )
    else:
        try:
            solved = _highs(n_sites, s_pairs, d_pairs, w, k, time_limit_s, start)
        except ImportError:  # pragma: no cover - highspy is a dependency
            solved = None
            notes.append("highspy is not installed: greedy, within (1 - 1/e) of the optimum")
        if solved is not None:
            sites, optimal, proven = solved
            if proven is not None:
                bound = min(bound, proven)
            if _value(sites, s_pairs, d_pairs, w) >= found:
                chosen, method = sites, "highs"
    if optimal:
        bound = _value(chosen, s_pairs, d_pairs, w)
    if len(chosen) < min(k, n_sites):
        notes.append(f"only {len(chosen)} site(s) gain households: no other site adds any")
    order, gains = greedy_order(chosen, s_pairs, d_pairs, w)
    return Choice(order, gains, int(sum(gains)), method, optimal, bound, notes)


def _value(chosen: list[int], site: np.ndarray, dem: np.ndarray, weight: np.ndarray) -> float:
    hit = np.zeros(len(weight), bool)
    hit[dem[np.isin(site, chosen)]] = True
    return float(weight[hit].sum())


def _highs(
    n_sites: int,
    site: np.ndarray,
    dem: np.ndarray,
    weight: np.ndarray,
    k: int,
    time_limit_s: float,
    start: list[int],
) -> tuple[list[int], bool, float | None] | None:
    """max sum w_d y_d  s.t.  y_d <= sum_{s covers d} x_s,  sum x_s = k,  x binary, 0 <= y <= 1."""
    import highspy

    n_dem = len(weight)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("threads", 1)
    inf = highspy.kHighsInf
    # columns: x_0..x_{n-1}, then y_0..y_{d-1}; HiGHS minimises, so the weights are negated
    cost = np.r_[np.zeros(n_sites), -weight].astype(float)
    lower = np.zeros(n_sites + n_dem)
    upper = np.ones(n_sites + n_dem)
    h.addVars(n_sites + n_dem, lower, upper)
    h.changeColsCost(n_sites + n_dem, np.arange(n_sites + n_dem, dtype=np.int32), cost)
    h.changeColsIntegrality(
        n_sites,
        np.arange(n_sites, dtype=np.int32),
        np.full(n_sites, highspy.HighsVarType.kInteger),
    )
    # rows: y_d - sum x_s <= 0, one per demand, in CSR form
    order = np.argsort(dem, kind="stable")
    ds, ss = dem[order], site[order]
    counts = np.bincount(ds, minlength=n_dem)
    starts = np.r_[0, np.cumsum(counts + 1)[:-1]].astype(np.int32)
    index = np.empty(len(ds) + n_dem, dtype=np.int32)
    value = np.empty(len(ds) + n_dem)
    pos = starts.copy()
    index[pos] = n_sites + np.arange(n_dem)
    value[pos] = 1.0
    offs = np.r_[0, np.cumsum(counts)[:-1]]
    within = np.arange(len(ds)) - np.repeat(offs, counts)
    slot = np.repeat(starts, counts) + 1 + within
    index[slot] = ss
    value[slot] = -1.0
    h.addRows(n_dem, np.full(n_dem, -inf), np.zeros(n_dem), len(index), starts, index, value)
    h.addRow(float(k), float(k), n_sites, np.arange(n_sites, dtype=np.int32), np.ones(n_sites))
    if start:
        sol = highspy.HighsSolution()
        x = np.zeros(n_sites + n_dem)
        x[start] = 1
        hit = np.zeros(n_dem, bool)
        hit[dem[np.isin(site, start)]] = True
        x[n_sites:] = hit
        sol.col_value = list(x)
        h.setSolution(sol)
    h.run()
    status = h.getModelStatus()
    if h.getInfo().primal_solution_status != 2:  # no feasible solution
        return None
    values = np.asarray(h.getSolution().col_value[:n_sites])
    chosen = [int(i) for i in np.flatnonzero(values > 0.5)]
    info = h.getInfo()
    optimal = status == highspy.HighsModelStatus.kOptimal
    bound = -float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
    return chosen, optimal, bound
