"""A walking order through buildings (pure: arrays in, arrays out).

The distances between the worker's position and the buildings come from the street network
(`walk_matrix`: one Dijkstra per place on coverage's graph, with the same entry rule, access
legs and partial edges as the life-circle walks) or, where a place is off the network, in a
straight line (`straight_matrix`, on the ellipsoid). On those distances the tour is an open
path from the worker's position through every building once: nearest neighbour first, then
2-opt (reverse a stretch of the path whenever that shortens it) until no reversal helps.

How good it is: any path through all the places is a spanning tree of them, so the minimum
spanning tree's length is a lower bound of the best path; the tour's length over it is at
most that far from the optimum (a ratio of 1.2 means within 20 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyproj import Geod

from geo_service.coverage import network
from geo_service.coverage.network import NO_EDGE, Entries, Graph

_GEOD = Geod(ellps="WGS84")
_EPS = 1e-9  # metres: a "shorter" path by less is rounding, not progress


@dataclass(frozen=True)
class Tour:
    """An open path over the places of a distance matrix, starting at place 0."""

    order: list[int]  # place indices, order[0] == 0 (the start)
    length: float
    nearest_neighbour_length: float  # the plain nearest-neighbour path, before 2-opt
    lower_bound: float  # the minimum spanning tree of all places

    @property
    def ratio(self) -> float | None:
        """How many times the lower bound the tour is (None when the bound is 0)."""
        return self.length / self.lower_bound if self.lower_bound > 0 else None


# -- distances -----------------------------------------------------------------------------------
def walk_matrix(
    graph: Graph, places: Entries, limit: float = np.inf, chunk: int = 32
) -> np.ndarray:
    """Walking metres between every two places on the network (symmetric; inf where one of
    them has no entry edge, they lie on pieces that do not connect, or the walk is longer
    than `limit`, which keeps each search near the places). Sources go `chunk` at a time, so
    a city's graph is never held once per place."""
    k = len(places)
    d = np.full((k, k), np.inf)
    on = np.flatnonzero(places.edge != NO_EDGE)
    if len(on):
        entries = places.take(on)
        e, f, access = entries.edge, entries.frac, entries.access
        length = graph.length[e]
        best = np.empty((len(on), len(on)))
        for start in range(0, len(on), chunk):
            rows = np.arange(start, min(start + chunk, len(on)))
            # (sources, nodes), the sources' access legs and partial edges included
            nodes = network.source_distances(graph, entries.take(rows), limit)
            via_source = nodes[:, graph.source[e]] + f * length
            via_target = nodes[:, graph.target[e]] + (1 - f) * length
            best[rows] = np.minimum(via_source, via_target) + access
        # Two places on one edge walk along it directly, touching neither end.
        same = e[:, None] == e[None, :]
        direct = access[:, None] + np.abs(f[:, None] - f[None, :]) * length[None, :] + access
        best = np.where(same, np.minimum(best, direct), best)
        best[best > limit] = np.inf
        d[np.ix_(on, on)] = np.minimum(best, best.T)
    np.fill_diagonal(d, 0.0)
    return d


def straight_matrix(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Metres between every two lon/lat points on the WGS-84 ellipsoid (symmetric)."""
    k = len(lon)
    i, j = np.triu_indices(k, 1)
    d = np.zeros((k, k))
    if len(i):
        _, _, metres = _GEOD.inv(lon[i], lat[i], lon[j], lat[j])
        d[i, j] = metres
        d[j, i] = metres
    return d


def filled(walk: np.ndarray, straight: np.ndarray) -> tuple[np.ndarray, int]:
    """The walking distances, with the straight line where there is no walk; and how many
    pairs needed it."""
    missing = ~np.isfinite(walk)
    return np.where(missing, straight, walk), int(missing[np.triu_indices(len(walk), 1)].sum())


# -- the tour ------------------------------------------------------------------------------------
def path_length(d: np.ndarray, order: list[int] | np.ndarray) -> float:
    """Length of the open path visiting `order`."""
    o = np.asarray(order, dtype=np.int64)
    return float(d[o[:-1], o[1:]].sum()) if len(o) > 1 else 0.0


def nearest_neighbour(d: np.ndarray, start: int = 0) -> list[int]:
    """From `start`, always on to the nearest place not yet visited (ties: lowest index)."""
    k = len(d)
    seen = np.zeros(k, bool)
    order = [start]
    seen[start] = True
    for _ in range(k - 1):
        row = np.where(seen, np.inf, d[order[-1]])
        nxt = int(np.argmin(row))
        order.append(nxt)
        seen[nxt] = True
    return order


def two_opt(d: np.ndarray, order: list[int], max_passes: int = 1000) -> list[int]:
    """2-opt on an open path with its first place fixed: reverse order[i..j] whenever joining
    order[i-1]→order[j] and order[i]→order[j+1] is shorter than the two links it replaces
    (at the path's end there is no j+1). Needs a symmetric matrix; never lengthens the path."""
    o = np.asarray(order, dtype=np.int64).copy()
    n = len(o)
    for _ in range(max_passes):
        improved = False
        for i in range(1, n - 1):
            a, b = o[i - 1], o[i]
            j = np.arange(i + 1, n)
            c = o[j]
            nxt = np.r_[o[i + 2 :], -1]  # the place after each j (-1: the end)
            inner = nxt >= 0
            after = np.where(inner, nxt, 0)
            gain = d[a, b] - d[a, c] + np.where(inner, d[c, after] - d[b, after], 0.0)
            best = int(np.argmax(gain))
            if gain[best] > _EPS:
                o[i : j[best] + 1] = o[i : j[best] + 1][::-1]
                improved = True
        if not improved:
            break
    return o.tolist()  # type: ignore[no-any-return]


def spanning_tree_length(d: np.ndarray) -> float:
    """Length of a minimum spanning tree of the complete graph of `d` (Prim, O(k²))."""
    k = len(d)
    if k < 2:
        return 0.0
    inside = np.zeros(k, bool)
    inside[0] = True
    best = d[0].astype(float).copy()
    total = 0.0
    for _ in range(k - 1):
        nxt = int(np.argmin(np.where(inside, np.inf, best)))
        total += float(best[nxt])
        inside[nxt] = True
        best = np.minimum(best, d[nxt])
    return total


def plan(d: np.ndarray) -> Tour:
    """The walking order from place 0 through all the others."""
    first = nearest_neighbour(d, 0)
    better = two_opt(d, first)
    return Tour(
        order=better,
        length=path_length(d, better),
        nearest_neighbour_length=path_length(d, first),
        lower_bound=spanning_tree_length(d),
    )
