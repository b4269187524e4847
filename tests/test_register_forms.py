"""Geocoding a register written in forms the demo city's generator never produces (lanes,
rural groups, 号楼/幢/座, units, estates without a road, door-only buildings, an estate name
shared by several roads), imported the way a city imports its own: the aims per form."""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlalchemy import Engine, text

from geo_service.buildings.service import geocode_on, refresh_address_index
from geo_service.db.engine import reading
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests.conftest import DATA_TABLES
from tests.geocode_cases import Figures, measure
from tests.register_forms import DEMO, FORMS, queries, register, write


@pytest.fixture(scope="module")
def figures(engine: Engine, settings: Settings, tmp_path_factory) -> dict[str, Figures]:
    """Per form: top-1 and confident-wrong over each address and its usual rewrites."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    for kind in ("communities", "grids"):
        import_file(engine, settings, kind, DEMO / f"{kind}.shp", ImportOptions())
    buildings = register()
    path = write(buildings, tmp_path_factory.mktemp("register"))
    report = import_file(engine, settings, "buildings", path, ImportOptions())
    assert report.inserted == len(buildings) and not report.rejected
    refresh_address_index(engine)
    results = defaultdict(list)
    with reading(engine) as conn:
        for case in queries(buildings):
            answer = geocode_on(conn, settings, case.text, 1)["candidates"]
            got = answer[0] if answer else None
            row = (case, got["building_code"] if got else None, got["confidence"] if got else 0.0)
            results[case.variant.split(":")[0]].append(row)
    return {form: measure(rows) for form, rows in results.items()}


@pytest.mark.parametrize("form", FORMS)
def test_each_register_form_meets_the_aims(figures: dict[str, Figures], form: str):
    f = figures[form]
    assert f.real >= 60 * 8  # each building of the form and its rewrites
    assert f.top1 >= 0.95, f.by_variant
    assert f.confident_wrong < 0.01, f.by_variant


def test_an_estate_name_on_several_roads_is_never_a_sure_answer(figures: dict[str, Figures]):
    shared = figures["shared"]
    assert shared.by_variant["shared:estate_only"] == 1.0  # no confident building
    assert shared.confident_wrong == 0.0
