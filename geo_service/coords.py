"""Coordinate input: numbers and lon/lat pairs as callers type them, read and checked once
for every door (API, CLI, importers, incident intake) and converted to storage (WGS-84).

`crs.py` knows the coordinate systems; this module reads what a caller typed in one of them.
Numbers typed with a Chinese input method (１１７．８１, －３０．５) read as what they mean; junk
becomes NaN and, for a lon/lat pair, a reason that quotes the values as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geo_service.buildings.address import half_width
from geo_service.crs import InputCRS, check_lonlat, to_storage
from geo_service.errors import InvalidInput


def number(value: Any) -> float:
    """A float from a number or numeric text (full-width digits read); NaN for junk."""
    try:
        return float(half_width(value) if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return float("nan")


def numbers(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Floats from numbers or numeric text; junk becomes NaN.

    Text typed with a Chinese input method is read through the address normaliser's
    `half_width`, so every door reads full-width digits, minus and point alike; a full-width
    comma becomes an ASCII one, which no number holds (117，81 is junk, not a guess at a
    decimal comma).
    """
    if len(values) <= 64:  # the API's usual single point: pandas costs more than the query
        return np.array([number(v) for v in values], dtype=float)
    array = np.asarray(values, dtype=object)
    out = pd.to_numeric(pd.Series(array), errors="coerce").to_numpy(float, copy=True)
    # pandas reads ASCII numbers only: the values it left NaN get the full-width reading.
    for i in np.flatnonzero(np.isnan(out)):
        out[i] = number(array[i])
    return out


def to_storage_checked(
    lon: np.ndarray, lat: np.ndarray, crs: InputCRS
) -> tuple[np.ndarray, np.ndarray]:
    """Numbers in `crs` to WGS-84; NaN where not numbers or not valid lon/lat afterwards."""
    numeric = np.isfinite(lon) & np.isfinite(lat)
    x, y = to_storage(np.where(numeric, lon, 0.0), np.where(numeric, lat, 0.0), crs)
    x, y = np.array(x, dtype=float), np.array(y, dtype=float)
    bad = ~(numeric & check_lonlat(x, y))
    x[bad], y[bad] = np.nan, np.nan
    return x, y


def unusable_reason(lon: Any, lat: Any, numeric: bool, crs: InputCRS) -> str:
    """Why a point cannot be used, quoting the values as the caller gave them; `numeric`
    says whether both were read as numbers (then they are out of range for `crs`)."""
    if not numeric:
        return f"coordinates are not numbers: lon={lon!r}, lat={lat!r}"
    return f"coordinates out of range for {crs.name}: lon={lon!r}, lat={lat!r}"


def parse_coordinates(
    lon: Sequence[Any] | np.ndarray, lat: Sequence[Any] | np.ndarray, crs: InputCRS
) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Numbers from user input, converted to WGS-84; a reason per point that is unusable."""
    raw_lon, raw_lat = numbers(lon), numbers(lat)
    x, y = to_storage_checked(raw_lon, raw_lat, crs)
    numeric = np.isfinite(raw_lon) & np.isfinite(raw_lat)
    reasons: list[str | None] = [None] * len(raw_lon)
    for k in np.flatnonzero(np.isnan(x)).tolist():
        reasons[k] = unusable_reason(lon[k], lat[k], bool(numeric[k]), crs)
    return x, y, reasons


def parse_point(lon: Any, lat: Any, crs: InputCRS) -> tuple[float, float]:
    """One lon/lat pair in WGS-84; InvalidInput quoting the values when unusable."""
    x, y, reasons = parse_coordinates([lon], [lat], crs)
    if reasons[0]:
        raise InvalidInput(reasons[0])
    return float(x[0]), float(y[0])
