"""Nothing lost: a server killed (kill -9) during a burst of reports loses no acknowledged
incident and duplicates none on retry; an import killed half-way leaves the previous data; a
database that goes away makes the API answer 503 at once and it recovers by itself; backups
round-trip. Real processes, real PostgreSQL (the shared cluster is never stopped: the outage
is a proxy in front of it that this test closes)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from geo_service.api.app import create_app
from geo_service.db.engine import drop_database, fresh_database, make_engine
from geo_service.errors import Unavailable
from geo_service.settings import Settings
from tests import test_incidents
from tests.conftest import ROOT, ensure_token, free_port
from tests.test_incidents import IN_G1

grids_planted = test_incidents.grids_planted
CLI = str(Path(sys.executable).parent / "geo-service")
TOKEN = "durability-test-admin-token"


class Server:
    """`geo-service serve` in its own process group, so kill -9 reaches all of it."""

    def __init__(self, db_url: str, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "GEO_DATABASE_URL": db_url, "GEO_LOG_LEVEL": "WARNING"}
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [CLI, "serve", "--port", str(port)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/livez", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")

    def kill(self) -> None:
        """kill -9, no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


# -- kill -9 during a burst of reports ---------------------------------------------------------
def test_every_acknowledged_incident_exists_exactly_once_after_a_kill_9(
    grids_planted: Engine, settings: Settings, db_url: str, tmp_path: Path
):
    ensure_token(grids_planted, settings, "durability-admin", "admin", TOKEN)
    port, log = free_port(), tmp_path / "server.log"
    run = uuid.uuid4().hex[:8]
    keys = [f"burst-{run}-{i:04d}" for i in range(300)]
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def post(client: httpx.Client, key: str) -> str | None:
        body = {"category": "exposed_rubbish", "lon": IN_G1[0], "lat": IN_G1[1], "description": key}
        try:
            response = client.post(
                "/api/v1/incidents", json=body, headers={**auth, "Idempotency-Key": key}
            )
        except httpx.HTTPError:
            return None  # the connection died: not acknowledged
        return response.json()["ref"] if response.status_code == 201 else None

    server = Server(db_url, port, log)
    acked: dict[str, str] = {}
    try:
        with (
            httpx.Client(base_url=server.url, timeout=10) as client,
            ThreadPoolExecutor(16) as pool,
        ):
            futures = {pool.submit(post, client, key): key for key in keys}
            pending = set(futures)
            while len(futures) - len(pending) < len(keys) // 3:  # kill a third of the way in
                _, pending = wait(pending, return_when=FIRST_COMPLETED)
            server.kill()
            for future, key in futures.items():
                if (ref := future.result()) is not None:
                    acked[key] = ref
    finally:
        server.kill()
    assert 0 < len(acked) < len(keys), "the kill must land in the middle of the burst"

    server = Server(db_url, port, log)  # restart; clients retry what was not acknowledged
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            retried = {key: post(client, key) for key in keys if key not in acked}
            again = {key: post(client, key) for key in list(acked)[:20]}  # a late duplicate retry
    finally:
        server.kill()
    assert None not in retried.values()
    assert again == {key: acked[key] for key in again}  # the same incident, not a second one

    with grids_planted.connect() as conn:
        stored = conn.execute(
            text("SELECT idempotency_key, ref FROM incidents WHERE idempotency_key LIKE :p"),
            {"p": f"burst-{run}-%"},
        ).all()
    by_key = dict(stored)
    assert len(stored) == len(by_key) == len(keys)  # every report once, none twice
    assert all(by_key[key] == ref for key, ref in acked.items())  # acknowledged = committed
    assert all(by_key[key] == ref for key, ref in retried.items())


# -- kill -9 of an import half-way -------------------------------------------------------------
def test_an_import_killed_half_way_leaves_the_previous_data(
    grids_planted: Engine, db_url: str, tmp_path: Path
):
    with grids_planted.begin() as conn:
        conn.execute(text("TRUNCATE buildings, import_runs RESTART IDENTITY CASCADE"))
    small = _buildings(tmp_path / "small.gpkg", 50, seed=1)
    env = {**os.environ, "GEO_DATABASE_URL": db_url}
    done = subprocess.run(
        [CLI, "import", "buildings", str(small)], env=env, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    before = _fingerprint(grids_planted)

    big = _buildings(tmp_path / "big.gpkg", 150_000, seed=2)
    importer = subprocess.Popen(
        [CLI, "import", "buildings", str(big), "--replace"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_import_transaction(grids_planted, importer)
        time.sleep(0.3)  # rows are streaming into the transaction
        importer.kill()  # SIGKILL
    finally:
        importer.wait(30)
    assert importer.returncode == -signal.SIGKILL, "the import finished before it was killed"
    assert _fingerprint(grids_planted) == before


def _buildings(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(117.800, 117.804, n), rng.uniform(30.928, 30.932, n)
    gpd.GeoDataFrame(
        {
            "code": [f"K{seed}{i:07d}" for i in range(n)],
            "address": [f"安徽省铜陵市铜官区长江西路{i + 1}号" for i in range(n)],
            "households": rng.integers(1, 60, n),
        },
        geometry=gpd.points_from_xy(lon, lat),
        crs=4326,
    ).to_file(path, engine="pyogrio")
    return path


def _fingerprint(engine: Engine) -> tuple:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM buildings), "
                    "(SELECT md5(string_agg(code || households || ST_AsText(geom), ',' "
                    "ORDER BY code)) FROM buildings), (SELECT count(*) FROM import_runs), "
                    "(SELECT version FROM dataset_versions WHERE kind = 'buildings')"
                )
            ).one()
        )


def _wait_for_import_transaction(engine: Engine, importer: subprocess.Popen) -> None:
    """Until another session holds the import lock of buildings (it is inside its transaction)."""
    deadline = time.monotonic() + 120
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            assert importer.poll() is None, "the import ended before it was caught"
            held = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid <> pg_backend_pid() AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
            conn.rollback()
            if held:
                return
            time.sleep(0.02)
    raise AssertionError("the import never started its transaction")


# -- the database goes away and comes back -----------------------------------------------------
class Outage:
    """A TCP proxy in front of the database: `down()` drops every connection and refuses new
    ones (as a stopped server does), `up()` serves again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [*sockets, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select():
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                sock.close()


@pytest.fixture
def outage(db_url: str) -> Iterator[tuple[Outage, str]]:
    url = make_url(db_url)
    proxy = Outage((url.host or "127.0.0.1", url.port or 5432))
    yield proxy, url.set(port=proxy.port).render_as_string(hide_password=False)
    proxy.down()


def test_with_the_database_gone_the_api_answers_503_fast_and_recovers_by_itself(
    grids_planted: Engine, settings: Settings, outage: tuple[Outage, str]
):
    proxy, url = outage
    engine = make_engine(url, pool_size=4)
    fast = settings.updated(auth={"cache_s": 0.0})  # every request checks its token
    paths = (
        "/api/v1/incidents",  # the engine's pool
        f"/api/v1/locate?lon={IN_G1[0]}&lat={IN_G1[1]}",  # the read pool
        "/ogc/collections/grids/items?limit=1",  # the read pool, through the layer service
        "/tiles/grids/12/3389/1683.mvt",
        "/healthz",
    )
    try:
        with TestClient(create_app(fast, engine=engine)) as client:
            assert all(client.get(path).status_code in (200, 204) for path in paths)
            # Under load: every connection of the pools in use, so that all of them are lost
            # at once and must be made again (psycopg_pool's backoff shows only then).
            with ThreadPoolExecutor(16) as load:
                codes = list(load.map(lambda _: client.get(paths[1]).status_code, range(64)))
            assert set(codes) == {200}

            proxy.down()
            for _ in range(3):
                for path in paths:
                    started = time.monotonic()
                    response = client.get(path)
                    took = time.monotonic() - started
                    assert response.status_code == 503, (path, response.text)
                    assert response.headers["retry-after"] and took < 2.5, (path, took)
            assert client.get("/livez").status_code == 200

            proxy.up()  # no restart of the app: the pools reconnect on their own
            back = time.monotonic()
            while time.monotonic() < back + 20:
                healthy = client.get("/healthz").status_code == 200
                answered = {path: client.get(path).status_code for path in paths[:-1]}
                if healthy:  # ready means ready: every route answers when /healthz says so
                    assert all(code in (200, 204) for code in answered.values()), answered
                    break
                time.sleep(0.05)
            recovered = time.monotonic() - back
            # A recovery bound, not a speed figure: psycopg_pool's own backoff took 10-12 s.
            assert recovered < 2.0, f"the API answered again only {recovered:.1f} s after"
    finally:
        engine.dispose()


# -- backups -----------------------------------------------------------------------------------
def test_db_dump_and_restore_round_trip(grids_planted: Engine, db_url: str, tmp_path: Path):
    target = fresh_database(db_url, f"{make_url(db_url).database}_restore")
    dump_file = tmp_path / "geo.dump"
    source_env = {**os.environ, "GEO_DATABASE_URL": db_url}
    target_env = {**os.environ, "GEO_DATABASE_URL": target}
    restored = make_engine(target)
    try:
        dumped = subprocess.run(
            [CLI, "db", "dump", str(dump_file)], env=source_env, capture_output=True, text=True
        )
        assert dumped.returncode == 0, dumped.stderr
        assert dump_file.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
        assert not dump_file.with_name("geo.dump.partial").exists()
        for _ in range(2):  # into an empty database, then over the restored one (replaced)
            done = subprocess.run(
                [CLI, "db", "restore", str(dump_file)],
                env=target_env,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr
            assert _contents(restored) == _contents(grids_planted)
            with restored.begin() as conn:
                conn.execute(text("DELETE FROM workers"))  # changed after the backup

        junk = tmp_path / "junk.dump"
        junk.write_bytes(b"not a dump")
        with pytest.raises(Unavailable, match="pg_restore failed"):
            from geo_service.db.backup import restore

            restore(target, junk)
        assert _contents(restored)["workers"] == 0  # a failed restore changed nothing
    finally:
        restored.dispose()
        drop_database(target)


def _contents(engine: Engine) -> dict[str, object]:
    """Row counts of the service's tables, a digest of the grids and the migration state."""
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'spatial_ref_sys' ORDER BY tablename"
            )
        ).scalars()
        counts: dict[str, object] = {
            t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables
        }
        counts["grids digest"] = conn.execute(
            text("SELECT md5(string_agg(code || ST_AsEWKT(geom), ',' ORDER BY code)) FROM grids")
        ).scalar_one()
        counts["migrations"] = sorted(
            conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
        )
    return counts


def test_a_database_migrated_by_a_newer_version_is_named_not_a_traceback(db_url: str):
    target = fresh_database(db_url, f"{make_url(db_url).database}_future")
    future = make_engine(target)
    try:
        with future.begin() as conn:  # what a later version leaves: a revision we do not know
            conn.execute(text("CREATE TABLE alembic_version (version_num varchar(64) PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('0042_from_the_future')"))
        done = subprocess.run(
            [CLI, "qa"], env={**os.environ, "GEO_DATABASE_URL": target},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 6, done.stderr
        assert "0042_from_the_future" in done.stderr and "newer version" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        future.dispose()
        drop_database(target)
