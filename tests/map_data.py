"""Planted map data for the layer, feature and tile tests, and tile arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

from sqlalchemy import Engine, text

from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests import factories as f
from tests.conftest import DATA_TABLES


def plant(engine: Engine, settings: Settings, folder: Path) -> Engine:
    """Empty tables, then 2 communities, 8 grids, 8 buildings, 2 centres and 8 workers,
    imported through the real import path."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    folder.mkdir(parents=True, exist_ok=True)
    f.write(f.communities(), folder / "communities.shp")
    f.write(f.grids(), folder / "grids.shp")
    f.write(f.buildings(), folder / "buildings.shp")
    f.write(f.centers(), folder / "centers.shp")
    f.workers().to_csv(folder / "workers.csv", index=False)
    for kind in ("communities", "grids", "workers", "buildings", "centers"):
        name = "workers.csv" if kind == "workers" else f"{kind}.shp"
        import_file(engine, settings, kind, folder / name, ImportOptions())
    return engine


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    """The XYZ tile holding a point."""
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return z, x, y


def rows(engine: Engine, sql: str, **params) -> list[dict]:
    """Rows of a query, as dicts (the tests' independent look at the database)."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]
