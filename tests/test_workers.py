"""Grid workers: several grids each, assignments with a from and a to, leaving, and every
reader (locate, incidents, QA, grid edits) seeing today's assignments."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from geo_service.api.app import create_app
from geo_service.settings import Settings
from tests.test_grid_edits import city, one, reset_grids  # noqa: F401 (fixture)

CLI = str(Path(sys.executable).parent / "geo-service")
G5, G6 = "340705001001005", "340705001001006"


@pytest.fixture
def client(city: Engine, settings: Settings) -> Iterator[TestClient]:  # noqa: F811
    reset_grids(city, settings)
    with TestClient(create_app(settings, engine=city)) as client:
        yield client


def test_a_worker_serves_several_grids_and_leaves(client, city):  # noqa: F811
    added = client.post(
        "/api/v1/workers",
        json={"code": "W900001", "name": "周敏", "phone": "13955550001", "grids": [G5, G6]},
    )
    assert added.status_code == 201, added.text
    assert added.json()["grids"] == [G5, G6] and added.json()["home_grid"] == G5
    in_g6 = client.get("/api/v1/workers", params={"grid": G6}).json()["items"]
    assert "W900001" in [w["code"] for w in in_g6]
    located = client.get("/api/v1/locate", params=_inside(city, G6)).json()
    assert "W900001" in [w["code"] for w in located["workers"]]
    before = one(city, "SELECT now()").isoformat()
    off = client.post("/api/v1/workers/W900001/unassign", json={"grids": [G5]})
    assert off.status_code == 200 and off.json()["grids"] == [G6]
    assert off.json()["home_grid"] == G6  # the home grid moves to one still served
    then = client.get("/api/v1/workers", params={"grid": G5, "as_of": before}).json()["items"]
    assert "W900001" in [w["code"] for w in then]
    gone = client.post("/api/v1/workers/W900001/leave")
    assert gone.status_code == 200 and gone.json()["grids"] == [] and gone.json()["left_at"]
    assert [a["grid_code"] for a in gone.json()["assignments"]] == [G5, G6]
    assert all(a["valid_to"] for a in gone.json()["assignments"])
    assert client.post("/api/v1/workers/W900001/leave").status_code == 409
    everyone = {"include_left": "true", "limit": 1000}
    listed = client.get("/api/v1/workers", params=everyone).json()["items"]
    assert "W900001" in [w["code"] for w in listed]
    today = client.get("/api/v1/workers", params={"limit": 1000}).json()["items"]
    assert "W900001" not in [w["code"] for w in today]


def test_a_grid_left_without_a_worker_is_warned_of_and_listed_by_qa(client, city):  # noqa: F811
    lone = one(city, "SELECT code FROM workers WHERE grid_code = :g", g=G5)
    left = client.post(f"/api/v1/workers/{lone}/leave").json()
    assert left["warnings"] == [
        {"kind": "no_worker", "grid": G5, "message": f"grid {G5} has no worker now"}
    ]
    qa = client.get("/api/v1/qa").json()
    community = next(c for c in qa["communities"] if c["code"] == G5[:12])
    assert community["grids_without_worker"] == [G5]
    assert qa["ok"]  # listed, not a tiling fault


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/v1/workers", {"code": "W1", "name": "a", "grids": ["340705001001999"]}, 404,
         "unknown grid code '340705001001999'"),
        ("/api/v1/workers", {"code": "W000001", "name": "a", "grids": [G5]}, 409,
         "already in use"),
        ("/api/v1/workers", {"code": "W1", "name": "a\x07", "grids": [G5]}, 422,
         "holds a control character"),
        ("/api/v1/workers", {"code": "W1", "name": "a", "phone": "1", "grids": [G5]}, 422,
         "phone"),
        ("/api/v1/workers/W999999/assign", {"grids": [G5]}, 404, "unknown worker code"),
        ("/api/v1/workers/W000001/unassign", {"grids": [G6]}, 422, "does not serve grid"),
        ("/api/v1/workers/W000001/assign", {"grids": []}, 422, "grids"),
    ],
)  # fmt: skip
def test_bad_worker_requests_are_named(client, path, body, status, message):
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]


def test_grid_edits_move_every_worker_of_a_retired_grid(client, city):  # noqa: F811
    client.post("/api/v1/workers", json={"code": "W900002", "name": "钱伟", "grids": [G6, G5]})
    merged = client.post("/api/v1/grids/merge", json={"codes": [G5, G6], "reason": "合并"})
    assert merged.status_code == 200, merged.text
    assert "W900002" in merged.json()["grids"][0]["workers"]
    worker = client.get("/api/v1/workers/W900002").json()
    assert worker["grids"] == [G5] and worker["home_grid"] == G5


def test_cli_workers(client, city, db_url):  # noqa: F811
    env = {"GEO_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    run = [CLI, "workers"]
    added = subprocess.run(
        [*run, "add", "W900003", "--name", "孙丽", "--grid", G5, "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["grids"] == [G5]
    listed = subprocess.run(
        [*run, "list", "--grid", G5], capture_output=True, text=True, env=env, check=False
    )
    assert listed.returncode == 0 and "W900003" in listed.stdout and "孙丽" in listed.stdout
    unknown = subprocess.run(
        [*run, "assign", "W900003", "--grid", "nope"], capture_output=True, text=True, env=env,
        check=False,
    )  # fmt: skip
    assert unknown.returncode == 4 and "unknown grid code 'nope'" in unknown.stderr
    usage = subprocess.run(
        [CLI, "workload", "--by", "nobody"], capture_output=True, text=True, env=env, check=False
    )
    assert usage.returncode == 2 and "--by" in usage.stderr and "Traceback" not in usage.stderr


def _inside(engine: Engine, grid: str) -> dict[str, float]:
    lon, lat = (
        one(engine, "SELECT ST_X(ST_PointOnSurface(geom)) FROM grids WHERE code = :g", g=grid),
        one(engine, "SELECT ST_Y(ST_PointOnSurface(geom)) FROM grids WHERE code = :g", g=grid),
    )
    return {"lon": lon, "lat": lat}


# -- workload -------------------------------------------------------------------------------------
def test_workload_per_grid_and_worker_with_its_imbalance(client, city):  # noqa: F811
    grids = client.get("/api/v1/workload").json()
    total = one(city, "SELECT sum(households)::int FROM buildings")
    assert sum(g["households"] for g in grids["items"]) == total
    g5 = next(g for g in grids["items"] if g["code"] == G5)
    assert g5["households_per_worker"] == round(g5["households"] / g5["workers"], 1)
    assert g5["over_target"] == (g5["households_per_worker"] > 300)
    assert grids["city"]["n"] == len(grids["items"]) and grids["city"]["cv"] > 0
    assert set(grids["communities"]) == {g["community_code"] for g in grids["items"]}
    workers = client.get("/api/v1/workload", params={"by": "worker"}).json()
    assert sum(w["households"] for w in workers["items"]) == pytest.approx(total, abs=1)
    csv_text = client.get("/api/v1/workload", params={"format": "csv"}).text
    assert csv_text.splitlines()[0].startswith("code,name,community_code")
    assert len(csv_text.splitlines()) == len(grids["items"]) + 1


def test_workload_as_of_a_moment_before_a_merge(client, city):  # noqa: F811
    before = one(city, "SELECT now()").isoformat()
    client.post("/api/v1/grids/merge", json={"codes": [G5, G6], "reason": "合并"})
    now = {g["code"]: g for g in client.get("/api/v1/workload").json()["items"]}
    then = {
        g["code"]: g
        for g in client.get("/api/v1/workload", params={"as_of": before}).json()["items"]
    }
    assert G6 in then and G6 not in now
    assert now[G5]["households"] == then[G5]["households"] + then[G6]["households"]
    assert now[G5]["workers"] == then[G5]["workers"] + then[G6]["workers"]
