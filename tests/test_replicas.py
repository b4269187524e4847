"""Reads on a hot standby: a primary and a streaming standby (`pg_basebackup -R`) started on
this machine for this module; the read-only doors read from the standby, the writer sees its
writes at once, a standby that lags or stops is skipped without a failed request and taken back
when it is well again, and a server that is no standby is refused with a message. Both clusters
are stopped and removed at the end, whatever happens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box
from sqlalchemy import Engine, create_engine, text

from geo_service.api.app import create_app
from geo_service.db.embedded import RUN_AS, EmbeddedCluster
from geo_service.db.engine import ensure_schema, make_engine
from geo_service.db.replicas import Probe, Standbys, judge
from geo_service.errors import Unavailable
from geo_service.settings import DatabaseSettings, Settings
from tests import factories
from tests.conftest import free_port, halt

G1, G2 = f"{factories.PLANTED_COMMUNITY}001", f"{factories.PLANTED_COMMUNITY}002"
IN_G1 = {"lon": "117.801", "lat": "30.931"}
CLI = str(Path(sys.executable).parent / "geo-service")


@dataclass
class Pair:
    """The primary (migrated, two grids planted) and its standby."""

    primary: EmbeddedCluster
    standby: EmbeddedCluster
    engine: Engine  # the primary's

    def app(self, **database: object) -> TestClient:
        """A client of the app reading from the standby (settings.database changed by
        `database`); the primary's engine is the test's, so that tokens are issued there."""
        settings = Settings(
            database=DatabaseSettings(
                url=self.primary.url(),
                read_urls=[self.standby.url()],
                pool_size=4,
                **database,
            )
        )
        return TestClient(create_app(settings, engine=self.engine))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    # In memory where there is a tmpfs: initdb, pg_basebackup and removing the copies cost
    # seconds on a disk (fsync; rm with discard), tens of milliseconds there.
    shm = Path("/dev/shm")
    memory = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="geo-replicas-", dir=memory))
    if os.geteuid() == 0:  # the clusters run as the postgres user, who must reach them
        shutil.chown(folder, RUN_AS, RUN_AS)
    primary = EmbeddedCluster(folder / "primary", free_port())
    standby = EmbeddedCluster(folder / "standby", free_port())
    engine = None
    try:
        primary.start()
        engine = make_engine(primary.url(), pool_size=4)
        ensure_schema(engine)  # on the primary only: the standby replays it
        settings = Settings(database=DatabaseSettings(url=primary.url()))
        grids = {
            G1: box(117.800, 30.930, 117.802, 30.932),
            G2: box(117.802, 30.930, 117.804, 30.932),
        }
        workers = [("W1", "张三", "13900000001", G1)]
        planted = tmp_path_factory.mktemp("replica-data")
        factories.plant_grids(engine, settings, planted, grids, workers)
        primary.standby(standby.requested_dir, standby.port)
        yield Pair(primary, standby, engine)
    finally:
        if engine is not None:
            engine.dispose()
        for cluster in (standby, primary):
            halt(cluster)
            shutil.rmtree(cluster.socket_dir, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


def on_standby(pair: Pair, sql: str) -> object:
    """One value read straight from the standby."""
    engine = create_engine(pair.standby.url())
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def wait_for(what: Callable[[], bool], seconds: float = 10.0) -> None:
    """Until `what()` holds (checked every 0.1 s); fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.1)


def located_name(client: TestClient) -> str:
    response = client.get("/api/v1/locate", params=IN_G1)
    assert response.status_code == 200, response.text
    return str(response.json()["grid_name"])


def rename(client: TestClient, name: str) -> None:
    """A grid edit on the primary; the writer reads it back at once."""
    edit = client.patch(f"/api/v1/grids/{G1}", json={"name": name, "reason": "更名"})
    assert edit.status_code == 200, edit.text
    assert client.get(f"/api/v1/grids/{G1}").json()["name"] == name


def test_reads_go_to_the_standby_and_the_writer_sees_its_writes(pair: Pair):
    with pair.app(read_max_lag_s=600) as client:
        reads = client.app.state.reads  # type: ignore[attr-defined]
        with reads.engine.connect() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
        assert located_name(client) == "第1网格"
        served = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'geo-service'"
        assert on_standby(pair, served) >= 1  # the read pool's connection, on the standby
        health = client.get("/healthz").json()
        assert health["standbys"][0]["reading"] is True, health

        # Replay paused: what the standby answers is what it had, while the primary, which
        # answers the writer, has moved on. The doors of reads read the standby.
        on_standby(pair, "SELECT pg_wal_replay_pause()::text")
        try:
            rename(client, "金山第一网格")
            assert located_name(client) == "第1网格"
            batch = client.post("/api/v1/locate", json=[{"id": 1, **IN_G1}])
            assert batch.json()["results"][0]["grid_name"] == "第1网格"
            incident = client.post(
                "/api/v1/incidents",
                json={"category": "exposed_rubbish", "description": "垃圾堆放", **IN_G1},
            )
            assert incident.status_code == 201, incident.text
            ref = incident.json()["ref"]
            again = client.get(f"/api/v1/incidents/{ref}")  # at once, from the primary
            assert again.status_code == 200, again.text
            assert again.json()["grid_code"] == G1
        finally:
            on_standby(pair, "SELECT pg_wal_replay_resume()::text")
        wait_for(lambda: located_name(client) == "金山第一网格")
        for door in (
            "/api/v1/workload",
            "/api/v1/geocode?q=长江西路18号",
            f"/api/v1/buildings?grid={G1}&q=3栋",
            "/api/v1/public/grid?lon=117.801&lat=30.931",
        ):
            assert client.get(door).status_code == 200, door


def test_a_lagging_standby_is_skipped_until_it_catches_up(pair: Pair):
    with pair.app(read_max_lag_s=0.5) as client:
        standbys = client.app.state.reads.standbys  # type: ignore[attr-defined]
        wait_for(lambda: standbys.servers[0].usable)
        on_standby(pair, "SELECT pg_wal_replay_pause()::text")
        try:
            rename(client, "金山一网格")
            wait_for(lambda: not standbys.servers[0].usable)
            assert "GEO_DATABASE_READ_MAX_LAG_S" in standbys.servers[0].problem
            assert located_name(client) == "金山一网格"  # from the primary
        finally:
            on_standby(pair, "SELECT pg_wal_replay_resume()::text")
        wait_for(lambda: standbys.servers[0].usable)
        with client.app.state.reads.engine.connect() as conn:  # type: ignore[attr-defined]
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True


def test_a_stopped_standby_is_skipped_without_errors_and_taken_back(pair: Pair):
    with pair.app(read_retry_s=1) as client:
        standbys = client.app.state.reads.standbys  # type: ignore[attr-defined]
        wait_for(lambda: standbys.servers[0].usable)
        doors = [
            lambda: client.get("/api/v1/locate", params=IN_G1),
            lambda: client.post("/api/v1/locate", json=[{"id": 1, **IN_G1}]),
            lambda: client.get("/api/v1/qa"),
            lambda: client.get("/ogc/collections/grids/items", params={"limit": 5}),
        ]
        assert [door().status_code for door in doors] == [200] * len(doors)
        # Reads running while it stops: the queries it ends are run again elsewhere (GETs).
        reading, codes = threading.Event(), Counter[int]()

        def read_on() -> None:
            while not reading.is_set():
                codes[client.get("/api/v1/locate", params=IN_G1).status_code] += 1
                codes[client.get("/ogc/collections/grids/items").status_code] += 1

        try:
            with ThreadPoolExecutor(4) as readers:
                running = [readers.submit(read_on) for _ in range(4)]
                time.sleep(0.3)
                pair.standby.stop()
                time.sleep(0.3)
                reading.set()
                for reader in running:
                    reader.result()
            assert set(codes) == {200}, codes
            for _ in range(3):  # every door, on pooled connections the standby has closed
                answers = [door() for door in doors]
                assert [a.status_code for a in answers] == [200] * len(doors), answers[-1].text
            assert not standbys.servers[0].usable
            assert "does not answer" in client.get("/healthz").json()["standbys"][0]["problem"]
        finally:
            pair.standby.start()
        wait_for(lambda: standbys.servers[0].usable)  # tried again after GEO_DATABASE_READ_RETRY_S
        assert client.get("/api/v1/locate", params=IN_G1).status_code == 200
        with client.app.state.reads.engine.connect() as conn:  # type: ignore[attr-defined]
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True


def test_an_unreachable_standby_is_skipped_from_the_start(pair: Pair, tmp_path: Path):
    nowhere = f"postgresql://geo:x@127.0.0.1:{free_port()}/geo"
    settings = DatabaseSettings(url=pair.primary.url(), read_urls=[nowhere])
    standbys = Standbys.look(settings, pair.engine)
    assert not standbys.servers[0].usable
    assert "does not answer" in (standbys.servers[0].problem or "")
    assert standbys.order() == [standbys.primary]
    # `db status` says which standby serves reads and why another is skipped.
    env = {
        **os.environ,
        "GEO_DATABASE_URL": pair.primary.url(),
        "GEO_DATABASE_READ_URLS": f"{pair.standby.url()},{nowhere}",
    }
    done = subprocess.run(
        [CLI, "db", "status", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    reading, down = json.loads(done.stdout)["standbys"]
    assert reading["reading"] is True and reading["lag_s"] is not None
    assert down["reading"] is False and "does not answer" in down["problem"]


def test_a_server_that_is_no_standby_is_refused_with_a_message(pair: Pair, tmp_path: Path):
    settings = DatabaseSettings(url=pair.primary.url(), read_urls=[pair.primary.url()])
    with pytest.raises(Unavailable, match="is not a hot standby"):
        Standbys.look(settings, pair.engine)
    # The same from the command line: one line naming the setting, no traceback.
    env = {
        **os.environ,
        "GEO_DATABASE_URL": pair.primary.url(),
        "GEO_DATABASE_READ_URLS": pair.primary.url(),
    }
    done = subprocess.run(
        [CLI, "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 6, done.stderr
    assert "GEO_DATABASE_READ_URLS" in done.stderr and "is not a hot standby" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("probe", "reason"),
    [
        (Probe(standby=True, system=7, lag_s=0.0), None),
        (Probe(standby=True, system=None, lag_s=2.0), None),  # the role may not read the id
        (Probe(standby=False, system=7, lag_s=None), "is not a hot standby"),
        (Probe(standby=True, system=8, lag_s=0.0), "a standby of another cluster"),
        (Probe(standby=True, system=7, lag_s=31.0), "lags 31.0 s behind the primary"),
        (Probe(standby=True, system=7, lag_s=None), "has replayed nothing"),
    ],
)
def test_which_servers_may_serve_reads(probe: Probe, reason: str | None):
    found = judge(probe, primary_system=7, max_lag_s=30.0)
    assert found is None if reason is None else reason in (found or "")


def test_a_standby_url_that_is_no_postgresql_url_is_one_line_naming_it(tmp_path: Path):
    env = {**os.environ, "GEO_DATABASE_READ_URLS": "mysql://geo:secret@db.example/geo"}
    done = subprocess.run(
        [CLI, "db", "status"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 3, done.stderr
    assert "GEO_DATABASE_READ_URLS" in done.stderr and "no postgresql:// URL" in done.stderr
    assert "secret" not in done.stderr and "Traceback" not in done.stderr
