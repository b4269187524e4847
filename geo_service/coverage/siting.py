"""Siting new centres: the maximal covering location problem (pure: arrays in, choice out).

Choose k candidate sites maximising the households newly covered, the existing centres being
kept (only buildings they leave uncovered count). In order, each step only while the answer
is not yet proven optimal (the exact stage: within `gap` of the best possible):

1. Candidates that reach no household another candidate does not reach too are dropped
   (an optimal choice never needs them), and buildings reached by the same candidates are
   merged into one demand: on the demo city, 51 of 274 sites and 147 demands of 690
   buildings are left.
2. Greedy, with a bound from each of its steps: no k sites add more than the k largest
   gains at that step (the first step: the k best sites alone; greedy/(1 - 1/e) is never
   lower than the least of these). Its sites are then improved by interchange (Teitz and
   Bart): one chosen site swapped for one not chosen, the best swap each time, while a
   swap adds households.
3. The Lagrangian relaxation of the coverage rows, by subgradient steps from greedy's best
   bound: its bound is the LP relaxation's at best, and the k sites each step picks are a
   solution too (the best of them improved by interchange again, and so are the k sites its
   last multipliers price highest). The steps end early once no more than `_FEW` sites
   could still take a choice past the best found (below): the exact stage is cheap then.
4. The exact stage. The Lagrangian bound with one site forced in says how much any choice
   holding that site may cover: sites that cannot take a choice past the best found are
   left out (on the `city`, 5-180 of 1,463 sites are left in for k = 3-10) and the demands
   merged again. HiGHS solves the LP relaxation of what is left (by primal simplex), which
   is often whole: then it is the optimum. Else its reduced costs leave out more sites the
   same way, and HiGHS solves the MIP of the rest, started from the best sites. All within
   what is left of the time limit; past it, the best set found is kept, with the best bound,
   and the answer says it stopped there. When the sites are proven within `gap` before this
   stage, it still runs for the optimum, for at most `_POLISH_S`: a planner would rather
   have the better sites when they are cheap to find (on the `city`, every k <= 10 is then
   proven optimal).

With whole households the best total is a whole number, so a bound is rounded down.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

_SUBGRADIENT_STEPS = 200  # Lagrangian steps at most (40 ms on the demo city, 0.6 s on `city`)
_PATIENCE = 10  # steps without a better bound before the step size is halved
_ROUNDING = 1e-9  # relative error allowed in sums of weights (the bounds are sums of floats)
_LP_SLACK = 1e-6  # relative, added to bounds from HiGHS' LP (its tolerances are 1e-7)
_WHOLE = 1e-6  # an LP site value this close to 0 or 1 counts as whole
# Seconds the exact stage may spend looking for the optimum when the sites are proven within
# the gap already (on the `city` it takes 0.01-0.3 s for k <= 10; cut short, the better
# sites it has found are kept)
_POLISH_S = 0.5
_FEW = 100  # sites left for the exact stage at which the Lagrangian steps may end


@dataclass
class Choice:
    """Sites chosen (candidate indices, in reporting order) and what they gain."""

    sites: list[int]
    gains: list[int]  # households newly covered by each site, beyond the sites before it
    total: int
    method: str  # who found the sites: "greedy", "interchange", "lagrangian" or "highs"
    optimal: bool
    upper_bound: float | None  # proven bound on the best total (None when unknown)
    notes: list[str] = field(default_factory=list)
    # why the search ended short of a proof: "gap" (proven within the gap asked for),
    # "time_limit", or "solver" (HiGHS stopped for another reason); None when optimal
    stopped: str | None = None

    @property
    def gap(self) -> float | None:
        """How far below the proven bound the total may be, as a fraction of the bound."""
        if self.upper_bound is None:
            return None
        return 0.0 if self.upper_bound <= 0 else max(0.0, 1 - self.total / self.upper_bound)


@dataclass
class Model:
    """Sites and demands (merged buildings): `cover` is sites × demands, 1 where a site
    reaches a demand; `sites` are the original candidate indices."""

    sites: np.ndarray
    cover: csr_matrix
    weight: np.ndarray
    integral: bool  # every weight a whole number: so is the best total

    @property
    def n(self) -> int:
        """How many sites."""
        return len(self.sites)

    @cached_property
    def by_demand(self) -> csr_matrix:
        """`cover` transposed: demands × sites."""
        return self.cover.T.tocsr()

    def rows(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The demands each of the sites `chosen` (model indices) reaches, as the indices and
        index pointer of their rows (slicing `cover` by hand: 20 times faster than scipy's)."""
        lo, hi = self.cover.indptr[chosen], self.cover.indptr[np.asarray(chosen) + 1]
        at = np.repeat(lo - np.cumsum(np.r_[0, (hi - lo)[:-1]]), hi - lo)
        return self.cover.indices[at + np.arange(at.size)], np.r_[0, np.cumsum(hi - lo)]

    def hits(self, chosen: np.ndarray) -> np.ndarray:
        """How many of the sites `chosen` (model indices) reach each demand."""
        return np.bincount(self.rows(chosen)[0], minlength=len(self.weight)).astype(float)

    def reached(self, chosen: np.ndarray) -> np.ndarray:
        """Which demands the sites `chosen` (model indices) reach."""
        return self.hits(chosen) > 0

    def value(self, chosen: np.ndarray) -> float:
        """Weight the sites `chosen` reach."""
        return float(self.weight[self.reached(chosen)].sum())

    def floor(self, bound: float) -> float:
        """A bound on the best total as tight as its being whole allows."""
        if not self.integral:
            return bound
        return float(math.floor(bound + _ROUNDING * max(1.0, abs(bound))))

    def reaches(self, value: float, bound: float) -> bool:
        """`value` is as much as `bound` allows (to rounding): proven optimal."""
        bound = self.floor(bound)
        return value >= bound - _ROUNDING * max(1.0, abs(bound))

    def beyond(self, bounds: np.ndarray, value: float) -> np.ndarray:
        """Which of `bounds` leave room for more than `value` (`reaches`, element-wise,
        negated)."""
        slack = _ROUNDING * np.maximum(1.0, np.abs(bounds))
        if self.integral:
            bounds = np.floor(bounds + slack)
        return value < bounds - slack


def model(n_sites: int, site: np.ndarray, building: np.ndarray, weights: np.ndarray) -> Model:
    """The reduced model of (site, building) pairs and per-building weights: buildings
    reached by the same sites are merged into one demand; of sites that reach the same
    demands only the first is kept, then sites whose demands another site reaches too are
    dropped, and demands reached by the same sites left are merged again."""
    ok = weights[building] > 0
    # each pair once, by building, then site: the rows of buildings with their sites sorted
    key = np.sort(building[ok].astype(np.int64) * n_sites + site[ok])
    key = key[np.r_[True, key[1:] != key[:-1]]]
    b, s = np.divmod(key, n_sites)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    rows = csr_matrix(
        (np.ones(len(key), np.int32), s, np.r_[starts, len(key)]), shape=(len(starts), n_sites)
    )
    # merged first: the test of one site inside another below costs the square of each
    # demand's sites, counted once per demand rather than once per building
    a, weight = _merged(rows, weights[b[starts]])
    reach = np.flatnonzero(np.diff(a.indptr) > 0)
    _, first = _equal_rows(a[reach])
    sites = reach[np.sort(first)]
    # no two of `sites` reach the same demands: one inside another is strictly inside
    a = a[sites]
    count = np.diff(a.indptr)
    shared = (a @ a.T).tocoo()  # demands two sites both reach
    i, j = shared.row, shared.col
    inside = (shared.data == count[i]) & (i != j)
    kept = np.setdiff1d(np.arange(len(sites)), i[inside])
    by_demand = a[kept].T.tocsr()
    used = np.flatnonzero(np.diff(by_demand.indptr) > 0)
    cover, weight = _merged(by_demand[used], weight[used])
    integral = bool(np.all(weights == np.round(weights)))
    return Model(sites[kept], cover.astype(np.float64), weight, integral)


def _merged(rows: csr_matrix, weights: np.ndarray) -> tuple[csr_matrix, np.ndarray]:
    """Rows (demands, each with the sites reaching it) reached by the same sites merged,
    their weights added: sites × merged demands, and the merged weights."""
    rows.sort_indices()
    group, first = _equal_rows(rows)
    merged = rows[first].T.tocsr()
    merged.sort_indices()
    return merged, np.bincount(group, weights=weights, minlength=len(first))


def _equal_rows(rows: csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The group of each row of a canonical 0/1 matrix (rows with the same columns share
    one), and the first row of each group."""
    n = rows.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    count = np.diff(rows.indptr)
    # rows with equal columns have equal (count, hash) and end up side by side; neighbours
    # are then compared column by column, so a hash collision never merges two rows
    keys = np.random.default_rng(0).integers(0, 2**63, rows.shape[1], dtype=np.uint64)
    digest = np.add.reduceat(keys[rows.indices], rows.indptr[:-1])
    order = np.lexsort((digest, count))
    before, after = order[:-1], order[1:]
    maybe = np.flatnonzero((count[before] == count[after]) & (digest[before] == digest[after]))
    width = count[before[maybe]]
    step = np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width)
    differ = (
        rows.indices[np.repeat(rows.indptr[before[maybe]], width) + step]
        != rows.indices[np.repeat(rows.indptr[after[maybe]], width) + step]
    )
    equal = np.zeros(n - 1, bool)
    equal[maybe] = np.bincount(np.repeat(np.arange(len(maybe)), width), differ, len(maybe)) == 0
    group_sorted = np.cumsum(np.r_[True, ~equal]) - 1
    group = np.empty(n, np.int64)
    group[order] = group_sorted
    first = order[np.r_[True, ~equal]]
    return group, first


@dataclass
class Best:
    """The best site set found so far and the least proven bound."""

    sites: np.ndarray
    value: float
    bound: float
    method: str

    def close(self, m: Model, gap: float) -> bool:
        """Proven within `gap` of the best possible (optimal when gap is 0)."""
        return m.reaches(self.value, self.bound) or self.value >= m.floor(self.bound) * (1 - gap)


def greedy(m: Model, k: int) -> tuple[Best, np.ndarray]:
    """k sites by repeated best marginal gain (fewer when no site gains more), with the
    least of the bounds of its steps, and the Lagrangian multipliers that give it."""
    covered = np.zeros(len(m.weight), bool)
    chosen: list[int] = []
    total = float(m.weight.sum())
    best = Best(np.zeros(0, np.int64), 0.0, total, "greedy")
    multipliers = np.zeros(len(m.weight))  # all weight counted as covered: the bound `total`
    value = 0.0
    for step in range(min(k, m.n) + 1):
        left = np.where(covered, 0.0, m.weight)
        gain = m.cover @ left
        # no k sites add more than the k largest gains: the bound of this step
        bound = value + float(_top(gain, k).sum())
        if bound < best.bound:
            best.bound, multipliers = bound, left
        if step == min(k, m.n):
            break
        site = int(np.argmax(gain))
        if gain[site] <= 0:
            break
        chosen.append(site)
        value += gain[site]
        covered[m.cover.indices[m.cover.indptr[site] : m.cover.indptr[site + 1]]] = True
    best.sites = np.asarray(chosen, np.int64)
    best.value = m.value(best.sites)
    return best, multipliers


def interchange(m: Model, k: int, best: Best, deadline: float) -> None:
    """Improve `best` by interchange (Teitz and Bart): the swap of a chosen site for one not
    chosen that adds most (or a site added, when fewer than k are chosen), as long as one
    adds households and time is left."""
    chosen = best.sites.copy()
    least = _ROUNDING * max(1.0, float(m.weight.sum()))
    changed = False
    while len(chosen) and time.perf_counter() <= deadline:
        hits = m.hits(chosen)
        gain = m.cover @ np.where(hits == 0, m.weight, 0.0)  # what each site would add
        gain[chosen] = -np.inf
        if len(chosen) < min(k, m.n) and gain.max() > least:
            chosen, changed = np.r_[chosen, np.argmax(gain)], True
            continue
        # the weight each chosen site reaches alone (lost when it goes), and of that, what
        # each other site reaches too (kept when it comes in)
        indices, indptr = m.rows(chosen)
        only = np.where(hits == 1, m.weight, 0.0)
        alone = csr_matrix((only[indices], indices, indptr), shape=(len(chosen), len(m.weight)))
        loss = np.asarray(alone.sum(axis=1)).ravel()
        swap = gain[:, None] - loss[None, :] + (alone @ m.by_demand).T.toarray()
        into, out = np.unravel_index(int(np.argmax(swap)), swap.shape)
        if swap[into, out] <= least:
            break
        chosen[out], changed = into, True
    value = m.value(chosen)
    if changed and value > best.value:
        best.sites, best.value, best.method = np.sort(chosen), value, "interchange"


def _top_sites(price: np.ndarray, k: int) -> np.ndarray:
    """The k sites of the largest prices (all when there are no more than k)."""
    return np.arange(len(price)) if k >= len(price) else np.argpartition(-price, k - 1)[:k]


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """The k largest values (all when there are no more than k)."""
    if k >= len(values):
        return values
    return values[np.argpartition(-values, k - 1)[:k]]


def lagrangian(
    m: Model,
    k: int,
    best: Best,
    multipliers: np.ndarray,
    gap: float,
    deadline: float,
    few: int = 0,
) -> tuple[bool, np.ndarray]:
    """Tighten `best` by subgradient steps on the relaxation of "a demand counts only when
    a chosen site reaches it": for any multipliers 0 <= u <= w, no k sites cover more than
    sum(max(w - u, 0)) + the k largest sums of u over each site's demands. Each step's k
    sites are tried as a solution. The steps end early when no more than `few` sites could
    still take a choice past `best` (`_room`; 0: never). Returns False when stopped by the
    deadline, and the multipliers of the best bound, or of those few sites (`multipliers`
    give `best.bound` on entry)."""
    u, theta, stall = multipliers.astype(float), 2.0, 0
    least = u
    for _ in range(_SUBGRADIENT_STEPS):
        if best.close(m, gap):
            return True, least
        if time.perf_counter() > deadline:
            return False, least
        price = m.cover @ u
        top = _top_sites(price, k)
        bound = float(np.maximum(m.weight - u, 0).sum() + price[top].sum())
        if few and np.count_nonzero(m.beyond(_room(bound, price, top), best.value)) <= few:
            best.bound = min(best.bound, bound)
            return True, u
        if bound < best.bound:
            best.bound, stall, least = bound, 0, u
        else:
            stall += 1
            if stall >= _PATIENCE:
                theta, stall = theta / 2, 0
        hits = m.hits(top)
        value = float(m.weight[hits > 0].sum())
        if value > best.value:
            best.sites, best.value, best.method = np.sort(top), value, "lagrangian"
        slope = hits - (u < m.weight)
        norm = float(np.square(slope).sum())
        if norm == 0:
            break
        u = np.clip(u - theta * (bound - best.value) / norm * slope, 0.0, m.weight)
    return True, least


def _exact(
    m: Model, k: int, best: Best, multipliers: np.ndarray, gap: float, deadline: float
) -> str | None:
    """Solve with HiGHS on the sites that may still beat `best`, updating it; returns why
    it stopped short of `gap` ("time_limit", "solver"), or None.

    With the multipliers u, a choice holding site j covers at most the Lagrangian bound
    with j forced in: the bound less the k-th largest price plus j's own (j among the k
    largest: the bound)."""
    price = m.cover @ multipliers
    top = _top_sites(price, k)
    bound = float(np.maximum(m.weight - multipliers, 0).sum() + price[top].sum())
    return _within(m, k, best, _room(bound, price, top), gap, deadline, relaxed=True)


def _room(bound: float, price: np.ndarray, top: np.ndarray) -> np.ndarray:
    """The Lagrangian bound with each site forced in: the most a choice holding it may
    cover (`top`: the sites of the k largest prices, which `bound` counts)."""
    room = bound - price[top].min() + price
    room[top] = bound
    return room


def _within(
    m: Model,
    k: int,
    best: Best,
    room: np.ndarray,
    gap: float,
    deadline: float,
    relaxed: bool,
) -> str | None:
    """Solve on the sites whose `room` (the most a choice holding each site may cover) is
    more than `best` has, updating `best`: a better choice holds none of the others, so the
    best found there, or `best`, is the optimum, and a bound there, or `best`'s value, bounds
    it. `relaxed`: the LP relaxation first (then narrowed again by its reduced costs), else
    the MIP. Returns why it stopped short of `gap`, or None."""
    value = best.value
    kept = np.flatnonzero(m.beyond(room, value))
    if len(kept) == 0:
        best.bound = min(best.bound, value)
        return None
    part = m.cover[kept].tocoo()
    r = model(len(kept), part.row, part.col, m.weight)
    sites = kept[r.sites]
    held = np.flatnonzero(np.isin(sites, best.sites))  # best's sites left in
    sub = Best(held, r.value(held), math.inf, best.method)
    if relaxed:
        stopped, reduced = _lp(r, k, sub, deadline - time.perf_counter())
        if stopped is None and reduced is not None and not sub.close(r, gap):
            stopped = _within(r, k, sub, reduced, gap, deadline, relaxed=False)
    else:
        stopped = _highs(r, k, sub, gap, deadline - time.perf_counter())
    best.bound = min(best.bound, max(value, sub.bound))
    if sub.value > best.value:
        best.sites, best.value, best.method = np.sort(sites[sub.sites]), sub.value, sub.method
    return stopped


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
    covers which building, `weights` are per building. The search ends as soon as its sites
    are proven within `gap` (a fraction) of the best possible, or at `time_limit_s`."""
    deadline = time.perf_counter() + time_limit_s
    m = model(n_sites, site, building, weights)
    notes = []
    if m.n < n_sites:
        notes.append(
            f"{n_sites - m.n} of {n_sites} candidate sites left out: none reaches a household "
            "that another site does not"
        )
    best, multipliers = greedy(m, k)
    stopped: str | None = None
    interchange(m, k, best, deadline)
    # every step (unless proven optimal): a tighter bound narrows the exact stage more
    done, multipliers = lagrangian(m, k, best, multipliers, 0.0, deadline, few=_FEW)
    if best.method == "lagrangian":
        interchange(m, k, best, deadline)
    # the k sites its last multipliers price highest, improved by interchange too: on the
    # `city` at k = 13-20 within 0.01-0.5% of the LP bound, where greedy's were 1.1-2.1% off
    priced = _top_sites(m.cover @ multipliers, k)
    start = Best(np.sort(priced), m.value(priced), best.bound, "lagrangian")
    interchange(m, k, start, deadline)
    if start.value > best.value:
        best.sites, best.value, best.method = start.sites, start.value, start.method
    if not done:
        stopped = "time_limit"
    elif best.close(m, gap):
        if not m.reaches(best.value, best.bound):
            # close enough already: the optimum is looked for only while that is cheap
            polish = min(deadline, time.perf_counter() + _POLISH_S)
            _exact(m, k, best, multipliers, 0.0, polish)
    else:
        stopped = _exact(m, k, best, multipliers, gap, deadline)
    bound = m.floor(best.bound)
    optimal = m.reaches(best.value, bound)
    if optimal:
        bound, stopped = best.value, None
    elif stopped is None:
        stopped = "gap"
    notes.append(_how(best, bound, optimal, stopped, gap, time_limit_s))
    order, gains = greedy_order(best.sites, m)
    kept = [(int(m.sites[s]), round(g)) for s, g in zip(order, gains, strict=True) if g > 0]
    if len(kept) < min(k, n_sites):
        notes.append(f"only {len(kept)} site(s) gain households: no other site adds any")
    return Choice(
        [s for s, _ in kept],
        [g for _, g in kept],
        sum(g for _, g in kept),
        best.method,
        optimal,
        bound,
        notes,
        stopped,
    )


def _how(
    best: Best, bound: float, optimal: bool, stopped: str | None, gap: float, limit: float
) -> str:
    """How far the answer is proven, in words."""
    if optimal:
        return f"proven optimal: the {best.method} sites reach the bound"
    within = f"within {1 - best.value / bound:.2%} of the best possible" if bound > 0 else ""
    if stopped == "gap":
        return f"{within} (asked: within {gap:.2%})"
    if stopped == "time_limit":
        return f"stopped at the time limit ({limit:g} s), {within}"
    return f"the solver stopped ({stopped}), {within}"


def greedy_order(chosen: np.ndarray, m: Model) -> tuple[list[int], list[float]]:
    """Order `chosen` by marginal gain (largest first); returns sites and their gains."""
    reach = m.cover[chosen].toarray() > 0
    covered = np.zeros(len(m.weight), bool)
    left, order, gains = list(range(len(chosen))), [], []
    while left:
        gain = [float(m.weight[reach[i] & ~covered].sum()) for i in left]
        pick = int(np.argmax(gain))
        i = left.pop(pick)
        covered |= reach[i]
        order.append(int(chosen[i]))
        gains.append(gain[pick])
    return order, gains


def _problem(m: Model, k: int, time_limit_s: float) -> Any:
    """The MCLP as a HiGHS model, the sites continuous (the LP relaxation):

    max sum w_d y_d  s.t.  y_d <= sum_{s covers d} x_s,  sum x_s <= k,  0 <= x, y <= 1.
    """
    import highspy

    n, n_dem = m.n, len(m.weight)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("threads", 1)
    # the model is reduced already; HiGHS' presolve finds nothing more in it and took 0.5 s
    # of 0.55 s on 110 sites x 341 demands (1,500 given candidates in the demo city)
    h.setOptionValue("presolve", "off")
    inf = highspy.kHighsInf
    # columns: x_0..x_{n-1}, then y_0..y_{d-1}; HiGHS minimises, so the weights are negated
    h.addVars(n + n_dem, np.zeros(n + n_dem), np.ones(n + n_dem))
    h.changeColsCost(n + n_dem, np.arange(n + n_dem, dtype=np.int32), np.r_[np.zeros(n), -m.weight])
    # rows: y_d - sum x_s <= 0, one per demand, in CSR form
    by_demand = m.by_demand
    counts = np.diff(by_demand.indptr)
    starts = (by_demand.indptr[:-1] + np.arange(n_dem)).astype(np.int32)
    index = np.empty(by_demand.nnz + n_dem, dtype=np.int32)
    value = np.full(by_demand.nnz + n_dem, -1.0)
    index[starts] = n + np.arange(n_dem)
    value[starts] = 1.0
    slot = (
        np.repeat(starts + 1, counts)
        + np.arange(by_demand.nnz)
        - by_demand.indptr[:-1].repeat(counts)
    )
    index[slot] = by_demand.indices
    h.addRows(n_dem, np.full(n_dem, -inf), np.zeros(n_dem), len(index), starts, index, value)
    h.addRow(-inf, float(k), n, np.arange(n, dtype=np.int32), np.ones(n))
    return h


def _lp(m: Model, k: int, best: Best, time_limit_s: float) -> tuple[str | None, np.ndarray | None]:
    """The LP relaxation, updating `best` with its bound (and its sites, when whole); returns
    why it stopped short ("time_limit", "solver") or None, and the most a choice holding
    each site may cover (the bound less the site's reduced cost)."""
    if time_limit_s <= 0:
        return "time_limit", None
    import highspy

    h = _problem(m, k, time_limit_s)
    # primal simplex: the dual took 1.2 s where it takes 0.12 s on 179 sites x 3,230
    # demands (`city`, k=8), and HiGHS' MIP solves its root LP with the dual
    h.setOptionValue("simplex_strategy", 4)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        return ("time_limit" if status == highspy.HighsModelStatus.kTimeLimit else "solver"), None
    solution = h.getSolution()
    bound = -float(h.getInfo().objective_function_value)
    # bounds computed with HiGHS' tolerances: a millionth more, never too tight
    slack = _LP_SLACK * max(1.0, abs(bound))
    best.bound = min(best.bound, bound + slack)
    x = np.asarray(solution.col_value[: m.n])
    if np.all(np.minimum(x, 1 - x) < _WHOLE):
        chosen = np.flatnonzero(x > 0.5)
        found = m.value(chosen)
        if found > best.value:
            best.sites, best.value, best.method = chosen, found, "highs"
    # at its lower bound a site's reduced cost d >= 0 (minimising): holding it costs d
    reduced = np.maximum(np.asarray(solution.col_dual[: m.n]), 0.0)
    return None, bound + slack - reduced


def _highs(m: Model, k: int, best: Best, gap: float, time_limit_s: float) -> str | None:
    """Solve with HiGHS from `best`, updating it, until proven within `gap`; returns why
    it stopped short of that ("time_limit", "solver"), or None."""
    if time_limit_s <= 0:
        return "time_limit"
    import highspy

    n, n_dem = m.n, len(m.weight)
    h = _problem(m, k, time_limit_s)
    h.changeColsIntegrality(
        n, np.arange(n, dtype=np.int32), np.full(n, highspy.HighsVarType.kInteger)
    )
    # as close as asked (gap 0: to the last household; HiGHS' default stops 0.01% short)
    h.setOptionValue("mip_rel_gap", float(gap))
    h.setOptionValue("mip_abs_gap", 0.999 if m.integral else 1e-9)
    start = highspy.HighsSolution()
    x = np.zeros(n + n_dem)
    x[best.sites] = 1
    x[n:] = m.reached(best.sites)
    start.col_value = list(x)
    h.setSolution(start)
    h.run()
    info = h.getInfo()
    if np.isfinite(info.mip_dual_bound):
        best.bound = min(best.bound, -float(info.mip_dual_bound))
    if info.primal_solution_status == 2:  # a feasible solution
        chosen = np.flatnonzero(np.asarray(h.getSolution().col_value[:n]) > 0.5)
        found = m.value(chosen)
        if found > best.value:
            best.sites, best.value, best.method = chosen, found, "highs"
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kOptimal:
        return None
    return "time_limit" if status == highspy.HighsModelStatus.kTimeLimit else "solver"
