"""Importing the `city` buildings (≈120k footprints): ours (validating, upserting) vs
geopandas `read_file` + `to_postgis` of the same file into the same PostGIS."""

from __future__ import annotations

import geopandas as gpd
from sqlalchemy import create_engine, text

from geo_service.ingest import ImportOptions, import_file
from tests.benchmarks.common import Result, bench_url, city_dir, scratch_engine, settings, timed


def run() -> list[Result]:
    """Time both pipelines; return the figures."""
    s = settings()
    folder = city_dir()
    engine = scratch_engine(s)
    path = folder / "buildings.shp"

    def empty() -> None:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE buildings CASCADE"))

    def ours() -> None:
        report = import_file(engine, s, "buildings", path, ImportOptions())
        assert report.rejected == [] and report.inserted + report.updated + report.unchanged > 0

    peer_engine = create_engine(bench_url(engine))

    def peer() -> None:
        gdf = gpd.read_file(path, engine="pyogrio")
        gdf.to_postgis("peer_buildings", peer_engine, if_exists="replace", index=False)

    first = timed(ours, setup=empty)
    again = timed(ours)  # same file over a full table: every row compared, nothing written
    theirs = timed(peer)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM buildings")).scalar_one()
    peer_engine.dispose()
    engine.dispose()
    return [
        Result(f"import {n:,} buildings (empty table)", first, "geopandas to_postgis", theirs),
        Result(f"re-import {n:,} buildings (no change)", again, "geopandas to_postgis", theirs),
    ]
