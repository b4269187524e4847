"""Coordinate reference systems: names users type, and the checks every boundary applies."""

from __future__ import annotations

from pyproj import CRS
from pyproj.exceptions import CRSError

from geo_service.errors import InvalidInput

STORAGE_EPSG = 4326

# CGCS2000 and WGS-84 differ by centimetres; for grid work they are the same datum.
_ALIASES = {
    "wgs84": "EPSG:4326",
    "wgs-84": "EPSG:4326",
    "cgcs2000": "EPSG:4490",
}


def parse_crs(text: str) -> CRS:
    """A CRS from what a user types: an alias (wgs84, cgcs2000), EPSG:n, a bare number, or WKT."""
    value = text.strip()
    key = _ALIASES.get(value.lower(), value)
    if key.isdigit():
        key = f"EPSG:{key}"
    try:
        return CRS.from_user_input(key)
    except CRSError:
        raise InvalidInput(
            f"unknown coordinate reference system {text!r}; use EPSG:n (e.g. EPSG:4490 for "
            "CGCS2000, EPSG:4527 for CGCS2000 3-degree Gauss-Krüger zone 39) or one of: "
            + ", ".join(_ALIASES)
        ) from None


def crs_label(crs: CRS) -> str:
    """Short name of a CRS for messages: EPSG:n when it has one, else its name."""
    epsg = crs.to_epsg(min_confidence=70)
    return f"EPSG:{epsg}" if epsg else crs.name
