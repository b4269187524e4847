"""`assign` on 300,000 points over a corner of the `city` grids (12 communities, 837 grids)
agrees, point for point, with an independent shapely/geopandas computation of the same rules.
(The million points over the whole city are `make bench`'s; a test needs the rules, not the
scale, and importing the whole city's grids, topology included, took half a minute.)"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from geo_service.crs import parse_input_crs
from geo_service.grids.assign import assign_csv
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from geo_service.synth import generate_city

N = 300_000
TOLERANCE_M = 50.0


def independent(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame) -> pd.DataFrame:
    """The locate rules computed with geopandas alone: (status, grid_code) per point."""
    covering = gpd.sjoin(points, grids[["code", "geometry"]], predicate="covered_by")
    interior = gpd.sjoin(points, grids[["code", "geometry"]], predicate="within")
    n_cover = covering.groupby(level=0).size().reindex(points.index, fill_value=0)
    n_interior = interior.groupby(level=0).size().reindex(points.index, fill_value=0)
    smallest = covering.groupby(level=0)["code"].min().reindex(points.index)
    status = np.select(
        [n_cover.eq(1) & n_interior.eq(1), n_cover.gt(1) & n_interior.gt(0), n_cover.gt(0)],
        ["inside", "ambiguous", "boundary"],
        default="outside",
    )
    result = pd.DataFrame({"status": status, "grid_code": smallest, "distance": 0.0})
    lonely = points[n_cover.eq(0).to_numpy()]
    metric = grids.to_crs(32650)[["code", "geometry"]]
    near = gpd.sjoin_nearest(
        lonely.to_crs(32650), metric, max_distance=TOLERANCE_M, distance_col="distance"
    )
    near = near.sort_values(["distance", "code"]).groupby(level=0).first()
    result.loc[near.index, ["status", "grid_code", "distance"]] = np.column_stack(
        [np.full(len(near), "nearest"), near["code"], near["distance"]]
    )
    result.loc[lonely.index.difference(near.index), "distance"] = np.nan
    return result


@pytest.mark.slow
def test_assign_matches_geopandas_point_for_point(db: Engine, settings: Settings, tmp_path: Path):
    city = generate_city("city", seed=3)
    x0, y0, x1, y1 = city.communities.total_bounds
    middle = city.communities.to_crs(32650).centroid.to_crs(4326)
    corner = city.communities[
        (middle.x < x0 + (x1 - x0) * 0.45) & (middle.y < y0 + (y1 - y0) * 0.45)
    ]
    grids = city.grids[city.grids["community"].isin(corner["code"])]
    assert (len(corner), len(grids)) == (12, 837)
    for kind, frame in (("communities", corner), ("grids", grids)):
        path = tmp_path / f"{kind}.shp"
        frame.to_file(path, encoding="UTF-8")
        import_file(db, settings, kind, path, ImportOptions())
    rng = np.random.default_rng(11)
    x0, y0, x1, y1 = grids.total_bounds
    lon = rng.uniform(x0 - 0.002, x1 + 0.002, N).round(7)
    lat = rng.uniform(y0 - 0.002, y1 + 0.002, N).round(7)
    source = tmp_path / "points.csv"
    pd.DataFrame({"id": np.arange(N), "lon": lon, "lat": lat}).to_csv(source, index=False)

    out = tmp_path / "assigned.csv"
    assign_csv(db, source, out, parse_input_crs("wgs84"), TOLERANCE_M)
    ours = pd.read_csv(out, dtype={"grid_code": str, "community_code": str})
    assert ours["id"].tolist() == list(range(N))

    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=4326)
    theirs = independent(points, grids)
    # UTM distances differ from geodesic ones by ~0.1%: only points within half a metre of
    # the tolerance may legitimately disagree, so they are left out of the comparison.
    far = pd.to_numeric(theirs["distance"], errors="coerce")
    borderline = (far - TOLERANCE_M).abs() < 0.5
    same = (ours["status"] == theirs["status"]) & (
        ours["grid_code"].fillna("") == theirs["grid_code"].fillna("")
    )
    assert borderline.mean() < 0.001
    assert same[~borderline].all(), ours[~same & ~borderline].head().to_dict("records")
    assert (ours["status"] == "inside").mean() > 0.85  # the rest: the margin round the grids
    assert (ours["status"] == "nearest").sum() > 1000
