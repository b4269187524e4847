"""What a planner draws, read and checked (pure: no database): GeoJSON lines and polygons in
any input CRS, converted to WGS-84 shapely geometry, and the codes new grids get.

Every problem is an InvalidInput naming the value and, for a shape, where (lon/lat).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import shapely
from shapely.errors import ShapelyError
from shapely.geometry.base import BaseGeometry

from geo_service.coords import to_storage_checked
from geo_service.crs import InputCRS
from geo_service.errors import InvalidInput

_POLYGONAL = ("Polygon", "MultiPolygon")
MAX_VERTICES = 100_000  # of one drawn shape: a grid boundary has hundreds


def read_line(value: Any, crs: InputCRS, what: str = "line") -> shapely.LineString:
    """A GeoJSON LineString (the geometry, or a Feature holding it) in WGS-84."""
    geom = _read(value, crs, what, ("LineString",))
    if geom.length == 0:
        raise InvalidInput(f"{what} has no length: its points are all the same")
    return geom  # type: ignore[return-value]


def read_polygon(value: Any, crs: InputCRS, what: str = "geometry") -> BaseGeometry:
    """A GeoJSON Polygon or MultiPolygon in WGS-84, valid (a self-intersection is refused,
    naming where it is)."""
    geom = _read(value, crs, what, _POLYGONAL)
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise InvalidInput(f"{what} is not a valid polygon: {_lonlat_reason(reason)}")
    if geom.area == 0:
        raise InvalidInput(f"{what} has no area")
    return geom


def _read(value: Any, crs: InputCRS, what: str, kinds: Sequence[str]) -> BaseGeometry:
    if isinstance(value, Mapping) and value.get("type") == "Feature":
        value = value.get("geometry")
    if not isinstance(value, Mapping) or value.get("type") not in kinds:
        got = value.get("type") if isinstance(value, Mapping) else type(value).__name__
        raise InvalidInput(f"{what} must be a GeoJSON {' or '.join(kinds)}; got {got!r}")
    coords = value.get("coordinates")
    try:
        geom = shapely.geometry.shape({"type": value["type"], "coordinates": coords})
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, ShapelyError) as exc:
        raise InvalidInput(f"{what}: unusable coordinates ({exc})") from None
    if geom.is_empty:
        raise InvalidInput(f"{what} is empty")
    xy = shapely.get_coordinates(geom)
    if len(xy) > MAX_VERTICES:
        raise InvalidInput(f"{what} has {len(xy)} vertices; at most {MAX_VERTICES}")
    x, y = to_storage_checked(xy[:, 0], xy[:, 1], crs)
    bad = np.flatnonzero(np.isnan(x))
    if bad.size:
        k = int(bad[0])
        raise InvalidInput(
            f"{what}: coordinates out of range for {crs.name}: {xy[k, 0]!r}, {xy[k, 1]!r}"
        )
    return shapely.set_coordinates(geom, np.column_stack([x, y]))


def _lonlat_reason(reason: str) -> str:
    """GEOS' 'Self-intersection[117.8 30.9]' as 'self-intersection at lon 117.8, lat 30.9'."""
    match = re.match(r"(.*)\[(\S+) (\S+)\]$", reason)
    if not match:
        return reason.lower()
    what, lon, lat = match.group(1).lower(), float(match.group(2)), float(match.group(3))
    return f"{what} at lon {lon:.6f}, lat {lat:.6f}"


def next_codes(community: str, taken: Iterable[str], count: int, pattern: str) -> list[str]:
    """The next `count` free grid codes of a community: its code followed by a sequence
    number one past the highest ever used (codes of retired grids are never given again), as
    wide as the deployment's grid codes. InvalidInput when the codes do not follow that form
    (then the caller names the codes)."""
    used = [c for c in taken if c.startswith(community) and c[len(community) :].isdigit()]
    width = max((len(c) - len(community) for c in used), default=0)
    if not width:
        width = _pattern_width(pattern, community)
    if not width:
        raise InvalidInput(
            f"the grid codes of community {community} do not continue its code; name the new "
            "codes (codes=[...])"
        )
    last = max((int(c[len(community) :]) for c in used), default=0)
    codes = [f"{community}{n:0{width}d}" for n in range(last + 1, last + 1 + count)]
    if any(len(c) - len(community) > width for c in codes):
        raise InvalidInput(f"community {community} has no free grid codes left; name the codes")
    return codes


def _pattern_width(pattern: str, community: str) -> int:
    """Digits left for the sequence by a pattern like ^\\d{15}$ (0 when it says nothing)."""
    match = re.fullmatch(r"\^\\d\{(\d+)\}\$", pattern)
    return int(match.group(1)) - len(community) if match else 0


def west_to_east(geoms: Sequence[BaseGeometry]) -> list[int]:
    """Order of pieces as grids are numbered inside a community: west to east, then north to
    south (by a point on each piece)."""
    points = [g.representative_point() for g in geoms]
    return sorted(range(len(geoms)), key=lambda i: (round(points[i].x, 6), -points[i].y))


def finite(value: float) -> float | None:
    """JSON-safe number."""
    return value if math.isfinite(value) else None
