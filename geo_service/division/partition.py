"""A community's pieces grouped into grids by a regionalisation library (pure: arrays in,
one region label per piece out).

The chosen method is the construction phase of PySAL spopt's max-p regions
(`spopt.region.maxp`, Wei, Rey and Knaap 2020): it grows contiguous regions until each holds
a floor of households, keeps the random constructions reaching the most regions, and assigns
the pieces left over to one of the two most similar neighbouring regions. Its simulated
annealing phase is left out: on real communities it does not finish (docs/PERFORMANCE.md).
Here:
- the floor is the target less half a median piece's households, never below the minimum:
  a region stops growing once it reaches the floor, so it overshoots it by about half a
  piece, and the grids land about the target; of the constructions with the most regions,
  the one nearest the target (least sum of squared differences) is kept;
- similarity (for the left-over pieces) is the city-block distance of the pieces'
  attributes: their centroids (in units of a grid's expected width: compactness), and,
  weighted by the stability, today's grid of each piece (one-hot); with a stability above
  zero each piece lists its neighbours in today's grid first, so that regions grow within
  today's grids;
- a region above the maximum is divided again by the construction (floor: the minimum),
  alone or merged with a neighbouring region first, where that leaves fewer outside.
The compared method is gerrychain's recursive spanning-tree partition (`recursive_tree_part`,
the start of a ReCom chain): k regions of the target within an epsilon, or a failure when the
pieces are too coarse for the range.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy.sparse import csr_matrix

from geo_service.errors import InvalidInput

METHODS = ("maxp", "tree")

SPLIT_ITERATIONS = 20  # constructions tried on a region above the maximum (a few blocks)
_RANDOM = threading.Lock()  # spopt's max-p draws from numpy's global random state


@dataclass(frozen=True)
class Range:
    """Households a grid should hold: aim, least and most."""

    target: int
    minimum: int
    maximum: int

    def check(self) -> Range:
        """The range, or InvalidInput naming what is wrong with it."""
        for name, value in (("target", self.target), ("min", self.minimum), ("max", self.maximum)):
            if not isinstance(value, int | np.integer) or value <= 0:
                raise InvalidInput(f"--{name} households must be a positive number, not {value!r}")
        if self.minimum > self.maximum:
            raise InvalidInput(f"min households {self.minimum} is above max {self.maximum}")
        if not self.minimum <= self.target <= self.maximum:
            raise InvalidInput(
                f"target households {self.target} is outside the range "
                f"{self.minimum}-{self.maximum}"
            )
        return self


@dataclass
class Problem:
    """One community to divide: the pieces' contiguity (metres shared), households,
    centroids (metric), today's grid (-1: none), the range and the stability weight."""

    adjacency: csr_matrix
    households: np.ndarray
    centroids: np.ndarray
    grid: np.ndarray
    range: Range
    stability: float = 1.0
    seed: int = 0
    construction_iterations: int = 2

    @property
    def total(self) -> int:
        """Households of the community."""
        return int(self.households.sum())


@dataclass
class Result:
    """Region label per piece (0..k-1), and what the method has to say."""

    labels: np.ndarray
    notes: list[str] = field(default_factory=list)
    failed: str | None = None  # the method found no division (the compared method only)


def floor(problem: Problem) -> float:
    """The households max-p grows each region to (see the module)."""
    r = problem.range
    built = problem.households[problem.households > 0]
    half = float(np.median(built)) / 2 if len(built) else 0.0
    return max(float(r.minimum), float(r.target) - half)


def attributes(problem: Problem) -> np.ndarray:
    """Each piece's attributes for max-p's heterogeneity: centroid in units of a grid's
    expected width, then today's grid one-hot times the stability."""
    xy = problem.centroids - problem.centroids.mean(axis=0)
    n = len(xy)
    regions = max(1.0, problem.total / problem.range.target)
    span = np.ptp(problem.centroids, axis=0) if n else np.ones(2)
    width = float(np.sqrt(max(span[0] * span[1], 1.0) / regions)) or 1.0
    columns = [xy / width]
    if problem.stability > 0 and (problem.grid >= 0).any():
        _, grid = np.unique(problem.grid, return_inverse=True)
        onehot = np.zeros((n, int(grid.max()) + 1))
        onehot[np.arange(n), grid.ravel()] = problem.stability
        columns.append(onehot)
    return np.hstack(columns)


def divide(problem: Problem, method: str = "maxp") -> Result:
    """The pieces grouped into contiguous regions by `method` (see the module)."""
    n = len(problem.households)
    r = problem.range
    if n == 0:
        return Result(np.zeros(0, dtype=np.int64))
    if problem.total < r.minimum:
        return Result(
            np.zeros(n, dtype=np.int64),
            [f"{problem.total} households, fewer than the minimum {r.minimum}: one grid"],
        )
    if method == "maxp":
        return _maxp(problem)
    if method == "tree":
        return _tree(problem)
    raise InvalidInput(f"unknown division method {method!r} (known: {', '.join(METHODS)})")


# -- max-p (spopt) ---------------------------------------------------------------------------
def _maxp(problem: Problem) -> Result:
    attrs = attributes(problem)
    labels = _maxp_labels(problem, np.arange(len(attrs)), attrs, floor(problem))
    notes: list[str] = []
    r = problem.range
    labels = _recombine(problem, labels, attrs)
    labels = np.unique(labels, return_inverse=True)[1].ravel()
    sums = np.bincount(labels, weights=problem.households)
    over = int((sums > r.maximum).sum())
    if over:
        notes.append(
            f"{over} grids above the maximum {r.maximum}: their blocks (or an estate) cannot "
            f"make two grids of at least {r.minimum}"
        )
    under = int((sums < r.minimum).sum())
    if under:
        notes.append(f"{under} grids below the minimum {r.minimum}: the community allows no more")
    return Result(labels.astype(np.int64), notes)


def _recombine(problem: Problem, labels: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """Regions above the maximum divided again by max-p's construction (floor: the minimum),
    alone or merged with a neighbouring region first (as a ReCom step does): the first of
    these that leaves fewer regions outside the range (or the same number, less far above
    the maximum) is kept."""
    r = problem.range
    h = problem.households
    labels = labels.copy()
    next_label = int(labels.max()) + 1

    def outside(sums: np.ndarray) -> tuple[int, float]:
        return int(((sums < r.minimum) | (sums > r.maximum)).sum()), float(sums.max())

    for region in np.flatnonzero(np.bincount(labels, weights=h) > r.maximum):
        mine = labels == region
        touching = problem.adjacency[np.flatnonzero(mine)].indices
        others = np.setdiff1d(np.unique(labels[touching]), [region])
        sums = np.bincount(labels, weights=h, minlength=next_label)
        for other in [-1, *others[np.argsort(sums[others], kind="stable")]]:
            both = mine | (labels == other)
            idx = np.flatnonzero(both)
            was = [region] if other < 0 else [region, other]
            again = _maxp_labels(problem, idx, attrs, float(r.minimum), SPLIT_ITERATIONS)
            parts = np.bincount(again, weights=h[idx])
            if outside(parts) < outside(sums[was]):
                names = np.r_[was, np.arange(next_label, next_label + len(parts))][: len(parts)]
                next_label += max(0, len(parts) - len(was))
                labels[idx] = names[again]
                break
    return np.unique(labels, return_inverse=True)[1].ravel()  # type: ignore[no-any-return]


def _maxp_labels(
    problem: Problem,
    idx: np.ndarray,
    attrs: np.ndarray,
    floor_hh: float,
    iterations: int | None = None,
) -> np.ndarray:
    """max-p's construction on the pieces `idx` (contiguous); labels 0..p-1 in their order.
    Of the constructions reaching the most regions, the one nearest the target is kept (the
    least sum of squared differences from it)."""
    h = problem.households[idx]
    if h.sum() < 2 * floor_hh or len(idx) < 2:
        return np.zeros(len(idx), dtype=np.int64)
    import libpysal
    from scipy.spatial.distance import pdist, squareform
    from spopt.region.maxp import _construction_phase

    sub = problem.adjacency[idx][:, idx].tocsr()
    same = problem.grid[idx]
    neighbours: dict[int, list[int]] = {}
    for i in range(len(idx)):
        row = sub.indices[sub.indptr[i] : sub.indptr[i + 1]]
        shared = sub.data[sub.indptr[i] : sub.indptr[i + 1]]
        # growth takes neighbours in this order: today's grid first (stability), then the
        # longest shared boundary (compactness)
        other = (same[row] != same[i]) if problem.stability > 0 else np.zeros(len(row), bool)
        neighbours[i] = [int(j) for j in row[np.lexsort((-shared, other))]]
    a = attrs[idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = libpysal.weights.W(neighbours, silence_warnings=True)
        with _RANDOM:
            np.random.seed(problem.seed)
            _, found = _construction_phase(
                np.arange(len(idx)),
                a,
                h.astype(float),
                squareform(pdist(a, metric="cityblock")),
                w,
                floor_hh,
                2,  # enclaves go to one of the two most similar neighbouring regions
                iterations or problem.construction_iterations,
            )
    best, best_cost = None, np.inf
    for labels, _, _ in found:
        lab = np.unique(np.asarray(labels), return_inverse=True)[1].ravel()
        cost = float(((np.bincount(lab, weights=h) - problem.range.target) ** 2).sum())
        if cost < best_cost:
            best, best_cost = lab, cost
    assert best is not None
    return best.astype(np.int64)


# -- recursive spanning trees (gerrychain) -------------------------------------------------
def _tree(problem: Problem, max_attempts: int = 2000) -> Result:
    import networkx as nx
    from gerrychain import Graph
    from gerrychain.partition.initial_partition_generators import recursive_tree_part
    from gerrychain.tree import bipartition_tree

    r = problem.range
    k = regions_for(problem.total, r)
    n = len(problem.households)
    if k < 2:
        return Result(np.zeros(n, dtype=np.int64))
    ideal = problem.total / k
    epsilon = min((r.maximum - ideal) / ideal, (ideal - r.minimum) / ideal)
    graph = nx.from_scipy_sparse_array(problem.adjacency)
    for i in range(n):
        graph.nodes[i]["households"] = int(problem.households[i])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parts = recursive_tree_part(
                Graph.from_networkx(graph),
                list(range(k)),
                ideal,
                "households",
                max(epsilon, 0.0),
                bipartition_tree_fn=partial(bipartition_tree, max_attempts=max_attempts),
                rng=problem.seed,
            )
        except Exception as error:  # the library's own failures: no balanced cut found
            return Result(np.zeros(n, dtype=np.int64), failed=f"{type(error).__name__}: {error}")
    return Result(np.array([parts[i] for i in range(n)], dtype=np.int64))


def regions_for(total: int, r: Range) -> int:
    """How many grids of about the target the households make, within the range when some
    count allows it."""
    if total <= 0:
        return 1
    lo, hi = int(np.ceil(total / r.maximum)), int(np.floor(total / r.minimum))
    aim = max(1, round(total / r.target))
    return min(max(aim, lo), hi) if lo <= hi else aim
