"""Forward geocoding on the demo city's register: the accuracy goals, the answer's shape over
HTTP and the CLI, partial and ambiguous answers, and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from geo_service.api.app import create_app
from geo_service.buildings.address import match_key, parse
from geo_service.buildings.geocode import Entry, Query, rank
from geo_service.buildings.service import geocode_on, refresh_address_index, refresh_crossings
from geo_service.cli import app as cli_app
from geo_service.db.engine import reading
from geo_service.ingest import import_file
from geo_service.settings import Settings
from tests.conftest import DATA_TABLES
from tests.geocode_cases import Register, cases, measure

DEMO = ("communities", "grids", "workers", "buildings", "roads")
DEMO_DIR = Path(__file__).parent.parent / "shapefiles" / "demo"


@pytest.fixture(scope="module")
def demo(engine: Engine, settings: Settings) -> Engine:
    """The committed demo city (3,016 buildings), imported once for this module's reads."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    for kind in DEMO:
        name = f"{kind}.csv" if kind == "workers" else f"{kind}.shp"
        import_file(engine, settings, kind, DEMO_DIR / name)
    assert refresh_address_index(engine) == 3016  # what `geo-service import` does next
    assert refresh_crossings(engine)  # ... and after roads, where the named streets meet
    return engine


@pytest.fixture(scope="module")
def client(demo: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=demo)) as client:
        yield client


@pytest.fixture(scope="module")
def register(demo: Engine) -> Register:
    with reading(demo) as conn:
        return Register.of(conn.execute(text("SELECT code, address FROM buildings")).all())


def top(client: TestClient, q: str) -> dict:
    response = client.get("/api/v1/geocode", params={"q": q})
    assert response.status_code == 200, response.text
    candidates = response.json()["candidates"]
    return candidates[0] if candidates else {}


def test_accuracy_goals_on_rewritten_demo_addresses(demo: Engine, settings: Settings, register):
    """Top-1 >= 95% on real variants; confident (>= 0.8) wrong answers under 1% of queries."""
    results = []
    with reading(demo) as conn:
        for case in cases(register, sample=120):
            answer = geocode_on(conn, settings, case.text, 1)["candidates"]
            got = answer[0] if answer else None
            results.append(
                (case, got["building_code"] if got else None, got["confidence"] if got else 0.0)
            )
    figures = measure(results)
    assert figures.real > 1000 and figures.queries > figures.real
    assert figures.top1 >= 0.95, figures.by_variant
    assert figures.confident_wrong < 0.01, figures.by_variant


def test_a_full_address_is_an_exact_match_with_grid_and_workers(client, register):
    code = "B0000001"
    p = register.parts[code]
    best = top(client, f"{p.road}{p.door}号{p.estate}{p.building}栋")
    assert best["building_code"] == code and best["match_type"] == "exact"
    assert best["confidence"] == 1.0
    detail = client.get(f"/api/v1/buildings/{code}").json()
    assert best["grid_code"] == detail["grid_code"] and best["community_name"]
    assert best["workers"] and {"code", "name"} <= set(best["workers"][0])
    assert "phone" not in best["workers"][0]  # a geocoding answer carries no personal data
    assert (best["lon"], best["lat"]) == pytest.approx((detail["lon"], detail["lat"]), abs=1e-6)


def test_a_spoken_address_with_numerals_typo_and_unit_is_found(client, register):
    p = register.parts["B0000002"]
    spoken = f"{p.road}{18}好{p.estate}二幢1单元502室".replace("18", p.door or "")
    best = top(client, spoken)
    assert best["building_code"] == "B0000002"
    assert best["match_type"] in ("exact", "structured") and best["confidence"] >= 0.8


def test_road_and_door_only_is_a_partial_answer_at_the_door(client, register):
    p = register.parts["B0000001"]
    best = top(client, f"{p.road}{p.door}号")
    assert best["match_type"] == "partial" and best["building_code"] is None
    assert best["buildings"] >= 1 and best["confidence"] >= 0.8


def test_a_building_that_does_not_exist_gets_the_door_with_low_confidence(client, register):
    p = register.parts["B0000001"]
    best = top(client, f"{p.road}{p.door}号{p.estate}99栋")
    assert best["match_type"] == "partial" and best["building_code"] is None
    assert best["confidence"] < 0.8


def test_a_community_and_building_number_lists_every_such_building_unsure(client, demo):
    with reading(demo) as conn:
        community = conn.execute(text("SELECT name FROM communities ORDER BY code")).scalar()
    body = client.get("/api/v1/geocode", params={"q": f"{community}1栋", "limit": 50}).json()
    found = [c for c in body["candidates"] if c["building_code"]]
    assert len(found) > 1 and all(c["community_name"] == community for c in found)
    assert all(c["confidence"] < 0.8 for c in found)


@pytest.mark.parametrize(
    ("q", "status"),
    [
        ("", 422),
        ("   ", 422),
        ("长江西路18号" * 1250, 414),  # 10,000 characters, past GEO_MAX_QUERY_BYTES
        ("长江西路18号金山花园3栋" * 17, 422),  # 221 characters, past geocode_max_chars
        ("！？。，、；", 200),
        ("'; DROP TABLE buildings; --", 200),
        ("1 OR 1=1", 200),
        ("%_%", 200),
        ("请尽快处理", 200),
    ],
)
def test_bad_queries_get_a_clear_error_or_no_candidates(client, demo, q, status):
    response = client.get("/api/v1/geocode", params={"q": q})
    assert response.status_code == status
    if status == 200:
        body = response.json()
        assert body["candidates"] == [] and body["message"]
    else:
        assert response.json()["message"]
    with reading(demo) as conn:
        assert conn.execute(text("SELECT count(*) FROM buildings")).scalar_one() == 3016


def test_limit_is_bounded(client):
    assert client.get("/api/v1/geocode", params={"q": "皖江街1号", "limit": 51}).status_code == 422


def test_cli_geocode_prints_the_building_and_fails_on_nothing_found(demo, register, db_url):
    p = register.parts["B0000001"]
    runner, env = CliRunner(), {"GEO_DATABASE_URL": db_url}
    args = ["geocode", f"{p.road}{p.door}号{p.estate}1栋", "--json"]
    result = runner.invoke(cli_app, args, env=env)
    assert result.exit_code == 0, result.output
    assert '"building_code": "B0000001"' in result.output
    result = runner.invoke(cli_app, ["geocode", "请尽快处理"], env=env)
    assert result.exit_code == 4 and "no road, estate or community" in result.output


# -- the ranking rules, pure ----------------------------------------------------------------


def entry(code: str | None, road="皖江街", door="1", estate="锦绣名邸", building="1") -> Entry:
    key = f"{road}{door}号{estate}{building}栋"
    return Entry(code, key, road, door, estate, building, 117.8, 30.9)


def query(text_: str, known_road: bool = True, known_estate: bool = True) -> Query:
    return Query(parse(text_), known_road, known_estate)


def test_nothing_to_locate_ranks_nothing():
    assert rank(query("3栋502室"), [entry("B1")], 5) == []


def test_a_building_with_another_number_is_never_proposed():
    assert rank(query("皖江街1号锦绣名邸2栋"), [entry("B1", building="1")], 5) == []


def test_a_real_road_is_not_a_typo_of_another_real_road():
    # 皖江路 exists too: a building on 皖江街 only agrees on the estate and the number.
    [m] = rank(query("皖江路1号锦绣名邸1栋", known_road=True), [entry("B1")], 5)
    assert m.match_type == "fuzzy" and m.confidence < 0.8
    [m] = rank(query("皖江路1号锦绣名邸1栋", known_road=False), [entry("B1")], 5)
    assert m.match_type == "fuzzy" and m.confidence >= 0.8  # a typo of the only such road


def test_equally_good_buildings_share_the_confidence():
    matches = rank(query("锦绣名邸1栋"), [entry("B1"), entry("B2", road="义安路")], 5)
    assert [m.entry.code for m in matches] == ["B1", "B2"]
    assert all(m.confidence < 0.5 for m in matches)


def test_a_door_with_one_building_answers_with_that_building():
    only = Entry(None, "铜都大道86号", "铜都大道", "86", None, None, 117.8, 30.9, count=1,
                 only_code="B9", only_key=match_key(parse("铜都大道86号")))  # fmt: skip
    [m] = rank(query("铜都大道86号"), [only], 5)
    assert (m.entry.code, m.match_type, m.confidence) == ("B9", "exact", 1.0)
    shared = replace(only, count=3, only_code=None, only_key=None)
    [m] = rank(query("铜都大道86号"), [shared], 5)
    assert (m.entry.code, m.match_type) == (None, "partial")  # three buildings: the door


# -- building search with text (grid workers) -------------------------------------------------


def grid_buildings(client: TestClient, grid: str) -> list[dict]:
    body = client.get("/api/v1/buildings", params={"grid": grid, "limit": 1000}).json()
    return body["items"]


def test_search_a_grid_for_a_building_number(client):
    grid = client.get("/api/v1/buildings/B0000001").json()["grid_code"]
    everything = grid_buildings(client, grid)
    expected = {b["code"] for b in everything if parse(b["address"]).building == "1"}
    body = client.get("/api/v1/buildings", params={"grid": grid, "q": "一栋"}).json()
    assert {b["code"] for b in body["items"]} == expected and body["total"] == len(expected)
    assert expected and len(expected) < len(everything)


def test_search_a_grid_by_part_of_an_estate_name(client):
    grid = client.get("/api/v1/buildings/B0000001").json()["grid_code"]
    everything = grid_buildings(client, grid)
    estate = parse(everything[0]["address"]).estate
    assert estate
    expected = {b["code"] for b in everything if estate[:2] in b["address"]}
    body = client.get("/api/v1/buildings", params={"grid": grid, "q": estate[:2]}).json()
    assert {b["code"] for b in body["items"]} == expected


def test_search_near_a_point_with_text_is_nearest_first(client, register):
    here = client.get("/api/v1/buildings/B0000001").json()
    p = register.parts["B0000001"]
    params = {"near": f"{here['lon']},{here['lat']}", "radius": 300, "q": f"{p.estate}"}
    items = client.get("/api/v1/buildings", params=params).json()["items"]
    assert items[0]["code"] == "B0000001" and items[0]["distance_m"] == 0
    assert all(p.estate in i["address"] for i in items)
    distances = [i["distance_m"] for i in items]
    assert distances == sorted(distances)


def test_search_the_city_by_text_alone_is_best_first(client, register):
    p = register.parts["B0000002"]
    body = client.get("/api/v1/buildings", params={"q": f"{p.estate}{p.building}栋"}).json()
    assert "B0000002" in {i["code"] for i in body["items"]}
    assert body["total"] >= 1 and all(i["match_type"] for i in body["items"])
    confidences = [i["confidence"] for i in body["items"]]
    assert confidences == sorted(confidences, reverse=True)


@pytest.mark.parametrize(
    "params", [{}, {"q": ""}, {"q": "长江西路" * 60}, {"q": "3栋", "grid": "999999999999999"}]
)
def test_bad_building_searches_are_refused_clearly(client, params):
    response = client.get("/api/v1/buildings", params=params)
    assert response.status_code in (404, 422) and response.json()["message"]


# -- incidents by address ----------------------------------------------------------------------


def report(client: TestClient, address: str) -> dict:
    response = client.post(
        "/api/v1/incidents", json={"category": "exposed_rubbish", "address": address}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_an_address_only_report_that_geocodes_surely_is_dispatched(client, register):
    p = register.parts["B0000003"]
    incident = report(client, f"{p.road}{p.door}号{p.estate}{p.building}栋楼下垃圾堆放")
    building = client.get("/api/v1/buildings/B0000003").json()
    assert incident["status"] == "dispatched" and not incident["needs_location"]
    assert incident["grid_code"] == building["grid_code"]
    assert incident["address_candidates"][0]["building_code"] == "B0000003"
    receive = incident["events"][0]
    assert "geocoded to B0000003 (exact, confidence 1.00)" in receive["note"]


def test_an_unsure_address_waits_for_a_dispatcher_with_the_candidates(client, register):
    ambiguous = next(k for k, n in register.estate_building.items() if n > 1)
    incident = report(client, f"{ambiguous[0]}{ambiguous[1]}栋")
    assert incident["status"] == "needs_location" and incident["grid_code"] is None
    proposed = incident["address_candidates"]
    assert len(proposed) >= 2 and all(c["confidence"] < 0.8 for c in proposed)
    assert {"building_code", "address", "lon", "lat", "grid_code"} <= set(proposed[0])
    assert "below 0.8" in incident["events"][0]["note"]


def test_an_address_geocoding_cannot_read_is_still_kept(client):
    incident = report(client, "就在那个老地方")
    assert incident["status"] == "needs_location" and incident["address_candidates"] == []
    assert "address not geocoded" in incident["events"][0]["note"]


# -- what residents write: intersections and landmarks ------------------------------------------
def meetings(a: str, b: str) -> list[tuple[float, float]]:
    """Where two demo streets meet, worked out apart from the service (shapely)."""
    import geopandas as gpd
    import shapely

    roads = gpd.read_file(DEMO_DIR / "roads.shp")
    one = shapely.union_all(roads[roads["name"] == a].geometry.to_numpy())
    two = shapely.union_all(roads[roads["name"] == b].geometry.to_numpy())
    points = shapely.get_parts(one.intersection(two))
    return [(p.x, p.y) for p in points if p.geom_type == "Point"]


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    from pyproj import Geod

    return float(Geod(ellps="WGS84").inv(a[0], a[1], b[0], b[1])[2])


@pytest.mark.parametrize(
    "q",
    [
        "解放九路与胜利八路交叉口",
        "解放9路和胜利8路路口",
        "解放九路/胜利八路交汇处",
        "解放九路胜利八路十字路口",
        "胜利八路与解放九路交叉口",
    ],
)
def test_an_intersection_is_where_the_streets_meet(client, q):
    body = client.get("/api/v1/geocode", params={"q": q}).json()
    [where] = body["candidates"]
    assert where["match_type"] == "intersection" and where["building_code"] is None
    truth = meetings("解放九路", "胜利八路")
    assert truth and min(metres((where["lon"], where["lat"]), t) for t in truth) < 60
    assert where["grid_code"] and where["community_name"] and where["confidence"] >= 0.8


def test_streets_that_never_meet_give_no_confident_answer(client):
    body = client.get("/api/v1/geocode", params={"q": "合肥九路与银湖八路交叉口"}).json()
    assert body["candidates"] == [] and body["message"] == "合肥九路 and 银湖八路 do not meet"
    unknown = client.get("/api/v1/geocode", params={"q": "飞燕路与胜利八路交叉口"}).json()
    assert unknown["candidates"] == [] and "no street named 飞燕路" in unknown["message"]


@pytest.mark.parametrize("word", ["门口", "东门", "附近", "旁边", "对面"])
def test_a_landmark_finds_its_estate_and_is_honest_about_namesakes(client, register, word):
    roads_of: dict[str, set[str]] = {}
    for p in register.parts.values():
        roads_of.setdefault(p.estate or "", set()).add(p.road or "")
    alone = next(e for e, roads in sorted(roads_of.items()) if e and len(roads) == 1)
    shared = next(e for e, roads in sorted(roads_of.items()) if e and len(roads) > 1)
    [best] = client.get("/api/v1/geocode", params={"q": alone + word, "limit": 1}).json()[
        "candidates"
    ]
    assert best["match_type"] == "landmark" and best["place"] == word
    assert best["grid_code"] and best["buildings"] >= 1 and best["confidence"] >= 0.8
    several = client.get("/api/v1/geocode", params={"q": shared + word}).json()["candidates"]
    assert len(several) == len(roads_of[shared])  # one per place of that name
    assert all(c["match_type"] == "landmark" and c["confidence"] < 0.8 for c in several)


# -- named places ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def places(demo: Engine, settings: Settings, tmp_path_factory) -> Engine:
    """A few named places imported the way a city imports its own (kind pois)."""
    import geopandas as gpd
    import shapely

    folder = tmp_path_factory.mktemp("pois")
    frame = gpd.GeoDataFrame(
        {
            "code": ["P1", "P2", "P3"],
            "name": ["向阳小学", "五松菜市场", "人民医院"],
            "kind": ["school", "marketplace", "hospital"],
        },
        geometry=[
            shapely.Point(117.801, 30.931),
            shapely.Point(117.811, 30.935),
            shapely.Point(117.805, 30.940),
        ],
        crs="EPSG:4326",
    )
    frame.to_file(folder / "pois.gpkg")
    report = import_file(demo, settings, "pois", folder / "pois.gpkg")
    assert report.inserted == 3
    return demo


@pytest.mark.parametrize(
    ("q", "code"),
    [
        ("向阳小学", "P1"),
        ("铜官区五松菜市场", "P2"),
        ("人民医院门口", "P3"),
        ("向阳小学旁边", "P1"),
    ],
)
def test_a_named_place_gives_that_place(client, places, q, code):
    [best, *_] = client.get("/api/v1/geocode", params={"q": q}).json()["candidates"]
    assert best["match_type"] == "place" and best["place_code"] == code
    assert best["confidence"] >= 0.8 and best["grid_code"]


def test_a_look_alike_of_a_name_is_the_place_but_not_for_sure(client, places):
    [best, *_] = client.get("/api/v1/geocode", params={"q": "向阳小字"}).json()["candidates"]
    assert best["place_code"] == "P1" and best["confidence"] < 0.8


def test_a_community_office_is_its_community(client, demo):
    name = client.get("/api/v1/geocode", params={"q": "石城社区居委会"}).json()["candidates"]
    assert name and name[0]["match_type"] == "place" and name[0]["place_kind"] == "community"
    assert name[0]["community_name"] == "石城社区"


def test_a_neighbourhood_centre_by_name(client, demo, settings):
    with demo.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO centers (code, name, geom) VALUES "
                "('C900', '向阳邻里中心', ST_SetSRID(ST_MakePoint(117.802, 30.932), 4326)) "
                "ON CONFLICT (code) DO NOTHING"
            )
        )
    [best, *_] = client.get("/api/v1/geocode", params={"q": "向阳邻里中心"}).json()["candidates"]
    assert best["match_type"] == "place" and best["place_code"] == "C900"


# -- a report's free text ---------------------------------------------------------------------
def describe(client: TestClient, description: str) -> dict:
    body = {"category": "exposed_rubbish", "description": description}
    response = client.post("/api/v1/incidents", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_report_whose_description_says_where_is_located_from_it(client, register):
    p = register.parts["B0000003"]
    incident = describe(
        client, f"{p.road}{p.door}号{p.estate}{p.building}栋门口垃圾堆了三天，没人管"
    )
    assert incident["status"] == "dispatched" and incident["grid_code"]
    note = incident["events"][0]["note"]
    assert f"place read from the description: {p.road}{p.door}号" in note
    crossing = describe(client, "解放九路与胜利八路交叉口路灯坏了，好几天了")
    assert crossing["status"] == "dispatched" and crossing["grid_code"]
    assert crossing["address_candidates"][0]["building_code"] is None


def test_a_description_that_is_unsure_or_says_nowhere_waits_for_a_dispatcher(client, register):
    ambiguous = next(k for k, n in register.estate_building.items() if n > 1)
    unsure = describe(client, f"{ambiguous[0]}{ambiguous[1]}栋楼下有人吵架")
    assert unsure["status"] == "needs_location" and len(unsure["address_candidates"]) >= 2
    nowhere = describe(client, "楼道里很吵")
    assert nowhere["status"] == "needs_location" and nowhere["address_candidates"] == []
    assert "no place found in the description" in nowhere["events"][0]["note"]
    bare = client.post("/api/v1/incidents", json={"category": "exposed_rubbish"})
    assert bare.status_code == 422 and "a description that says where" in bare.json()["message"]


def test_a_second_street_whose_name_begins_with_he_or_yu(client):
    truth = meetings("人民一路", "和平九路")
    assert truth  # they meet in the demo city
    for q in ("人民一路和平九路十字路口", "人民一路/和平九路交汇处", "人民一路与和平九路交叉口"):
        [where] = client.get("/api/v1/geocode", params={"q": q}).json()["candidates"]
        assert where["match_type"] == "intersection", q
        assert min(metres((where["lon"], where["lat"]), t) for t in truth) < 60


@pytest.mark.parametrize("q", ["石城社区", "石城社区门口"])
def test_a_community_by_its_name_is_a_place(client, q):
    [best, *_] = client.get("/api/v1/geocode", params={"q": q}).json()["candidates"]
    assert best["match_type"] == "place" and best["place_kind"] == "community"
    assert best["community_name"] == "石城社区"


def test_cli_geocode_shows_intersections_landmarks_and_places(demo, db_url):
    import subprocess
    import sys

    cli = str(Path(sys.executable).parent / "geo-service")
    env = {"GEO_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    for q, kind in (("解放九路与胜利八路交叉口", "intersection"), ("锦绣名邸门口", "landmark"),
                    ("石城社区居委会", "place")):  # fmt: skip
        done = subprocess.run(
            [cli, "geocode", q], capture_output=True, text=True, env=env, check=False
        )
        assert done.returncode == 0, done.stderr
        assert kind in done.stdout and "Traceback" not in done.stderr
