"""A bulk import of grids (more than the topology's ANALYZE threshold) stores a sound
shared-boundary topology: each grid's polygon is its faces, and the grids still tile their
communities. (At the province, 39,000 grids, the queries after the topology is built were
planned on the statistics of the empty tables; they are analysed first past 1,000 grids.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from geo_service.grids import topology_store
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from geo_service.synth import CityParams, generate_city, write_city

MANY = CityParams(
    nx=41,
    ny=41,
    spacing_m=80.0,
    communities=4,
    grids=1_200,
    buildings=200,
    centers=1,
    subdistricts=1,
    bridges=1,
    level_crossings=1,
)


@pytest.mark.timeout(600)
def test_bulk_grid_import_keeps_a_sound_tiling(db: Engine, settings: Settings, tmp_path: Path):
    city = generate_city(MANY, seed=3)
    assert len(city.grids) > topology_store._ANALYZE_AFTER
    write_city(city, tmp_path)
    import_file(db, settings, "communities", tmp_path / "communities.shp", ImportOptions())
    report = import_file(db, settings, "grids", tmp_path / "grids.shp", ImportOptions())
    assert report.inserted == len(city.grids) and report.rejected == []
    with db.connect() as conn:
        assert topology_store.problems(conn) == []
        apart = conn.execute(
            text("SELECT count(*) FROM grids WHERE NOT ST_Equals(geom, topo::geometry)")
        ).scalar_one()
        assert apart == 0
        # The grids cover their communities exactly: no gap, no overlap (1 m² of rounding).
        gaps = conn.execute(
            text(
                "SELECT c.code, abs(ST_Area(c.geom::geography) - sum(ST_Area(g.geom::geography)))"
                " FROM communities c JOIN grids g ON g.community_code = c.code"
                " GROUP BY c.code, c.geom"
            )
        ).all()
    assert len(gaps) == MANY.communities
    assert all(diff < 1.0 for _, diff in gaps), gaps
