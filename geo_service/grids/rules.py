"""The locate rules, as a pure function over facts PostGIS found (no database here).

Given, for each point, how many grids cover it, how many of those contain it in their
interior, and whether a grid lies within the tolerance, decide its status:

- coordinates unusable                                     -> invalid
- covered by one grid, in its interior                     -> inside
- covered by two or more grids, in at least one interior   -> ambiguous (an overlap: data error)
- covered only on boundaries (shared edge, vertex, outer edge) -> boundary
- covered by none, a grid within the tolerance             -> nearest
- covered by none, none within the tolerance               -> outside

The chosen grid is the smallest code among those covering the point (a deterministic choice
on a boundary or in an overlap), else the nearest grid.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

Status = Literal["invalid", "outside", "nearest", "inside", "boundary", "ambiguous"]
STATUSES = np.array(get_args(Status))  # indexed by the codes below
INVALID, OUTSIDE, NEAREST, INSIDE, BOUNDARY, AMBIGUOUS = range(6)


def classify(
    n_cover: np.ndarray, n_interior: np.ndarray, has_nearest: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """Status index (into STATUSES) of each point."""
    covered = np.where(
        (n_cover == 1) & (n_interior == 1),
        INSIDE,
        np.where((n_cover > 1) & (n_interior > 0), AMBIGUOUS, BOUNDARY),
    )
    uncovered = np.where(has_nearest, NEAREST, OUTSIDE)
    return np.where(valid, np.where(n_cover == 0, uncovered, covered), INVALID)


def status(n_cover: int, n_interior: int, has_nearest: bool) -> Status:
    """`classify` for one valid point, in plain Python (numpy's per-call cost on one point is
    more than the locate query's own Python)."""
    if n_cover == 0:
        return "nearest" if has_nearest else "outside"
    if n_cover == 1 and n_interior == 1:
        return "inside"
    return "ambiguous" if n_cover > 1 and n_interior > 0 else "boundary"
