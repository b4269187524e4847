"""Figures of a division, a proposal's or today's, side by side (pure: metric shapes and
arrays in, numbers out).

- households per grid: min, median, max, coefficient of variation (std / mean), and how
  many grids lie outside the range;
- compactness: Polsby-Popper 4πA/P² of each grid (1 for a disc), mean and minimum;
- boundary not on a street: metres of the boundaries between grids (the community's own
  outline left out) farther than a tolerance from every street;
- households and buildings that would change grid: each proposed grid continues at most one
  of today's grids, the pairing that keeps the most households in place (a maximum-weight
  matching, scipy's linear_sum_assignment); a household keeps its grid when its proposed
  grid continues the grid it is in today;
- workers needed: each grid needs ceil(households / households per worker), at least one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely
from scipy.optimize import linear_sum_assignment

from geo_service.division.partition import Range


def polsby_popper(shapes: np.ndarray) -> np.ndarray:
    """4πA/P² of each shape (0 for a shape with no area)."""
    area = shapely.area(shapes)
    perimeter = shapely.length(shapes)
    with np.errstate(divide="ignore", invalid="ignore"):
        pp = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, 0.0)
    return pp  # type: ignore[no-any-return]


def off_street_m(
    shapes: np.ndarray, outline: shapely.Geometry, streets: np.ndarray, tolerance_m: float
) -> float:
    """Metres of the boundaries between `shapes` (the `outline` left out) farther than
    `tolerance_m` from every street."""
    if len(shapes) < 2:
        return 0.0
    lines = shapely.union_all(shapely.boundary(shapes))
    lines = shapely.difference(lines, shapely.buffer(shapely.boundary(outline), tolerance_m))
    if shapely.is_empty(lines):
        return 0.0
    near = streets[shapely.STRtree(streets).query(lines, predicate="dwithin", distance=tolerance_m)]
    if len(near):
        lines = shapely.difference(
            lines, shapely.buffer(shapely.multilinestrings(near), tolerance_m, quad_segs=1)
        )
    return float(shapely.length(lines))


def kept(today: np.ndarray, proposed: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Whether each item (a building) keeps its grid: its proposed grid continues its grid of
    today, in the pairing of proposed and today's grids that keeps the most `weight` (see the
    module). `today` -1: in no grid today (never kept)."""
    out = np.zeros(len(today), bool)
    known = today >= 0
    if not known.any() or len(proposed) == 0:
        return out
    t_keys, t = np.unique(today[known], return_inverse=True)
    p_keys, p = np.unique(proposed[known], return_inverse=True)
    overlap = np.zeros((len(p_keys), len(t_keys)))
    np.add.at(overlap, (p.ravel(), t.ravel()), weight[known] + 1e-9)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    continues = np.full(len(p_keys), -1, dtype=np.int64)
    continues[rows] = t_keys[cols]
    out[known] = continues[p.ravel()] == today[known]
    return out


def continues(takes: Sequence[Mapping[str, int]]) -> list[str | None]:
    """Which of today's grids each proposed grid continues (None: a new grid), from the
    households each takes from today's grids: the pairing that keeps the most households in
    place, as `kept` makes it; a proposed grid never continues a grid it takes nothing from."""
    today = sorted({code for took in takes for code in took})
    out: list[str | None] = [None] * len(takes)
    if not today:
        return out
    column = {code: j for j, code in enumerate(today)}
    overlap = np.zeros((len(takes), len(today)))
    for r, took in enumerate(takes):
        for code, households in took.items():
            overlap[r, column[code]] = households + 1e-6  # a grid of empty buildings counts
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    for r, j in zip(rows, cols, strict=True):
        if overlap[r, j] > 0:
            out[r] = today[j]
    return out


def figures(
    households: np.ndarray,
    pp: np.ndarray,
    rng: Range,
    per_worker: int,
    off_street: float,
    moved_households: int,
    moved_buildings: int,
) -> dict[str, Any]:
    """The figures of one division (see the module), rounded for people."""
    h = np.asarray(households, dtype=float)
    pp = np.asarray(pp, dtype=float)
    mean = float(h.mean()) if len(h) else 0.0
    return {
        "grids": len(h),
        "households": int(h.sum()),
        "households_min": int(h.min()) if len(h) else 0,
        "households_median": float(np.median(h)) if len(h) else 0.0,
        "households_max": int(h.max()) if len(h) else 0,
        "households_cv": round(float(h.std()) / mean, 4) if mean > 0 else 0.0,
        "outside_range": int(((h < rng.minimum) | (h > rng.maximum)).sum()),
        "polsby_popper_mean": round(float(pp.mean()), 4) if len(pp) else 0.0,
        "polsby_popper_min": round(float(pp.min()), 4) if len(pp) else 0.0,
        "boundary_off_street_m": round(off_street, 1),
        "households_moved": int(moved_households),
        "buildings_moved": int(moved_buildings),
        "workers_needed": int(np.maximum(1, np.ceil(h / per_worker)).sum()) if len(h) else 0,
    }
