"""Roles and tokens: every cell of the permission table over HTTP, grid workers' scope,
personal data by role, and the token life cycle (issue, hash only, expiry, revocation)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from geo_service.api.app import create_app
from geo_service.auth import policy
from geo_service.auth.service import TokenCache, add_user, hash_token, revoke_user
from geo_service.cli import app as cli_app
from geo_service.errors import Unauthorized
from geo_service.settings import Settings
from tests import test_incidents
from tests.conftest import ensure_token
from tests.test_incidents import G1, G2, G3, IN_G1, IN_G3

grids_planted = test_incidents.grids_planted

# The permission table of the README, written out again: the tests hold the code to it.
TABLE = """
group                 admin planner dispatcher worker reporter anonymous
health                  Y     Y        Y         Y       Y        Y
map                     Y     Y        Y         Y       Y        Y
layers                  Y     Y        Y         Y       Y        Y
open311.read            Y     Y        Y         Y       Y        Y
incidents.categories    Y     Y        Y         Y       Y        Y
public                  Y     Y        Y         Y       Y        Y
open311.submit          Y     -        Y         Y       Y        -
incidents.report        Y     -        Y         Y       Y        -
incidents.read          Y     -        Y         Y       -        -
incidents.act           Y     -        Y         Y       -        -
incidents.stats         Y     Y        Y         -       -        -
locate                  Y     Y        Y         Y       -        -
buildings               Y     Y        Y         Y       -        -
qa                      Y     Y        -         -       -        -
grids.read              Y     Y        Y         Y       -        -
grids.edit              Y     Y        -         -       -        -
coverage                Y     Y        -         -       -        -
campaigns.read          Y     Y        Y         Y       -        -
campaigns.edit          Y     Y        -         -       -        -
visits.record           Y     -        Y         Y       -        -
metrics                 Y     -        -         -       -        -
"""
_HEAD, *_ROWS = [line.split() for line in TABLE.strip().splitlines()]
ROLES = _HEAD[1:]
EXPECTED = {row[0]: dict(zip(ROLES, (c == "Y" for c in row[1:]), strict=True)) for row in _ROWS}
CELLS = [(group, role) for group in EXPECTED for role in ROLES]

REPORT = {
    "category": "exposed_rubbish",
    "description": "门口垃圾",
    "lon": IN_G1[0],
    "lat": IN_G1[1],
}
# One request per endpoint group: (method, path, json body or form data).
REQUESTS: dict[str, tuple[str, str, dict | None]] = {
    "health": ("GET", "/livez", None),
    "map": ("GET", "/map/planner", None),
    "layers": ("GET", "/ogc/collections", None),
    "open311.read": ("GET", "/open311/v2/services.json", None),
    "incidents.categories": ("GET", "/api/v1/incidents/categories", None),
    "public": ("GET", f"/api/v1/public/grid?lon={IN_G1[0]}&lat={IN_G1[1]}", None),
    "open311.submit": ("POST", "/open311/v2/requests.json", {"service_code": "exposed_rubbish"}),
    "incidents.report": ("POST", "/api/v1/incidents", REPORT),
    "incidents.read": ("GET", "/api/v1/incidents", None),
    "incidents.act": ("PATCH", "/api/v1/incidents/E000001", {"action": "start", "actor": "w"}),
    "incidents.stats": ("GET", "/api/v1/incidents/stats", None),
    "locate": ("GET", f"/api/v1/locate?lon={IN_G1[0]}&lat={IN_G1[1]}", None),
    "buildings": ("GET", f"/api/v1/buildings?grid={G1}", None),
    "qa": ("GET", "/api/v1/qa", None),
    "grids.read": ("GET", f"/api/v1/grids/{G1}/history", None),
    # a preview: allowed callers change nothing the other cells read
    "grids.edit": (
        "POST",
        "/api/v1/grids/merge",
        {"codes": [G1, G2], "reason": "t", "preview": True},
    ),
    "coverage": ("GET", "/api/v1/coverage/summary", None),
    "campaigns.read": ("GET", "/api/v1/campaigns", None),
    # a campaign with due before its start: allowed callers get 422 and store nothing
    "campaigns.edit": (
        "POST",
        "/api/v1/campaigns",
        {"name": "t", "scope": {"grids": [G1]}, "starts": "2026-12-02", "due": "2026-12-01"},
    ),
    # an unknown campaign: allowed callers get 404
    "visits.record": (
        "POST",
        "/api/v1/visits",
        {
            "campaign": 999,
            "round": 1,
            "building": "B1",
            "outcome": "visited",
            "lon": IN_G1[0],
            "lat": IN_G1[1],
        },
    ),
    "metrics": ("GET", "/metrics", None),
}
GRIDS = {"worker": [G1]}


@pytest.fixture(scope="module")
def tokens(grids_planted: Engine, settings: Settings) -> dict[str, str]:
    """One token per role (a worker of grid G1); anonymous has none."""
    return {
        role: ensure_token(
            grids_planted,
            settings,
            f"test-{role}",
            role,
            f"test-token-of-the-{role}",
            grids=GRIDS.get(role, ()),
        )
        for role in policy.TOKEN_ROLES
    }


@pytest.fixture(scope="module")
def app_settings(settings: Settings) -> Settings:
    return settings.updated(auth={"cache_s": 0.0})  # revocation seen at once


@pytest.fixture(scope="module")
def server(grids_planted: Engine, app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings, engine=grids_planted), headers={}) as client:
        yield client


@pytest.fixture(scope="module")
def incidents(grids_planted: Engine, server: TestClient, tokens: dict[str, str]) -> list[str]:
    """Two reports in G1 (E000001, E000002) and one in G3 (E000003), dispatched."""
    with grids_planted.begin() as conn:
        conn.execute(text("TRUNCATE incident_events, incidents RESTART IDENTITY CASCADE"))
    admin = as_(tokens, "admin")
    refs = []
    for where in (IN_G1, IN_G1, IN_G3):
        body = {
            **REPORT,
            "lon": where[0],
            "lat": where[1],
            "reporter_phone": "13800000000",
            "description": f"邻里纠纷 {len(refs)}",
            "address": "长江西路 1 号",
        }
        response = server.post("/api/v1/incidents", json=body, headers=admin)
        assert response.status_code == 201, response.text
        refs.append(response.json()["ref"])
    return refs


def as_(tokens: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"} if role in tokens else {}


def call(server: TestClient, tokens: dict[str, str], role: str, group: str):
    method, path, body = REQUESTS[group]
    headers = as_(tokens, role)
    if group == "open311.submit":
        form = {**(body or {}), "lat": str(IN_G1[1]), "long": str(IN_G1[0])}
        if role in tokens:
            form["api_key"] = tokens[role]
        return server.post(path, data=form)
    if method == "GET":
        return server.get(path, headers=headers)
    return server.request(method, path, json=body, headers=headers)


# -- the table -----------------------------------------------------------------------------------
def test_the_code_holds_the_table_of_the_readme():
    assert tuple(ROLES) == policy.ROLES
    assert {group: {r for r, ok in row.items() if ok} for group, row in EXPECTED.items()} == {
        group: set(roles) for group, roles in policy.PERMISSIONS.items()
    }
    assert set(REQUESTS) == set(policy.PERMISSIONS)  # a new group needs its request here


@pytest.mark.parametrize(("group", "role"), CELLS, ids=[f"{g}-{r}" for g, r in CELLS])
def test_permission_cell(server, tokens, incidents, group: str, role: str):
    response = call(server, tokens, role, group)
    if EXPECTED[group][role]:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text
    elif group == "open311.submit":
        assert response.status_code == 403, response.text  # Open311: a bad api_key is 403
    elif role == "anonymous":
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
    else:
        assert response.status_code == 403, response.text
        assert role in response.json()["message"]


# -- finer rules -----------------------------------------------------------------------------------
def test_a_grid_worker_sees_and_acts_on_their_grids_incidents_only(server, tokens, incidents):
    worker = as_(tokens, "worker")
    listed = server.get("/api/v1/incidents", headers=worker).json()
    in_g1 = server.get("/api/v1/incidents", params={"grid": G1}, headers=as_(tokens, "admin"))
    assert {i["grid_code"] for i in listed["items"]} == {G1}
    assert listed["total"] == in_g1.json()["total"] >= 2
    other = incidents[2]  # in G3
    assert server.get(f"/api/v1/incidents/{other}", headers=worker).status_code == 404
    start = {"action": "start", "actor": "W1"}
    assert server.patch(f"/api/v1/incidents/{other}", json=start, headers=worker).status_code == 404
    own = server.get(f"/api/v1/incidents/{incidents[1]}", headers=worker).json()
    assert own["reporter"]["phone"] == "13800000000"  # their own grid's case file, in full
    overdue = server.get("/api/v1/incidents/overdue", headers=worker).json()
    assert all(i["grid_code"] == G1 for i in overdue["items"])


def test_each_event_records_the_caller_beside_the_actor_it_names(server, tokens, incidents):
    """`actor` is who the request says did it; `recorded_by` is who the token says sent it."""
    report = {**REPORT, "lon": IN_G1[0], "lat": IN_G1[1], "description": "占道经营 记录人"}
    created = server.post("/api/v1/incidents", json=report, headers=as_(tokens, "dispatcher"))
    assert created.status_code == 201, created.text
    ref = created.json()["ref"]
    started = server.patch(
        f"/api/v1/incidents/{ref}",
        json={"action": "start", "actor": "W1", "note": "到场"},
        headers=as_(tokens, "worker"),
    )
    assert started.status_code == 200, started.text
    events = server.get(f"/api/v1/incidents/{ref}", headers=as_(tokens, "admin")).json()["events"]
    assert [(e["action"], e["actor"], e["recorded_by"]) for e in events] == [
        ("receive", "system", "test-dispatcher"),
        ("file", "system", "test-dispatcher"),
        ("dispatch", "system", "test-dispatcher"),
        ("start", "W1", "test-worker"),
    ]


def test_an_idempotency_key_belongs_to_its_caller(server, tokens, incidents):
    """Another caller's key is a different key: it neither replays nor reveals their case."""
    body = {**REPORT, "lon": IN_G1[0], "lat": IN_G1[1], "description": "同一个键"}
    key = {"Idempotency-Key": "report-1"}
    mine = server.post("/api/v1/incidents", json=body, headers={**as_(tokens, "reporter"), **key})
    theirs = server.post(
        "/api/v1/incidents", json=body, headers={**as_(tokens, "dispatcher"), **key}
    )
    again = server.post("/api/v1/incidents", json=body, headers={**as_(tokens, "reporter"), **key})
    assert (mine.status_code, theirs.status_code, again.status_code) == (201, 201, 201)
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["ref"] != mine.json()["ref"] == again.json()["ref"]
    assert again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("action", ["close", "cancel", "dispatch", "file", "reopen"])
def test_a_grid_worker_only_starts_and_reports_work(server, tokens, incidents, action):
    body = {"action": action, "actor": "W1"}
    response = server.patch(
        f"/api/v1/incidents/{incidents[1]}", json=body, headers=as_(tokens, "worker")
    )
    assert response.status_code == 403 and action in response.json()["message"]


def test_open311_shows_what_residents_wrote_only_to_who_may_read_the_case(
    server, tokens, incidents
):
    def records(role: str) -> dict[str, dict]:
        found = server.get(
            "/open311/v2/requests.json",
            params={"service_request_id": ",".join(incidents)},
            headers=as_(tokens, role),
        ).json()
        return {r["service_request_id"]: r for r in found}

    public = records("anonymous")
    assert set(public) == set(incidents)
    for record in public.values():
        assert record["description"] is None and record["address"] is None
        assert "13800000000" not in str(record)
    xml = server.get("/open311/v2/requests.xml").text
    assert "邻里纠纷" not in xml and "长江西路" not in xml and "13800000000" not in xml
    assert all(r["description"] for r in records("dispatcher").values())
    worker = records("worker")
    assert {ref for ref, r in worker.items() if r["description"]} == set(incidents[:2])  # G1


def test_open311_shows_exact_points_only_to_who_may_read_the_case(server, tokens, incidents):
    lon, lat = IN_G1[0] + 0.000123, IN_G1[1] + 0.000117  # a door, not a street
    body = {**REPORT, "lon": lon, "lat": lat}
    ref = server.post("/api/v1/incidents", json=body, headers=as_(tokens, "admin")).json()["ref"]

    def point(role: str) -> tuple[float, float]:
        [found] = server.get(f"/open311/v2/requests/{ref}.json", headers=as_(tokens, role)).json()
        return found["lat"], found["long"]

    assert point("dispatcher") == pytest.approx((lat, lon))
    assert point("anonymous") == (round(lat, 3), round(lon, 3))  # about 100 m: the street
    assert point("reporter") == (round(lat, 3), round(lon, 3))


@pytest.mark.parametrize("role", ["reporter", "admin"])
def test_a_reporter_learns_where_their_case_went_and_nothing_about_others(
    server, tokens, incidents, role
):
    # Beside an earlier report in G1: the answer to staff names a likely duplicate and the
    # grid's workers; a reporter's names only their own case.
    body = {**REPORT, "lon": IN_G1[0], "lat": IN_G1[1], "reporter_phone": "13911112222"}
    answer = server.post("/api/v1/incidents", json=body, headers=as_(tokens, role))
    assert answer.status_code == 201, answer.text
    seen = answer.json()
    if role == "reporter":
        assert set(seen) == {
            "ref", "status", "category", "category_name", "grid_name", "community_name",
            "received_at", "due_at",
        }  # fmt: skip
        assert seen["grid_name"] and seen["due_at"] and seen["status"] == "dispatched"
    else:
        assert seen["workers"] and "possible_duplicate_of" in seen


def test_hidden_layers_are_unknown_to_who_may_not_see_them(server, tokens, incidents):
    public = server.get("/ogc/collections").json()["collections"]
    ids = {c["id"] for c in public}
    assert "incidents" not in ids and "grids" in ids
    for path in (
        "/ogc/collections/incidents",
        "/ogc/collections/incidents/items",
        "/tiles/incidents/14/13600/6700.mvt",
        "/tiles/grids,incidents.json",
    ):
        assert server.get(path).status_code == 404, path
    # Like the incident API: a worker reads their own grids' cases there, not every grid's
    # on a map layer; a planner reads no cases at all.
    for role, sees in (("worker", False), ("planner", False), ("dispatcher", True)):
        listed = server.get("/ogc/collections", headers=as_(tokens, role)).json()["collections"]
        assert ("incidents" in {c["id"] for c in listed}) is sees, role
    worker_tile = server.get("/tiles/incidents/14/13600/6700.mvt", headers=as_(tokens, "worker"))
    assert worker_tile.status_code == 404
    items = server.get(
        "/ogc/collections/incidents/items", params={"access_token": tokens["dispatcher"]}
    )
    assert items.status_code == 200 and items.json()["numberMatched"] >= 3


def test_no_token_and_anonymous_switched_off(grids_planted, app_settings, tokens, incidents):
    closed = app_settings.updated(auth={"anonymous": False})
    with TestClient(create_app(closed, engine=grids_planted), headers={}) as client:
        assert client.get("/ogc/collections").status_code == 401
        assert client.get("/open311/v2/services.json").status_code == 401
        assert client.get("/livez").status_code == 200
        assert client.get("/ogc/collections", headers=as_(tokens, "planner")).status_code == 200
    trusted = app_settings.updated(auth={"required": False})
    with TestClient(create_app(trusted, engine=grids_planted), headers={}) as client:
        assert client.get("/api/v1/incidents").status_code == 200  # a trusted network


# -- tokens ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-token-we-issued", "Basic dXNlcjpwYXNz", "Bearer ", "bearer" + " x" * 600],
)
def test_bad_credentials_are_401(server, header):
    response = server.get("/api/v1/incidents", headers={"Authorization": header})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_expired_and_revoked_tokens_are_refused(grids_planted, app_settings, server):
    past = datetime.now(UTC) - timedelta(days=2)
    old = add_user(grids_planted, app_settings, "old-timer", "planner", expires_days=1, now=past)
    response = server.get("/api/v1/qa", headers={"Authorization": f"Bearer {old.token}"})
    assert response.status_code == 401 and "expired" in response.json()["message"]

    fresh = add_user(grids_planted, app_settings, "leaver", "planner")
    headers = {"Authorization": f"Bearer {fresh.token}"}
    assert server.get("/api/v1/qa", headers=headers).status_code == 200
    assert revoke_user(grids_planted, "leaver") == 1
    response = server.get("/api/v1/qa", headers=headers)
    assert response.status_code == 401 and "revoked" in response.json()["message"]


def test_a_cached_token_expires_on_time_and_its_revocation_is_seen_after_the_cache_time(
    grids_planted, app_settings
):
    # Servers trust a checked token for GEO_AUTH_CACHE_S seconds (5 by default): a revocation
    # is seen within that time, an expiry at its moment whatever the cache holds.
    soon = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=1.5)
    brief = add_user(grids_planted, app_settings, "brief", "dispatcher", expires_days=1, now=soon)
    leaving = add_user(grids_planted, app_settings, "leaving", "dispatcher")
    url = grids_planted.url.set(drivername="postgresql").render_as_string(hide_password=False)
    errors: dict[str, str] = {}

    async def calls() -> None:
        async with AsyncConnectionPool(url, min_size=1, open=False) as pool:
            long, short = TokenCache(ttl=3600), TokenCache(ttl=1.0)
            assert (await long.authenticate(pool, brief.token)).name == "brief"
            assert (await short.authenticate(pool, leaving.token)).name == "leaving"
            revoke_user(grids_planted, "leaving")
            assert (await short.authenticate(pool, leaving.token)).name == "leaving"  # cached
            await asyncio.sleep(1.6)
            for name, cache, token in (("brief", long, brief), ("leaving", short, leaving)):
                try:
                    await cache.authenticate(pool, token.token)
                except Unauthorized as exc:
                    errors[name] = exc.message

    asyncio.run(calls())
    assert errors == {"brief": "the token has expired", "leaving": "the token was revoked"}


def test_cli_issues_a_token_once_keeps_only_its_hash_lists_and_revokes(
    grids_planted, db_url, server
):
    runner, env = CliRunner(), {"GEO_DATABASE_URL": db_url}
    added = runner.invoke(
        cli_app, ["users", "add", "wang", "--role", "worker", "--grid", G3], env=env
    )
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("gs_") and len(token) > 40
    with grids_planted.connect() as conn:
        stored = conn.execute(
            text("SELECT token_hash, grids FROM auth_tokens WHERE name = 'wang'")
        ).one()
        dumped = conn.execute(text("SELECT string_agg(t::text, '') FROM auth_tokens t")).scalar()
    assert stored == (hash_token(token), [G3]) and token not in dumped
    headers = {"Authorization": f"Bearer {token}"}
    listed = server.get("/api/v1/incidents", headers=headers).json()
    assert {i["grid_code"] for i in listed["items"]} <= {G3}

    shown = runner.invoke(cli_app, ["users", "list", "--json"], env=env)
    assert '"wang"' in shown.output and token not in shown.output
    revoked = runner.invoke(cli_app, ["users", "revoke", "wang"], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert server.get("/api/v1/incidents", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--role", "worker"], "at least one --grid"),
        (["--role", "planner", "--grid", G1], "workers only"),
        (["--role", "king"], "unknown role"),
        (["--role", "worker", "--grid", "999999999999999"], "no grid"),
    ],
)
def test_cli_refuses_bad_users(grids_planted, db_url, args, fragment):
    result = CliRunner().invoke(
        cli_app, ["users", "add", "li", *args], env={"GEO_DATABASE_URL": db_url}
    )
    assert result.exit_code != 0 and fragment in str(result.exception)
