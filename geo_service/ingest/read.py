"""Reading import files: shapefile, GeoPackage, GeoJSON, CSV; encodings, CRS, field names.

The output is a frame with the kind's canonical columns, a `geometry` column in EPSG:4326
(absent for kinds without geometry), the source row number as index (1-based, as a GIS user
counts features), and a `_problem` column holding a reason for rows that cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS

from geo_service.coords import numbers
from geo_service.crs import STORAGE_EPSG, crs_label, parse_crs
from geo_service.errors import InvalidInput, NotFound
from geo_service.ingest.kinds import LAT_NAMES, LON_NAMES, KindSpec

VECTOR_SUFFIXES = {".shp", ".gpkg", ".geojson", ".json", ".fgb", ".gml", ".kml"}
TABLE_SUFFIXES = {".csv", ".txt", ".tsv"}
# Tried in order when a file does not say its encoding: UTF-8 first (it rejects most
# non-UTF-8 text), then GB18030, the superset of GBK/GB2312 used by Chinese agencies.
ENCODING_GUESSES = ("utf-8", "gb18030")


@dataclass
class Source:
    """A file read into canonical columns."""

    path: Path
    frame: pd.DataFrame
    source_crs: str | None
    encoding: str | None


def read_source(
    path: Path,
    spec: KindSpec,
    *,
    crs: str | None = None,
    encoding: str | None = None,
    field_map: dict[str, str] | None = None,
) -> Source:
    """Read `path` as data of kind `spec`; raise InvalidInput naming whatever is wrong."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"file not found: {path}")
    suffix = path.suffix.lower()
    enc: str | None
    if suffix in TABLE_SUFFIXES:
        table, enc = _read_csv(path, encoding)
        frame, source_crs = _csv_geometry(table, spec, crs, path)
    elif suffix in VECTOR_SUFFIXES or suffix == ".dbf":
        if suffix == ".shp":
            _check_shapefile_parts(path)
        enc = _shapefile_encoding(path, encoding) if suffix in (".shp", ".dbf") else encoding
        frame, source_crs = _read_vector(path, spec, crs, enc)
    else:
        raise InvalidInput(
            f"cannot read {path.name}: unsupported file type {suffix or '(none)'}; expected "
            "a shapefile (.shp), GeoPackage (.gpkg), GeoJSON (.geojson) or CSV (.csv)"
        )
    columns = _resolve_columns(list(frame.columns), spec, field_map or {}, path)
    out = pd.DataFrame(
        {name: frame[src].to_numpy() if src else None for name, src in columns.items()},
        index=pd.RangeIndex(1, len(frame) + 1, name="row"),
    )
    out["_problem"] = frame["_problem"].to_numpy() if "_problem" in frame else None
    if spec.geometry != "none":
        out["geometry"] = frame["geometry"].to_numpy()
        _flag_out_of_range(out, source_crs, path)
    return Source(path, out, source_crs, enc)


# -- vector files -----------------------------------------------------------------------------
def _read_vector(
    path: Path, spec: KindSpec, crs: str | None, encoding: str | None
) -> tuple[pd.DataFrame, str | None]:
    try:
        # Arrow transfer is ~30% faster than GDAL's row-by-row path for large tables.
        gdf = pyogrio.read_dataframe(path, encoding=encoding, use_arrow=True)
    except Exception as exc:  # pyogrio raises several error classes; all mean "unreadable"
        raise InvalidInput(f"cannot read {path.name}: {exc}") from exc
    if spec.geometry == "none":
        return pd.DataFrame(gdf.drop(columns="geometry", errors="ignore")), None
    if "geometry" not in gdf:
        raise InvalidInput(f"{path.name} has no geometry, but {spec.name} need one")
    file_crs = gdf.crs
    if crs:
        target = parse_crs(crs)
        gdf = gdf.set_crs(target, allow_override=True)
    elif file_crs is None:
        hint = " (no .prj file beside it)" if path.suffix.lower() == ".shp" else ""
        raise InvalidInput(
            f"{path.name} does not say its coordinate reference system{hint}; pass --crs, "
            "e.g. --crs EPSG:4490 (CGCS2000) or --crs EPSG:4527 (CGCS2000 Gauss-Krüger zone 39)"
        )
    source = CRS.from_user_input(gdf.crs)
    geoms = np.asarray(gdf.geometry.values)
    if shapely.has_z(geoms).any():
        geoms = shapely.force_2d(geoms)
    if source.to_epsg() != STORAGE_EPSG:
        try:
            geoms = gpd.GeoSeries(geoms, crs=source).to_crs(STORAGE_EPSG).to_numpy()
        except Exception as exc:
            raise InvalidInput(
                f"cannot transform {path.name} from {crs_label(source)} to EPSG:4326: {exc}"
            ) from exc
    frame = pd.DataFrame(gdf.drop(columns="geometry"))
    frame["geometry"] = geoms
    return frame, crs_label(source)


def _check_shapefile_parts(path: Path) -> None:
    """A shapefile is several files; name the one that is missing, truncated or damaged.

    GDAL reads a truncated .shp as features with empty geometries and a truncated .shx as an
    I/O error ending in "Success.", so the lengths the headers promise are checked first.
    """
    parts = {p.suffix.lower(): p for p in path.parent.glob(path.stem + ".*")}
    for part, what in ((".dbf", "attribute table"), (".shx", "shape index")):
        if part not in parts:
            raise InvalidInput(
                f"shapefile {path.name} is incomplete: {path.stem}{part} ({what}) is missing"
            )
    _shape_file_length(path, "shapes")
    index = _shape_file_length(parts[".shx"], "shape index")
    records = _dbf_records(parts[".dbf"])
    if (index - SHAPE_HEADER) // 8 != records:
        raise InvalidInput(
            f"shapefile {path.name} is damaged: {parts['.shx'].name} indexes "
            f"{(index - SHAPE_HEADER) // 8} shapes but {parts['.dbf'].name} has {records} rows"
        )


# The fixed header of .shp and .shx files (ESRI Shapefile Technical Description, 1998).
SHAPE_HEADER = 100


def _shape_file_length(part: Path, what: str) -> int:
    """The length in bytes a .shp or .shx header declares, checked against the file's."""
    try:
        with part.open("rb") as fh:
            header = fh.read(SHAPE_HEADER)
        actual = part.stat().st_size
    except OSError as exc:
        raise InvalidInput(f"cannot read {part.name}: {exc.strerror}") from exc
    if len(header) < SHAPE_HEADER or int.from_bytes(header[:4], "big") != 9994:
        raise InvalidInput(
            f"{part.name} is not a shapefile {what} file, or is truncated or damaged "
            f"({actual} bytes, no valid header)"
        )
    declared = int.from_bytes(header[24:28], "big") * 2  # in 16-bit words
    if actual < declared:
        raise InvalidInput(
            f"{part.name} is truncated or damaged: its header declares {declared} bytes, "
            f"the file has {actual}"
        )
    return declared


def _dbf_records(dbf: Path) -> int:
    """The number of rows a .dbf header declares, checked against the file's length."""
    try:
        with dbf.open("rb") as fh:
            header = fh.read(32)
        actual = dbf.stat().st_size
    except OSError as exc:
        raise InvalidInput(f"cannot read {dbf.name}: {exc.strerror}") from exc
    if len(header) < 32:
        raise InvalidInput(f"{dbf.name} is not a dBASE table (only {actual} bytes)")
    records = int.from_bytes(header[4:8], "little")
    header_len = int.from_bytes(header[8:10], "little")
    record_len = int.from_bytes(header[10:12], "little")
    declared = header_len + records * record_len
    if actual < declared:
        raise InvalidInput(
            f"{dbf.name} is truncated or damaged: its header declares {records} rows "
            f"({declared} bytes), the file has {actual} bytes"
        )
    return records


def _shapefile_encoding(path: Path, encoding: str | None) -> str:
    """The DBF's text encoding: --encoding, else the .cpg, else detected from the bytes.

    GDAL falls back to ISO-8859-1 when there is no .cpg, which silently garbles GBK names,
    so we always pass an explicit encoding, and check that the bytes really decode with it.
    """
    dbf = path.with_suffix(".dbf")
    if not dbf.exists():
        dbf = next(path.parent.glob(path.stem + ".[dD][bB][fF]"), dbf)
    text = _dbf_text(dbf)
    if encoding:
        _check_decodes(text, encoding, dbf.name, given=True)
        return encoding
    cpg = next(path.parent.glob(path.stem + ".[cC][pP][gG]"), None)
    if cpg is not None:
        declared = _cpg_encoding(cpg)
        if declared:
            _check_decodes(text, declared, dbf.name, given=False)
            return declared
    return _guess_encoding(text, dbf.name)


def _dbf_text(dbf: Path) -> bytes:
    try:
        data = dbf.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {dbf.name}: {exc.strerror}") from exc
    if len(data) < 32:
        raise InvalidInput(f"{dbf.name} is not a dBASE table (only {len(data)} bytes)")
    header_len = int.from_bytes(data[8:10], "little")
    return data[header_len:]


def _cpg_encoding(cpg: Path) -> str | None:
    value = cpg.read_text(errors="replace").strip()
    if not value:
        return None
    # ArcGIS writes code page numbers ("936" = GBK); Python knows them as cp936.
    return f"cp{value}" if value.isdigit() else value


def _check_decodes(data: bytes, encoding: str, name: str, *, given: bool) -> None:
    try:
        data.decode(encoding)
    except LookupError:
        raise InvalidInput(f"unknown text encoding {encoding!r} for {name}") from None
    except UnicodeDecodeError as exc:
        source = "--encoding" if given else "its .cpg file"
        other = next(e for e in ENCODING_GUESSES if e != encoding.lower().replace("_", "-"))
        raise InvalidInput(
            f"{name} is not valid {encoding} as {source} says (byte 0x{data[exc.start]:02X} "
            f"at offset {exc.start}); try --encoding {other}"
        ) from None


def _guess_encoding(data: bytes, name: str) -> str:
    for candidate in ENCODING_GUESSES:
        try:
            data.decode(candidate)
        except UnicodeDecodeError:
            continue
        return candidate
    raise InvalidInput(
        f"cannot tell the text encoding of {name}: it is neither UTF-8 nor GBK/GB18030; "
        "pass --encoding"
    )


# -- CSV ----------------------------------------------------------------------------------------
def _read_csv(path: Path, encoding: str | None) -> tuple[pd.DataFrame, str]:
    data = path.read_bytes()
    if encoding:
        _check_decodes(data, encoding, path.name, given=True)
        enc = encoding
    else:
        enc = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else _guess_encoding(data, path.name)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding=enc, sep=sep, skipinitialspace=True
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path.name} as CSV: {exc}") from exc
    return frame, enc


def _csv_geometry(
    raw: pd.DataFrame, spec: KindSpec, crs: str | None, path: Path
) -> tuple[pd.DataFrame, str | None]:
    """Point geometry from coordinate columns; CSV never says its CRS, so --crs is required."""
    if spec.geometry == "none":
        return raw, None
    if spec.geometry not in ("point", "building"):
        raise InvalidInput(f"{spec.name} need polygon or line geometry; CSV cannot carry it")
    lower = {c.lower(): c for c in raw.columns}
    lon_col = next((lower[n] for n in LON_NAMES if n in lower), None)
    lat_col = next((lower[n] for n in LAT_NAMES if n in lower), None)
    if lon_col is None or lat_col is None:
        raise InvalidInput(
            f"{path.name} has no coordinate columns: expected one of {', '.join(LON_NAMES)} "
            f"and one of {', '.join(LAT_NAMES)} (columns: {', '.join(raw.columns)})"
        )
    if not crs:
        raise InvalidInput(
            f"{path.name} is a CSV and does not say its coordinate reference system; pass "
            "--crs (e.g. --crs wgs84, --crs cgcs2000, --crs EPSG:4527)"
        )
    source = parse_crs(crs)
    lon, lat = numbers(raw[lon_col].to_numpy(object)), numbers(raw[lat_col].to_numpy(object))
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    problems = [
        f"coordinates are not numbers: {lon_col}={x!r}, {lat_col}={y!r}" if unusable else None
        for x, y, unusable in zip(raw[lon_col], raw[lat_col], bad, strict=True)
    ]
    points = shapely.points(np.where(bad, 0.0, lon), np.where(bad, 0.0, lat))
    if source.to_epsg() != STORAGE_EPSG:
        points = gpd.GeoSeries(points, crs=source).to_crs(STORAGE_EPSG).to_numpy()
    points[bad] = None
    frame = raw.drop(columns=[lon_col, lat_col]).copy()
    frame["geometry"] = points
    frame["_problem"] = problems
    return frame, crs_label(source)


# -- shared -------------------------------------------------------------------------------------
def _resolve_columns(
    available: list[str], spec: KindSpec, field_map: dict[str, str], path: Path
) -> dict[str, str | None]:
    """Canonical field -> source column, matching names case-insensitively."""
    lower = {c.lower(): c for c in available if c not in ("geometry", "_problem")}
    unknown = sorted(set(field_map) - set(spec.field_names))
    if unknown:
        raise InvalidInput(
            f"--map names unknown field(s) {', '.join(unknown)} for {spec.name}; "
            f"fields are: {', '.join(spec.field_names)}"
        )
    resolved: dict[str, str | None] = {}
    for field in spec.fields:
        wanted = field_map.get(field.name, field.name)
        source = lower.get(wanted.lower())
        if source is None and (field.required or field.name in field_map):
            raise InvalidInput(
                f"{path.name} has no field {wanted!r} for {spec.name}.{field.name} "
                f"(fields: {', '.join(lower.values()) or 'none'}); "
                f"map one with --map {field.name}=FIELD"
            )
        resolved[field.name] = source
    return resolved


def _flag_out_of_range(frame: pd.DataFrame, source_crs: str | None, path: Path) -> None:
    """Mark rows whose coordinates are not valid lon/lat; if all are, the CRS is wrong."""
    geoms = frame["geometry"].to_numpy()
    present = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    bounds = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):
        ok = (
            np.isfinite(bounds).all(axis=1)
            & (bounds[:, 0] >= -180)
            & (bounds[:, 2] <= 180)
            & (bounds[:, 1] >= -90)
            & (bounds[:, 3] <= 90)
        )
    bad = present & ~ok
    if not bad.any():
        return
    if bad.sum() == present.sum():
        x, y = bounds[bad][0, 0], bounds[bad][0, 1]
        raise InvalidInput(
            f"coordinates of {path.name} are not valid longitude/latitude after reading them "
            f"as {source_crs} (first: x={x:.6g}, y={y:.6g}); is the file in another CRS? "
            "pass the right one with --crs"
        )
    idx = np.flatnonzero(bad)
    frame.iloc[idx, frame.columns.get_loc("_problem")] = [
        f"coordinates out of range: x={bounds[i, 0]:.6g}, y={bounds[i, 1]:.6g}" for i in idx
    ]
