"""Point -> grid rules on planted geometry, through the domain function, HTTP and the CLI."""

from __future__ import annotations

import asyncio
import itertools
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from shapely.geometry import Polygon, box
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.crs import parse_input_crs, wgs84_to_bd09, wgs84_to_gcj02
from geo_service.grids import rules
from geo_service.grids.assign import assign_csv
from geo_service.grids.locate import Location, PointLocator, locate_points
from geo_service.settings import Settings
from tests import factories

COMMUNITY = factories.PLANTED_COMMUNITY
G1, G2, G3, G4, G5 = (f"{COMMUNITY}{n:03d}" for n in range(1, 6))
M_PER_DEG_LON = 111_320 * math.cos(math.radians(30.931))  # near enough for planting offsets

# Axis-aligned in lon/lat so points on edges are exactly on them in floating point.
HOLE = box(117.8023, 30.9283, 117.8037, 30.9297)
PLANTED = {
    G1: box(117.800, 30.930, 117.802, 30.932),
    G2: box(117.802, 30.930, 117.804, 30.932),
    G3: box(117.800, 30.928, 117.802, 30.930),
    G4: Polygon(box(117.802, 30.928, 117.804, 30.930).exterior.coords, [HOLE.exterior.coords]),
    G5: box(117.8035, 30.930, 117.806, 30.932),  # overlaps G2 between 117.8035 and 117.804
}


@pytest.fixture
def planted(db: Engine, settings: Settings, tmp_path: Path) -> Engine:
    workers = [("W1", "张三", "13900000001", G1), ("W2", "李四", "13900000002", G1)]
    return factories.plant_grids(db, settings, tmp_path, PLANTED, workers)


def locate(engine: Engine, lon, lat, crs: str = "wgs84"):
    with engine.connect() as conn:
        return locate_points(conn, [lon], [lat], parse_input_crs(crs), 50.0)[0]


EAST_EDGE = 117.806


@pytest.mark.parametrize(
    ("lon", "lat", "status", "grid", "candidates"),
    [
        (117.801, 30.931, "inside", G1, [G1]),
        (117.802, 30.931, "boundary", G1, [G1, G2]),  # shared edge
        (117.802, 30.930, "boundary", G1, [G1, G2, G3, G4]),  # shared vertex of four
        (117.800, 30.931, "boundary", G1, [G1]),  # outer edge
        (117.8038, 30.931, "ambiguous", G2, [G2, G5]),  # overlap
        (117.803, 30.929, "outside", None, []),  # middle of the hole, >50 m
        (117.8023 + 10 / M_PER_DEG_LON, 30.929, "nearest", G4, [G4]),  # 10 m into the hole
        (EAST_EDGE + 30 / M_PER_DEG_LON, 30.931, "nearest", G5, [G5]),
        (EAST_EDGE + 80 / M_PER_DEG_LON, 30.931, "outside", None, []),
    ],
    ids=[
        "inside",
        "shared-edge",
        "shared-vertex",
        "outer-edge",
        "overlap",
        "hole",
        "hole-edge-10m",
        "30m-outside",
        "80m-outside",
    ],
)
def test_locate_rules(planted: Engine, lon, lat, status, grid, candidates):
    found = locate(planted, lon, lat)
    assert (found.status, found.grid_code, found.candidates) == (status, grid, candidates)
    if status == "nearest":
        expected = 10 if grid == G4 else 30
        assert found.distance_m == pytest.approx(expected, abs=0.5)
    elif status != "outside":
        assert found.distance_m == 0


def test_located_point_carries_community_and_workers(planted: Engine):
    found = locate(planted, 117.801, 30.931)
    assert (found.community_code, found.community_name, found.grid_name) == (
        COMMUNITY,
        "金山社区",
        "第1网格",
    )
    assert [(w.code, w.phone) for w in found.workers] == [
        ("W1", "13900000001"),
        ("W2", "13900000002"),
    ]


@pytest.mark.parametrize(("crs", "convert"), [("gcj02", wgs84_to_gcj02), ("bd09", wgs84_to_bd09)])
def test_phone_coordinates_land_right_only_after_conversion(planted: Engine, crs, convert):
    lon, lat = (float(v) for v in convert(117.801, 30.931))  # a phone inside G1 reports this
    assert locate(planted, lon, lat, crs).grid_code == G1
    assert locate(planted, lon, lat, "wgs84").status == "outside"  # hundreds of metres off


@pytest.mark.parametrize(
    ("lon", "lat"),
    [
        ("abc", "30.93"),
        ("117.8", ""),
        (None, 30.93),
        ("nan", "30.9"),
        ("inf", "30.9"),
        (181, 30.9),
        (117.8, -91),
        ("1e400", "30"),
    ],
)
def test_bad_coordinates_are_invalid_and_named(planted: Engine, lon, lat):
    found = locate(planted, lon, lat)
    assert found.status == "invalid" and found.grid_code is None
    assert repr(lon) in found.message


# What GET /locate reads one point with (PointLocator) must answer as the batch path.
ONE_POINT_CASES = [
    (117.801, 30.931, "wgs84"),
    (117.802, 30.930, "wgs84"),  # shared vertex of four
    (117.8038, 30.931, "wgs84"),  # overlap
    (117.803, 30.929, "wgs84"),  # hole
    (117.8023 + 10 / M_PER_DEG_LON, 30.929, "wgs84"),  # nearest, 10 m
    (EAST_EDGE + 80 / M_PER_DEG_LON, 30.931, "wgs84"),  # outside
    ("１１７．８０１", "３０．９３１", "wgs84"),  # typed with a Chinese input method
    (" 117.801 ", "30.931", "cgcs2000"),
    ("117.8", "", "wgs84"),
    ("abc", "30.93", "cgcs2000"),
    ("nan", "30.9", "wgs84"),
    ("-inf", "30.9", "wgs84"),
    ("181", "30.9", "wgs84"),
    ("117.8", "-90.0001", "wgs84"),
    ("1e400", "30", "wgs84"),
    (*(float(v) for v in wgs84_to_gcj02(117.801, 30.931)), "gcj02"),
    (*(float(v) for v in wgs84_to_bd09(117.8038, 30.931)), "bd09"),
    ("999", "30.9", "gcj02"),
]


def _pool(engine: Engine, size: int) -> AsyncConnectionPool:
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return AsyncConnectionPool(
        url, min_size=1, max_size=size, open=False, kwargs={"autocommit": True}
    )


def test_one_point_locator_answers_as_the_batch_path_alone_and_in_a_crowd(planted: Engine):
    expected = [locate(planted, lon, lat, crs) for lon, lat, crs in ONE_POINT_CASES]
    assert {found.status for found in expected} == set(rules.STATUSES)  # every status met

    async def answers(crowd: int) -> tuple[list[list[Location]], int]:
        async with _pool(planted, 2) as pool:
            locator = PointLocator(pool, 50.0, max_queries=1, max_points=7)
            calls = [
                locator.locate(lon, lat, parse_input_crs(crs))
                for _ in range(crowd)
                for lon, lat, crs in ONE_POINT_CASES
            ]
            found = await asyncio.gather(*calls)  # queued behind one query: shared trips
            n = len(ONE_POINT_CASES)
            return [found[k * n : (k + 1) * n] for k in range(crowd)], locator._running

    alone, _ = asyncio.run(answers(1))
    assert alone == [expected]
    crowd, running = asyncio.run(answers(5))
    assert crowd == [expected] * 5 and running == 0


def test_a_failed_shared_query_fails_its_points_alone(planted: Engine):
    url = planted.url.set(drivername="postgresql", database="no_such_database")
    dead = AsyncConnectionPool(
        url.render_as_string(hide_password=False), min_size=0, max_size=1, open=False, timeout=0.5
    )

    async def run() -> tuple[list[BaseException | Location], Location, int]:
        async with dead, _pool(planted, 2) as alive:
            locator = PointLocator(dead, 50.0, max_queries=1)
            wgs84 = parse_input_crs("wgs84")
            failed = await asyncio.gather(
                *(locator.locate(117.801, 30.931, wgs84) for _ in range(5)),
                return_exceptions=True,
            )
            locator.pool = alive  # the database is back
            return failed, await locator.locate(117.801, 30.931, wgs84), locator._running

    failed, later, running = asyncio.run(run())
    assert all(isinstance(error, PoolTimeout) for error in failed)
    assert later.grid_code == G1 and running == 0


def test_a_located_point_sees_a_grid_change_committed_before_it_asked(planted: Engine):
    async def ask() -> Location:
        async with _pool(planted, 2) as pool:
            return await PointLocator(pool, 50.0).locate(117.801, 30.931, parse_input_crs("wgs84"))

    assert asyncio.run(ask()).grid_name == "第1网格"
    with planted.begin() as conn:
        conn.execute(text("UPDATE grids SET name = '新网格' WHERE code = :code"), {"code": G1})
    assert asyncio.run(ask()).grid_name == "新网格"


def test_the_one_point_rule_is_the_rule_of_the_batch():
    for n_cover, n_interior, near in itertools.product(range(4), range(4), (False, True)):
        if n_interior > n_cover:
            continue
        [code] = rules.classify(
            np.array([n_cover]), np.array([n_interior]), np.array([near]), np.array([True])
        )
        assert rules.status(n_cover, n_interior, near) == rules.STATUSES[code]


# -- HTTP -------------------------------------------------------------------------------------
@pytest.fixture
def client(planted: Engine, settings: Settings) -> Iterator[TestClient]:
    small = settings.updated(grids={"locate_max_points": 5}, server={"max_body_bytes": 20_000})
    with TestClient(create_app(small, engine=planted)) as client:  # runs the app's lifespan
        yield client


def test_get_locate(client: TestClient):
    body = client.get("/api/v1/locate", params={"lon": 117.801, "lat": 30.931}).json()
    assert body["status"] == "inside" and body["grid_code"] == G1
    assert body["workers"][0]["name"] == "张三"


def test_get_locate_is_logged_counted_and_tagged_like_any_route(client: TestClient):
    # GET /locate is answered past FastAPI's router (api/hot.py): the same request id and
    # metrics series as any route; other methods of the path are still FastAPI's.
    params = {"lon": 117.801, "lat": 30.931}
    answered = client.get("/api/v1/locate", params=params, headers={"X-Request-ID": "loc-1"})
    assert answered.status_code == 200 and answered.headers["x-request-id"] == "loc-1"
    assert answered.headers["content-type"] == "application/json"
    assert client.get("/api/v1/locate", params={"lon": "x", "lat": "1"}).status_code == 422
    refused = client.put("/api/v1/locate", params=params)
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, POST"
    metrics = client.get("/metrics").text
    for status in (200, 422):
        series = f'geo_http_requests_total{{method="GET",route="/api/v1/locate",status="{status}"}}'
        assert f"{series} 1.0" in metrics


def test_get_locate_gcj02(client: TestClient):
    lon, lat = (float(v) for v in wgs84_to_gcj02(117.801, 30.931))
    body = client.get("/api/v1/locate", params={"lon": lon, "lat": lat, "crs": "GCJ02"}).json()
    assert body["grid_code"] == G1 and body["lon"] == pytest.approx(117.801, abs=1e-7)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"lon": "abc", "lat": "30"}, "'abc'"),
        ({"lon": "200", "lat": "30"}, "'200'"),
        ({"lon": "117.8", "lat": "30.9", "crs": "mars"}, "'mars'"),
    ],
)
def test_get_locate_bad_input_is_422_naming_the_value(client: TestClient, params, fragment):
    response = client.get("/api/v1/locate", params=params)
    assert response.status_code == 422
    assert fragment in response.json()["message"]


def test_post_locate_list_and_feature_collection(client: TestClient):
    listed = client.post(
        "/api/v1/locate",
        json=[
            {"id": "a", "lon": 117.801, "lat": 30.931},
            {"id": "b", "lon": "junk", "lat": 30.931},
            {"id": "c", "lon": True, "lat": 30.931},
        ],
    ).json()
    assert [(r["id"], r["status"]) for r in listed["results"]] == [
        ("a", "inside"),
        ("b", "invalid"),
        ("c", "invalid"),
    ]
    features = client.post(
        "/api/v1/locate",
        json={
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": 7,
                    "properties": {},
                    "geometry": {"type": "Point", "coordinates": [117.8038, 30.931]},
                }
            ],
        },
    ).json()
    assert features["results"][0]["id"] == 7
    assert features["results"][0]["candidates"] == [G2, G5]


def test_post_locate_over_the_limit_is_413(client: TestClient):
    too_many = [{"lon": 117.801, "lat": 30.931}] * 6
    assert client.post("/api/v1/locate", json=too_many).status_code == 413
    huge = client.post(
        "/api/v1/locate",
        content=b"[" + b" " * 30_000 + b"]",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413


def test_post_locate_wrong_shape_is_422(client: TestClient):
    response = client.post("/api/v1/locate", json={"lon": 1})
    assert response.status_code == 422 and "expected a list" in response.json()["message"]


# -- batch CSV --------------------------------------------------------------------------------
def test_assign_csv_keeps_order_ids_and_marks_bad_rows(planted: Engine, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text(
        "rid,x,y,note\n"
        "007,117.801,30.931,a\n"
        "2,117.8038,30.931,b\n"
        "3,oops,30.931,c\n"
        "4,117.803,30.929,d\n"
        "5,117.802,30.930,e\n"
    )
    out = tmp_path / "out.csv"
    report = assign_csv(
        planted,
        source,
        out,
        parse_input_crs("wgs84"),
        50.0,
        id_field="rid",
        lon_field="x",
        lat_field="y",
    )
    rows = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(rows.columns) == [
        "id",
        "lon",
        "lat",
        "grid_code",
        "community_code",
        "status",
        "distance_m",
        "reason",
    ]
    assert rows["id"].tolist() == ["007", "2", "3", "4", "5"]
    assert rows["status"].tolist() == ["inside", "ambiguous", "invalid", "outside", "boundary"]
    assert rows["grid_code"].tolist() == [G1, G2, "", "", G1]
    assert rows["lon"][2] == "oops"
    assert rows["reason"].tolist() == [
        "",
        "",
        "coordinates are not numbers: lon='oops', lat='30.931'",
        "",
        "",
    ]
    assert report.by_status == {
        "inside": 1,
        "ambiguous": 1,
        "invalid": 1,
        "outside": 1,
        "boundary": 1,
    }


def test_assign_cli_gcj02_end_to_end(planted: Engine, db_url: str, tmp_path: Path):
    lon, lat = (float(v) for v in wgs84_to_gcj02(117.801, 30.931))
    source = tmp_path / "phones.csv"
    source.write_text(f"id,lon,lat\nr1,{lon!r},{lat!r}\n")
    out = tmp_path / "out.csv"
    done = subprocess.run(
        [
            str(Path(__file__).parents[1] / ".venv/bin/geo-service"),
            "assign",
            str(source),
            "-o",
            str(out),
            "--crs",
            "gcj02",
        ],
        env={"GEO_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(out, dtype=str)["grid_code"].tolist() == [G1]


def test_assign_missing_column_is_named(planted: Engine, tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text("id,lng,lat\n1,117.8,30.9\n")
    with pytest.raises(Exception, match="no column 'lon'"):
        assign_csv(planted, source, tmp_path / "o.csv", parse_input_crs(None), 50.0)
