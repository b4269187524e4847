"""Reverse geocoding, building search and building detail over HTTP on the planted city."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.buildings.service import refresh_address_index
from geo_service.crs import wgs84_to_gcj02
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests import factories as f
from tests.conftest import DATA_TABLES


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


# -- q alone over the demo city (3,016 buildings) ---------------------------------------------
DEMO_DIR = Path(__file__).parent.parent / "shapefiles" / "demo"


@pytest.fixture
def demo(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    """The committed demo city, imported when the tables do not hold it (the tests above
    empty them), so that the tests below share one import."""
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM buildings WHERE address LIKE '%皖江街1号锦绣名邸1栋'")
        ).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM buildings")).scalar_one()
    if (count, total) != (1, 3016):
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
        for kind in ("communities", "grids", "workers", "buildings"):
            name = "workers.csv" if kind == "workers" else f"{kind}.shp"
            import_file(engine, settings, kind, DEMO_DIR / name)
        refresh_address_index(engine)
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


def search(client: TestClient, **params: object) -> dict:
    response = client.get("/api/v1/buildings", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def register(engine: Engine, where: str, **params: str) -> set[str]:
    """Codes of the demo buildings a SQL condition on the register (b) and its index (a)
    selects: what a search must find, computed apart from it."""
    sql = (
        f"SELECT b.code FROM buildings b JOIN building_addresses a ON a.code = b.code WHERE {where}"
    )
    with engine.connect() as conn:
        return set(conn.execute(text(sql), params).scalars())


@pytest.mark.parametrize(
    ("q", "where"),
    [
        ("锦绣名邸", "b.address LIKE '%锦绣名邸%'"),  # an estate
        ("皖江街", "a.road = '皖江街'"),  # a road
        ("3栋", "a.building = '3'"),  # a building number as residents type it
        (
            "石城社区",
            "b.code IN (SELECT b2.code FROM buildings b2 JOIN grids g "
            "ON ST_Covers(g.geom, b2.geom) JOIN communities c ON c.code = g.community_code "
            "WHERE c.name = '石城社区')",
        ),  # a community
    ],
)
def test_q_alone_finds_every_such_building_of_the_demo_city(
    demo: TestClient, engine: Engine, q: str, where: str
):
    pages, offset = [], 0
    while True:  # every page, 7 at a time
        page = search(demo, q=q, limit=7, offset=offset)
        pages.append(page)
        offset += 7
        if offset >= page["total"]:
            break
    codes = [b["code"] for page in pages for b in page["items"]]
    expected = register(engine, where)
    assert len(codes) == len(set(codes)) == pages[0]["total"]  # no row twice or lost
    assert set(codes) == expected and expected
    assert all("message" not in page for page in pages)


def test_an_estate_search_lists_each_estate_together_in_number_order(demo: TestClient):
    # Three estates are called 锦绣名邸 (皖江街1号, 滨江一路80号, 友谊四路110号).
    items = search(demo, q="锦绣名邸", limit=50)["items"]
    places = [b["address"].split("锦绣名邸")[0] for b in items]
    assert len(items) == 10 and len(set(places)) == 3
    assert places == sorted(places, key=places.index)  # each estate's buildings together
    for place in set(places):
        numbers = [int(b["name"][4:-1]) for b in items if b["address"].startswith(place)]
        assert numbers == list(range(1, len(numbers) + 1))
    assert all(b["grid_code"] and b["community_code"] for b in items)


def test_a_text_naming_no_part_is_matched_within_addresses(demo: TestClient):
    # 锦绣 alone is no estate (no suffix): a substring of the address or name.
    body = search(demo, q="锦绣", limit=1000)
    assert body["total"] >= 10 and all("锦绣" in b["address"] for b in body["items"])
    # 石城 reads as an estate (城 ends estate names) and no estate or community is called so:
    # then the whole text is looked for in addresses, and finds 石城三路 and 石城五路.
    found = search(demo, q="石城", limit=1000)
    assert found["total"] == 85 and all("石城" in b["address"] for b in found["items"])


def test_text_matching_nothing_says_so_and_the_schema_documents_it(demo: TestClient):
    body = search(demo, q="翠湖苑")
    assert (body["total"], body["items"]) == (0, [])
    assert body["message"] == "no building matches '翠湖苑'"
    in_grid = search(demo, q="翠湖苑", grid=search(demo, q="锦绣名邸")["items"][0]["grid_code"])
    assert in_grid["message"] == "no building matches '翠湖苑'"
    schema = demo.get("/openapi.json").json()
    page = schema["paths"]["/api/v1/buildings"]["get"]["responses"]["200"]["content"]
    ref = page["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    message = schema["components"]["schemas"][ref]["properties"]["message"]
    assert "no building" in message["description"]


def test_an_estate_given_in_part_can_be_read_from_the_trigram_index(demo: TestClient, engine):
    from geo_service.buildings.store import _city_statement

    statement, params = _city_statement(
        {
            "t_road": None,
            "t_door": None,
            "t_building": None,
            "t_estate": "锦绣名",
            "t_needle": None,
        },
        "锦绣名",
        20,
        0,
    )
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))  # the demo is small: ask for it
        plan = "\n".join(conn.execute(text(f"EXPLAIN {statement.text}"), params).scalars())
    assert "building_addresses_estate_trgm" in plan
