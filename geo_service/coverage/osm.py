"""`geo-service import osm FILE.osm.pbf`: the walkable network (and optionally buildings and
community centres) of a real OpenStreetMap extract, through the ordinary importer.

pyrosm reads the extract (offline, no server) and splits ways at the OSM nodes they share;
ways that cross without a shared node (bridges, tunnels) stay apart. Each kind then goes
through `import_file` like any other file, so validation, idempotency by code and data
versions (which mark coverage stale) are the same. OSM carries no household counts: a
building counts `building:flats` households when tagged; else a home (see HOMES) counts its
floor area, footprint (m², in the UTM zone of the extract) times `building:levels`
(GEO_DIVISION_DEFAULT_LEVELS when untagged), divided by GEO_DIVISION_M2_PER_HOUSEHOLD,
rounded, at least 1; any other building (a church, a school, a shop, a shed) counts 0.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from sqlalchemy import Engine

from geo_service.errors import InvalidInput, NotFound
from geo_service.ingest import ImportOptions, import_file
from geo_service.ingest.importer import ImportReport
from geo_service.settings import Settings

CENTER_AMENITIES = ("community_centre", "social_centre", "social_facility")
# Named places residents name instead of an address (the geocoder's `place`), as `pois`.
POI_AMENITIES = (
    "school", "kindergarten", "college", "university", "hospital", "clinic", "doctors",
    "pharmacy", "marketplace", "library", "police", "post_office", "bank", "townhall",
    "place_of_worship", "community_centre", "social_centre",
)  # fmt: skip
PARTS = ("roads", "buildings", "centers", "pois")
# `building=` values of homes (OSM's residential buildings); `yes` says nothing more, and most
# buildings of a city are homes, so it counts as one.
HOMES = (
    "yes", "residential", "apartments", "house", "detached", "semidetached_house", "terrace",
    "dormitory", "bungalow", "cabin", "farm", "houseboat", "static_caravan", "hut", "stilt_house",
)  # fmt: skip


def import_osm(
    engine: Engine,
    settings: Settings,
    path: Path,
    options: dict[str, str] | None = None,
    rejects_dir: Path | None = None,
) -> list[ImportReport]:
    """Import the walkable ways as roads, then buildings and centres (each one transaction).

    `options`: buildings=no / centers=no / pois=no to skip those kinds (named amenities
    become `pois`, the places the geocoder finds by name). Rows the importer rejects
    (e.g. a building outline with too few points) are left out and written, with their
    reasons, to `rejects_dir` (default: rejects/ in the data folder)."""
    opts = options or {}
    unknown = sorted(set(opts) - {"buildings", "centers", "pois"})
    if unknown:
        raise InvalidInput(
            f"osm import: unknown option(s) {unknown}; use buildings=no, centers=no, pois=no"
        )
    if not path.exists():
        raise NotFound(f"no such file: {path}")
    if not path.name.endswith(".pbf"):
        raise InvalidInput(f"{path.name}: an OpenStreetMap extract must be a .osm.pbf file")
    frames = read_osm(
        path,
        buildings=opts.get("buildings", "yes") != "no",
        centers=opts.get("centers", "yes") != "no",
        pois=opts.get("pois", "yes") != "no",
        m2_per_household=settings.division.m2_per_household,
        default_levels=settings.division.default_levels,
    )
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in PARTS:
            frame = frames.get(kind)
            if frame is None or frame.empty:
                continue
            file = Path(tmp) / f"{kind}.gpkg"
            frame.to_file(file, engine="pyogrio")
            stem = path.name.removesuffix(".pbf").removesuffix(".osm")
            folder = rejects_dir or settings.database.data_dir / "rejects"
            rejects = folder / f"{stem}.{kind}.rejects.csv"
            report = import_file(
                engine, settings, kind, file, ImportOptions(keep_going=True, rejects_path=rejects)
            )
            report.source = f"{path}#{kind}"
            reports.append(report)
    return reports


def read_osm(
    path: Path,
    *,
    buildings: bool = True,
    centers: bool = True,
    pois: bool = False,
    m2_per_household: float = 100.0,
    default_levels: int = 1,
) -> dict[str, gpd.GeoDataFrame]:
    """The walkable network split at shared nodes, and optionally buildings (households
    estimated as the module says) and centres, in the import schema (code, name, ...;
    WGS-84)."""
    try:
        import pyrosm
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise InvalidInput("reading OSM extracts needs pyrosm: pip install pyrosm") from exc
    try:
        osm = pyrosm.OSM(str(path))
        edges = osm.get_network(network_type="walking", nodes=True)[1]
    except Exception as exc:
        raise InvalidInput(f"{path.name} is not a readable OSM extract: {exc}") from exc
    out: dict[str, gpd.GeoDataFrame] = {}
    if edges is not None and len(edges):
        edges = edges[edges.geom_type == "LineString"]
        roads = gpd.GeoDataFrame(
            {
                "code": [
                    f"osm-{i}-{u}-{v}"
                    for i, u, v in zip(edges["id"], edges["u"], edges["v"], strict=True)
                ],
                "name": edges.get("name", pd.Series([None] * len(edges))).astype(object).to_numpy(),
            },
            geometry=edges.geometry.to_numpy(),
            crs=4326,
        )
        out["roads"] = roads.drop_duplicates("code")
    if buildings:
        found = osm.get_buildings()
        if found is not None and len(found):
            out["buildings"] = _buildings(found, m2_per_household, default_levels)
    if centers:
        found = osm.get_pois(custom_filter={"amenity": list(CENTER_AMENITIES)})
        if found is not None and len(found):
            out["centers"] = _points(found)
    if pois:
        found = osm.get_pois(custom_filter={"amenity": list(POI_AMENITIES)})
        if found is not None and len(found):
            named = found[_text(found, "name").notna().to_numpy()]  # a place is named
            if len(named):
                out["pois"] = _points(named)
    return out


def _points(found: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """OSM amenities in the point import schema (code, name, kind), a point inside each."""
    return gpd.GeoDataFrame(
        {
            "code": [f"osm-{t}-{i}" for t, i in zip(found["osm_type"], found["id"], strict=True)],
            "name": _text(found, "name").fillna(_text(found, "amenity")).to_numpy(),
            "kind": _text(found, "amenity").to_numpy(),
        },
        geometry=found.geometry.representative_point().to_numpy(),
        crs=4326,
    )


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column in frame:
        return frame[column].astype(object).where(frame[column].notna(), None)
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _buildings(
    found: gpd.GeoDataFrame, m2_per_household: float, default_levels: int
) -> gpd.GeoDataFrame:
    """OSM buildings in the import schema; the address from addr:* tags, else the name,
    else the OSM id; households as the module says."""
    code = [f"osm-{t}-{i}" for t, i in zip(found["osm_type"], found["id"], strict=True)]
    street, number, name = (
        _text(found, "addr:street"),
        _text(found, "addr:housenumber"),
        _text(found, "name"),
    )
    address = [
        " ".join(p for p in (s, n) if p) or nm or c
        for s, n, nm, c in zip(street, number, name, code, strict=True)
    ]
    return gpd.GeoDataFrame(
        {
            "code": code,
            "address": address,
            "name": name.to_numpy(),
            "households": households(
                _text(found, "tags").to_numpy(),
                _text(found, "building").to_numpy(),
                _text(found, "building:levels").to_numpy(),
                found.geometry.to_crs(found.geometry.estimate_utm_crs()).area.to_numpy(),
                m2_per_household,
                default_levels,
            ),
        },
        geometry=found.geometry.to_numpy(),
        crs=4326,
    )


def households(
    tags: np.ndarray,
    kinds: np.ndarray,
    levels: np.ndarray,
    footprint_m2: np.ndarray,
    m2_per_household: float,
    default_levels: int,
) -> list[int]:
    """Households of each building: `building:flats` when tagged as a whole number; else, for
    a home, footprint x levels / m2_per_household, rounded, at least 1; else 0."""
    out = []
    for tag, kind, level, area in zip(tags, kinds, levels, footprint_m2, strict=True):
        flats = _whole(_tag(tag, "building:flats"))
        if flats is not None:
            out.append(flats)
        elif kind in HOMES:
            floors = _whole(level if level is not None else _tag(tag, "building:levels"))
            floor_area = float(area) * (floors if floors else default_levels)
            out.append(max(1, round(floor_area / m2_per_household)))
        else:
            out.append(0)
    return out


def _tag(tags: Any, key: str) -> Any:
    """One key of pyrosm's JSON `tags` column (the tags it gives no column of its own)."""
    try:
        return json.loads(tags).get(key) if isinstance(tags, str) else None
    except (ValueError, AttributeError):
        return None


def _whole(value: Any) -> int | None:
    """A tag's value as a whole number of at least 1 ('5', '5.0'), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number >= 1 else None
