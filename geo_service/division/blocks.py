"""The pieces a community is re-divided from: its street blocks, with their buildings and
households (pure: shapely and numpy in, arrays out; metric coordinates throughout).

A block is a face of the street network (coverage's tracing, `coverage.shapes.faces`) cut to
the community; land of the community that no face holds (beyond the outermost street) is a
piece too, so that the pieces tile the community. Each building counts in the piece holding
its point. Then, before any regionalisation:
- an estate's buildings in several pieces join those pieces into one (estates are never cut),
  unless the estate alone holds more households than a grid may;
- pieces with no buildings join the neighbour they share the longest boundary with (a grid
  never holds no households);
- pieces touching no other (islands: a street ring with nothing around it, land cut off by
  water) are linked to the nearest other piece, and the notes say so.
Contiguity is through shared boundaries (rook), weighted by the metres shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import shapely
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

Where = Callable[[shapely.Geometry], str]  # a place for messages (the adapter: lon/lat)

ISLAND_LINK_M = 1e-6  # the weight of a link made for an island: contiguous, sharing nothing


@dataclass
class Units:
    """The pieces a community's grids are made of, after joining estates, empty blocks and
    islands: polygon, households, buildings and today's grid of each (the grid holding most
    of its households, -1 for none), who touches whom (metres of shared boundary), and the
    piece of each building."""

    polygons: np.ndarray
    households: np.ndarray
    buildings: np.ndarray
    grid: np.ndarray
    adjacency: csr_matrix
    building_unit: np.ndarray
    blocks: int  # street blocks (faces cut to the community) before joining
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.polygons)

    @property
    def centroids(self) -> np.ndarray:
        """(n, 2) centroid coordinates."""
        return shapely.get_coordinates(shapely.centroid(self.polygons))


def locate(points: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """Index of the first polygon covering each point (-1: none)."""
    out = np.full(len(points), -1, dtype=np.int64)
    if len(points) == 0 or len(polygons) == 0:
        return out
    p_idx, g_idx = shapely.STRtree(polygons).query(points, predicate="intersects")
    first = np.r_[True, p_idx[1:] != p_idx[:-1]] if len(p_idx) else np.zeros(0, bool)
    out[p_idx[first]] = g_idx[first]
    return out


def pieces(
    shape: shapely.Geometry, faces: np.ndarray, min_area_m2: float
) -> tuple[np.ndarray, int]:
    """The community `shape` cut into polygons: the `faces` (blocks) within it, cut to it, then
    the land no face holds. Returns the polygons and how many of them (the first) are blocks.
    Pieces smaller than `min_area_m2` are floating-point dust and left out."""
    faces = np.asarray(faces, dtype=object)
    shapely.prepare(shape)
    hit = faces[shapely.intersects(shape, faces)] if len(faces) else faces
    inside = shapely.contains_properly(shape, hit)
    cut = shapely.intersection(hit[~inside], shape) if (~inside).any() else hit[:0]
    blocks = np.r_[hit[inside], _polygons(cut)]
    blocks = blocks[shapely.area(blocks) >= min_area_m2]
    held = shapely.coverage_union_all(hit) if len(hit) else shapely.Polygon()
    rest = _polygons(np.asarray([shapely.difference(shape, held)], dtype=object))
    rest = rest[shapely.area(rest) >= min_area_m2]
    return np.r_[blocks, rest], len(blocks)


def _polygons(geoms: np.ndarray) -> np.ndarray:
    """The polygon parts of some geometries (lines and points of a cut dropped)."""
    parts = shapely.get_parts(np.asarray(geoms, dtype=object))
    return parts[shapely.get_type_id(parts) == 3] if len(parts) else parts  # type: ignore[no-any-return]


def adjacency(polygons: np.ndarray, min_shared_m: float) -> csr_matrix:
    """Metres of boundary each pair of polygons shares (rook contiguity: pairs meeting only
    at points, or along less than `min_shared_m`, do not touch)."""
    n = len(polygons)
    a, b = shapely.STRtree(polygons).query(polygons, predicate="intersects")
    keep = a < b
    a, b = a[keep], b[keep]
    rings = shapely.boundary(polygons)
    shared = shapely.length(shapely.intersection(rings[a], rings[b])) if len(a) else np.zeros(0)
    ok = shared >= min_shared_m
    a, b, shared = a[ok], b[ok], shared[ok]
    m = coo_matrix((np.r_[shared, shared], (np.r_[a, b], np.r_[b, a])), shape=(n, n))
    return m.tocsr()


class _Groups:
    """Union-find over pieces."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def join(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)

    def labels(self) -> np.ndarray:
        roots = np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)
        return np.unique(roots, return_inverse=True)[1].ravel()  # type: ignore[no-any-return]


def units(
    shape: shapely.Geometry,
    faces: np.ndarray,
    points: np.ndarray,
    households: np.ndarray,
    estate: np.ndarray,
    grid: np.ndarray,
    *,
    max_households: int,
    min_area_m2: float = 1.0,
    min_shared_m: float = 1.0,
    where: Where | None = None,
) -> Units:
    """The pieces of one community (see the module): `shape` the community, `faces` the street
    blocks near it, and for each of its buildings the point, households, estate (an integer
    key, -1 for none) and today's grid (an integer key, -1 for none)."""
    say = where or (lambda g: f"x {g.x:.0f}, y {g.y:.0f}")
    polys, n_blocks = pieces(shape, faces, min_area_m2)
    if len(polys) == 0:  # no face and no land of any size: the community is one piece
        polys, n_blocks = np.asarray([shape], dtype=object), 0
    households = np.asarray(households, dtype=np.int64)
    piece = locate(points, polys)
    stray = np.flatnonzero(piece < 0)
    if len(stray):  # a point on no piece (outside the community's outline): the nearest
        piece[stray] = shapely.STRtree(polys).query_nearest(points[stray], all_matches=False)[1]
    touch = adjacency(polys, min_shared_m)
    groups = _Groups(len(polys))
    notes: list[str] = []
    _join_estates(groups, piece, households, np.asarray(estate), max_households, notes)
    _join_empty(groups, piece, households, touch, n_blocks, notes)
    label = groups.labels()
    n = int(label.max()) + 1
    member = coo_matrix((np.ones(len(label)), (np.arange(len(label)), label))).tocsr()
    joined = (member.T @ touch @ member).tocsr()
    joined.setdiag(0)
    joined.eliminate_zeros()
    shapes = _unions(polys, label, n)
    unit_of = label[piece]
    hh = np.bincount(unit_of, weights=households, minlength=n).astype(np.int64)
    count = np.bincount(unit_of, minlength=n).astype(np.int64)
    joined = _link_islands(shapes, joined, say, notes)
    return Units(
        polygons=shapes,
        households=hh,
        buildings=count,
        grid=_main_grid(unit_of, np.asarray(grid, dtype=np.int64), households, n),
        adjacency=joined,
        building_unit=unit_of,
        blocks=n_blocks,
        notes=notes,
    )


def _unions(polys: np.ndarray, label: np.ndarray, n: int) -> np.ndarray:
    """One polygon per label: the union of its pieces (pieces alone kept as they are)."""
    out = np.empty(n, dtype=object)
    sizes = np.bincount(label, minlength=n)
    alone = sizes[label] == 1
    out[label[alone]] = polys[alone]
    for g in np.flatnonzero(sizes > 1):
        out[g] = shapely.union_all(polys[label == g])
    return out


def _join_estates(
    groups: _Groups,
    piece: np.ndarray,
    households: np.ndarray,
    estate: np.ndarray,
    max_households: int,
    notes: list[str],
) -> None:
    """Pieces holding buildings of one estate join, unless the estate alone is too big."""
    has = np.flatnonzero(estate >= 0)
    if len(has) == 0:
        return
    keys, inverse = np.unique(estate[has], return_inverse=True)
    inverse = inverse.ravel()
    total = np.bincount(inverse, weights=households[has], minlength=len(keys))
    joined = too_big = 0
    for k in range(len(keys)):
        spread = np.unique(piece[has[inverse == k]])
        if len(spread) < 2:
            continue
        if total[k] > max_households:
            too_big += 1
            continue
        joined += 1
        for p in spread[1:]:
            groups.join(int(spread[0]), int(p))
    if joined:
        notes.append(f"{joined} estates spread over several blocks kept whole")
    if too_big:
        notes.append(
            f"{too_big} estates hold more households than a grid may ({max_households}): "
            "they may be cut along streets"
        )


def _join_empty(
    groups: _Groups,
    piece: np.ndarray,
    households: np.ndarray,
    touch: csr_matrix,
    n_blocks: int,
    notes: list[str],
) -> None:
    """Groups holding no building join the neighbour they share the longest boundary with
    (one holding buildings when there is one), until every group holds a building or all
    are one."""
    n = touch.shape[0]
    built = np.zeros(n, bool)
    built[piece] = True
    empty_blocks = int((~built[:n_blocks]).sum())
    coo = touch.tocoo()
    # candidate joins, longest shared boundary first
    order = np.argsort(-coo.data, kind="stable")
    rows, cols = coo.row[order], coo.col[order]
    while True:
        label = groups.labels()
        has = np.zeros(int(label.max()) + 1, bool)
        has[label[built]] = True
        if has.all() or len(has) == 1:
            break
        progress = False
        for prefer_built in (True, False):
            for i, j in zip(rows, cols, strict=True):
                gi, gj = groups.find(int(i)), groups.find(int(j))
                if gi == gj or has[label[i]] or (prefer_built and not has[label[j]]):
                    continue
                groups.join(gi, gj)
                has[label[i]] = has[label[i]] or has[label[j]]
                progress = True
            if progress:
                break
        if not progress:  # empty pieces touching nothing: islands link them below
            break
    if empty_blocks:
        notes.append(f"{empty_blocks} blocks with no buildings joined to a neighbour")


def _link_islands(
    shapes: np.ndarray, touch: csr_matrix, say: Where, notes: list[str]
) -> csr_matrix:
    """Link every piece (or group of pieces) touching none of the others to the nearest
    piece already connected to the largest group, until all are connected (two islands
    nearest each other are never linked only to each other)."""
    n = len(shapes)
    if n < 2:
        return touch
    count, comp = connected_components(touch, directed=False)
    if count == 1:
        return touch
    size = np.bincount(comp)
    main = int(np.argmax(size))
    links_a: list[int] = []
    links_b: list[int] = []
    placed = comp == main
    islands = [c for c in np.argsort(size) if c != main]
    where = []
    for c in islands:
        mine = np.flatnonzero(comp == c)
        others = np.flatnonzero(placed)
        near_i, near_j = shapely.STRtree(shapes[others]).query_nearest(
            shapes[mine], all_matches=False, return_distance=False
        )
        gap = shapely.distance(shapes[mine][near_i], shapes[others][near_j])
        best = int(np.argmin(gap))
        links_a.append(int(mine[near_i[best]]))
        links_b.append(int(others[near_j[best]]))
        where.append(say(shapely.centroid(shapes[mine[near_i[best]]])))
        placed[mine] = True
    extra = coo_matrix(
        (np.full(2 * len(links_a), ISLAND_LINK_M), (links_a + links_b, links_b + links_a)),
        shape=(n, n),
    )
    notes.append(
        f"{len(islands)} islands (blocks touching no other block) joined to the nearest block: "
        + "; ".join(where)
    )
    return (touch + extra).tocsr()  # type: ignore[no-any-return]


def _main_grid(unit_of: np.ndarray, grid: np.ndarray, households: np.ndarray, n: int) -> np.ndarray:
    """Today's grid holding most households of each unit (-1: none)."""
    out = np.full(n, -1, dtype=np.int64)
    known = grid >= 0
    if not known.any():
        return out
    pairs = unit_of[known] * np.int64(grid.max() + 1) + grid[known]
    keys, inverse = np.unique(pairs, return_inverse=True)
    weight = np.bincount(inverse.ravel(), weights=households[known] + 1e-9)
    u, g = np.divmod(keys, grid.max() + 1)
    order = np.lexsort((-weight, u))
    first = np.r_[True, u[order][1:] != u[order][:-1]]
    out[u[order][first]] = g[order][first]
    return out
