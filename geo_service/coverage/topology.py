"""A routable walking topology from street centre lines (pure: shapely arrays in, arrays out).

Lines are split where streets meet: at a vertex two lines share (OSM ways meet at shared
nodes), and where one line ends on another (a T-junction drawn without a vertex on the
through street). Lines that merely cross without a shared vertex are bridges or tunnels, as
in OpenStreetMap, and stay apart unless `split_crossings` asks to join them too. Every piece
is an edge between two nodes; the connected components are labelled so that isolated pieces
can be reported instead of silently routed on.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import shapely
from pyproj import CRS, Geod, Proj
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

_GEOD = Geod(ellps="WGS84")


@dataclass
class Topology:
    """Nodes and edges of the walking network (metric geometry, geodesic lengths)."""

    node_xy: np.ndarray  # (n, 2) metric coordinates
    source: np.ndarray  # node index of each edge's first point
    target: np.ndarray  # node index of each edge's last point
    geoms: np.ndarray  # metric LineStrings, first point at source
    street: np.ndarray  # index of the input line each edge comes from
    component: np.ndarray  # component label of each edge (0 = the largest network)
    node_component: np.ndarray

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return int(self.node_xy.shape[0])

    @property
    def routable(self) -> np.ndarray:
        """Mask of the edges of the main (largest) component: the ones routed on."""
        return self.component == 0  # type: ignore[no-any-return]


def utm_crs(lon: float, lat: float) -> CRS:
    """The UTM zone (WGS-84) holding a point: where metric work on data around it is done."""
    zone = int((lon + 180) // 6) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def geodesic_lengths(xy: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Length in metres of each lon/lat line, given as its vertices `xy` and the number of
    vertices of each line, on the WGS-84 ellipsoid (as PostGIS geography measures it)."""
    if len(xy) < 2:
        return np.zeros(len(count))
    idx = np.repeat(np.arange(len(count)), count)
    _, _, seg = _GEOD.inv(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1])
    seg = np.where(idx[:-1] == idx[1:], seg, 0.0)
    return np.bincount(idx[:-1], weights=seg, minlength=len(count))


def areas_m2(metric: np.ndarray, crs: CRS, lonlat: np.ndarray) -> np.ndarray:
    """Ellipsoidal area in m² of each polygon, given in the metric `crs` (a conformal
    projection such as UTM) and in lon/lat: its planar area divided by the projection's
    areal scale at its centroid. Within a city's extent this agrees with PostGIS geography
    ST_Area to 1e-6 (measured: 6e-7 at worst on the demo city's isochrones, gaps and tiers),
    at a hundredth of the cost."""
    if len(metric) == 0:
        return np.zeros(0)
    # an empty shape (a tier no centre reaches) has no centroid: GEOS refuses its x and y
    shaped = np.flatnonzero(~shapely.is_empty(lonlat))
    scale = np.ones(len(metric))
    if len(shaped):
        centre = shapely.centroid(lonlat[shaped])
        factors = Proj(crs).get_factors(shapely.get_x(centre), shapely.get_y(centre))
        scale[shaped] = np.asarray(factors.areal_scale)
    return np.asarray(shapely.area(metric)) / scale


def build(
    lines: np.ndarray,
    tolerance_m: float,
    *,
    split_crossings: bool = False,
    noded: np.ndarray | None = None,
) -> Topology:
    """Split metric LineStrings where streets meet and label nodes, edges and components.

    `tolerance_m`: points closer than this are the same node. `noded` marks lines that meet
    others only at shared vertices (OpenStreetMap ways): they are never split at, nor
    joined by, a T-junction or crossing without a vertex.
    """
    lines = np.asarray(lines, dtype=object)
    keep = ~shapely.is_empty(lines) & (shapely.length(lines) > 0)
    index = np.flatnonzero(keep)
    lines = lines[index]
    trusted = np.zeros(len(lines), bool) if noded is None else np.asarray(noded, bool)[index]
    coords, owner = shapely.get_coordinates(lines, return_index=True)
    keys = point_keys(coords, tolerance_m)
    first = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
    last = np.r_[first[1:] - 1, len(owner) - 1]
    is_end = np.zeros(len(owner), bool)
    is_end[first] = is_end[last] = True
    # A vertex is a node when some line ends there or two lines share it.
    key_ids, key_id = np.unique(keys, return_inverse=True)
    key_id = key_id.ravel()
    pairs = distinct(owner * np.int64(len(key_ids)) + key_id)
    lines_per_key = np.bincount(pairs % len(key_ids), minlength=len(key_ids))
    ends_at = np.zeros(len(key_ids), bool)
    ends_at[key_id[is_end]] = True
    node_vertex = is_end | (lines_per_key[key_id] >= 2) | ends_at[key_id]

    extra = _junction_points(
        lines, coords, owner, key_ids, key_id, pairs, is_end, tolerance_m, split_crossings, trusted
    )
    pieces, piece_owner, ends = _split(lines, coords, owner, node_vertex, first, last, extra)
    uniq, node_of = np.unique(point_keys(ends, tolerance_m), return_inverse=True)
    node_of = node_of.ravel()
    node_xy = np.zeros((len(uniq), 2))
    node_xy[node_of] = ends
    n = len(pieces)
    source, target = node_of[:n], node_of[n:]
    labels = _components(len(uniq), source, target, shapely.length(pieces))
    return Topology(
        node_xy=node_xy,
        source=source,
        target=target,
        geoms=pieces,
        street=index[piece_owner],
        component=labels[source],
        node_component=labels,
    )


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an integer array. numpy 2's `np.unique` hashes when no
    index is asked for, 40x slower than sorting on 200k spread-out int64 keys (numpy/numpy
    PR 31970)."""
    ordered = np.sort(np.asarray(values).ravel())
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def point_keys(xy: np.ndarray, tolerance_m: float) -> np.ndarray:
    """One integer per coordinate pair on a grid of `tolerance_m` (equal key = same node)."""
    q = np.round(xy / tolerance_m).astype(np.int64)
    return q[:, 0] * np.int64(4_000_000_000) + q[:, 1]  # type: ignore[no-any-return]


def _junction_points(
    lines: np.ndarray,
    coords: np.ndarray,
    owner: np.ndarray,
    key_ids: np.ndarray,
    key_id: np.ndarray,
    have: np.ndarray,
    is_end: np.ndarray,
    tolerance_m: float,
    split_crossings: bool,
    trusted: np.ndarray,
) -> dict[int, list[tuple[float, float]]]:
    """Points where a line must be split although it has no vertex there: another line ends
    on it (T-junction) or, with `split_crossings`, crosses it. {line index: [points]}.

    `key_ids` are the sorted distinct vertex keys, `key_id` each vertex's rank among them,
    `have` the sorted composite (line * len(key_ids) + rank) of every line's vertices;
    `trusted` lines take part in neither."""
    tree = shapely.STRtree(lines)
    extra: dict[int, list[tuple[float, float]]] = {}

    def has_vertex(line: np.ndarray, kid: np.ndarray) -> np.ndarray:
        composite = line.astype(np.int64) * np.int64(len(key_ids)) + kid
        pos = np.clip(np.searchsorted(have, composite), 0, len(have) - 1)
        return have[pos] == composite  # type: ignore[no-any-return]

    # One probe per distinct end point: lines that end together share it.
    _, one = np.unique(key_id[is_end], return_index=True)
    ends = np.flatnonzero(is_end)[one]
    ends = ends[~trusted[owner[ends]]]
    pts = shapely.points(coords[ends])
    p_idx, l_idx = tree.query(pts, predicate="dwithin", distance=tolerance_m)
    tee = ~has_vertex(l_idx, key_id[ends[p_idx]]) & ~trusted[l_idx]
    # The end point itself goes into the through street (it lies within the tolerance of
    # it), so both pieces and the ending line share exactly one node.
    for pi, line in zip(p_idx[tee], l_idx[tee], strict=True):
        x, y = coords[ends[pi]]
        extra.setdefault(int(line), []).append((float(x), float(y)))
    if split_crossings:
        a, b = tree.query(lines, predicate="intersects")
        a, b = a[a < b], b[a < b]
        a, b = a[~trusted[a] & ~trusted[b]], b[~trusted[a] & ~trusted[b]]
        xy, which = shapely.get_coordinates(
            shapely.intersection(lines[a], lines[b]), return_index=True
        )
        pkeys = point_keys(xy, tolerance_m)
        pos = np.clip(np.searchsorted(key_ids, pkeys), 0, len(key_ids) - 1)
        known = key_ids[pos] == pkeys
        for side in (a[which], b[which]):
            missing = ~(known & has_vertex(side, pos))
            for line, (x, y) in zip(side[missing], xy[missing], strict=True):
                extra.setdefault(int(line), []).append((float(x), float(y)))
    return extra


def _split(
    lines: np.ndarray,
    coords: np.ndarray,
    owner: np.ndarray,
    node_vertex: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    extra: dict[int, list[tuple[float, float]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut every line at its node vertices and extra points; returns the pieces, the line of
    each, and their end points (first points of all pieces, then last points)."""
    interior_nodes = node_vertex.copy()
    interior_nodes[first] = interior_nodes[last] = False
    needs = np.zeros(len(lines), bool)
    needs[owner[interior_nodes]] = True
    needs[list(extra)] = True
    simple = np.flatnonzero(~needs)
    pieces: list[object] = list(lines[simple])
    piece_owner: list[int] = simple.tolist()
    starts, stops = [coords[first[simple]]], [coords[last[simple]]]
    for line in np.flatnonzero(needs):
        geom = lines[line]
        span = slice(first[line], last[line] + 1)
        xy = coords[span]
        along = shapely.line_locate_point(geom, shapely.points(xy))
        cut = node_vertex[span].copy()
        if int(line) in extra:
            add: np.ndarray = np.asarray(extra[int(line)], dtype=float)
            add_along = shapely.line_locate_point(geom, shapely.points(add))
            xy = np.vstack([xy, add])
            along = np.r_[along, add_along]
            cut = np.r_[cut, np.ones(len(add), bool)]
            # Stable order along the line; vertices before inserted points at equal positions.
            order = np.lexsort((np.r_[np.zeros(len(xy) - len(add)), np.ones(len(add))], along))
            xy, cut = xy[order], cut[order]
            # Original vertex order matters for self-overlapping lines; `along` is monotonic
            # for simple lines, which is what streets are.
        cuts = np.flatnonzero(cut)
        for s, e in pairwise(cuts):
            part = xy[s : e + 1]
            if len(part) >= 2 and np.hypot(*(part[-1] - part[0])) + _run(part) > 0:
                pieces.append(shapely.linestrings(part))
                piece_owner.append(int(line))
                starts.append(part[:1])
                stops.append(part[-1:])
    out = np.empty(len(pieces), dtype=object)
    out[:] = pieces
    ends = np.vstack(starts + stops) if pieces else np.zeros((0, 2))
    return out, np.asarray(piece_owner, dtype=np.int64), ends


def _run(xy: np.ndarray) -> float:
    return float(np.hypot(*np.diff(xy, axis=0).T).sum())


def _components(n: int, source: np.ndarray, target: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Component label per node, relabelled so 0 is the component with the most street
    length, then by decreasing length."""
    graph = coo_matrix((np.ones(len(source)), (source, target)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    total = np.bincount(labels[source], weights=length, minlength=labels.max() + 1)
    rank = np.empty_like(total, dtype=np.int64)
    rank[np.argsort(-total, kind="stable")] = np.arange(len(total))
    return rank[labels]  # type: ignore[no-any-return]
