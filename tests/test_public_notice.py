"""The residents' grid notice: anonymous, public fields only, walking minutes, rate-limited."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.api.limits import RateLimiter
from geo_service.coverage import compute
from geo_service.crs import GCJ02, from_storage
from geo_service.errors import TooManyRequests
from geo_service.ingest import import_file
from geo_service.settings import Settings
from tests.conftest import DATA_TABLES
from tests.test_geocode import DEMO_DIR


@pytest.fixture(scope="module")
def city(engine: Engine, settings: Settings) -> Engine:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    for kind in ("communities", "grids", "workers", "buildings", "centers", "roads"):
        name = f"{kind}.csv" if kind == "workers" else f"{kind}.shp"
        import_file(engine, settings, kind, DEMO_DIR / name)
    compute.compute(engine, settings, shapes_too=False)
    return engine


def anonymous(engine: Engine, settings: Settings) -> TestClient:
    return TestClient(create_app(settings, engine=engine), headers={})


@pytest.fixture(scope="module")
def public(city: Engine, settings: Settings) -> Iterator[TestClient]:
    with anonymous(city, settings) as client:
        yield client


def building(engine: Engine, code: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT b.address, ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat, cb.grid_code, "
                "cb.center_code, cb.minutes FROM buildings b "
                "JOIN coverage_buildings cb ON cb.building_code = b.code WHERE b.code = :c"
            ),
            {"c": code},
        ).one()
    return dict(row._mapping)


def test_an_address_gives_the_grid_its_workers_public_details_and_the_walk(public, city):
    b = building(city, "B0000003")
    notice = public.get("/api/v1/public/grid", params={"address": b["address"]})
    assert notice.status_code == 200, notice.text
    body = notice.json()
    assert body["grid"]["code"] == b["grid_code"] and body["community"]["name"]
    assert body["workers"] and all(set(w) == {"name"} for w in body["workers"])  # no phone
    assert body["nearest_center"]["code"] == b["center_code"]
    assert body["nearest_center"]["walk_minutes"] == pytest.approx(b["minutes"], abs=0.01)
    assert "POST /api/v1/incidents" in body["report"]["incidents"]
    assert body["found_by"]["match_type"] == "exact"


def test_a_phone_location_in_gcj02_gives_the_same_grid(public, city):
    b = building(city, "B0000003")
    x, y = from_storage(b["lon"], b["lat"], GCJ02)
    body = public.get(
        "/api/v1/public/grid", params={"lon": float(x), "lat": float(y), "crs": "gcj02"}
    ).json()
    assert body["grid"]["code"] == b["grid_code"]


def test_phones_only_when_the_city_marks_them_public(city, settings):
    shown = settings.updated(grids={"worker_public_fields": ["name", "phone"]})
    b = building(city, "B0000003")
    with anonymous(city, shown) as client:
        body = client.get("/api/v1/public/grid", params={"address": b["address"]}).json()
    assert all(set(w) == {"name", "phone"} and w["phone"] for w in body["workers"])


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"address": "长江西路18号", "lon": "117.8", "lat": "30.9"}, 422, "not both"),
        ({}, 422, "give your address"),
        ({"address": "请尽快处理"}, 404, "no road, estate or community"),
        ({"lon": "117.95", "lat": "30.80"}, 404, "in no grid"),
        ({"lon": "abc", "lat": "30.9"}, 422, "not numbers"),
    ],
)
def test_bad_or_unknown_places_are_named(public, params, status, message):
    answer = public.get("/api/v1/public/grid", params=params)
    assert answer.status_code == status and message in answer.json()["message"]


def test_a_client_asking_too_often_is_told_when_to_come_back(city, settings):
    strict = settings.updated(server={"public_rate_per_minute": 3})
    b = building(city, "B0000003")
    with anonymous(city, strict) as client:
        codes = [
            client.get("/api/v1/public/grid", params={"lon": b["lon"], "lat": b["lat"]}).status_code
            for _ in range(4)
        ]
        last = client.get("/api/v1/public/grid", params={"lon": b["lon"], "lat": b["lat"]})
    assert codes == [200, 200, 200, 429]
    assert last.status_code == 429 and 1 <= int(last.headers["Retry-After"]) <= 60


def test_the_rate_window_slides():
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    limiter.take("a")
    limiter.take("a")
    limiter.take("b")  # another client has its own count
    with pytest.raises(TooManyRequests) as refused:
        limiter.take("a")
    assert refused.value.retry_after == 60
    now[0] = 60.5
    limiter.take("a")  # the first two are a minute old
