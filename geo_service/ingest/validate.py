"""Row validation and geometry repair for imports: pure, no database.

Takes the canonical frame from `read.py` and returns the rows ready to store plus a list of
issues (repaired or rejected rows, each with its reason). A repair is made only when it is
unambiguous: the two ways GEOS can rebuild an invalid polygon (`linework` and `structure`)
must agree on the area, otherwise the row is rejected, because guessing which part of a
self-crossing boundary the surveyor meant would silently move residents between grids.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from geo_service import coords
from geo_service.ingest.kinds import KindSpec

# Relative area difference above which the two repair methods "disagree".
_REPAIR_AGREEMENT = 1e-6
_POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass
class Issue:
    """A row that was repaired or rejected."""

    row: int
    code: str | None
    action: str  # "repaired" | "rejected"
    reason: str


@dataclass
class Validated:
    """Rows to store (canonical columns; geometry in `geom`, `footprint` for buildings)."""

    rows: pd.DataFrame
    issues: list[Issue] = field(default_factory=list)

    @property
    def rejected(self) -> list[Issue]:
        """Issues that kept a row out."""
        return [i for i in self.issues if i.action == "rejected"]

    @property
    def repaired(self) -> list[Issue]:
        """Issues fixed on the way in."""
        return [i for i in self.issues if i.action == "repaired"]


def validate(frame: pd.DataFrame, spec: KindSpec, *, code_pattern: str | None = None) -> Validated:
    """Check every row of `frame` against `spec`; repair what is unambiguous."""
    reasons: dict[int, list[str]] = {}
    repairs: dict[int, str] = {}
    out = pd.DataFrame(index=frame.index)
    for fld in spec.fields:
        values = frame[fld.name]
        if fld.type == "int":
            out[fld.name] = _ints(values, fld.name, reasons)
        else:
            out[fld.name] = _texts(values)
            if fld.required and fld.name != "code":
                for row in out.index[out[fld.name].isna()]:
                    reasons.setdefault(row, []).append(f"{fld.name} is empty")
    for row, problem in frame["_problem"].dropna().items():
        reasons.setdefault(int(row), []).append(str(problem))

    if spec.geometry != "none":
        out = _geometry(frame["geometry"].to_numpy(), spec, out, reasons, repairs)
    if "code" in out:
        _codes(out, spec, code_pattern, reasons)

    issues = [Issue(r, _code_of(out, r), "rejected", "; ".join(rs)) for r, rs in reasons.items()]
    issues += [
        Issue(r, _code_of(out, r), "repaired", why)
        for r, why in repairs.items()
        if r not in reasons
    ]
    issues.sort(key=lambda i: i.row)
    good = out.drop(index=list(reasons))
    return Validated(good, issues)


def _code_of(frame: pd.DataFrame, row: int) -> str | None:
    if "code" not in frame or row not in frame.index:
        return None
    value = frame.loc[[row], "code"].iloc[0]
    return None if value is None or pd.isna(value) else str(value)


# -- attributes -----------------------------------------------------------------------------
def _texts(values: pd.Series) -> pd.Series:
    """Trimmed strings; empty becomes None; integral floats lose their '.0' (numeric DBF codes)."""
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & (values % 1 == 0)
        text = values.astype(object).where(~whole, values[whole].astype("Int64").astype(str))
        text = (
            text.astype(object)
            .where(values.notna(), None)
            .map(lambda v: None if v is None else str(v))
        )
    elif pd.api.types.is_integer_dtype(values):
        text = values.astype(str).astype(object)
    elif pd.api.types.is_string_dtype(values) and not pd.api.types.is_object_dtype(values):
        # Arrow-backed strings: strip in C++, then one conversion to Python objects.
        stripped = values.str.strip()
        stripped = stripped.where(stripped != "")
        return pd.Series(stripped.to_numpy(dtype=object, na_value=None), index=values.index)
    else:
        text = values.astype(object)
        present = text.notna()
        text = text.where(~present, text[present].astype(str).str.strip())
    return text.where(text.notna() & (text != ""), None).astype(object)


def _ints(values: pd.Series, name: str, reasons: dict[int, list[str]]) -> pd.Series:
    """Whole numbers >= 0; anything else is a reason naming the bad value."""
    numbers = pd.Series(coords.numbers(values.to_numpy(object)), index=values.index)
    if not pd.api.types.is_numeric_dtype(values):
        blank = values.isna() | (values.astype(str).str.strip() == "")
    else:
        blank = values.isna()
    bad = numbers.isna() | (numbers % 1 != 0)
    for row in values.index[blank]:
        reasons.setdefault(int(row), []).append(f"{name} is empty")
    for row in values.index[bad & ~blank]:
        reasons.setdefault(int(row), []).append(f"{name} {values[row]!r} is not a whole number")
    for row in values.index[~bad & (numbers < 0)]:
        reasons.setdefault(int(row), []).append(f"{name} {values[row]!r} is negative")
    return numbers.where(~bad).astype("Int64")


def _codes(
    out: pd.DataFrame, spec: KindSpec, pattern: str | None, reasons: dict[int, list[str]]
) -> None:
    codes = out["code"]
    for row in codes.index[codes.isna()]:
        if row not in reasons:  # roads derive absent codes from geometry, so only a lost row
            reasons.setdefault(row, []).append("code is empty")
    if pattern:
        regex = re.compile(pattern)
        for row, code in codes.dropna().items():
            if not regex.fullmatch(code):
                reasons.setdefault(row, []).append(
                    f"code {code!r} does not have the configured shape {pattern}"
                )
    dup = codes[codes.notna() & codes.duplicated(keep=False)]
    for code, rows in dup.groupby(dup).groups.items():
        for row in rows:
            others = ", ".join(str(r) for r in rows if r != row)
            reasons.setdefault(row, []).append(f"duplicate code {code!r} (also on row {others})")


# -- geometry -------------------------------------------------------------------------------------
def _geometry(
    geoms: np.ndarray,
    spec: KindSpec,
    out: pd.DataFrame,
    reasons: dict[int, list[str]],
    repairs: dict[int, str],
) -> pd.DataFrame:
    """Check and normalise geometry; returns `out` with `geom` (and `footprint`) columns."""
    rows = out.index.to_numpy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    for row in rows[missing]:
        if row not in reasons:  # an unreadable coordinate already explains the missing geometry
            reasons.setdefault(int(row), []).append("geometry is empty")
    types = shapely.get_type_id(geoms)
    valid = shapely.is_valid(geoms)
    fixed = np.array(geoms, dtype=object)
    for i in np.flatnonzero(~missing & ~valid):
        geom, why = _repair(geoms[i])
        if geom is None:
            reasons.setdefault(int(rows[i]), []).append(why)
        else:
            fixed[i] = geom
            repairs[int(rows[i])] = why
    fixed[missing] = None
    names = np.array(
        [
            "Point",
            "LineString",
            "LinearRing",
            "Polygon",
            "MultiPoint",
            "MultiLineString",
            "MultiPolygon",
            "GeometryCollection",
        ],
        dtype=object,
    )
    type_names = np.where(types >= 0, names[np.clip(types, 0, 7)], np.array(None, dtype=object))

    if spec.geometry == "polygon":
        _expect(type_names, _POLYGONAL, rows, missing, reasons, spec)
        out["geom"] = fixed  # ST_Multi in the database makes every polygon a MultiPolygon
    elif spec.geometry == "point":
        _expect(
            type_names,
            ("Point",),
            rows,
            missing,
            reasons,
            spec,
            single_multi="MultiPoint",
            geoms=fixed,
        )
        out["geom"] = _single_points(fixed)
    elif spec.geometry == "building":
        _expect(
            type_names,
            ("Point", *_POLYGONAL),
            rows,
            missing,
            reasons,
            spec,
            single_multi="MultiPoint",
            geoms=fixed,
        )
        is_poly = np.isin(type_names, _POLYGONAL)
        footprint = fixed.copy()
        footprint[~is_poly] = None
        located = fixed.copy()
        located[is_poly] = None
        points = _single_points(located)
        points[is_poly] = _point_inside(fixed[is_poly])
        out["geom"] = points
        out["footprint"] = footprint
    elif spec.geometry == "line":
        _expect(type_names, ("LineString", "MultiLineString"), rows, missing, reasons, spec)
        return _explode_lines(fixed, out)
    return out


def _repair(geom: BaseGeometry) -> tuple[BaseGeometry | None, str]:
    """Repair an invalid geometry when the result does not depend on the method."""
    why = shapely.is_valid_reason(geom)
    if geom.geom_type not in _POLYGONAL:
        # Lines and points are only invalid through too few points or NaN: nothing to guess.
        return None, f"invalid geometry ({why})"
    try:
        a = _polygonal(shapely.make_valid(geom, method="linework"))
        b = _polygonal(shapely.make_valid(geom, method="structure", keep_collapsed=False))
    except shapely.errors.GEOSException as exc:
        return None, f"invalid geometry ({why}) that cannot be repaired: {exc}"
    if a is None or b is None or a.area == 0:
        return None, f"invalid geometry ({why}) with no area left after repair"
    if abs(a.area - b.area) > _REPAIR_AGREEMENT * max(a.area, b.area):
        return None, f"invalid geometry ({why}) that can be repaired in more than one way"
    return a, f"repaired invalid geometry ({why})"


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in _POLYGONAL and not g.is_empty]
    if not parts:
        return None
    return shapely.multipolygons(
        [p for g in parts for p in (shapely.get_parts(g) if g.geom_type == "MultiPolygon" else [g])]
    )


def _expect(
    type_names: np.ndarray,
    allowed: tuple[str, ...],
    rows: np.ndarray,
    missing: np.ndarray,
    reasons: dict[int, list[str]],
    spec: KindSpec,
    *,
    single_multi: str | None = None,
    geoms: np.ndarray | None = None,
) -> None:
    for i in np.flatnonzero(~missing):
        name = type_names[i]
        if name in allowed:
            continue
        if (
            name == single_multi
            and geoms is not None
            and geoms[i] is not None
            and shapely.get_num_geometries(geoms[i]) == 1
        ):
            continue
        reasons.setdefault(int(rows[i]), []).append(
            f"{spec.name} need {' or '.join(allowed)} geometry, got {name}"
        )


def _single_points(geoms: np.ndarray) -> np.ndarray:
    """Single-part MultiPoints (as some tools write every point) become Points."""
    out = np.array(geoms, dtype=object)
    multi = shapely.get_type_id(out) == 4
    out[multi] = shapely.get_geometry(out[multi], 0)
    return out


def _point_inside(footprints: np.ndarray) -> np.ndarray:
    """The centroid when it lies inside the footprint (the natural 'location'), else a point
    guaranteed inside (L-shaped or courtyard buildings)."""
    if len(footprints) == 0:
        return np.array([], dtype=object)
    points = shapely.centroid(footprints)
    outside = ~shapely.contains_properly(footprints, points)
    points[outside] = shapely.point_on_surface(footprints[outside])
    return points


def _explode_lines(geoms: np.ndarray, out: pd.DataFrame) -> pd.DataFrame:
    """One row per LineString part (index = source row, repeated); absent codes derived from
    the geometry so that re-imports match."""
    records: list[tuple[Any, ...]] = []
    for row, geom in zip(out.index, geoms, strict=True):
        base, name = out.at[row, "code"], out.at[row, "name"]
        pieces = list(shapely.get_parts(geom)) if geom is not None else [None]
        for k, piece in enumerate(pieces):
            code: str | None
            if base and len(pieces) > 1:
                code = f"{base}#{k + 1}"
            else:
                code = base or (_geometry_code(piece) if piece is not None else None)
            records.append((row, code, name, piece))
    rows, codes, names, parts = zip(*records, strict=True) if records else ((), (), (), ())
    return pd.DataFrame(
        {"code": codes, "name": names, "geom": parts}, index=pd.Index(rows, name="row")
    )


def _geometry_code(geom: BaseGeometry) -> str:
    """A stable code for an uncoded road: a hash of its coordinates rounded to ~1 cm."""
    coords = np.round(shapely.get_coordinates(geom), 7)
    return "h" + hashlib.sha1(coords.tobytes()).hexdigest()[:16]
