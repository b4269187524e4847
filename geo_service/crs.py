"""Coordinate reference systems: names users type, the checks every boundary applies, and the
Chinese web-map systems (GCJ-02, BD-09) that no EPSG code describes.

Every door of the service (API, CLI, importers) calls `parse_input_crs` on what the caller says
its coordinates are in and `to_storage` before any spatial test; `from_storage` shifts stored
WGS-84 geometry back, e.g. into GCJ-02 for overlays on an Amap basemap.

Array conventions for every transform below: lon/lat (or x/y for projected EPSG codes) may be
scalars, sequences or numpy arrays of any broadcastable shapes; the result is a pair of float64
numpy arrays of the broadcast shape (shape ``()`` for scalar input). Inputs are never modified.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from geo_service.errors import InvalidInput

__all__ = [
    "BD09",
    "CGCS2000",
    "GCJ02",
    "STORAGE_EPSG",
    "WGS84",
    "InputCRS",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "check_lonlat",
    "crs_label",
    "from_storage",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "parse_crs",
    "parse_input_crs",
    "to_storage",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

STORAGE_EPSG = 4326

FloatArray = npt.NDArray[np.float64]
Pair = tuple[FloatArray, FloatArray]
_F = TypeVar("_F", bound=np.floating[Any])  # float64, or float32 for the rough GCJ-02 pass

# CGCS2000 and WGS-84 differ by centimetres; for grid work they are the same datum.
_ALIASES = {
    "wgs84": "EPSG:4326",
    "wgs-84": "EPSG:4326",
    "cgcs2000": "EPSG:4490",
}


def parse_crs(text: str) -> CRS:
    """A CRS from what a user types: an alias (wgs84, cgcs2000), EPSG:n, a bare number, or WKT."""
    value = text.strip()
    usage = (
        "use EPSG:n (e.g. EPSG:4490 for CGCS2000, EPSG:4527 for CGCS2000 3-degree Gauss-Krüger "
        "zone 39) or one of: " + ", ".join(_ALIASES)
    )
    if _normalise_name(value) in _OBFUSCATED:
        # GCJ-02/BD-09 are no datum PROJ knows: say so at once instead of searching its database.
        raise InvalidInput(
            f"coordinate reference system {text!r} is GCJ-02/BD-09, an obfuscated web-map system "
            f"with no EPSG code: convert the coordinates with to_storage first; {usage}"
        )
    key = _ALIASES.get(value.lower(), value)
    if key.isdigit():
        key = f"EPSG:{key}"
    try:
        return CRS.from_user_input(key)
    except CRSError:
        raise InvalidInput(f"unknown coordinate reference system {text!r}; {usage}") from None


def crs_label(crs: CRS) -> str:
    """Short name of a CRS for messages: EPSG:n when it has one, else its name."""
    epsg = crs.to_epsg(min_confidence=70)
    return f"EPSG:{epsg}" if epsg else crs.name


# --------------------------------------------------------------------------------------------
# GCJ-02 and BD-09
# --------------------------------------------------------------------------------------------

# Krasovsky 1940 ellipsoid, as used by the published GCJ-02 formula.
_A: Final = 6378245.0
_EE: Final = 0.00669342162296594323
_PI: Final = math.pi
_X_PI: Final = math.pi * 3000.0 / 180.0
# Metres-like formula units -> degrees along the meridian / the parallel (see _gcj_offset).
_LAT_SCALE: Final = 180.0 / (_A * (1.0 - _EE) * _PI)
_LON_SCALE: Final = 180.0 / (_A * _PI)

# The usual rough rectangle for "in China"; outside it GCJ-02/BD-09 are the identity.
_CHINA_LON: Final = (72.004, 137.8347)
_CHINA_LAT: Final = (0.8293, 55.8271)

# Inverses stop when the forward transform of the estimate is this close to the input (degrees,
# ~0.1 mm): far below the 0.01 m target, and well above float64 rounding (~1e-14°).
_TOLERANCE_DEG: Final = 1e-9
_MAX_ITERATIONS: Final = 30
# Points are transformed in blocks of this many so that numpy's temporaries stay in cache
# (2-3x faster than whole-array arithmetic on a million points).
_BLOCK: Final = 32768
# Largest angle step (radians) taken by the Taylor rotation in _gcj_trig; larger -> recompute.
_ROTATE_MAX: Final = 1e-3
# Float32 warm-up rounds of the GCJ-02 inverse: 1e-2° -> 6e-5° -> 4e-7° -> ~1e-8° (its noise).
_ROUGH_ROUNDS: Final = 3


def _as_float_arrays(lon: npt.ArrayLike, lat: npt.ArrayLike) -> Pair:
    """Broadcast lon/lat to float64 arrays of one shape (views; callers must not write to them)."""
    x, y = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return x, y


def _in_china(lon: FloatArray, lat: FloatArray) -> npt.NDArray[np.bool_]:
    """Mask of points inside the rough China rectangle; NaN/inf fall outside (so pass through)."""
    return (
        (lon >= _CHINA_LON[0])
        & (lon <= _CHINA_LON[1])
        & (lat >= _CHINA_LAT[0])
        & (lat <= _CHINA_LAT[1])
    )


class _GcjTrig(NamedTuple):
    """sin/cos of the three base angles of the GCJ-02 formula at some points.

    Every sine in the published formula has the argument k*u or k*v, with u = π(lon-105)/60,
    v = π(lat-35)/60 and k in {2, 5, 20, 60, 120, 360}, plus the latitude φ itself. numpy's
    float64 sin/cos are scalar libm calls here (~20 ns a value, 40x an add), so we call them for
    u, v and φ only and derive the ten sines by multiple-angle identities; when the inverse
    iteration moves points by a hair, we rotate the previous values instead of calling them
    again. Results match the direct formula to float64 rounding (measured: <= 3e-14°).
    """

    u: FloatArray
    v: FloatArray
    phi: FloatArray
    su: FloatArray
    cu: FloatArray
    sv: FloatArray
    cv: FloatArray
    sphi: FloatArray
    cphi: FloatArray


def _rotate(s: FloatArray, c: FloatArray, step: FloatArray) -> Pair:
    """sin/cos of (angle + step) from sin/cos of angle, for |step| <= _ROTATE_MAX (Taylor)."""
    t = step * step
    # Truncation errors step**5/120 and step**6/720: < 1e-17 for |step| <= 1e-3.
    sin_step = step * (1.0 - t / 6.0)
    cos_step = 1.0 - t / 2.0 * (1.0 - t / 12.0)
    return s * cos_step + c * sin_step, c * cos_step - s * sin_step


def _gcj_trig(lon: FloatArray, lat: FloatArray, previous: _GcjTrig | None = None) -> _GcjTrig:
    """The base-angle sines and cosines at lon/lat, rotated from `previous` when it is close."""
    u = (lon - 105.0) * (_PI / 60.0)
    v = (lat - 35.0) * (_PI / 60.0)
    phi = lat * (_PI / 180.0)
    if previous is not None:
        du, dv, dphi = u - previous.u, v - previous.v, phi - previous.phi
        largest = max(float(np.max(np.abs(d), initial=0.0)) for d in (du, dv, dphi))
        if largest <= _ROTATE_MAX:
            su, cu = _rotate(previous.su, previous.cu, du)
            sv, cv = _rotate(previous.sv, previous.cv, dv)
            sphi, cphi = _rotate(previous.sphi, previous.cphi, dphi)
            return _GcjTrig(u, v, phi, su, cu, sv, cv, sphi, cphi)
    return _GcjTrig(u, v, phi, np.sin(u), np.cos(u), np.sin(v), np.cos(v), np.sin(phi), np.cos(phi))


def _double(s: FloatArray, c: FloatArray) -> Pair:
    """sin/cos of twice the angle."""
    return 2.0 * s * c, (c - s) * (c + s)


def _gcj_sines(trig: _GcjTrig) -> tuple[list[FloatArray], list[FloatArray]]:
    """The sines _gcj_formula needs, from the base angles by multiple-angle identities."""
    # u-multiples: 2u = πx/30, 5u = πx/12, 20u = πx/3, 60u = πx, 120u = 2πx, 360u = 6πx.
    su2, cu2 = _double(trig.su, trig.cu)
    su4, cu4 = _double(su2, cu2)
    su5, cu5 = su4 * trig.cu + cu4 * trig.su, cu4 * trig.cu - su4 * trig.su
    su20, cu20 = _double(*_double(su5, cu5))
    su60 = su20 * (3.0 - 4.0 * su20 * su20)
    cu60 = cu20 * (4.0 * cu20 * cu20 - 3.0)
    su120 = 2.0 * su60 * cu60
    su360 = su120 * (3.0 - 4.0 * su120 * su120)
    # v-multiples: the same angles in y, up to πy.
    sv2, cv2 = _double(trig.sv, trig.cv)
    sv4, cv4 = _double(sv2, cv2)
    sv5, cv5 = sv4 * trig.cv + cv4 * trig.sv, cv4 * trig.cv - sv4 * trig.sv
    sv20, _ = _double(*_double(sv5, cv5))
    sv60 = sv20 * (3.0 - 4.0 * sv20 * sv20)
    return [su360, su120, su60, su20, su5, su2], [sv60, sv20, sv5, sv2]


def _gcj_formula(
    x: npt.NDArray[_F],
    y: npt.NDArray[_F],
    sx: list[npt.NDArray[_F]],
    sy: list[npt.NDArray[_F]],
    sphi: npt.NDArray[_F],
    cphi: npt.NDArray[_F],
) -> tuple[npt.NDArray[_F], npt.NDArray[_F]]:
    """The published GCJ-02 offset in degrees, given x = lon-105, y = lat-35 and the sines.

    sx = sin(kπx) for k = 6, 2, 1, 1/3, 1/12, 1/30; sy = sin(kπy) for k = 1, 1/3, 1/12, 1/30;
    sphi/cphi = sin/cos of the latitude. Works in whatever float dtype it is given.
    """
    s6x, s2x, s1x, s3x, s12x, s30x = sx
    s1y, s3y, s12y, s30y = sy
    # The first harmonic pair and the sqrt term are shared by both components: compute once.
    shared = (20.0 * s6x + 20.0 * s2x) * (2.0 / 3.0)
    sqrt_abs_x = np.sqrt(np.abs(x))
    xy = x * y
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * xy + 0.2 * sqrt_abs_x + shared
    dlat += (20.0 * s1y + 40.0 * s3y) * (2.0 / 3.0)
    dlat += (160.0 * s12y + 320.0 * s30y) * (2.0 / 3.0)
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * xy + 0.1 * sqrt_abs_x + shared
    dlon += (20.0 * s1x + 40.0 * s3x) * (2.0 / 3.0)
    dlon += (150.0 * s12x + 300.0 * s30x) * (2.0 / 3.0)
    # Formula units -> degrees with the Krasovsky meridian and prime-vertical radii at φ.
    magic = 1.0 - _EE * sphi * sphi
    sqrt_magic = np.sqrt(magic)
    dlat *= magic * sqrt_magic * _LAT_SCALE
    dlon *= sqrt_magic / cphi * _LON_SCALE
    return dlon, dlat


def _gcj_offset(lon: FloatArray, lat: FloatArray, trig: _GcjTrig) -> Pair:
    """GCJ-02 minus WGS-84 at WGS-84 points, in degrees (float64, exact formula)."""
    sx, sy = _gcj_sines(trig)
    return _gcj_formula(lon - 105.0, lat - 35.0, sx, sy, trig.sphi, trig.cphi)


def _gcj_offset_rough(
    lon: FloatArray, lat: FloatArray
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The same offset evaluated in float32 (SIMD sin, ~30x cheaper), good to ~2e-8°."""
    # Differences are taken in float64 first so that float32 only rounds small numbers.
    x = (lon - 105.0).astype(np.float32)
    y = (lat - 35.0).astype(np.float32)
    px = x * np.float32(_PI)
    py = y * np.float32(_PI)
    sx = [np.sin(px * np.float32(k)) for k in (6.0, 2.0, 1.0, 1 / 3, 1 / 12, 1 / 30)]
    sy = [np.sin(py * np.float32(k)) for k in (1.0, 1 / 3, 1 / 12, 1 / 30)]
    phi = (lat * (_PI / 180.0)).astype(np.float32)
    return _gcj_formula(x, y, sx, sy, np.sin(phi), np.cos(phi))


def _wgs_to_gcj_raw(lon: FloatArray, lat: FloatArray) -> Pair:
    """WGS-84 -> GCJ-02 without the China test."""
    dlon, dlat = _gcj_offset(lon, lat, _gcj_trig(lon, lat))
    return lon + dlon, lat + dlat


def _converged(rlon: FloatArray, rlat: FloatArray) -> bool:
    """Whether every residual (degrees) is below the inverse tolerance."""
    return max(float(np.max(np.abs(rlon))), float(np.max(np.abs(rlat)))) < _TOLERANCE_DEG


def _gcj_to_wgs_raw(glon: FloatArray, glat: FloatArray) -> Pair:
    """GCJ-02 -> WGS-84 without the China test, by fixed-point iteration on the forward formula.

    There is no closed inverse. The forward map is the identity plus a shift of < 0.01° whose
    slope is < ~0.007, so p <- p - (forward(p) - target) shrinks the error ~150x a round: one
    round (the common "one-step inverse") still errs by up to ~5 m; five reach < 1e-9°.
    The first three rounds only need to get close, so they use the cheap float32 formula (good
    to ~2e-8°); float64 rounds (usually two) then converge and verify the round trip itself.
    We iterate on the whole block and stop when every point has converged.
    """
    lon, lat = glon, glat  # the GCJ point itself is within 0.01° of the answer
    for _ in range(_ROUGH_ROUNDS):
        rough_lon, rough_lat = _gcj_offset_rough(lon, lat)
        lon = glon - rough_lon
        lat = glat - rough_lat
    trig = _gcj_trig(lon, lat)
    for _ in range(_MAX_ITERATIONS):
        dlon, dlat = _gcj_offset(lon, lat, trig)
        rlon = lon + dlon - glon
        rlat = lat + dlat - glat
        lon = lon - rlon
        lat = lat - rlat
        if _converged(rlon, rlat):
            break
        trig = _gcj_trig(lon, lat, trig)
    return lon, lat


def _gcj_to_bd_raw(lon: FloatArray, lat: FloatArray) -> Pair:
    """GCJ-02 -> BD-09 (Baidu's published formula) without the China test."""
    r = np.hypot(lon, lat)
    z = r + 0.00002 * np.sin(lat * _X_PI)
    # Baidu rotates by eps = 3e-6·cos(lon·x_pi) rad: expand cos/sin(atan2(lat, lon) + eps) with
    # the angle-sum rule instead of atan2 + two more libm calls (eps**3 terms are < 1e-17).
    eps = 0.000003 * np.cos(lon * _X_PI)
    cos_eps = 1.0 - 0.5 * eps * eps
    k = z / r
    return k * (lon * cos_eps - lat * eps) + 0.0065, k * (lat * cos_eps + lon * eps) + 0.006


def _bd_to_gcj_closed(lon: FloatArray, lat: FloatArray) -> Pair:
    """The usual closed BD-09 -> GCJ-02 formula: only a first guess, off by up to ~0.2 m."""
    x = lon - 0.0065
    y = lat - 0.006
    r = np.hypot(x, y)
    z = r - 0.00002 * np.sin(y * _X_PI)
    eps = -0.000003 * np.cos(x * _X_PI)
    cos_eps = 1.0 - 0.5 * eps * eps
    k = z / r
    return k * (x * cos_eps - y * eps), k * (y * cos_eps + x * eps)


def _bd_to_gcj_raw(blon: FloatArray, blat: FloatArray) -> Pair:
    """BD-09 -> GCJ-02 without the China test: the closed guess refined by iteration.

    The closed formula evaluates Baidu's perturbation at the BD point instead of the GCJ point,
    so it errs by decimetres; the same fixed-point scheme as GCJ-02 (slope < ~0.02) fixes that.
    """
    lon, lat = _bd_to_gcj_closed(blon, blat)
    for _ in range(_MAX_ITERATIONS):
        flon, flat = _gcj_to_bd_raw(lon, lat)
        rlon = flon - blon
        rlat = flat - blat
        lon = lon - rlon
        lat = lat - rlat
        if _converged(rlon, rlat):
            break
    return lon, lat


def _wgs_to_bd_raw(lon: FloatArray, lat: FloatArray) -> Pair:
    """WGS-84 -> BD-09 without the China test."""
    return _gcj_to_bd_raw(*_wgs_to_gcj_raw(lon, lat))


def _bd_to_wgs_raw(lon: FloatArray, lat: FloatArray) -> Pair:
    """BD-09 -> WGS-84 without the China test."""
    return _gcj_to_wgs_raw(*_bd_to_gcj_raw(lon, lat))


Kernel = Callable[[FloatArray, FloatArray], Pair]


def _blockwise(kernel: Kernel, lon: FloatArray, lat: FloatArray) -> Pair:
    """Run kernel over 1-D arrays in cache-sized blocks (each block iterates to convergence)."""
    n = lon.shape[0]
    if n <= _BLOCK:
        return kernel(lon, lat)
    out_lon = np.empty(n, dtype=np.float64)
    out_lat = np.empty(n, dtype=np.float64)
    for start in range(0, n, _BLOCK):
        block = slice(start, start + _BLOCK)
        out_lon[block], out_lat[block] = kernel(lon[block], lat[block])
    return out_lon, out_lat


def _apply_in_china(kernel: Kernel, lon: npt.ArrayLike, lat: npt.ArrayLike) -> Pair:
    """Run kernel on the points inside China (judged on the input); copy the rest unchanged.

    Compositions (WGS-84 <-> BD-09) are judged once, on their input, so that a point near the
    rectangle's edge gets both shifts or neither, never one of the two.
    """
    x, y = _as_float_arrays(lon, lat)
    shape = x.shape
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    inside = _in_china(flat_x, flat_y)
    if inside.all():
        # The common case: no fancy-indexing copies of large arrays.
        out_x, out_y = _blockwise(kernel, flat_x, flat_y)
    else:
        out_x, out_y = flat_x.copy(), flat_y.copy()
        if inside.any():
            out_x[inside], out_y[inside] = _blockwise(kernel, flat_x[inside], flat_y[inside])
    return out_x.reshape(shape), out_y.reshape(shape)


def wgs84_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> Pair:
    """WGS-84 lon/lat (degrees) to GCJ-02 (Amap, Tencent, WeChat); identity outside China."""
    return _apply_in_china(_wgs_to_gcj_raw, lon, lat)


def gcj02_to_wgs84(lon: npt.ArrayLike, lat: npt.ArrayLike) -> Pair:
    """GCJ-02 lon/lat to WGS-84 by iteration (round trip < 1e-9°); identity outside China."""
    return _apply_in_china(_gcj_to_wgs_raw, lon, lat)


def gcj02_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> Pair:
    """GCJ-02 lon/lat to BD-09 (Baidu); identity outside China."""
    return _apply_in_china(_gcj_to_bd_raw, lon, lat)


def bd09_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> Pair:
    """BD-09 lon/lat to GCJ-02 by iteration (round trip < 1e-9°); identity outside China."""
    return _apply_in_china(_bd_to_gcj_raw, lon, lat)


def wgs84_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> Pair:
    """WGS-84 lon/lat to BD-09 (via GCJ-02); identity outside China."""
    return _apply_in_china(_wgs_to_bd_raw, lon, lat)


def bd09_to_wgs84(lon: npt.ArrayLike, lat: npt.ArrayLike) -> Pair:
    """BD-09 lon/lat to WGS-84 (via GCJ-02, both legs iterative); identity outside China."""
    return _apply_in_china(_bd_to_wgs_raw, lon, lat)


# --------------------------------------------------------------------------------------------
# What a caller says its coordinates are in
# --------------------------------------------------------------------------------------------

_NAMED_SYSTEMS: Final = ("wgs84", "cgcs2000", "gcj02", "bd09")
_OBFUSCATED: Final = frozenset({"gcj02", "gcj", "bd09", "bd09ll"})


@dataclass(frozen=True)
class InputCRS:
    """The coordinate system of incoming coordinates: a named system or an EPSG code.

    ``name`` is "wgs84", "cgcs2000", "gcj02", "bd09" or "EPSG:n"; ``epsg`` is the EPSG code
    when there is one (4326 for wgs84, 4490 for cgcs2000, None for gcj02/bd09).
    Build it with `parse_input_crs` (or use the WGS84/CGCS2000/GCJ02/BD09 constants).
    """

    name: str
    epsg: int | None = None

    def __post_init__(self) -> None:
        expected = {"wgs84": 4326, "cgcs2000": 4490, "gcj02": None, "bd09": None}
        if self.name in expected:
            ok = self.epsg == expected[self.name]
        else:
            ok = self.epsg is not None and self.name == f"EPSG:{self.epsg}"
        if not ok:
            raise ValueError(f"inconsistent InputCRS(name={self.name!r}, epsg={self.epsg!r})")

    @property
    def crs(self) -> CRS | None:
        """The pyproj CRS, or None for GCJ-02/BD-09 (which PROJ cannot express)."""
        return None if self.epsg is None else _epsg_crs(self.epsg)

    @property
    def is_projected(self) -> bool:
        """True when coordinates are x/y in a projection (e.g. Gauss-Krüger metres)."""
        crs = self.crs
        return bool(crs is not None and crs.is_projected)


WGS84: Final = InputCRS("wgs84", 4326)
CGCS2000: Final = InputCRS("cgcs2000", 4490)
GCJ02: Final = InputCRS("gcj02")
BD09: Final = InputCRS("bd09")

# Keys are lower-cased with spaces, "-" and "_" removed (see _normalise_name).
_NAMES: Final = {
    "wgs84": WGS84,
    "cgcs2000": CGCS2000,
    "gcj02": GCJ02,
    "gcj": GCJ02,
    "bd09": BD09,
    "bd09ll": BD09,  # Baidu's own API name for BD-09 lon/lat
}
_BY_EPSG: Final = {4326: WGS84, 4490: CGCS2000}
_ACCEPTED_HELP: Final = (
    "accepted: wgs84, cgcs2000, gcj02 (gcj-02), bd09 (bd-09), or an EPSG code "
    "(e.g. EPSG:4326, EPSG:4490, 4490, EPSG:4527 for CGCS2000 Gauss-Krüger zone 39)"
)
_EPSG_RE: Final = re.compile(r"(?:epsg:+)?(\d{1,9})")


def _normalise_name(text: str) -> str:
    """Lower-case and drop spaces, '-' and '_' so "GCJ-02", "gcj_02" and "WGS 84" all match."""
    return re.sub(r"[\s_\-]", "", text.lower())


@lru_cache(maxsize=128)
def _epsg_crs(code: int) -> CRS:
    """The pyproj CRS for an EPSG code (cached: parsing from the PROJ database is not free)."""
    return CRS.from_user_input(f"EPSG:{code}")


@lru_cache(maxsize=64)
def _transformer(source_epsg: int, target_epsg: int) -> Transformer:
    """A cached lon/lat-ordered transformer (pyproj >= 3.1 transformers are thread-safe)."""
    return Transformer.from_crs(source_epsg, target_epsg, always_xy=True)


def _invalid(text: str, problem: str = "is unknown") -> InvalidInput:
    """InvalidInput quoting the (truncated) bad value and listing what is accepted."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    return InvalidInput(
        f"coordinate system {shown!r} {problem}; {_ACCEPTED_HELP}",
        details={"value": shown, "accepted": [*_NAMED_SYSTEMS, "EPSG:n"]},
    )


def parse_input_crs(text: str | None) -> InputCRS:
    """The InputCRS a caller names (None/blank -> wgs84); InvalidInput for anything unknown."""
    if text is None:
        return WGS84
    raw = str(text)
    key = _normalise_name(raw)
    if not key:
        return WGS84
    named = _NAMES.get(key)
    if named is not None:
        return named
    match = _EPSG_RE.fullmatch(key)
    if match is None:
        raise _invalid(raw)
    code = int(match.group(1))
    if code in _BY_EPSG:
        return _BY_EPSG[code]
    try:
        crs = _epsg_crs(code)
    except CRSError:
        raise _invalid(raw) from None
    # Coordinates arrive as lon/lat or x/y pairs: geocentric, vertical, engineering... cannot be.
    if not (crs.is_geographic or crs.is_projected):
        raise _invalid(raw, f"is a {crs.type_name}, not a lon/lat or x/y system")
    return InputCRS(f"EPSG:{code}", code)


def to_storage(lon: npt.ArrayLike, lat: npt.ArrayLike, crs: InputCRS) -> Pair:
    """Coordinates in `crs` (x/y for projected codes) to WGS-84 lon/lat (EPSG:4326)."""
    x, y = _as_float_arrays(lon, lat)
    if crs.name in ("wgs84", "cgcs2000"):
        # CGCS2000 vs WGS-84 is centimetres (PROJ itself uses a ballpark no-op): identity.
        return x.copy(), y.copy()
    if crs.name == "gcj02":
        return gcj02_to_wgs84(x, y)
    if crs.name == "bd09":
        return bd09_to_wgs84(x, y)
    assert crs.epsg is not None  # guaranteed by InputCRS.__post_init__
    out_x, out_y = _transformer(crs.epsg, STORAGE_EPSG).transform(x, y)
    return np.asarray(out_x, dtype=np.float64), np.asarray(out_y, dtype=np.float64)


def from_storage(lon: npt.ArrayLike, lat: npt.ArrayLike, crs: InputCRS) -> Pair:
    """WGS-84 lon/lat to `crs` (e.g. GCJ-02 to overlay an Amap basemap): inverse of to_storage."""
    x, y = _as_float_arrays(lon, lat)
    if crs.name in ("wgs84", "cgcs2000"):
        return x.copy(), y.copy()
    if crs.name == "gcj02":
        return wgs84_to_gcj02(x, y)
    if crs.name == "bd09":
        return wgs84_to_bd09(x, y)
    assert crs.epsg is not None  # guaranteed by InputCRS.__post_init__
    out_x, out_y = _transformer(STORAGE_EPSG, crs.epsg).transform(x, y)
    return np.asarray(out_x, dtype=np.float64), np.asarray(out_y, dtype=np.float64)


def check_lonlat(lon: npt.ArrayLike, lat: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Mask of valid WGS-84 coordinates: finite, -180 <= lon <= 180 and -90 <= lat <= 90."""
    x, y = _as_float_arrays(lon, lat)
    return (
        np.isfinite(x) & np.isfinite(y) & (x >= -180.0) & (x <= 180.0) & (y >= -90.0) & (y <= 90.0)
    )
