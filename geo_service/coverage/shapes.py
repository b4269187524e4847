"""Isochrone polygons and gap areas from walking distances (pure: shapely in, shapely out).

An isochrone follows the streets: the parts of edges reachable within the tier, partial
edges included (a walker goes part way along an edge), buffered by a few metres, as
osmnx's examples do; hulls of reached nodes would overstate the area. Gaps are the built-up
blocks (faces of the street network holding buildings) outside the widest tier.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import shapely
from shapely import ops

from geo_service.coverage.network import Entries, Graph


def reached_pieces(
    graph: Graph,
    geoms: np.ndarray,
    dist_node: np.ndarray,
    radius_m: float,
    own: Entries,
) -> np.ndarray:
    """Metric LineStrings of the parts of edges within `radius_m` of the source whose node
    distances are `dist_node`, `own` being the source's entry point (one entry)."""
    length = graph.length
    from_s = np.clip(radius_m - dist_node[graph.source], 0, length)
    from_t = np.clip(radius_m - dist_node[graph.target], 0, length)
    full = from_s + from_t >= length
    starts = [np.flatnonzero(full), np.flatnonzero(~full & (from_s > 0))]
    lo = [np.zeros(len(starts[0])), np.zeros(len(starts[1]))]
    hi = [np.ones(len(starts[0])), from_s[starts[1]] / length[starts[1]]]
    tail = np.flatnonzero(~full & (from_t > 0))
    starts.append(tail)
    lo.append(1 - from_t[tail] / length[tail])
    hi.append(np.ones(len(tail)))
    e = int(own.edge[0])
    reach = radius_m - float(own.access[0])
    if e >= 0 and reach > 0:
        centre = float(own.frac[0]) * length[e]
        starts.append(np.array([e]))
        lo.append(np.array([max(0.0, centre - reach) / length[e]]))
        hi.append(np.array([min(length[e], centre + reach) / length[e]]))
    idx = np.concatenate(starts)
    return substrings(geoms[idx], np.concatenate(lo), np.concatenate(hi))


def substrings(lines: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The part of each line between fractions lo and hi (vectorised for two-point lines)."""
    out = lines.copy()
    whole = (lo <= 0) & (hi >= 1)
    two = (shapely.get_num_coordinates(lines) == 2) & ~whole
    if two.any():
        a = shapely.line_interpolate_point(lines[two], lo[two], normalized=True)
        b = shapely.line_interpolate_point(lines[two], hi[two], normalized=True)
        out[two] = shapely.linestrings(
            np.stack([shapely.get_coordinates(a), shapely.get_coordinates(b)], axis=1)
        )
    for i in np.flatnonzero(~two & ~whole):
        out[i] = ops.substring(lines[i], lo[i], hi[i], normalized=True)
    keep = shapely.length(out) > 0
    return out[keep]  # type: ignore[no-any-return]


def outline(pieces: np.ndarray, buffer_m: float) -> shapely.Geometry:
    """The area within `buffer_m` of the street pieces."""
    if len(pieces) == 0:
        return shapely.MultiPolygon()
    return shapely.union_all(shapely.buffer(pieces, buffer_m, quad_segs=2))


def isochrones(
    graph: Graph,
    geoms: np.ndarray,
    dist_nodes: np.ndarray,
    centers: Entries,
    radii_m: list[float],
    buffer_m: float,
    workers: int = 1,
) -> list[list[shapely.Geometry]]:
    """Isochrone polygon of every centre (rows of `dist_nodes`) for every radius."""

    def one(i: int) -> list[shapely.Geometry]:
        own = centers.take(np.array([i]))
        return [
            outline(reached_pieces(graph, geoms, dist_nodes[i], r, own), buffer_m) for r in radii_m
        ]

    if workers <= 1:
        return [one(i) for i in range(len(centers))]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(len(centers))))


def merge(polygons: list[shapely.Geometry]) -> shapely.Geometry:
    """One (multi)polygon covering all of them. Isochrones overlap only their neighbours:
    unioning each cluster of overlapping ones separately is ~8x faster than one union."""
    union = getattr(shapely, "disjoint_subset_union_all", shapely.union_all)  # shapely >= 2.1
    return union(np.asarray(polygons, dtype=object))


def gaps(
    streets: np.ndarray,
    uncovered: np.ndarray,
    households: np.ndarray,
    covered_area: shapely.Geometry,
    buffer_m: float,
    min_area_m2: float = 1.0,
) -> list[tuple[shapely.Geometry, int, int]]:
    """Gap areas: the blocks (faces of the street network) holding uncovered buildings, and a
    `buffer_m` circle around uncovered buildings that no block holds, minus the covered area.
    Returns (polygon, uncovered buildings in it, their households), most households first."""
    if len(uncovered) == 0:
        return []
    blocks = shapely.get_parts(shapely.polygonize(streets))
    # polygons as the query side: shapely prepares the query geometry, not the tree's
    points = shapely.STRtree(uncovered)
    b_idx, p_idx = points.query(blocks, predicate="contains")
    # a point on a street itself is within no face: it falls back to its circle
    in_block = np.zeros(len(uncovered), bool)
    in_block[p_idx] = True
    # blocks never overlap: a coverage union is far cheaper than a general one
    area = shapely.coverage_union_all(blocks[np.unique(b_idx)])
    if not in_block.all():
        circles = shapely.buffer(uncovered[~in_block], buffer_m, quad_segs=2)
        area = shapely.union_all(np.r_[np.asarray([area], dtype=object), circles])
    if not shapely.is_empty(covered_area):
        area = shapely.difference(area, covered_area)
    polys = shapely.get_parts(area)
    polys = polys[shapely.area(polys) >= min_area_m2]
    if len(polys) == 0:
        return []
    g_idx, u_idx = points.query(polys, predicate="contains")
    count = np.bincount(g_idx, minlength=len(polys))
    held = np.bincount(g_idx, weights=households[u_idx], minlength=len(polys))
    order = np.lexsort((-count, -held))
    return [(polys[i], int(count[i]), int(held[i])) for i in order if count[i] > 0]
