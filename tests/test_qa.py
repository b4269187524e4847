"""Grid QA finds what a test plants: overlaps, gaps, grids outside, buildings in no grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from geo_service.api.app import create_app
from geo_service.grids.qa import grid_qa
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests import factories as f


def load(db: Engine, settings: Settings, tmp: Path, grids, buildings=None) -> None:
    files = [("communities", f.communities()), ("grids", grids)]
    if buildings is not None:
        files.append(("buildings", buildings))
    for kind, gdf in files:
        import_file(db, settings, kind, f.write(gdf, tmp / f"{kind}.shp"), ImportOptions())


def test_clean_tiling_passes(db: Engine, settings: Settings, tmp_path: Path):
    load(db, settings, tmp_path, f.grids(), f.buildings())
    report = grid_qa(db, settings)
    assert report.ok
    assert [c.grids for c in report.communities] == [4, 4]


def test_planted_overlap_gap_outside_and_lost_building(
    db: Engine, settings: Settings, tmp_path: Path
):
    grids = f.grids().to_crs(f.UTM)
    # Grid 1 of community 1 (x 0-200, y 200-400) grows 20 m east into grid 2: 4,000 m² overlap.
    grids.loc[0, "geometry"] = f.rect(0, 200, 220, 400)
    # Grid 3 (x 0-200, y 0-200) shrinks by 10 m on its south side: a 2,000 m² gap.
    grids.loc[2, "geometry"] = f.rect(0, 10, 200, 200)
    # Grid 8 (community 2, x 600-800, y 0-200) reaches 10 m beyond the community's east edge.
    grids.loc[7, "geometry"] = f.rect(600, 0, 810, 200)
    buildings = f.buildings().to_crs(f.UTM).iloc[:1]
    buildings.loc[0, "geometry"] = f.rect(50, 1, 60, 6)  # inside the gap
    load(db, settings, tmp_path, grids.to_crs(4326), buildings.to_crs(4326))

    report = grid_qa(db, settings)
    assert not report.ok
    first, second = report.communities
    assert [(o.grid_a, o.grid_b) for o in first.overlaps] == [
        ("340705001001001", "340705001001002")
    ]
    assert first.overlaps[0].area_m2 == pytest.approx(4000, rel=0.01)
    assert len(first.gaps) == 1 and first.gaps[0].area_m2 == pytest.approx(2000, rel=0.01)
    assert [o.grid for o in second.outside] == ["340705001002004"]
    assert second.outside[0].area_m2 == pytest.approx(2000, rel=0.01)
    assert report.buildings_outside == 1 and first.buildings_outside == 1
    assert report.buildings_outside_sample[0]["code"] == "B0000000"


def test_qa_and_health_over_http(db: Engine, settings: Settings, tmp_path: Path):
    load(db, settings, tmp_path, f.grids())
    with TestClient(create_app(settings, engine=db)) as client:
        health = client.get("/healthz")
        body = client.get("/api/v1/qa").json()
    assert health.status_code == 200 and health.json()["postgis"].startswith("3.")
    assert body["ok"] is True
    assert [c["code"] for c in body["communities"]] == ["340705001001", "340705001002"]
