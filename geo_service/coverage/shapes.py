"""Isochrone polygons and gap areas from walking distances (pure: shapely in, shapely out).

An isochrone follows the streets: the parts of edges reachable within the tier, partial
edges included (a walker goes part way along an edge), buffered by a few metres, as
osmnx's examples do; hulls of reached nodes would overstate the area. Gaps are the built-up
blocks (faces of the street network holding buildings) outside the widest tier.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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
    skip: np.ndarray | None = None,
) -> np.ndarray:
    """Metric LineStrings of the parts of edges within `radius_m` of the source whose node
    distances are `dist_node`, `own` being the source's entry point (one entry); edges marked
    in `skip` are left out."""
    return _reach(graph, geoms, dist_node, radius_m, own, skip)[0]


def _reach(
    graph: Graph,
    geoms: np.ndarray,
    dist_node: np.ndarray,
    radius_m: float,
    own: Entries,
    skip: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`reached_pieces`, and the indexes of the edges reached end to end."""
    length = graph.length
    # Only edges with an end within reach can be touched (the own edge aside).
    near = np.flatnonzero(
        (dist_node[graph.source] < radius_m) | (dist_node[graph.target] < radius_m)
    )
    if skip is not None:
        near = near[~skip[near]]
    sub = length[near]
    from_s = np.clip(radius_m - dist_node[graph.source[near]], 0, sub)
    from_t = np.clip(radius_m - dist_node[graph.target[near]], 0, sub)
    full = from_s + from_t >= sub
    head = ~full & (from_s > 0)
    tail = ~full & (from_t > 0)
    idx = [near[full], near[head], near[tail]]
    lo = [np.zeros(int(full.sum())), np.zeros(int(head.sum())), 1 - from_t[tail] / sub[tail]]
    hi = [np.ones(int(full.sum())), from_s[head] / sub[head], np.ones(int(tail.sum()))]
    e = int(own.edge[0])
    reach = radius_m - float(own.access[0])
    if e >= 0 and reach > 0 and (skip is None or not skip[e]):
        centre = float(own.frac[0]) * length[e]
        idx.append(np.array([e]))
        lo.append(np.array([max(0.0, centre - reach) / length[e]]))
        hi.append(np.array([min(length[e], centre + reach) / length[e]]))
    pieces = substrings(geoms[np.concatenate(idx)], np.concatenate(lo), np.concatenate(hi))
    return pieces, near[full]


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
    """Isochrone polygon of every centre (rows of `dist_nodes`) for every radius.

    The radii are drawn from the smallest up, each as the one before it plus the outline of
    what it adds: edges already reached end to end lie inside the smaller isochrone, with
    their whole buffer, so only the new band (and the partial edges) is buffered again. The
    same area as outlining each radius from scratch, for a fraction of the unioning."""
    order = np.argsort(radii_m, kind="stable")

    def one(i: int) -> list[shapely.Geometry]:
        own = centers.take(np.array([i]))
        done = np.zeros(len(graph.length), bool)
        out: list[shapely.Geometry] = [shapely.MultiPolygon()] * len(radii_m)
        prev: shapely.Geometry | None = None
        for j in order:
            pieces, full = _reach(graph, geoms, dist_nodes[i], radii_m[j], own, done)
            if len(pieces):
                band = shapely.buffer(shapely.multilinestrings(pieces), buffer_m, quad_segs=2)
                prev = band if prev is None else shapely.union(prev, band)
            if prev is not None:
                out[j] = prev
            done[full] = True
        return out

    if workers <= 1:
        return [one(i) for i in range(len(centers))]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(len(centers))))


def merge(polygons: list[shapely.Geometry]) -> shapely.Geometry:
    """One (multi)polygon covering all of them. Isochrones overlap only their neighbours:
    unioning each cluster of overlapping ones separately is ~8x faster than one union."""
    union = getattr(shapely, "disjoint_subset_union_all", shapely.union_all)  # shapely >= 2.1
    return union(np.asarray(polygons, dtype=object))


@dataclass
class Blocks:
    """Where the uncovered buildings are: `area`, the blocks holding them plus circles
    around those no block holds, and the buildings' points (metric) in a tree."""

    area: shapely.Geometry
    points: shapely.STRtree


def blocks(streets: np.ndarray, uncovered: np.ndarray, buffer_m: float) -> Blocks | None:
    """The blocks (faces of the street network) holding uncovered buildings, and a
    `buffer_m` circle around uncovered buildings that no block holds (None: none uncovered).
    Independent of the isochrones, so it can be drawn while they are."""
    if len(uncovered) == 0:
        return None
    faces = shapely.get_parts(shapely.polygonize(streets))
    # polygons as the query side: shapely prepares the query geometry, not the tree's
    points = shapely.STRtree(uncovered)
    b_idx, p_idx = points.query(faces, predicate="contains")
    # a point on a street itself is within no face: it falls back to its circle
    in_block = np.zeros(len(uncovered), bool)
    in_block[p_idx] = True
    # blocks never overlap: a coverage union is far cheaper than a general one
    area = shapely.coverage_union_all(faces[np.unique(b_idx)])
    if not in_block.all():
        circles = shapely.buffer(uncovered[~in_block], buffer_m, quad_segs=2)
        area = shapely.union_all(np.r_[np.asarray([area], dtype=object), circles])
    return Blocks(area, points)


def gaps_of(
    where: Blocks | None,
    households: np.ndarray,
    covered_area: shapely.Geometry,
    min_area_m2: float = 1.0,
) -> list[tuple[shapely.Geometry, int, int]]:
    """Gap areas: `where` (see `blocks`) minus the covered area. Returns (polygon, uncovered
    buildings in it, their households), most households first."""
    if where is None:
        return []
    area = where.area
    if not shapely.is_empty(covered_area):
        area = shapely.difference(area, covered_area)
    polys = shapely.get_parts(area)
    polys = polys[shapely.area(polys) >= min_area_m2]
    if len(polys) == 0:
        return []
    g_idx, u_idx = where.points.query(polys, predicate="contains")
    count = np.bincount(g_idx, minlength=len(polys))
    held = np.bincount(g_idx, weights=households[u_idx], minlength=len(polys))
    order = np.lexsort((-count, -held))
    return [(polys[i], int(count[i]), int(held[i])) for i in order if count[i] > 0]


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
    return gaps_of(blocks(streets, uncovered, buffer_m), households, covered_area, min_area_m2)
