"""The grids in memory for batch assignment: which grids cover a point and whether in their
interior, decided in numpy and GEOS for nearly every point, and by PostGIS for the rest.

PostGIS (`ST_Covers`, `ST_Contains`: the locate door's rules) and GEOS answer alike except for
a point a few units in the last place from a grid's boundary, where their arithmetic differs
(PostGIS tests the side of an edge in plain doubles, GEOS exactly). So each grid is held as
two polygons, its boundary moved EPS_DEG in and out (mitred corners: never nearer the boundary
than EPS_DEG): a point in the inner one is in the grid's interior for both, a point outside
the outer one is not covered for both, and a point between the two (within about a
centimetre of a boundary; an edge or vertex point of a test, a few hundred points in a
million random ones) is left to PostGIS, which decides all its grids. A grid whose polygon
GEOS finds invalid leaves every point in its box to PostGIS.

Candidate grids come from a bucket grid of cells over the grids' boxes (`_Buckets`), with
the points as plain coordinate arrays: no point geometries are made (making a million costs
more than the whole test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from geo_service.grids import assign_store

EPS_DEG = 1e-7  # ~1 cm: points nearer a grid's boundary than this are decided by PostGIS
_CELLS_MAX = 1 << 22  # bucket cells at most (the index's size, whatever the grids)


@dataclass
class Facts:
    """What the grids in memory decide about a chunk's points (indices into the chunk)."""

    n_cover: np.ndarray  # grids covering each point
    n_interior: np.ndarray  # of those, grids holding it in their interior
    rank: np.ndarray  # the smallest covering grid's rank (code order); n_grids = none
    unsure: np.ndarray  # points PostGIS must decide (near a boundary, or an invalid grid)
    near: np.ndarray  # uncovered points within reach of some grid: the nearest is asked


class GridIndex:
    """The grids of the database, in code order (a grid's `rank` is its place)."""

    def __init__(self, rows: list[tuple[int, str, str | None, bytes]], tolerance_m: float):
        self.ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.codes = np.array([r[1] for r in rows], dtype=object)
        self.communities = np.array([r[2] for r in rows], dtype=object)
        polygons = shapely.from_wkb([r[3] for r in rows]) if rows else np.zeros(0, object)
        bounds = shapely.bounds(polygons).reshape(-1, 4)
        valid = shapely.is_valid(polygons) & ~shapely.is_empty(polygons)
        self.inner = _moved(polygons, -EPS_DEG, valid)
        self.outer = _moved(polygons, EPS_DEG, valid)
        self.outer[~valid] = shapely.box(*(bounds[~valid] + np.array([-1, -1, 1, 1]) * EPS_DEG).T)
        shapely.prepare(self.inner)
        shapely.prepare(self.outer)
        self.box = bounds + np.array([-1, -1, 1, 1]) * EPS_DEG * 2
        # The nearest grid is looked for within a radius in degrees that grows with the
        # latitude (`assign_store.NEAREST`): a point farther than `reach` from every grid's
        # box, the widest radius at the grids' latitudes, has no grid within the tolerance.
        top = float(np.abs(bounds[:, [1, 3]]).max(initial=0.0)) + 1.0
        self.reach = 1.01 * tolerance_m / (110000.0 * math.cos(math.radians(min(top, 89.0))))
        self.reach_box = bounds + np.array([-1, -1, 1, 1]) * self.reach
        self.buckets = _Buckets(self.reach_box)

    @classmethod
    def load(cls, conn: object, tolerance_m: float) -> GridIndex:
        """The grids of `conn` (a psycopg connection)."""
        return cls(conn.execute(assign_store.GRID_SHAPES).fetchall(), tolerance_m)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.ids)

    def facts(self, x: np.ndarray, y: np.ndarray) -> Facts:
        """The facts of points `x`, `y` (WGS-84; NaN: unusable, never covered)."""
        n, n_grids = len(x), len(self)
        p, g = self.buckets.pairs(x, y)
        r = self.reach_box[g]
        in_reach = (r[:, 0] <= x[p]) & (x[p] <= r[:, 2]) & (r[:, 1] <= y[p]) & (y[p] <= r[:, 3])
        p, g = p[in_reach], g[in_reach]
        near = np.zeros(n, bool)
        near[p] = True
        b = self.box[g]
        in_box = (b[:, 0] <= x[p]) & (x[p] <= b[:, 2]) & (b[:, 1] <= y[p]) & (y[p] <= b[:, 3])
        p, g = p[in_box], g[in_box]
        inside = shapely.contains_xy(self.inner[g], x[p], y[p])
        rest = ~inside
        unsure_pair = shapely.intersects_xy(self.outer[g[rest]], x[p[rest]], y[p[rest]])
        unsure = np.zeros(n, bool)
        unsure[p[rest][unsure_pair]] = True
        p, g = p[inside], g[inside]
        n_cover = np.bincount(p, minlength=n)
        rank = np.full(n, n_grids, dtype=np.int64)
        # The smallest code of each point's grids: set directly where there is one (nearly
        # every point), np.minimum.at (slow per element) only where there are several.
        one = n_cover[p] == 1
        rank[p[one]] = g[one]
        np.minimum.at(rank, p[~one], g[~one])
        n_cover[unsure] = 0
        rank[unsure] = n_grids
        return Facts(n_cover, n_cover.copy(), rank, np.flatnonzero(unsure), near & (n_cover == 0))


def _moved(polygons: np.ndarray, distance: float, valid: np.ndarray) -> np.ndarray:
    """Each valid polygon with its boundary moved `distance` out (in where negative), mitred;
    an empty polygon for the others."""
    moved = np.full(len(polygons), shapely.Polygon(), dtype=object)
    moved[valid] = shapely.buffer(
        polygons[valid], distance, quad_segs=1, join_style="mitre", mitre_limit=5.0
    )
    return moved


class _Buckets:
    """Boxes bucketed in a regular grid of cells: the boxes of a point's cell are its
    candidates (boxes are listed in every cell they touch; compressed rows by cell)."""

    def __init__(self, boxes: np.ndarray) -> None:
        self.origin = boxes[:, :2].min(axis=0) if len(boxes) else np.zeros(2)
        far = boxes[:, 2:].max(axis=0) if len(boxes) else np.ones(2)
        extent = np.maximum(far - self.origin, 1e-9)
        # Cells a quarter of a typical box: a point meets few more boxes than hold it (with
        # cells the size of a box, four times as many), a box covers some 25 cells.
        typical = np.median(boxes[:, 2:] - boxes[:, :2], axis=0) if len(boxes) else extent
        shape = np.clip(np.ceil(4 * extent / np.maximum(typical, 1e-9)), 1, None)
        while shape.prod() > _CELLS_MAX:
            shape = np.ceil(shape / 2)
        self.shape = shape.astype(np.int64)
        self.size = extent / self.shape
        lo = self._cell(boxes[:, 0], boxes[:, 1])
        hi = self._cell(boxes[:, 2], boxes[:, 3])
        nx, ny = (hi - lo + 1).T if len(boxes) else (np.zeros(0, np.int64),) * 2
        per_box = nx * ny
        box = np.repeat(np.arange(len(boxes)), per_box)
        k = np.arange(int(per_box.sum())) - np.repeat(np.cumsum(per_box) - per_box, per_box)
        cx = np.repeat(lo[:, 0], per_box) + k // np.repeat(ny, per_box)
        cy = np.repeat(lo[:, 1], per_box) + k % np.repeat(ny, per_box)
        cell = cx * self.shape[1] + cy
        order = np.argsort(cell, kind="stable")
        self.boxes = box[order]
        self.start = np.searchsorted(cell[order], np.arange(int(self.shape.prod()) + 1))

    def _cell(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The (column, row) of the cell holding each point, clipped to the grid of cells."""
        xy = np.floor((np.column_stack([x, y]) - self.origin) / self.size)
        return np.clip(np.nan_to_num(xy, nan=-1), 0, self.shape - 1).astype(np.int64)

    def pairs(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point, box) pairs of each point and the boxes listed in its cell (a superset of
        the boxes holding it); points outside the cells' extent or NaN have none."""
        rel = (np.column_stack([x, y]) - self.origin) / self.size
        inside = np.flatnonzero(
            (rel[:, 0] >= 0) & (rel[:, 0] <= self.shape[0]) & (rel[:, 1] >= 0)
            & (rel[:, 1] <= self.shape[1])
        )  # fmt: skip
        cells = np.minimum(rel[inside].astype(np.int64), self.shape - 1)
        cell = cells[:, 0] * self.shape[1] + cells[:, 1]
        first, count = self.start[cell], self.start[cell + 1] - self.start[cell]
        point = np.repeat(inside, count)
        k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        return point, self.boxes[np.repeat(first, count) + k]
