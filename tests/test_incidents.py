"""Incidents on a real PostGIS: intake and routing to grids, follow-up, supervision, statistics."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.crs import wgs84_to_gcj02
from geo_service.errors import Conflict
from geo_service.incidents import config, intake
from geo_service.incidents.bodies import IncidentIn, digest
from geo_service.incidents.categories import categories_for
from geo_service.incidents.workflow import due_at
from geo_service.settings import Settings
from tests import factories
from tests.conftest import DATA_TABLES

COMMUNITY = factories.PLANTED_COMMUNITY
G1, G2, G3, G4, G5 = (f"{COMMUNITY}{n:03d}" for n in range(1, 6))
M_PER_DEG_LON = 111_320 * math.cos(math.radians(30.931))
# A 2 x 2 block of grids, plus G5 overlapping G2's east side (an ambiguous area).
PLANTED = {
    G1: box(117.800, 30.930, 117.802, 30.932),
    G2: box(117.802, 30.930, 117.804, 30.932),
    G3: box(117.800, 30.928, 117.802, 30.930),
    G4: box(117.802, 30.928, 117.804, 30.930),
    G5: box(117.8035, 30.930, 117.806, 30.932),
}
IN_G1 = (117.801, 30.931)
IN_G3 = (117.801, 30.929)
IN_OVERLAP = (117.8038, 30.931)
FAR_AWAY = (117.830, 30.929)  # about 2.5 km east of every grid
NEAR_G1_G2 = (117.802 - 10 / M_PER_DEG_LON, 30.931)  # in G1, 10 m from G2


@pytest.fixture(scope="module")
def grids_planted(engine: Engine, settings: Settings, tmp_path_factory) -> Engine:
    """Communities, grids and workers, planted once per module (incidents never change them)."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    workers = [
        ("W1", "张三", "13900000001", G1),
        ("W2", "李四", "13900000002", G1),
        ("W3", "王五", "13900000003", G3),
    ]
    return factories.plant_grids(
        engine, settings, tmp_path_factory.mktemp("planted"), PLANTED, workers
    )


@pytest.fixture
def planted(grids_planted: Engine) -> Engine:
    """The planted grids, with no incidents (refs start again at E000001)."""
    with grids_planted.begin() as conn:
        conn.execute(text("TRUNCATE incident_events, incidents RESTART IDENTITY CASCADE"))
    return grids_planted


@pytest.fixture
def client(planted: Engine, settings: Settings) -> Iterator[TestClient]:
    small = settings.updated(server={"max_body_bytes": 20_000})
    with TestClient(create_app(small, engine=planted)) as client:  # runs the app's lifespan
        yield client


def report(client: TestClient, where=IN_G1, category="exposed_rubbish", **extra):
    body = {"category": category, "description": "小区门口垃圾堆放", **extra}
    if where is not None:
        body.update(lon=where[0], lat=where[1])
    response = client.post("/api/v1/incidents", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def act(client: TestClient, ref: str, action: str, actor: str = "dispatcher", **extra):
    return client.patch(
        f"/api/v1/incidents/{ref}", json={"action": action, "actor": actor, **extra}
    )


def count(engine: Engine, table: str = "incidents") -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


# -- the whole lifecycle ------------------------------------------------------------------------
def test_lifecycle_from_report_to_closure(client: TestClient, settings: Settings):
    incident = report(client, reporter_name="赵六", reporter_phone="13800000000")
    assert incident["ref"] == "E000001"
    assert (incident["status"], incident["grid_code"], incident["community_code"]) == (
        "dispatched",
        G1,
        COMMUNITY,
    )
    assert [w["code"] for w in incident["workers"]] == ["W1", "W2"]
    # The clock starts at dispatch and counts working time (exposed rubbish: 1 working day).
    dispatched = datetime.fromisoformat(incident["dispatched_at"])
    expected = due_at(
        dispatched, categories_for(None)["exposed_rubbish"].limit, config.calendar_of(settings)
    )
    assert datetime.fromisoformat(incident["due_at"]) == expected.replace(microsecond=0)
    assert incident["due_at"].endswith("+08:00")
    assert [
        (e["action"], e["from_status"], e["to_status"], e["actor"]) for e in incident["events"]
    ] == [
        ("receive", None, "received", "system"),
        ("file", "received", "filed", "system"),
        ("dispatch", "filed", "dispatched", "system"),
    ]
    assert incident["allowed_actions"] == ["dispatch", "start", "cancel"]

    ref = incident["ref"]
    assert act(client, ref, "start", "W1", note="到场").json()["status"] == "in_progress"
    assert act(client, ref, "report", "W1", note="已清运").json()["status"] == "reported"
    closed = act(client, ref, "close", "verifier", note="核查属实").json()
    assert closed["status"] == "closed" and closed["closed_at"] is not None
    assert not closed["overdue"]

    fetched = client.get(f"/api/v1/incidents/{ref}").json()
    assert [
        (e["action"], e["to_status"], e["actor"], e["note"]) for e in fetched["events"][3:]
    ] == [
        ("start", "in_progress", "W1", "到场"),
        ("report", "reported", "W1", "已清运"),
        ("close", "closed", "verifier", "核查属实"),
    ]
    assert fetched["reporter"]["phone"] == "13800000000"


def test_reopen_sends_a_closed_case_back_to_the_grid(client: TestClient):
    ref = report(client)["ref"]
    for action in ("start", "report", "close"):
        act(client, ref, action)
    reopened = act(client, ref, "reopen", "verifier", note="群众反映未处理").json()
    assert (reopened["status"], reopened["closed_at"]) == ("dispatched", None)


def test_gcj02_report_lands_in_the_right_grid(client: TestClient):
    lon, lat = (float(v) for v in wgs84_to_gcj02(*IN_G3))  # what a WeChat mini-program sends
    incident = report(client, (lon, lat), crs="gcj02")
    assert incident["grid_code"] == G3 and incident["status"] == "dispatched"
    assert incident["lon"] == pytest.approx(IN_G3[0], abs=1e-7)
    assert incident["input"] == {"lon": lon, "lat": lat, "crs": "gcj02"}
    assert [w["code"] for w in incident["workers"]] == ["W3"]


def test_illegal_transition_is_409_and_changes_nothing(client: TestClient, planted: Engine):
    ref = report(client)["ref"]
    before = client.get(f"/api/v1/incidents/{ref}").json()
    response = act(client, ref, "close", "verifier")
    assert response.status_code == 409
    assert response.json()["message"] == (
        f"cannot close incident {ref}: it is dispatched; allowed: dispatch, start, cancel"
    )
    assert client.get(f"/api/v1/incidents/{ref}").json() == before
    assert count(planted, "incident_events") == 3


def test_unknown_ref_is_404(client: TestClient):
    assert client.get("/api/v1/incidents/E999999").status_code == 404
    assert act(client, "E999999", "start").status_code == 404


# -- idempotency --------------------------------------------------------------------------------
def test_idempotent_retry_returns_the_first_incident(client: TestClient, planted: Engine):
    body = {"category": "noise", "description": "夜间施工", "lon": IN_G1[0], "lat": IN_G1[1]}
    headers = {"Idempotency-Key": "phone-42-report-7"}
    first = client.post("/api/v1/incidents", json=body, headers=headers)
    # Same body with the keys in another order is the same request.
    again = client.post("/api/v1/incidents", json=dict(reversed(body.items())), headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json()["ref"] == first.json()["ref"]
    assert count(planted) == 1

    changed = client.post(
        "/api/v1/incidents", json={**body, "description": "另一件事"}, headers=headers
    )
    assert changed.status_code == 409 and "phone-42-report-7" in changed.json()["message"]
    assert count(planted) == 1


def test_concurrent_retries_create_one_incident(planted: Engine, settings: Settings):
    payload = {"category": "noise", "lon": IN_G1[0], "lat": IN_G1[1]}

    def post(_: int) -> str:
        return intake.create_incident(planted, settings, payload, "same-key").incident["ref"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        refs = set(pool.map(post, range(6)))
    assert refs == {"E000001"} and count(planted) == 1
    assert count(planted, "incident_events") == 3


def test_a_resend_racing_the_first_insert_answers_the_first_incident(
    planted: Engine, settings: Settings
):
    # The first send's insert holds the key, not committed yet, when the resend looks: the
    # resend's insert waits for it, then yields (ON CONFLICT DO NOTHING) and answers the
    # first incident; none is stored twice (the branch sequential resends never reach).
    payload = {"category": "noise", "lon": IN_G1[0], "lat": IN_G1[1]}
    asked = {"source": "api", **IncidentIn.model_validate(payload).model_dump(exclude_none=True)}
    with planted.connect() as first, ThreadPoolExecutor(max_workers=1) as pool:
        first.execute(
            text(
                "INSERT INTO incidents (category, status, received_at, updated_at, "
                "idempotency_owner, idempotency_key, request_hash) "
                "VALUES ('noise', 'received', now(), now(), '', 'racing', :hash)"
            ),
            {"hash": digest(asked)},
        )
        resend = pool.submit(intake.create_incident, planted, settings, payload, "racing")
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        waiting += "AND wait_event_type = 'Lock'"
        with planted.connect() as look:
            for _ in range(200):
                if look.execute(text(waiting)).scalar_one() or resend.done():
                    break
                time.sleep(0.05)
            assert look.execute(text(waiting)).scalar_one() == 1, "the resend never waited"
        first.commit()
        taken = resend.result(timeout=30)
    assert (taken.created, taken.incident["ref"]) == (False, "E000001")
    assert count(planted) == 1 and count(planted, "incident_events") == 0


def test_same_key_different_body_is_conflict_in_the_service(planted: Engine, settings: Settings):
    intake.create_incident(planted, settings, {"category": "noise", "address": "长江路1号"}, "k")
    with pytest.raises(Conflict, match="different body"):
        intake.create_incident(planted, settings, {"category": "noise", "address": "2号"}, "k")


# -- routing outcomes ---------------------------------------------------------------------------
def test_report_near_a_boundary_is_flagged_with_the_other_grid(client: TestClient):
    incident = report(client, NEAR_G1_G2)
    assert (incident["grid_code"], incident["near_boundary"], incident["near_grids"]) == (
        G1,
        True,
        [G2],
    )
    assert "within 20 m of grid " + G2 in incident["events"][0]["note"]
    assert report(client, IN_G3)["near_boundary"] is False


def test_same_problem_nearby_is_a_possible_duplicate_but_still_recorded(client: TestClient):
    first = report(client, IN_G3)
    second = report(client, (IN_G3[0] + 30 / M_PER_DEG_LON, IN_G3[1]))  # 30 m away
    assert second["possible_duplicate_of"] == first["ref"]
    assert second["status"] == "dispatched"  # never dropped
    other_kind = report(client, IN_G3, category="broken_street_light")
    assert other_kind["possible_duplicate_of"] is None
    far = report(client, (IN_G3[0] + 80 / M_PER_DEG_LON, IN_G3[1]))  # 80 m: a new problem
    assert far["possible_duplicate_of"] is None


def test_duplicate_window_is_24_hours(planted: Engine, settings: Settings):
    now = datetime.fromisoformat("2026-11-23T10:00:00+08:00")
    payload = {"category": "exposed_rubbish", "lon": IN_G3[0], "lat": IN_G3[1]}
    first = intake.create_incident(planted, settings, payload, now=now).incident
    late = intake.create_incident(planted, settings, payload, now=now + timedelta(hours=25))
    assert late.incident["possible_duplicate_of"] is None
    soon = intake.create_incident(planted, settings, payload, now=now + timedelta(hours=23))
    assert soon.incident["possible_duplicate_of"] == first["ref"]


def test_address_only_report_waits_for_a_location(client: TestClient):
    incident = report(client, None, address="铜官区长江西路12号")
    assert (incident["status"], incident["needs_location"], incident["grid_code"]) == (
        "needs_location",
        True,
        None,
    )
    assert incident["due_at"] is None
    assert act(client, incident["ref"], "start").status_code == 409

    located = act(client, incident["ref"], "locate", "dispatcher", lon=IN_G1[0], lat=IN_G1[1])
    assert located.status_code == 200, located.text
    body = located.json()
    assert (body["status"], body["grid_code"], body["needs_location"]) == ("dispatched", G1, False)
    assert body["due_at"] is not None
    assert [(e["action"], e["actor"]) for e in body["events"]] == [
        ("receive", "system"),
        ("locate", "dispatcher"),
        ("file", "system"),
        ("dispatch", "system"),
    ]


def test_overlap_is_filed_for_a_dispatcher_to_choose(client: TestClient):
    incident = report(client, IN_OVERLAP)
    assert (incident["status"], incident["grid_code"], incident["candidates"]) == (
        "filed",
        None,
        [G2, G5],
    )
    assert incident["due_at"] is None
    missing = act(client, incident["ref"], "dispatch")
    assert missing.status_code == 422 and G5 in missing.json()["message"]
    unknown = act(client, incident["ref"], "dispatch", grid_code="340705001001099")
    assert unknown.status_code == 422 and "'340705001001099'" in unknown.json()["message"]
    chosen = act(client, incident["ref"], "dispatch", grid_code=G5).json()
    assert (chosen["status"], chosen["grid_code"]) == ("dispatched", G5)
    assert chosen["due_at"] is not None


def test_outside_every_grid_stays_received_until_routed(client: TestClient):
    incident = report(client, FAR_AWAY)
    assert (incident["status"], incident["grid_code"], incident["locate_status"]) == (
        "received",
        None,
        "outside",
    )
    ref = incident["ref"]
    assert act(client, ref, "file").json()["status"] == "filed"
    dispatched = act(client, ref, "dispatch", grid_code=G4).json()
    assert (dispatched["status"], dispatched["grid_code"]) == ("dispatched", G4)


def test_rerouting_keeps_the_deadline(client: TestClient):
    incident = report(client)
    moved = act(client, incident["ref"], "dispatch", grid_code=G3, note="属第3网格").json()
    assert (moved["grid_code"], moved["due_at"]) == (G3, incident["due_at"])
    assert moved["events"][-1]["note"] == f"属第3网格; re-routed from grid {G1}"


# -- supervision and listing --------------------------------------------------------------------
def make_overdue(engine: Engine, ref: str, hours: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE incidents SET due_at = now() - make_interval(hours => :h) WHERE ref = :ref"
            ),
            {"h": hours, "ref": ref},
        )


def test_overdue_supervision_list(client: TestClient, planted: Engine):
    late = report(client, IN_G1)["ref"]
    later = report(client, IN_G3, category="noise")["ref"]
    report(client, IN_G1, category="noise")  # on time
    make_overdue(planted, late, 2)
    make_overdue(planted, later, 5)
    body = client.get("/api/v1/incidents/overdue").json()
    assert [i["ref"] for i in body["items"]] == [later, late]  # oldest deadline first
    assert [w["code"] for w in body["items"][1]["workers"]] == ["W1", "W2"]
    assert body["items"][0]["overdue_hours"] == pytest.approx(5, abs=0.1)
    assert all(i["overdue"] for i in body["items"])
    listed = client.get("/api/v1/incidents", params={"overdue": "true"}).json()
    assert {i["ref"] for i in listed["items"]} == {late, later}
    act(client, later, "cancel", note="重复上报")
    assert [i["ref"] for i in client.get("/api/v1/incidents/overdue").json()["items"]] == [late]


def test_list_filters(client: TestClient):
    a = report(client, IN_G1)["ref"]
    b = report(client, IN_G3, category="noise")["ref"]
    c = report(client, None, address="长江路")["ref"]

    def refs(**params):
        response = client.get("/api/v1/incidents", params=params)
        assert response.status_code == 200, response.text
        return [i["ref"] for i in response.json()["items"]]

    assert refs() == [c, b, a]  # newest first
    assert refs(grid=G3) == [b]
    assert refs(community=COMMUNITY) == [b, a]
    assert refs(category="noise") == [b]
    assert refs(status=["needs_location", "dispatched"]) == [c, b, a]
    assert refs(status="needs_location") == [c]
    assert refs(limit=1, offset=1) == [b]
    assert refs(since="2000-01-01", until="2000-01-02") == []
    assert refs(since=(datetime.now().astimezone() - timedelta(minutes=5)).isoformat()) == [c, b, a]
    page = client.get("/api/v1/incidents", params={"limit": 2}).json()
    assert (page["total"], len(page["items"])) == (3, 2)
    assert "reporter" not in page["items"][0]  # personal data only in the detail view


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"status": "done"}, "'done'"),
        ({"category": "potholes"}, "'potholes'"),
        ({"limit": 5000}, "5000"),
        ({"since": "yesterday"}, "'yesterday'"),
    ],
)
def test_list_bad_filters_are_422(client: TestClient, params, fragment):
    response = client.get("/api/v1/incidents", params=params)
    assert response.status_code == 422 and fragment in response.json()["message"]


def test_categories_route(client: TestClient):
    listed = {c["code"]: c for c in client.get("/api/v1/incidents/categories").json()}
    assert listed["road_not_clean"]["time_limit"] == "5 working hours"


# -- statistics ---------------------------------------------------------------------------------
def test_stats_per_grid_and_community(client: TestClient, planted: Engine):
    on_time, late, open_late = (
        report(client, IN_G1, category=c)["ref"]
        for c in ("exposed_rubbish", "noise", "broken_street_light")
    )
    report(client, IN_G3)
    report(client, FAR_AWAY)
    for ref in (on_time, late):
        act(client, ref, "start")
        act(client, ref, "report")
    make_overdue(planted, late, 1)
    make_overdue(planted, open_late, 1)
    for ref in (on_time, late):
        act(client, ref, "close")

    by_grid = {g["code"]: g for g in client.get("/api/v1/incidents/stats").json()["groups"]}
    g1 = by_grid[G1]
    assert g1["name"] == "第1网格"
    assert (g1["total"], g1["closed"], g1["closed_on_time"], g1["overdue"]) == (3, 2, 1, 1)
    assert g1["on_time_rate"] == 0.5
    assert g1["by_status"] == {"closed": 2, "dispatched": 1}
    assert g1["by_category"] == {"exposed_rubbish": 1, "noise": 1, "broken_street_light": 1}
    assert by_grid[G3]["on_time_rate"] is None  # nothing closed yet
    assert by_grid[None]["by_status"] == {"received": 1}  # not routed to any grid

    community = client.get("/api/v1/incidents/stats", params={"by": "community"}).json()
    groups = {g["code"]: g for g in community["groups"]}
    assert (groups[COMMUNITY]["name"], groups[COMMUNITY]["total"]) == ("金山社区", 4)
    empty = client.get("/api/v1/incidents/stats", params={"until": "2000-01-01"}).json()
    assert empty["groups"] == []
    bad = client.get("/api/v1/incidents/stats", params={"by": "street"})
    assert bad.status_code == 422 and "'street'" in bad.json()["message"]


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"category": "potholes", "lon": 117.8, "lat": 30.9}, "unknown category 'potholes'"),
        (
            {"category": "noise", "description": "噪" * 4001, "lon": 117.8, "lat": 30.9},
            "4001 characters; the limit is 4000",
        ),
        ({"category": "noise", "lon": "abc", "lat": 30.93}, "'abc'"),
        ({"category": "noise", "lon": 200, "lat": 30.93}, "200"),
        ({"category": "noise", "lon": 117.8}, "lon and lat go together"),
        ({"category": "noise"}, "lon and lat"),
        ({"category": "noise", "lon": 117.8, "lat": 30.9, "crs": "mars"}, "'mars'"),
        ({"category": "noise", "lng": 117.8, "lat": 30.9}, "unknown field 'lng'"),
        ({"description": "x", "address": "长江路"}, "category is required"),
        ([1, 2], "valid dictionary"),
    ],
    ids=[
        "category",
        "description",
        "lon-abc",
        "lon-200",
        "lat-missing",
        "no-location",
        "crs",
        "unknown-field",
        "no-category",
        "not-an-object",
    ],
)
def test_bad_reports_are_422_naming_the_problem(
    client: TestClient, planted: Engine, body, fragment
):
    response = client.post("/api/v1/incidents", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["message"]
    assert count(planted) == 0


def test_body_too_large_is_413(client: TestClient, planted: Engine):
    huge = {"category": "noise", "address": "x", "description": "x" * 30_000}
    assert client.post("/api/v1/incidents", json=huge).status_code == 413
    assert count(planted) == 0


def test_patch_fields_must_fit_the_action(client: TestClient):
    ref = report(client)["ref"]
    assert act(client, ref, "start", grid_code=G3).status_code == 422
    assert act(client, ref, "start", lon=117.8, lat=30.9).status_code == 422
    assert act(client, ref, "finish").status_code == 422
    no_actor = client.patch(f"/api/v1/incidents/{ref}", json={"action": "start"})
    assert no_actor.status_code == 422 and "actor is required" in no_actor.json()["message"]


# -- schema ---------------------------------------------------------------------------------------
def test_migration_matches_the_model(planted: Engine):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from geo_service.db.models import metadata

    with planted.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    ours = [d for d in diff if "incident" in repr(d)]
    assert ours == []


def test_cli_overdue_and_stats(client: TestClient, planted: Engine, db_url: str):
    from typer.testing import CliRunner

    from geo_service.cli import app

    late = report(client)["ref"]
    runner = CliRunner()
    env = {"GEO_DATABASE_URL": db_url}
    calm = runner.invoke(app, ["incidents", "overdue", "--json"], env=env)
    assert calm.exit_code == 0, calm.output
    make_overdue(planted, late, 3)
    alarm = runner.invoke(app, ["incidents", "overdue", "--json"], env=env)
    assert alarm.exit_code == 1 and late in alarm.output  # exit 1: something to supervise
    stats = runner.invoke(app, ["incidents", "stats", "--by", "community"], env=env)
    assert stats.exit_code == 0 and "金山社区" in stats.output


def test_a_city_category_table_and_a_broken_one(planted: Engine, settings: Settings, tmp_path):
    table = tmp_path / "city.toml"
    table.write_text(
        '[categories.pothole]\nname = { zh = "路面坑洼", en = "Pothole" }\n'
        "limit = { working_hours = 8 }\n",
        encoding="utf-8",
    )
    city = TestClient(create_app(settings.updated(incidents={"categories_file": table}), planted))
    incident = report(city, category="pothole")
    assert incident["time_limit"] == "8 working hours"
    assert (
        city.post("/api/v1/incidents", json={"category": "noise", "address": "x"})
        .json()["message"]
        .startswith("unknown category 'noise'; known: pothole")
    )

    table.write_text("[categories.pothole]\nname = 1\n", encoding="utf-8")
    broken = city.post("/api/v1/incidents", json={"category": "pothole", "address": "x"})
    assert broken.status_code == 500  # the operator's mistake, not the reporter's
    assert "incident categories misconfigured" in broken.json()["message"]
