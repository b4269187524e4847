"""Small planted datasets written as real files, built in metres (UTM 50N) near Tongling."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
from pyproj import Transformer
from shapely import affinity
from shapely.geometry import Point, Polygon, box

UTM = "EPSG:32650"
_to_utm = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
X0, Y0 = _to_utm.transform(117.81, 30.93)


def rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    """A rectangle given in metres from the planted origin."""
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def frame(rows: list[dict], crs: str = UTM) -> gpd.GeoDataFrame:
    """A GeoDataFrame in WGS-84 from rows whose geometry is in metres."""
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=crs).to_crs(4326)


def communities(n: int = 2) -> gpd.GeoDataFrame:
    """n side-by-side 400 m × 400 m communities."""
    return frame(
        [
            {
                "code": f"340705001{k:03d}",
                "name": f"社区{k}",
                "geometry": rect(400 * (k - 1), 0, 400 * k, 400),
            }
            for k in range(1, n + 1)
        ]
    )


def grids(n_communities: int = 2) -> gpd.GeoDataFrame:
    """Four 200 m × 200 m grids tiling each community."""
    rows = []
    for k in range(1, n_communities + 1):
        for j, (gx, gy) in enumerate([(0, 1), (1, 1), (0, 0), (1, 0)], start=1):
            x = 400 * (k - 1) + 200 * gx
            rows.append(
                {
                    "code": f"340705001{k:03d}{j:03d}",
                    "name": f"社区{k}第{j}网格",
                    "community": f"340705001{k:03d}",
                    "geometry": rect(x, 200 * gy, x + 200, 200 * gy + 200),
                }
            )
    return frame(rows)


def buildings(n: int = 8) -> gpd.GeoDataFrame:
    """Footprints spread across the first community, 12 households each."""
    rows = []
    for i in range(n):
        x, y = 30 + (i % 4) * 90, 40 + (i // 4) * 200
        rows.append(
            {
                "code": f"B{i:07d}",
                "address": f"安徽省铜陵市铜官区长江西路{2 * i + 1}号金山花园{i + 1}栋",
                "name": f"金山花园{i + 1}栋",
                "households": 12,
                "geometry": affinity.rotate(rect(x, y, x + 20, y + 40), 10),
            }
        )
    return frame(rows)


def centers() -> gpd.GeoDataFrame:
    """Two neighbourhood centres."""
    return frame(
        [
            {
                "code": "C001",
                "name": "金山邻里中心",
                "kind": "邻里中心",
                "geometry": Point(X0 + 100, Y0 + 100),
            },
            {
                "code": "C002",
                "name": "幸福邻里中心",
                "kind": "邻里中心",
                "geometry": Point(X0 + 600, Y0 + 300),
            },
        ]
    )


def workers(n_communities: int = 2) -> pd.DataFrame:
    """One worker per grid."""
    return pd.DataFrame(
        [
            {
                "code": f"W{k}{j}",
                "name": f"张{k}{j}",
                "phone": f"1390000{k:02d}{j:02d}",
                "grid": f"340705001{k:03d}{j:03d}",
            }
            for k in range(1, n_communities + 1)
            for j in range(1, 5)
        ]
    )


def write(
    gdf: gpd.GeoDataFrame,
    path: Path,
    *,
    crs: str | None = None,
    encoding: str = "UTF-8",
    cpg: bool = True,
    prj: bool = True,
) -> Path:
    """Write a shapefile (or other format by suffix), optionally reprojected and stripped."""
    if crs:
        gdf = gdf.to_crs(crs)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".shp":
        gdf.to_file(path, encoding=encoding, engine="pyogrio")
        if not cpg:
            path.with_suffix(".cpg").unlink(missing_ok=True)
        if not prj:
            path.with_suffix(".prj").unlink(missing_ok=True)
    else:
        gdf.to_file(path, engine="pyogrio")
    return path


PLANTED_COMMUNITY = "340705001001"


def plant_grids(
    engine, settings, folder: Path, grids: dict, workers: list[tuple[str, str, str, str]]
):
    """Import one community (金山社区) holding `grids` ({code: polygon in lon/lat}) and the
    workers (code, name, phone, grid), through the real import path."""
    from geo_service.ingest import ImportOptions, import_file

    folder.mkdir(parents=True, exist_ok=True)
    gpd.GeoDataFrame(
        {"code": [PLANTED_COMMUNITY], "name": ["金山社区"]},
        geometry=[box(117.799, 30.927, 117.807, 30.933)],
        crs=4326,
    ).to_file(folder / "c.geojson")
    gpd.GeoDataFrame(
        {
            "code": list(grids),
            "name": [f"第{i}网格" for i in range(1, len(grids) + 1)],
            "community": [PLANTED_COMMUNITY] * len(grids),
        },
        geometry=list(grids.values()),
        crs=4326,
    ).to_file(folder / "g.geojson")
    pd.DataFrame(workers, columns=["code", "name", "phone", "grid"]).to_csv(
        folder / "w.csv", index=False
    )
    for kind, name in (("communities", "c.geojson"), ("grids", "g.geojson"), ("workers", "w.csv")):
        import_file(engine, settings, kind, folder / name, ImportOptions())
    return engine
