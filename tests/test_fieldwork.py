"""Field work on the demo city, end to end through the HTTP API and the CLI: campaigns over a
community, visits safe to resend (revisits, far visits flagged, refusals naming the value),
progress that adds up per grid, community and worker, a follow-up visit made an incident in
the building's grid, a worker's walking order; and the tour's pure core on small graphs."""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.coverage import compute
from geo_service.coverage.network import Entries, Graph
from geo_service.fieldwork import rules, tour, visits
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests.conftest import DATA_TABLES, ensure_token

DEMO = Path(__file__).resolve().parent.parent / "shapefiles" / "demo"
CLI = str(Path(sys.executable).parent / "geo-service")
COMMUNITY = "340705001001"  # 石城社区
OTHER_COMMUNITY = "340705001002"
FIELDWORK_TABLES = "campaign_visits, campaign_buildings, campaigns, incident_events, incidents"


# -- the demo city, once per module --------------------------------------------------------------
@pytest.fixture(scope="module")
def city(engine: Engine, settings: Settings) -> Engine:
    """The demo city with its street network computed (for walking routes)."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    for kind in ("communities", "grids", "workers", "buildings", "centers", "roads"):
        name = "workers.csv" if kind == "workers" else f"{kind}.shp"
        import_file(engine, settings, kind, DEMO / name, ImportOptions())
    compute.compute(engine, settings, shapes_too=False)
    return engine


@pytest.fixture
def fresh(city: Engine) -> Engine:
    """The demo city with no campaigns, visits or incidents."""
    with city.begin() as conn:
        conn.execute(text(f"TRUNCATE {FIELDWORK_TABLES} RESTART IDENTITY CASCADE"))
    return city


@pytest.fixture
def client(fresh: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=fresh)) as client:
        yield client


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def one(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def grid_of_buildings(engine: Engine, community: str) -> dict[str, str]:
    """Each building in a grid of the community by the locate rule (the smallest code of the
    grids covering it; the demo city has no building outside every grid)."""
    return dict(
        rows(
            engine,
            """
            SELECT b.code, x.grid FROM buildings b
            CROSS JOIN LATERAL (SELECT min(g.code) AS grid FROM grids g
                                WHERE ST_Covers(g.geom, b.geom)) x
            JOIN grids g ON g.code = x.grid WHERE g.community_code = :c
            """,
            c=community,
        )
    )


def point_of(engine: Engine, building: str) -> tuple[float, float]:
    [(x, y)] = rows(
        engine, "SELECT ST_X(geom), ST_Y(geom) FROM buildings WHERE code = :c", c=building
    )
    return x, y


def campaign(client: TestClient, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "石城社区入户排查",
        "kind": "screening",
        "scope": {"communities": [COMMUNITY]},
        "target": "buildings",
        "rounds": 2,
        "starts": "2020-01-01",
        "due": "2099-12-31",
        **extra,
    }
    response = client.post("/api/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def visit(
    client: TestClient,
    engine: Engine,
    campaign_id: int,
    building: str,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    offset_deg: float = 0.0,
    **extra: Any,
):
    x, y = point_of(engine, building)
    body = {
        "campaign": campaign_id,
        "round": 1,
        "building": building,
        "households_reached": 3,
        "outcome": "visited",
        "lon": x + offset_deg,
        "lat": y,
        **extra,
    }
    sent = dict(headers or {})
    if key is not None:
        sent["Idempotency-Key"] = key
    return client.post("/api/v1/visits", json=body, headers=sent)


@pytest.fixture
def worker_token(city: Engine, settings: Settings) -> tuple[str, str]:
    """A grid worker's token for the first grid of the community: (grid, token)."""
    grid = min(grid_of_buildings(city, COMMUNITY).values())
    token = ensure_token(
        city, settings, "fw-worker", "worker", "fieldwork-worker-token", grids=[grid]
    )
    return grid, token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- campaigns -----------------------------------------------------------------------------------
def test_a_campaign_over_one_community_holds_its_buildings_by_the_locate_rule(
    client: TestClient, fresh: Engine
):
    expected = grid_of_buildings(fresh, COMMUNITY)
    made = campaign(client, target="households", rounds=5)
    assert made["buildings"] == len(expected) > 100
    assert made["households"] == one(
        fresh, "SELECT sum(households) FROM buildings WHERE code = ANY(:c)", c=list(expected)
    )
    assert made["scope"] == {"communities": [COMMUNITY]}
    assert made["grids"] == sorted(set(expected.values()))
    assert made["due"].startswith("2100-01-01T00:00:00")  # a due date: the whole day counts
    snapshot = dict(
        rows(fresh, "SELECT building_code, grid_code FROM campaign_buildings WHERE campaign_id=1")
    )
    assert snapshot == expected
    listed = client.get("/api/v1/campaigns").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == made["id"]
    assert client.get(f"/api/v1/campaigns/{made['id']}").json()["rounds"] == 5
    assert client.get("/api/v1/campaigns/99").status_code == 404


@pytest.mark.parametrize(
    ("change", "status", "named"),
    [
        ({"scope": {"communities": []}}, 422, "empty"),
        ({"scope": {}}, 422, "either communities or grids"),
        ({"scope": {"communities": [COMMUNITY], "grids": ["x"]}}, 422, "one of the two"),
        ({"scope": {"communities": ["340705009999"]}}, 404, "340705009999"),
        ({"scope": {"grids": ["340705001001999"]}}, 404, "340705001001999"),
        ({"rounds": 0}, 422, "rounds"),
        ({"rounds": 21}, 422, "21"),
        ({"starts": "2026-12-10", "due": "2026-12-01"}, 422, "2026-12-01"),
        ({"starts": "yesterday"}, 422, "yesterday"),
        ({"kind": "census"}, 422, "census"),
    ],
)
def test_a_campaign_is_refused_naming_the_bad_value(
    client: TestClient, fresh: Engine, change: dict, status: int, named: str
):
    body = {
        "name": "t",
        "scope": {"communities": [COMMUNITY]},
        "starts": "2026-12-01",
        "due": "2026-12-31",
        **change,
    }
    response = client.post("/api/v1/campaigns", json=body)
    assert response.status_code == status, response.text
    assert named in response.json()["message"]
    assert one(fresh, "SELECT count(*) FROM campaigns") == 0


# -- visits --------------------------------------------------------------------------------------
def test_visits_resent_revisited_far_and_refused(client: TestClient, fresh: Engine):
    made = campaign(client)
    buildings = sorted(grid_of_buildings(fresh, COMMUNITY))
    first, second, third = buildings[:3]

    sent = visit(client, fresh, made["id"], first, key="k-1")
    assert sent.status_code == 201, sent.text
    assert "idempotent-replayed" not in sent.headers
    again = visit(client, fresh, made["id"], first, key="k-1")  # the phone resends
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == sent.json()
    other_body = visit(client, fresh, made["id"], first, key="k-1", households_reached=9)
    assert other_body.status_code == 409 and "k-1" in other_body.json()["message"]
    assert one(fresh, "SELECT count(*) FROM campaign_visits") == 1
    assert sent.json()["revisit"] is False and sent.json()["flagged"] is False

    revisit = visit(client, fresh, made["id"], first, key="k-2")
    assert revisit.status_code == 201 and revisit.json()["revisit"] is True

    far = visit(client, fresh, made["id"], second, key="k-3", offset_deg=0.005)  # ~480 m east
    assert far.status_code == 201, far.text
    assert far.json()["flagged"] is True and far.json()["distance_m"] > 400
    assert "GEO_VISIT_MAX_DISTANCE_M" in far.json()["flag_reason"]

    nobody = visit(client, fresh, made["id"], third, outcome="no_one_home", households_reached=0)
    assert nobody.status_code == 201 and nobody.json()["flagged"] is False

    progress = client.get(f"/api/v1/campaigns/{made['id']}/progress?round=1").json()["city"]
    assert progress["done"] == 2  # first (twice) and second; third: nobody home
    assert (progress["visits"], progress["revisits"], progress["flagged"]) == (4, 1, 1)
    assert progress["no_one_home"] == 1
    assert progress["remaining"] == made["buildings"] - 2

    outside = sorted(grid_of_buildings(fresh, OTHER_COMMUNITY))[0]
    refused = {
        "outside the scope": (visit(client, fresh, made["id"], outside), 422, outside),
        "in the future": (
            visit(client, fresh, made["id"], first, at=_soon(minutes=30)),
            422,
            "future",
        ),
        "round 3 of 2": (visit(client, fresh, made["id"], first, round=3), 422, "1..2"),
        "nobody home, households met": (
            visit(client, fresh, made["id"], first, outcome="no_one_home"),
            422,
            "no_one_home",
        ),
        "an unknown campaign": (visit(client, fresh, 99, first), 404, "campaign 99"),
    }
    for what, (response, status, named) in refused.items():
        assert response.status_code == status, (what, response.text)
        assert named in response.json()["message"], what
    unknown = client.post(
        "/api/v1/visits",
        json={"campaign": made["id"], "round": 1, "building": "B9999999", "outcome": "visited",
              "lon": 117.8, "lat": 30.9},
    )  # fmt: skip
    assert unknown.status_code == 404 and "B9999999" in unknown.json()["message"]
    within_skew = visit(client, fresh, made["id"], first, at=_soon(minutes=3))
    assert within_skew.status_code == 201, within_skew.text
    assert one(fresh, "SELECT count(*) FROM campaign_visits") == 5


def test_the_campaign_layer_shows_each_building_done_flagged_or_not_yet(
    client: TestClient, fresh: Engine
):
    made = campaign(client)
    first, second, third = sorted(grid_of_buildings(fresh, COMMUNITY))[:3]
    assert visit(client, fresh, made["id"], first).status_code == 201
    assert visit(client, fresh, made["id"], second, offset_deg=0.005).status_code == 201
    nobody = visit(client, fresh, made["id"], third, outcome="no_one_home", households_reached=0)
    assert nobody.status_code == 201
    items = client.get(
        "/ogc/collections/campaign_buildings/items",
        params={"campaign": made["id"], "limit": 10000},
    )
    assert items.status_code == 200, items.text
    features = {f["properties"]["building"]: f["properties"] for f in items.json()["features"]}
    assert len(features) == made["buildings"]
    assert features[first]["status"] == "done" and features[first]["visits"] == 1
    assert features[second]["status"] == "flagged"
    assert features[third]["status"] == "not_yet" and features[third]["visits"] == 1
    statuses = [p["status"] for p in features.values()]
    progress = client.get(f"/api/v1/campaigns/{made['id']}/progress?round=1").json()["city"]
    assert statuses.count("done") + statuses.count("flagged") == progress["done"]
    assert {p["round"] for p in features.values()} == {1}
    # a worker reads progress through the campaign API, not this layer; anonymous neither
    assert client.get(
        "/ogc/collections/campaign_buildings/items", headers={"Authorization": ""}
    ).status_code in (401, 403, 404)


def _soon(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat(timespec="seconds")


def test_the_clock_skew_allowed_is_a_setting(fresh: Engine, settings: Settings):
    strict = settings.updated(grids={"visit_clock_skew_s": 60})
    with TestClient(create_app(strict, engine=fresh)) as client:
        made = campaign(client)
        code = sorted(grid_of_buildings(fresh, COMMUNITY))[0]
        inside = visit(client, fresh, made["id"], code, at=_soon(minutes=0.5))
        assert inside.status_code == 201, inside.text
        ahead = _soon(minutes=2)  # within the default 5 minutes, beyond this city's minute
        refused = visit(client, fresh, made["id"], code, at=ahead)
        assert refused.status_code == 422
        message = refused.json()["message"]
        assert ahead in message and "60 s" in message and "GEO_VISIT_CLOCK_SKEW_S" in message
    assert one(fresh, "SELECT count(*) FROM campaign_visits") == 1


def test_copies_of_a_visit_arriving_at_once_are_held_once(
    client: TestClient, fresh: Engine, settings: Settings
):
    """A phone that hung up resends at once: the copies race. While another transaction
    holds the building, every copy finds no visit under its key; the first to get the
    building stores it, and the others meet the key on insert and answer that visit."""
    made = campaign(client)
    code = sorted(grid_of_buildings(fresh, COMMUNITY))[0]
    x, y = point_of(fresh, code)
    body = {"campaign": made["id"], "round": 1, "building": code, "households_reached": 2,
            "outcome": "visited", "lon": x, "lat": y}  # fmt: skip
    copies = 4
    with fresh.connect() as holder, ThreadPoolExecutor(copies) as pool:
        holder.execute(
            text("SELECT 1 FROM campaign_buildings WHERE campaign_id = :c AND building_code = :b "
                 "FOR UPDATE"), {"c": made["id"], "b": code},
        )  # fmt: skip
        sent = [
            pool.submit(visits.record_visit, fresh, settings, body, "dropped", recorded_by="p")
            for _ in range(copies)
        ]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and one(
            fresh, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'",
        ) < copies:  # fmt: skip
            time.sleep(0.05)
        holder.commit()
        answers = [s.result(timeout=30) for s in sent]
    assert len({a.body["id"] for a in answers}) == 1
    assert sorted(a.created for a in answers) == [False] * (copies - 1) + [True]
    assert one(fresh, "SELECT count(*) FROM campaign_visits") == 1
    progress = client.get(f"/api/v1/campaigns/{made['id']}/progress?round=1").json()["city"]
    assert (progress["visits"], progress["revisits"], progress["done"]) == (1, 0, 1)


def test_keys_are_per_caller(client: TestClient, fresh: Engine, worker_token):
    grid, token = worker_token
    made = campaign(client)
    mine = sorted(b for b, g in grid_of_buildings(fresh, COMMUNITY).items() if g == grid)
    admin = visit(client, fresh, made["id"], mine[0], key="same")
    worker = visit(client, fresh, made["id"], mine[0], key="same", headers=bearer(token))
    assert admin.status_code == worker.status_code == 201
    assert admin.json()["id"] != worker.json()["id"]
    assert worker.json()["recorded_by"] == "fw-worker" and worker.json()["revisit"] is True


def test_a_worker_records_visits_in_their_own_grids_only(
    client: TestClient, fresh: Engine, worker_token
):
    grid, token = worker_token
    made = campaign(client)
    by_grid = grid_of_buildings(fresh, COMMUNITY)
    mine = next(b for b, g in sorted(by_grid.items()) if g == grid)
    theirs = next(b for b, g in sorted(by_grid.items()) if g != grid)
    assert visit(client, fresh, made["id"], mine, headers=bearer(token)).status_code == 201
    refused = visit(client, fresh, made["id"], theirs, headers=bearer(token))
    assert refused.status_code == 403 and by_grid[theirs] in refused.json()["message"]
    # ... and sees only their grids' progress (the city's figures stay the campaign's)
    progress = client.get(f"/api/v1/campaigns/{made['id']}/progress", headers=bearer(token)).json()
    assert [item["code"] for item in progress["items"]] == [grid]
    assert progress["city"]["buildings"] == made["buildings"]
    listed = client.get("/api/v1/visits", headers=bearer(token)).json()
    assert listed["total"] == 1 and listed["items"][0]["grid_code"] == grid
    # nor creates campaigns (anonymous callers: tests/test_auth.py)
    body = {"name": "x", "scope": {"grids": [grid]}, "starts": "2026-01-01", "due": "2026-02-01"}
    assert client.post("/api/v1/campaigns", json=body, headers=bearer(token)).status_code == 403


# -- progress ------------------------------------------------------------------------------------
def test_progress_by_grid_community_and_worker_adds_up(client: TestClient, fresh: Engine):
    made = campaign(client, scope={"communities": [COMMUNITY, OTHER_COMMUNITY]}, rounds=2)
    by_grid = grid_of_buildings(fresh, COMMUNITY) | grid_of_buildings(fresh, OTHER_COMMUNITY)
    # every 29th building visited in round 1, every 31st in round 2, two of them twice
    codes = sorted(by_grid)
    for i, code in enumerate(codes[::29]):
        assert visit(client, fresh, made["id"], code, households_reached=i % 4).status_code == 201
    for code in codes[::31]:
        assert visit(client, fresh, made["id"], code, round=2).status_code == 201
    for code in codes[:58:29]:
        assert visit(client, fresh, made["id"], code).status_code == 201
    # what each visit added, summed as they came, is what the visits themselves say
    recount = rows(
        fresh,
        """
        SELECT round, grid_code, count(*) FILTER (WHERE reached)::int,
               coalesce(sum(least(met, households)) FILTER (WHERE reached), 0)::int,
               sum(n)::int, sum(n - 1)::int
        FROM (SELECT v.round, v.grid_code, v.building_code, cb.households, count(*) AS n,
                     bool_or(v.outcome <> 'no_one_home') AS reached,
                     max(v.households_reached) FILTER (WHERE v.outcome <> 'no_one_home') AS met
              FROM campaign_visits v JOIN campaign_buildings cb
                ON cb.campaign_id = v.campaign_id AND cb.building_code = v.building_code
              GROUP BY 1, 2, 3, 4) per_building
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
    )
    kept = rows(
        fresh,
        "SELECT round, grid_code, buildings_done, households_done, visits, revisits "
        "FROM campaign_progress ORDER BY 1, 2",
    )
    assert kept == recount and len(kept) > 10
    base = f"/api/v1/campaigns/{made['id']}/progress"
    for round_, done in ((1, len(codes[::29])), (2, len(codes[::31]))):
        answers = {by: client.get(f"{base}?by={by}&round={round_}").json() for by in
                   ("grid", "community", "worker")}  # fmt: skip
        city = answers["grid"]["city"]
        assert city["done"] == done and city["in_scope"] == len(codes)
        for by, answer in answers.items():
            assert answer["city"] == city
            for field in ("in_scope", "done", "remaining", "visits", "revisits", "flagged"):
                total = sum(item[field] for item in answer["items"])
                assert total == pytest.approx(city[field], abs=0.01), (by, field)
        assert len(answers["community"]["items"]) == 2
        assert len(answers["grid"]["items"]) == len(set(by_grid.values()))
    whole = client.get(base).json()["city"]  # every round: each building once per round
    assert whole["in_scope"] == 2 * len(codes)
    assert whole["done"] == len(codes[::29]) + len(codes[::31])
    assert whole["revisits"] == 2

    exported = client.get(f"{base}?by=community&round=1&format=csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["community"] for r in table] == [COMMUNITY, OTHER_COMMUNITY, "city"]
    assert int(table[-1]["done"]) == len(codes[::29])
    households = client.get(f"{base}?round=1").json()
    assert households["target"] == "buildings"
    assert client.get(f"{base}?round=3").status_code == 422
    assert client.get(f"{base}?by=street").status_code == 422


def test_households_count_the_best_visit_never_more_than_the_building_has(
    client: TestClient, fresh: Engine
):
    made = campaign(client, target="households", rounds=1)
    code = sorted(grid_of_buildings(fresh, COMMUNITY))[0]
    has = one(fresh, "SELECT households FROM buildings WHERE code = :c", c=code)
    visit(client, fresh, made["id"], code, households_reached=1)
    visit(client, fresh, made["id"], code, households_reached=has + 50)
    city = client.get(f"/api/v1/campaigns/{made['id']}/progress").json()["city"]
    assert city["done"] == has and city["in_scope"] == made["households"]
    assert city["buildings_done"] == 1 and city["revisits"] == 1


def test_a_grids_figures_are_shared_among_its_workers_and_a_grid_nobody_serves_has_a_row():
    def grid(code: str, community: str, buildings: int, done: int) -> dict[str, Any]:
        counts = dict.fromkeys(rules.COUNTS, 0) | {"buildings": buildings, "buildings_done": done}
        return {"code": code, "name": code, "community_code": community,
                "community_name": community, **counts}  # fmt: skip

    grids = [grid("G1", "C1", 10, 3), grid("G2", "C1", 6, 6), grid("G3", "C2", 4, 0)]
    workers = {"G1": [("W1", "甲"), ("W2", "乙")], "G2": [("W2", "乙")]}
    items = rules.rollup(grids, "worker", "buildings", 1, workers)
    assert [(i["code"], i["in_scope"], i["done"], i["grids"]) for i in items] == [
        ("W1", 5, 1.5, ["G1"]),
        ("W2", 11, 7.5, ["G1", "G2"]),
        (None, 4, 0, ["G3"]),
    ]
    per_community = rules.rollup(grids, "community", "buildings", 2, workers)
    assert [(i["code"], i["in_scope"], i["remaining"]) for i in per_community] == [
        ("C1", 32, 23),
        ("C2", 8, 8),
    ]
    assert rules.totals(grids, "buildings", 1)["share_done"] == 0.45
    empty = rules.totals([grid("G9", "C9", 0, 0)], "buildings", 1)
    assert empty["share_done"] is None and empty["remaining"] == 0


def test_what_a_visit_adds_to_its_buildings_round():
    first = {"visits": 0, "reached": False, "households": 0}
    assert rules.added("visited", 5, 12, first) == (True, 5)
    assert rules.added("no_one_home", 0, 12, first) == (False, 0)
    after = {"visits": 1, "reached": True, "households": 5}
    assert rules.added("refused", 3, 12, after) == (False, 0)  # no more than the best visit
    assert rules.added("follow_up", 40, 12, after) == (False, 7)  # never more than it has


# -- a follow-up becomes an incident --------------------------------------------------------------
def test_a_follow_up_visit_becomes_an_incident_in_the_buildings_grid(
    client: TestClient, fresh: Engine
):
    made = campaign(client)
    by_grid = grid_of_buildings(fresh, COMMUNITY)
    code = sorted(by_grid)[5]
    follow = visit(client, fresh, made["id"], code, outcome="follow_up", note="独居老人家中漏水")
    assert follow.status_code == 201
    vid = follow.json()["id"]
    made_incident = client.post(f"/api/v1/visits/{vid}/incident", json={"category": "other"})
    assert made_incident.status_code == 201, made_incident.text
    incident = made_incident.json()
    assert incident["grid_code"] == by_grid[code] == follow.json()["grid_code"]
    assert incident["description"] == "独居老人家中漏水"
    assert incident["status"] == "dispatched" and incident["source"] == "visit"
    assert incident["events"][0]["recorded_by"] == "test-admin"
    assert client.get(f"/api/v1/visits/{vid}").json()["incident_ref"] == incident["ref"]

    again = client.post(f"/api/v1/visits/{vid}/incident", json={"category": "other"})
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["ref"] == incident["ref"]
    assert one(fresh, "SELECT count(*) FROM incidents") == 1
    other = client.post(f"/api/v1/visits/{vid}/incident", json={"category": "noise"})
    assert other.status_code == 409

    plain = visit(client, fresh, made["id"], code).json()["id"]
    refused = client.post(f"/api/v1/visits/{plain}/incident", json={"category": "other"})
    assert refused.status_code == 409 and "follow_up" in refused.json()["message"]
    assert client.post("/api/v1/visits/999/incident", json={"category": "other"}).status_code == 404
    unknown = client.post(f"/api/v1/visits/{vid}/incident", json={"category": "nope"})
    assert unknown.status_code in (201, 409)  # the visit already has its incident


# -- the walking route ---------------------------------------------------------------------------
def test_a_workers_route_visits_every_unvisited_building_once_along_the_streets(
    client: TestClient, fresh: Engine, worker_token
):
    grid, token = worker_token
    made = campaign(client)
    mine = sorted(b for b, g in grid_of_buildings(fresh, COMMUNITY).items() if g == grid)
    assert len(mine) >= 10
    for code in mine[:3]:
        visit(client, fresh, made["id"], code)
    visit(client, fresh, made["id"], mine[3], outcome="no_one_home", households_reached=0)
    x, y = point_of(fresh, mine[-1])
    response = client.get(
        f"/api/v1/campaigns/{made['id']}/route",
        params={"round": 1, "lon": x + 0.001, "lat": y},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    stops = [s["building"] for s in answer["stops"]]
    assert sorted(stops) == mine[3:]  # once each; nobody home: still to visit
    assert answer["distances"]["metric"] == "walk"
    assert answer["walk_m"] <= answer["nearest_neighbour_m"] + 1e-6
    assert answer["lower_bound_m"] <= answer["walk_m"] and answer["ratio_to_lower_bound"] >= 1
    assert answer["stops"][-1]["walk_m"] == pytest.approx(answer["walk_m"], abs=0.5)
    speed = 4.0 * 1000 / 60
    assert answer["minutes"] == pytest.approx(answer["walk_m"] / speed, abs=0.1)
    assert [s["tried"] for s in answer["stops"] if s["building"] == mine[3]] == [True]

    # others name the grid; a worker may not ask for another's
    assert (
        client.get(
            f"/api/v1/campaigns/{made['id']}/route", params={"round": 1, "lon": x, "lat": y}
        ).status_code
        == 422
    )
    by_admin = client.get(
        f"/api/v1/campaigns/{made['id']}/route",
        params={"round": 1, "lon": x, "lat": y, "grid": grid},
    )
    assert by_admin.status_code == 200 and len(by_admin.json()["stops"]) == len(mine) - 3
    another = next(g for g in made["grids"] if g != grid)
    refused = client.get(
        f"/api/v1/campaigns/{made['id']}/route",
        params={"round": 1, "lon": x, "lat": y, "grid": another},
        headers=bearer(token),
    )
    assert refused.status_code == 403


# -- the CLI -------------------------------------------------------------------------------------
def geo(*args: str, db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "GEO_DATABASE_URL": db_url}
    return subprocess.run(
        [CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_adds_lists_reports_and_exports_campaigns(
    client: TestClient, fresh: Engine, db_url: str, tmp_path: Path
):
    added = geo(
        "campaigns", "add", "三登门五必访", "--kind", "routine", "--community", COMMUNITY,
        "--rounds", "3", "--starts", "2020-01-01", "--due", "2099-01-01", "--json",
        db_url=db_url, cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    made = json.loads(added.stdout)
    assert made["rounds"] == 3 and made["buildings"] > 100
    code = sorted(grid_of_buildings(fresh, COMMUNITY))[0]
    assert visit(client, fresh, made["id"], code).status_code == 201

    listed = geo("campaigns", "list", db_url=db_url, cwd=tmp_path)
    assert listed.returncode == 0 and "三登门五必访" in listed.stdout
    report = geo("campaigns", "progress", str(made["id"]), "--by", "community", "--round", "1",
                 "--json", db_url=db_url, cwd=tmp_path)  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["city"]["done"] == 1
    table = geo("campaigns", "progress", str(made["id"]), db_url=db_url, cwd=tmp_path)
    assert table.returncode == 0 and COMMUNITY[:9] in table.stdout
    out = tmp_path / "progress.csv"
    exported = geo("campaigns", "export", str(made["id"]), str(out), "--by", "worker",
                   db_url=db_url, cwd=tmp_path)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("worker,name,in_scope,done") and lines[-1].startswith("city,")

    missing = geo("campaigns", "progress", "99", db_url=db_url, cwd=tmp_path)
    assert missing.returncode == 4 and "campaign 99" in missing.stderr
    bad = geo("campaigns", "add", "x", "--community", COMMUNITY, "--rounds", "30", "--starts",
              "2026-01-01", "--due", "2026-02-01", db_url=db_url, cwd=tmp_path)  # fmt: skip
    assert bad.returncode in (2, 3) and "30" in bad.stderr
    assert "Traceback" not in bad.stderr + missing.stderr


# -- schema --------------------------------------------------------------------------------------
def test_migration_matches_the_model(city: Engine):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from geo_service.db.models import metadata

    with city.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diff if "campaign" in repr(d)] == []


# -- the tour, alone -----------------------------------------------------------------------------
def _square_graph() -> Graph:
    """A 100 m square of streets: nodes 0 (0,0), 1 (100,0), 2 (100,100), 3 (0,100), and a
    dead end 4 off node 1 (200, 0)."""
    source = np.array([0, 1, 2, 3, 1])
    target = np.array([1, 2, 3, 0, 4])
    return Graph(5, source, target, np.full(5, 100.0))


def test_walks_follow_the_streets_access_legs_and_partial_edges():
    graph = _square_graph()
    # a place 10 m off the middle of edge 0-1, one 5 m off the middle of edge 2-3 (opposite),
    # one at the dead end, and one off the network
    places = Entries(
        np.array([0, 2, 4, -1]), np.array([0.5, 0.5, 1.0, 0.0]), np.array([10.0, 5.0, 0, np.inf])
    )
    d = tour.walk_matrix(graph, places)
    assert d[0, 1] == pytest.approx(10 + 50 + 100 + 50 + 5)  # round a corner either way
    assert d[0, 2] == pytest.approx(10 + 50 + 100)
    assert d[1, 2] == pytest.approx(5 + 50 + 100 + 100)  # via 2, 1 to the dead end
    assert np.isinf(d[3, :3]).all() and d[3, 3] == 0
    assert (d == d.T).all()
    same_edge = Entries(np.array([0, 0]), np.array([0.2, 0.9]), np.array([3.0, 4.0]))
    assert tour.walk_matrix(graph, same_edge)[0, 1] == pytest.approx(3 + 70 + 4)
    limited = tour.walk_matrix(graph, places, limit=200)
    assert np.isinf(limited[1, 2]) and limited[0, 2] == pytest.approx(160)


def test_straight_lines_fill_what_the_network_cannot_walk():
    lon, lat = np.array([117.80, 117.81]), np.array([30.93, 30.93])
    straight = tour.straight_matrix(lon, lat)
    assert straight[0, 1] == pytest.approx(955.6, abs=1)  # 0.01° of longitude at 30.93° N
    d, missing = tour.filled(np.array([[0, np.inf], [np.inf, 0]]), straight)
    assert missing == 1 and d[0, 1] == straight[0, 1]


def test_a_line_of_houses_is_walked_end_to_end():
    xs = np.array([0.0, 50, 10, 40, 20, 30])  # start at 0, houses scattered along a street
    d = np.abs(xs[:, None] - xs[None, :])
    walked = tour.plan(d)
    assert walked.order == [0, 2, 4, 5, 3, 1] and walked.length == 50
    assert walked.lower_bound == 50 and walked.ratio == 1


def test_two_opt_untangles_a_crossing():
    pts = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    d = np.linalg.norm(pts[:, None] - pts[None, :], axis=2)
    crossed = [0, 3, 1, 2]  # diagonal, side, diagonal
    untangled = tour.two_opt(d, crossed)
    assert untangled[0] == 0 and tour.path_length(d, untangled) == pytest.approx(3)


def _matrices(draw: Any) -> np.ndarray:
    n = draw(st.integers(1, 7))
    kind = draw(st.sampled_from(["points", "any"]))
    if kind == "points":
        coords = draw(
            st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=n, max_size=n)
        )
        pts = np.array(coords, float)
        return np.linalg.norm(pts[:, None] - pts[None, :], axis=2)  # type: ignore[no-any-return]
    upper = draw(st.lists(st.integers(0, 1000), min_size=n * n, max_size=n * n))
    m = np.array(upper, float).reshape(n, n)
    m = np.triu(m, 1)
    return m + m.T  # type: ignore[no-any-return]


matrices = st.composite(_matrices)


@given(d=matrices(), data=st.data())
@hypothesis_settings(max_examples=300, deadline=None)
def test_two_opt_never_lengthens_a_path_and_keeps_every_place_once(d: np.ndarray, data):
    n = len(d)
    rest = data.draw(st.permutations(list(range(1, n))))
    start = [0, *rest]
    better = tour.two_opt(d, start)
    assert better[0] == 0 and sorted(better) == list(range(n))
    assert tour.path_length(d, better) <= tour.path_length(d, start) + 1e-9
    walked = tour.plan(d)
    assert walked.length <= walked.nearest_neighbour_length + 1e-9
    # the spanning tree is a lower bound of the best path (checked by brute force)
    best = min(
        (tour.path_length(d, [0, *p]) for p in itertools.permutations(range(1, n))),
        default=0.0,
    )
    assert walked.lower_bound <= best + 1e-9 <= walked.length + 2e-9
