"""`geo-service assign` end to end (CSV in -> CSV out) on 1,000,000 points, against a
geopandas pipeline (read_csv, points_from_xy, sjoin, to_csv) on the same file and polygons,
the two run in turns (ours, peer, ours, peer, ...), the same number of times:

- the `city` grids (3,906 grids), points uniform over their extent grown by ~200 m;
- a held-out set, made here and nowhere tuned on: the city's 56 communities merged into 33
  large polygons (each the smallest merged with the neighbour it shares most boundary with,
  so they keep the streets' detail and tile the city), imported as 33 communities of one
  grid each into a database of their own, and 1,000,000 other points (another seed) over
  their extent.
Each run's answers are compared after the timing: every point that both place in a polygon
must be placed in the same one.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo_service.crs import parse_input_crs
from geo_service.grids.assign import assign_csv
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests.benchmarks.common import (
    Result,
    alternated,
    city_dir,
    load_note,
    scratch_engine,
    settings,
    spread,
)

N_POINTS = 1_000_000
REPEAT = 5
HELD_OUT_POLYGONS = 33


def points_csv(
    folder: Path, bounds: tuple[float, float, float, float], n: int, seed: int = 7
) -> Path:
    """n uniformly random points over `bounds` grown by ~200 m (some fall outside)."""
    path = folder / (f"points-{n}.csv" if seed == 7 else f"points-{n}-seed{seed}.csv")
    if not path.exists():
        rng = np.random.default_rng(seed)
        pad = 0.002
        lon = rng.uniform(bounds[0] - pad, bounds[2] + pad, n).round(7)
        lat = rng.uniform(bounds[1] - pad, bounds[3] + pad, n).round(7)
        pd.DataFrame({"id": np.arange(n), "lon": lon, "lat": lat}).to_csv(path, index=False)
    return path


def held_out(folder: Path) -> Path:
    """The held-out polygons (communities.shp and grids.shp in a folder of their own)."""
    out = folder / f"held-out-{HELD_OUT_POLYGONS}"
    if (out / "grids.shp").exists():
        return out
    communities = gpd.read_file(folder / "communities.shp")
    shapes = list(communities.geometry)
    while len(shapes) > HELD_OUT_POLYGONS:
        small = min(range(len(shapes)), key=lambda i: shapes[i].area)
        shared = [
            (shapes[small].boundary.intersection(shapes[j].boundary).length, j)
            for j in range(len(shapes))
            if j != small
        ]
        _, other = max(shared)
        merged = shapely.union(shapes[small], shapes[other]).buffer(0)
        shapes = [s for i, s in enumerate(shapes) if i not in (small, other)] + [merged]
    codes = [f"3407990{i + 1:05d}" for i in range(len(shapes))]
    out.mkdir(parents=True, exist_ok=True)
    frame = gpd.GeoDataFrame(
        {"code": codes, "name": [f"合并片区{i + 1}" for i in range(len(shapes))]},
        geometry=shapes,
        crs=communities.crs,
    )
    frame.to_file(out / "communities.shp", encoding="utf-8")
    grids = frame.assign(
        code=[f"{c}001" for c in codes], name=[f"{n}网格" for n in frame["name"]], community=codes
    )
    grids[["code", "name", "community", "geometry"]].to_file(out / "grids.shp", encoding="utf-8")
    return out


def run() -> list[Result]:
    """Time both pipelines on the city's grids, then on the held-out polygons."""
    s = settings()
    folder = city_dir()
    rows = [_compare(s, folder, "geo_bench_assign", "3,906 city grids", seed=7)]
    rows.append(
        _compare(
            s,
            held_out(folder),
            "geo_bench_assign_held_out",
            f"held-out set: {HELD_OUT_POLYGONS} large polygons, other points",
            seed=21,
            points_folder=folder,
        )
    )
    return rows


def _compare(
    s: Settings,
    polygons: Path,
    database: str,
    what: str,
    seed: int,
    points_folder: Path | None = None,
) -> Result:
    engine = scratch_engine(s, database)
    for kind in ("communities", "grids"):
        import_file(engine, s, kind, polygons / f"{kind}.shp", ImportOptions())
    grids = gpd.read_file(polygons / "grids.shp")
    work = points_folder or polygons
    source = points_csv(work, tuple(grids.total_bounds), N_POINTS, seed)
    out, peer_out = work / "assigned.csv", work / "peer.csv"

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
        joined.drop(columns=["geometry", "index_right"]).to_csv(peer_out, index=False)

    times = alternated({"ours": ours, "peer": peer}, REPEAT)
    engine.dispose()
    agree = _agreement(out, peer_out)
    return Result(
        f"assign {N_POINTS:,} points (CSV→CSV, {what}), median of {REPEAT} in turns "
        f"(ours {spread(times['ours'])}, peer {spread(times['peer'])}; {load_note()}; {agree})",
        statistics.median(times["ours"]),
        "geopandas read_csv+sjoin+to_csv",
        statistics.median(times["peer"]),
    )


def _agreement(ours: Path, peer: Path) -> str:
    """How the last runs' answers compare: points both placed inside, and the same grid."""
    a = pd.read_csv(ours, usecols=["id", "grid_code", "status"], dtype={"grid_code": str})
    b = pd.read_csv(peer, usecols=["id", "code"], dtype={"code": str})
    both = a.merge(b, on="id")
    inside = both[(both["status"] == "inside") & both["code"].notna()]
    same = int((inside["grid_code"] == inside["code"]).sum())
    if same != len(inside):
        raise RuntimeError(f"assign: {len(inside) - same} points in another grid than geopandas'")
    return f"{same:,} points inside for both, each in the same grid"
