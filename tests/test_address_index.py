"""The address index follows the building register: changed and removed addresses."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.db.engine import reading
from geo_service.ingest import import_file
from geo_service.settings import Settings
from tests.test_geocode import DEMO_DIR, top


def test_the_index_follows_a_changed_register_without_a_refresh_call(
    db: Engine, settings: Settings, tmp_path: Path
):
    """Geocoding refreshes a stale index itself: an address changed by a re-import is found
    under its new text, not its old one; a building removed with --replace is gone."""
    import geopandas as gpd

    from geo_service.ingest import ImportOptions

    for kind in ("communities", "grids"):
        import_file(db, settings, kind, DEMO_DIR / f"{kind}.shp")
    frame = gpd.read_file(DEMO_DIR / "buildings.shp").iloc[:50].copy()
    frame.to_file(tmp_path / "b.shp", encoding="utf-8")
    import_file(db, settings, "buildings", tmp_path / "b.shp")
    old = frame.loc[0, "address"]
    frame.loc[0, "address"] = "安徽省铜陵市铜官区新建路8号新建小区1栋"
    frame = frame.iloc[:40]
    frame.to_file(tmp_path / "b.shp", encoding="utf-8")
    import_file(db, settings, "buildings", tmp_path / "b.shp", ImportOptions(replace=True))
    with TestClient(create_app(settings, engine=db)) as client:
        assert top(client, "新建路8号新建小区1栋")["building_code"] == frame.loc[0, "code"]
        stale = top(client, old)
        assert stale.get("building_code") != frame.loc[0, "code"] or stale["confidence"] < 0.8
    with reading(db) as conn:
        indexed = conn.execute(text("SELECT count(*) FROM building_addresses")).scalar_one()
    assert indexed == 40


def test_an_index_made_by_older_parsing_rules_is_parsed_again(db: Engine, settings: Settings):
    """A new release that parses addresses differently re-parses every stored address."""
    from geo_service.buildings.address import PARSER_VERSION
    from geo_service.buildings.service import refresh_address_index

    for kind in ("communities", "grids"):
        import_file(db, settings, kind, DEMO_DIR / f"{kind}.shp")
    import_file(db, settings, "buildings", DEMO_DIR / "buildings.shp")
    assert refresh_address_index(db) == 3016
    assert refresh_address_index(db) is None  # current: nothing to do
    with db.begin() as conn:  # as an older release left it: its own rules' keys
        conn.execute(text("UPDATE building_addresses SET key = 'old-' || key"))
        conn.execute(
            text("UPDATE dataset_versions SET version = :v WHERE kind = 'address_parser'"),
            {"v": PARSER_VERSION - 1},
        )
    assert refresh_address_index(db) == 3016
    with reading(db) as conn:
        old = conn.execute(
            text("SELECT count(*) FROM building_addresses WHERE key LIKE 'old-%'")
        ).scalar_one()
    assert old == 0


def test_a_threaded_process_parses_many_addresses_in_a_fork_server():
    """Inside a threaded process (the API server) the parsing workers are not forks of it,
    and they parse exactly as this process does."""
    import threading

    from geo_service.buildings.address import index_row
    from geo_service.buildings.service import POOL_MIN_ROWS, AddressParsing, _parsers

    addresses = [f"安徽省铜陵市铜官区长江路{n}号{n % 7 + 1}栋" for n in range(POOL_MIN_ROWS)]
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _parsers().get_start_method() == "forkserver"
        with AddressParsing(addresses) as parsing:
            rows = parsing.result()
    finally:
        stop.set()
        other.join()
    assert all(rows[a] == index_row(a) for a in addresses[:: POOL_MIN_ROWS // 200])
    assert len(rows) == len(addresses)
