"""`geo-service assign` end to end (CSV in -> CSV out) on 1,000,000 points against the `city`
grids, vs a geopandas pipeline (read_csv, points_from_xy, sjoin, to_csv) on the same file."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_service.crs import parse_input_crs
from geo_service.grids.assign import assign_csv
from geo_service.ingest import ImportOptions, import_file
from tests.benchmarks.common import Result, city_dir, scratch_engine, settings, timed

N_POINTS = 1_000_000


def points_csv(folder: Path, bounds: tuple[float, float, float, float], n: int) -> Path:
    """n uniformly random points over `bounds` grown by ~200 m (some fall outside)."""
    path = folder / f"points-{n}.csv"
    if not path.exists():
        rng = np.random.default_rng(7)
        pad = 0.002
        lon = rng.uniform(bounds[0] - pad, bounds[2] + pad, n).round(7)
        lat = rng.uniform(bounds[1] - pad, bounds[3] + pad, n).round(7)
        pd.DataFrame({"id": np.arange(n), "lon": lon, "lat": lat}).to_csv(path, index=False)
    return path


def run() -> list[Result]:
    """Time both pipelines on the same file and grids."""
    s = settings()
    folder = city_dir()
    engine = scratch_engine(s)
    for kind in ("communities", "grids"):
        import_file(engine, s, kind, folder / f"{kind}.shp", ImportOptions())
    grids = gpd.read_file(folder / "grids.shp")
    source = points_csv(folder, tuple(grids.total_bounds), N_POINTS)
    out = folder / "assigned.csv"

    def ours() -> None:
        assign_csv(engine, source, out, parse_input_crs("wgs84"), s.grids.locate_tolerance_m)

    def peer() -> None:
        frame = pd.read_csv(source)
        points = gpd.GeoDataFrame(
            frame, geometry=gpd.points_from_xy(frame["lon"], frame["lat"]), crs=4326
        )
        joined = gpd.sjoin(
            points, grids[["code", "community", "geometry"]], how="left", predicate="within"
        )
        joined = joined[~joined.index.duplicated()]
        joined.drop(columns=["geometry", "index_right"]).to_csv(folder / "peer.csv", index=False)

    ours_s = timed(ours)
    peer_s = timed(peer)
    engine.dispose()
    return [
        Result(
            f"assign {N_POINTS:,} points (CSV→CSV, 3,900 grids)",
            ours_s,
            "geopandas read_csv+sjoin+to_csv",
            peer_s,
        )
    ]
