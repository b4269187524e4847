"""One community's re-division, from its shapes to its proposed grids and the figures beside
today's (pure: metric shapely and numpy in, out; what a worker process runs)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

from geo_service.division import blocks, metrics
from geo_service.division.partition import Problem, Range, divide


@dataclass
class Options:
    """How to divide: the range, the stability weight, the method and its effort, and the
    tolerances (see settings.DivisionSettings)."""

    range: Range
    stability: float
    method: str = "maxp"
    per_worker: int = 300
    min_area_m2: float = 1.0
    min_shared_m: float = 1.0
    street_tolerance_m: float = 2.0
    construction_iterations: int = 2
    seed: int = 0


@dataclass
class Community:
    """A community's inputs, in the metric CRS `epsg`: its outline, the street blocks and
    streets near it, its buildings (point, households, estate key or -1) and today's grids."""

    code: str
    epsg: int
    shape: shapely.Geometry
    faces: np.ndarray
    streets: np.ndarray
    points: np.ndarray
    households: np.ndarray
    estate: np.ndarray
    grid_codes: list[str]
    grid_shapes: np.ndarray


@dataclass
class Plan:
    """A community's proposed grids (metric shapes, numbered west to east then north to
    south), their households and buildings, the households each takes from today's grids,
    and the figures of the proposal and of today's grids."""

    code: str
    shapes: np.ndarray
    households: np.ndarray
    buildings: np.ndarray
    takes: list[dict[str, int]]
    figures: dict[str, dict[str, Any]]
    today_households: np.ndarray
    today_pp: np.ndarray
    notes: list[str] = field(default_factory=list)
    blocks: int = 0
    units: int = 0
    seconds: float = 0.0
    failed: str | None = None


def divide_community(c: Community, opt: Options) -> Plan:
    """Blocks, then regions by the library, then figures (see the package)."""
    start = time.perf_counter()
    to_ll = Transformer.from_crs(c.epsg, 4326, always_xy=True)

    def where(g: shapely.Geometry) -> str:
        lon, lat = to_ll.transform(g.x, g.y)
        return f"lon {lon:.6f}, lat {lat:.6f}"

    today = blocks.locate(c.points, c.grid_shapes)
    u = blocks.units(
        c.shape,
        c.faces,
        c.points,
        c.households,
        c.estate,
        today,
        max_households=opt.range.maximum,
        min_area_m2=opt.min_area_m2,
        min_shared_m=opt.min_shared_m,
        where=where,
    )
    problem = Problem(
        u.adjacency,
        u.households,
        u.centroids,
        u.grid,
        opt.range,
        opt.stability,
        seed=opt.seed,
        construction_iterations=opt.construction_iterations,
    )
    result = divide(problem, opt.method)
    labels = _numbered(u.polygons, result.labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    shapes = np.empty(k, dtype=object)
    for r in range(k):
        mine = u.polygons[labels == r]
        shapes[r] = mine[0] if len(mine) == 1 else shapely.coverage_union_all(mine)
    proposed = labels[u.building_unit]
    households = np.bincount(proposed, weights=c.households, minlength=k).astype(np.int64)
    count = np.bincount(proposed, minlength=k).astype(np.int64)
    stays = metrics.kept(today, proposed, c.households)
    takes: list[dict[str, int]] = [{} for _ in range(k)]
    known = today >= 0
    for r, g, h in zip(proposed[known], today[known], c.households[known], strict=True):
        code = c.grid_codes[g]
        takes[r][code] = takes[r].get(code, 0) + int(h)
    today_households = np.bincount(
        today[known], weights=c.households[known], minlength=len(c.grid_shapes)
    ).astype(np.int64)
    today_pp = metrics.polsby_popper(c.grid_shapes)
    figures = {
        "proposal": metrics.figures(
            households,
            metrics.polsby_popper(shapes),
            opt.range,
            opt.per_worker,
            metrics.off_street_m(shapes, c.shape, c.streets, opt.street_tolerance_m),
            int(c.households[~stays].sum()),
            int((~stays).sum()),
        ),
        "today": metrics.figures(
            today_households,
            today_pp,
            opt.range,
            opt.per_worker,
            metrics.off_street_m(c.grid_shapes, c.shape, c.streets, opt.street_tolerance_m),
            0,
            0,
        ),
    }
    return Plan(
        code=c.code,
        shapes=shapes,
        households=households,
        buildings=count,
        takes=takes,
        figures=figures,
        today_households=today_households,
        today_pp=today_pp,
        notes=u.notes + result.notes,
        blocks=u.blocks,
        units=len(u),
        seconds=round(time.perf_counter() - start, 3),
        failed=result.failed,
    )


def _numbered(polygons: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels renumbered west to east, then north to south, by rows about a grid's height
    (DB11/T 2157's order of grid sequence numbers inside a community)."""
    if len(labels) == 0:
        return labels
    k = int(labels.max()) + 1
    xy = shapely.get_coordinates(shapely.centroid(polygons))
    area = np.bincount(labels, weights=shapely.area(polygons), minlength=k)
    cx = np.bincount(labels, weights=xy[:, 0] * shapely.area(polygons), minlength=k) / area
    cy = np.bincount(labels, weights=xy[:, 1] * shapely.area(polygons), minlength=k) / area
    band = max(float(np.sqrt(np.median(area))), 1.0)
    row = np.floor((cy.max() - cy) / band)
    order = np.lexsort((cx, row))
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return rank[labels]  # type: ignore[no-any-return]
