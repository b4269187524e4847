"""Reverse geocoding, building search and building detail over HTTP on the planted city."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.crs import wgs84_to_gcj02
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests import factories as f


@pytest.fixture
def client(db: Engine, settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    f.write(f.communities(), tmp_path / "communities.shp")
    f.write(f.grids(), tmp_path / "grids.shp")
    f.write(f.buildings(), tmp_path / "buildings.shp")
    f.workers().to_csv(tmp_path / "workers.csv", index=False)
    for kind in ("communities", "grids", "workers", "buildings"):
        name = "workers.csv" if kind == "workers" else f"{kind}.shp"
        import_file(db, settings, kind, tmp_path / name, ImportOptions())
    with TestClient(create_app(settings, engine=db)) as client:
        yield client


def building_point(client: TestClient, code: str) -> tuple[float, float]:
    body = client.get(f"/api/v1/buildings/{code}").json()
    return body["lon"], body["lat"]


def test_building_detail_has_grid_community_workers_and_footprint(client: TestClient):
    body = client.get("/api/v1/buildings/B0000000").json()
    assert body["address"].startswith("安徽省铜陵市铜官区长江西路1号")
    assert body["households"] == 12
    assert body["grid_code"] == "340705001001003"  # the south-west grid of community 1
    assert body["community_name"] == "社区1"
    assert [w["code"] for w in body["workers"]] == ["W13"]
    assert body["footprint"]["type"] == "MultiPolygon"


def test_unknown_building_is_404_naming_the_code(client: TestClient):
    response = client.get("/api/v1/buildings/B9999999")
    assert response.status_code == 404 and "'B9999999'" in response.json()["message"]


def test_reverse_gives_the_grid_and_the_nearest_building_first(client: TestClient):
    lon, lat = building_point(client, "B0000005")
    body = client.get("/api/v1/reverse", params={"lon": lon, "lat": lat}).json()
    assert body["location"]["status"] == "inside"
    assert body["location"]["grid_code"] == "340705001001001"
    assert body["buildings"][0]["code"] == "B0000005"
    assert body["buildings"][0]["distance_m"] == 0
    distances = [b["distance_m"] for b in body["buildings"]]
    assert distances == sorted(distances) and all(d <= 200 for d in distances)


def test_reverse_accepts_phone_coordinates(client: TestClient):
    lon, lat = building_point(client, "B0000005")
    glon, glat = (float(v) for v in wgs84_to_gcj02(lon, lat))
    body = client.get("/api/v1/reverse", params={"lon": glon, "lat": glat, "crs": "gcj02"}).json()
    assert body["buildings"][0]["code"] == "B0000005"


def test_reverse_far_away_finds_no_building_and_says_outside(client: TestClient):
    body = client.get("/api/v1/reverse", params={"lon": 117.9, "lat": 30.9}).json()
    assert body["location"]["status"] == "outside" and body["buildings"] == []


def test_buildings_of_a_grid_are_paged(client: TestClient):
    grid = "340705001001003"
    first = client.get("/api/v1/buildings", params={"grid": grid, "limit": 1}).json()
    rest = client.get("/api/v1/buildings", params={"grid": grid, "limit": 1, "offset": 1}).json()
    codes = [b["code"] for b in first["items"] + rest["items"]]
    assert first["total"] == 2 and codes == ["B0000000", "B0000001"]
    assert {b["grid_code"] for b in first["items"]} == {grid}


@pytest.mark.parametrize(
    ("q", "codes"),
    [
        ("金山花园", [f"B000000{i}" for i in range(8)]),  # an estate alone
        ("长江西路", [f"B000000{i}" for i in range(8)]),  # a road alone
        ("3栋", ["B0000002"]),  # a building number alone
        ("长江西路5号金山花园3栋", ["B0000002"]),  # the register's own address
    ],
)
def test_q_alone_searches_the_whole_city(client: TestClient, q: str, codes: list[str]):
    body = client.get("/api/v1/buildings", params={"q": q, "limit": 100}).json()
    assert sorted(b["code"] for b in body["items"]) == codes
    assert body["total"] == len(codes) and "message" not in body


def test_a_community_name_alone_finds_its_buildings(client: TestClient, db: Engine):
    with db.begin() as conn:  # a name as cities give them (the factory's 社区1 reads as 社区 1栋)
        conn.execute(text("UPDATE communities SET name = '石城社区' WHERE code = '340705001001'"))
    body = client.get("/api/v1/buildings", params={"q": "石城社区", "limit": 100}).json()
    assert body["total"] > 0
    assert {b["community_code"] for b in body["items"]} == {"340705001001"}


def test_a_text_that_matches_nothing_says_so(client: TestClient):
    body = client.get("/api/v1/buildings", params={"q": "翠湖苑"}).json()
    assert (body["total"], body["items"]) == (0, [])
    assert body["message"] == "no building matches '翠湖苑'"


def test_buildings_near_me_nearest_first_and_within_radius(client: TestClient):
    lon, lat = building_point(client, "B0000001")
    body = client.get("/api/v1/buildings", params={"near": f"{lon},{lat}", "radius": 100}).json()
    assert body["items"][0]["code"] == "B0000001"
    assert all(b["distance_m"] <= 100 for b in body["items"])
    assert body["total"] == len(body["items"]) < 8


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({}, 422, "grid=CODE"),
        ({"grid": "340705001001999"}, 404, "'340705001001999'"),
        ({"near": "117.8"}, 422, "lon,lat"),
        ({"near": "abc,30.9"}, 422, "'abc'"),
        ({"near": "117.8,30.9", "radius": 0}, 422, ""),
        ({"grid": "340705001001001", "limit": 5000}, 422, ""),
    ],
)
def test_bad_search_input_is_a_clear_4xx(client: TestClient, params, status, fragment):
    response = client.get("/api/v1/buildings", params=params)
    assert response.status_code == status
    assert fragment in response.text
