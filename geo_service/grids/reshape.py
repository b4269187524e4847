"""The shapes an edit makes, from the shapes it touches (pure: shapely only, no database).

Each function returns the new shape of every grid it changes; an area a grid gives up goes
to a neighbour along the longest shared boundary, so the grids of a community keep covering
exactly what they covered (the tiling is kept by construction, and checked again by the QA
rules before an edit is stored). Problems are InvalidInput naming where (lon/lat).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry.base import BaseGeometry
from shapely.ops import split as split_by

from geo_service.errors import InvalidInput

Shapes = dict[str, BaseGeometry]

# Pieces thinner than this (degrees², about 1 cm² at these latitudes) are floating-point dust.
_DUST = 1e-14
_GEOD = Geod(ellps="WGS84")


def _where(geom: BaseGeometry) -> str:
    p = geom.representative_point() if not geom.is_empty else geom
    return f"lon {p.x:.6f}, lat {p.y:.6f}"


def _polygons(geom: BaseGeometry) -> list[BaseGeometry]:
    return [g for g in shapely.get_parts(geom) if g.geom_type == "Polygon" and g.area > _DUST]


def split(code: str, shape: BaseGeometry, line: shapely.LineString) -> list[BaseGeometry]:
    """The pieces a line cuts a grid into, numbered west to east then north to south. A part
    of a grid of several parts that the line does not touch stays with the largest piece."""
    if not line.intersects(shape):
        raise InvalidInput(f"the line does not reach grid {code} (the grid is at {_where(shape)})")
    pieces: list[BaseGeometry] = []
    untouched: list[BaseGeometry] = []
    for part in _polygons(shape):
        cut = _polygons(split_by(part, line)) if line.intersects(part) else [part]
        (pieces if len(cut) > 1 else untouched).extend(cut)
    if len(pieces) < 2:
        inside = [p for p in (line.boundary.geoms if not line.is_ring else []) if shape.contains(p)]
        where = f": it ends inside the grid at {_where(inside[0])}" if inside else ""
        raise InvalidInput(
            f"the line does not cross grid {code} from boundary to boundary{where}; draw it "
            "beyond the grid's edge on both sides"
        )
    if untouched:
        largest = max(range(len(pieces)), key=lambda i: pieces[i].area)
        pieces[largest] = shapely.union_all([pieces[largest], *untouched])
    points = [p.representative_point() for p in pieces]
    order = sorted(range(len(pieces)), key=lambda i: (round(points[i].x, 6), -points[i].y))
    return [pieces[i] for i in order]


def shared_length(a: BaseGeometry, b: BaseGeometry) -> float:
    """Length of the boundary two shapes share (degrees; 0 when they only meet at points)."""
    common = a.boundary.intersection(b.boundary)
    return float(common.length)


def connected(shapes: Mapping[str, BaseGeometry]) -> list[str]:
    """The codes not reachable from the first through shared boundaries (empty: the shapes
    form one connected area)."""
    codes = list(shapes)
    seen = {codes[0]}
    todo = [codes[0]]
    while todo:
        here = todo.pop()
        for other in codes:
            if other not in seen and shared_length(shapes[here], shapes[other]) > 0:
                seen.add(other)
                todo.append(other)
    return [c for c in codes if c not in seen]


def merge(shapes: Mapping[str, BaseGeometry]) -> BaseGeometry:
    """One shape of adjacent grids; InvalidInput naming a grid that touches none of the others."""
    apart = connected(shapes)
    if apart:
        raise InvalidInput(
            f"grid {apart[0]} does not share a boundary with the other grids to merge (it is "
            f"at {_where(shapes[apart[0]])}): only adjacent grids can be merged"
        )
    return shapely.union_all(list(shapes.values()))


def hand_out(
    area: BaseGeometry, receivers: Mapping[str, BaseGeometry], min_m2: float
) -> tuple[Shapes, list[BaseGeometry]]:
    """Each part of `area` added to the receiver sharing the longest boundary with it; the
    parts that touch no receiver are returned apart (those under `min_m2`, the QA's noise,
    are dropped)."""
    grown = dict(receivers)
    orphans = []
    for part in _polygons(area):
        if area_m2(part) < min_m2:
            continue  # the QA's noise: no grid changes for it
        lengths = {code: shared_length(part, shape) for code, shape in grown.items()}
        best = max(lengths, key=lambda c: lengths[c], default=None)
        if best is None or lengths[best] <= 0:
            if area_m2(part) >= min_m2:
                orphans.append(part)
            continue
        grown[best] = shapely.union_all([grown[best], part])
    return {c: g for c, g in grown.items() if g is not receivers[c]}, orphans


SNAP_DEG: Final = 1e-6  # about 10 cm: a drawn vertex this close to a stored one is that one


def snap(drawn: BaseGeometry, references: Sequence[BaseGeometry]) -> BaseGeometry:
    """A drawn shape with its vertices moved onto the stored vertices and edges they nearly
    touch (within SNAP_DEG): a shape sent back as the API showed it (rounded to 7 decimals),
    or drawn on a shared boundary, is then exactly that boundary, not a sliver off it."""
    target = shapely.union_all([shapely.boundary(r) for r in references])
    snapped = shapely.snap(drawn, target, SNAP_DEG)
    if not snapped.is_valid:
        snapped = shapely.make_valid(snapped)
    parts = _polygons(snapped)
    return shapely.union_all(parts) if parts else drawn


def redraw(
    code: str,
    old: BaseGeometry,
    new: BaseGeometry,
    neighbours: Mapping[str, BaseGeometry],
    mode: str,
    min_m2: float,
) -> Shapes:
    """The grid's new shape and, with `adjust`, its neighbours': they lose what the new shape
    takes and gain what it gives up (each freed part to the neighbour along the longest
    shared boundary). With `strict` the neighbours never change: an overlap or an opened gap
    is refused, naming where."""
    changed: Shapes = {code: new}
    if mode == "strict":
        for other, shape in neighbours.items():
            overlap = shapely.union_all(_polygons(new.intersection(shape)))
            if not overlap.is_empty and area_m2(overlap) >= min_m2:
                raise InvalidInput(
                    f"the new shape of grid {code} overlaps grid {other} at {_where(overlap)} "
                    '(neighbours "strict"): use "adjust" to take the area from it'
                )
        freed = shapely.union_all(_polygons(old.difference(new)))
        if not freed.is_empty and area_m2(freed) >= min_m2:
            raise InvalidInput(
                f"the new shape of grid {code} gives up area at {_where(freed)} that no grid "
                'would cover (neighbours "strict"): use "adjust" to hand it to the neighbours'
            )
        return changed
    for other, shape in neighbours.items():
        if shape.intersects(new):
            rest = shape.difference(new)
            if not _polygons(rest):
                raise InvalidInput(
                    f"the new shape of grid {code} covers all of grid {other}: merge the grids "
                    "instead"
                )
            taken = shapely.union_all(_polygons(shape.difference(rest)))
            if not taken.is_empty and area_m2(taken) >= min_m2:  # less is the QA's noise
                changed[other] = shapely.union_all(_polygons(rest))
    current = {c: changed.get(c, s) for c, s in neighbours.items()}
    grown, orphans = hand_out(old.difference(new), current, min_m2)
    if orphans:
        raise InvalidInput(
            f"the new shape of grid {code} gives up area at {_where(orphans[0])} that touches "
            "no neighbour in its community: that area would be left without a grid"
        )
    changed.update(grown)
    return changed


def retire(
    code: str, shape: BaseGeometry, receivers: Mapping[str, BaseGeometry], min_m2: float
) -> Shapes:
    """The receivers' shapes once a retired grid's area is handed to them."""
    grown, orphans = hand_out(shape, receivers, min_m2)
    if orphans:
        raise InvalidInput(
            f"part of grid {code} at {_where(orphans[0])} touches none of the grids named to "
            f"receive it ({', '.join(receivers)})"
        )
    return grown


def free_area(drawn: BaseGeometry, community: BaseGeometry, taken: BaseGeometry) -> BaseGeometry:
    """What of a drawn shape is inside its community and held by no grid."""
    free = drawn.intersection(community).difference(taken)
    parts = _polygons(free)
    if not parts:
        raise InvalidInput(
            f"the drawn shape at {_where(drawn)} holds no area of its community that no grid "
            "already holds"
        )
    return shapely.union_all(parts)


def fit(shapes: Mapping[str, BaseGeometry], area: BaseGeometry, min_m2: float) -> Shapes:
    """Shapes made to tile `area` exactly (a proposal's grids onto their community as it is
    stored): each snapped onto the area's boundary (10 cm) and cut to it, a part two of them
    hold kept by the first, and the parts none holds handed to the shape sharing the longest
    boundary with each (the nearest when a part touches none; parts under `min_m2` are the
    QA's noise). InvalidInput names a shape left with no area."""
    out: Shapes = {}
    taken: BaseGeometry = shapely.Polygon()
    for code, shape in shapes.items():
        parts = _polygons(snap(shape, [area]).intersection(area).difference(taken))
        if not parts:
            raise InvalidInput(f"grid {code} at {_where(shape)} holds no area of its community")
        out[code] = shapely.union_all(parts)
        taken = shapely.union_all([taken, out[code]])
    grown, orphans = hand_out(area.difference(taken), out, min_m2)
    out.update(grown)
    for part in orphans:
        near = min(out, key=lambda c: out[c].distance(part))
        out[near] = shapely.union_all([out[near], part])
    return out


def area_m2(geom: BaseGeometry) -> float:
    """Area on the WGS-84 spheroid, m² (as PostGIS' geography measures it)."""
    area, _ = _GEOD.geometry_area_perimeter(geom)
    return abs(float(area))


def outside(
    shape: BaseGeometry, community: BaseGeometry, min_area_m2: float
) -> BaseGeometry | None:
    """The part of a shape outside its community, when it is `min_area_m2` or more."""
    rest = shapely.union_all(_polygons(shape.difference(community)))
    return rest if not rest.is_empty and area_m2(rest) >= min_area_m2 else None


def move_vertex(shapes: Mapping[str, BaseGeometry], at: shapely.Point, to: shapely.Point) -> Shapes:
    """Every grid whose boundary passes within SNAP_DEG of `at` has its vertex there at `to`
    instead: a vertex of a shared boundary is one vertex of every grid along it (their
    polygons come from the same topology edges), so moving it moves the boundary for all of
    them and opens no gap."""
    moved: Shapes = {}
    for code, shape in shapes.items():
        if shapely.distance(shape.boundary, at) > SNAP_DEG:
            continue
        # a boundary passing through the vertex without one of its own there gets it (a node
        # another grid's edit put on this boundary), so that it moves along
        shape = shapely.snap(shape, at, SNAP_DEG)

        def place(xy: np.ndarray) -> np.ndarray:
            near = ((xy[:, 0] - at.x) ** 2 + (xy[:, 1] - at.y) ** 2) <= SNAP_DEG**2
            xy[near] = (to.x, to.y)
            return xy

        new = shapely.transform(shape, place)
        if not new.is_valid:
            raise InvalidInput(
                f"moving the vertex at lon {at.x:.7f}, lat {at.y:.7f} to lon {to.x:.7f}, "
                f"lat {to.y:.7f} would make the boundary of grid {code} cross itself"
            )
        moved[code] = new
    return moved
