"""H3 hexagon aggregation of points (pure: arrays in, hexagons out).

The h3 PostgreSQL extension is not available on a stock Debian PostGIS, so cells are computed
here with the h3 library; PostgreSQL only selects the points and encodes the tile.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import h3

# A point belongs to a hexagon reaching into a box when it lies within a hexagon's diameter
# of the box. H3 edges vary by about ±50% around the average within one resolution.
_REACH_EDGES = 3.0
_M_PER_DEG = 111_320.0


@dataclass(frozen=True)
class Hexagon:
    """One H3 cell with the number of points in it and their summed weight."""

    cell: str
    count: int
    weight: float

    def ring(self) -> list[tuple[float, float]]:
        """Boundary as closed (lon, lat) ring, counter-clockwise (RFC 7946)."""
        pts = [(lng, lat) for lat, lng in h3.cell_to_boundary(self.cell)]
        pts.append(pts[0])
        if _signed_area(pts) < 0:
            pts.reverse()
        return pts

    def wkt(self) -> str:
        """The boundary as a WKT polygon."""
        return "POLYGON((" + ",".join(f"{x:.9f} {y:.9f}" for x, y in self.ring()) + "))"

    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the boundary."""
        ring = self.ring()
        xs = [p[0] for p in ring]
        ys = [p[1] for p in ring]
        return min(xs), min(ys), max(xs), max(ys)


def _signed_area(ring: list[tuple[float, float]]) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring)) / 2


def aggregate(
    lons: list[float], lats: list[float], weights: list[float], resolution: int
) -> list[Hexagon]:
    """Hexagons of the points at `resolution`, sorted by cell."""
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    to_cell = h3.latlng_to_cell
    for lon, lat, w in zip(lons, lats, weights, strict=True):
        cell = to_cell(lat, lon, resolution)
        counts[cell] = counts.get(cell, 0) + 1
        sums[cell] = sums.get(cell, 0.0) + w
    return [Hexagon(cell, counts[cell], sums[cell]) for cell in sorted(counts)]


def reach(
    box: tuple[float, float, float, float], resolution: int
) -> tuple[float, float, float, float]:
    """`box` grown so that it holds every point of every hexagon reaching into it."""
    west, south, east, north = box
    metres = _REACH_EDGES * h3.average_hexagon_edge_length(resolution, unit="m")
    dlat = metres / _M_PER_DEG
    coslat = max(math.cos(math.radians(min(abs(south), abs(north)) + dlat)), 0.01)
    if abs(south) > 85 or abs(north) > 85:
        coslat = 0.01
    dlon = dlat / coslat
    return (
        max(west - dlon, -180.0),
        max(south - dlat, -90.0),
        min(east + dlon, 180.0),
        min(north + dlat, 90.0),
    )


def touching(hexagons: list[Hexagon], box: tuple[float, float, float, float]) -> list[Hexagon]:
    """The hexagons whose bounds meet `box` (the others lie wholly outside it)."""
    west, south, east, north = box
    kept = []
    for hexagon in hexagons:
        w, s, e, n = hexagon.bounds()
        if w <= east and e >= west and s <= north and n >= south:
            kept.append(hexagon)
    return kept
