"""A real PostGIS for the tests: a fresh `<db>_test` database on the embedded cluster (or on
the GEO_DATABASE_URL server), migrated once per session, emptied before each test."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from geo_service.auth.service import add_user, hash_token
from geo_service.db.embedded import EmbeddedCluster
from geo_service.db.engine import (
    cluster,
    database_url,
    drop_database,
    ensure_schema,
    fresh_database,
    make_engine,
)
from geo_service.settings import DatabaseSettings, Settings, find_data_dir

ROOT = Path(__file__).resolve().parent.parent


def checkout_settings() -> Settings:
    """The settings a user's commands in this checkout would use, wherever pytest starts."""
    data_dir = os.environ.get("GEO_DATA_DIR") or find_data_dir(ROOT)
    return Settings(database=DatabaseSettings(data_dir=data_dir))


DATA_TABLES = (
    "division_proposal_grids",
    "division_proposals",
    "campaign_progress",
    "campaign_visits",
    "campaign_grids",
    "campaign_buildings",
    "campaigns",
    "grid_lineage",
    "grid_versions",
    "grid_edits",
    "incident_events",
    "incidents",
    "worker_assignments",
    "workers",
    "buildings",
    "grids",
    "communities",
    "centers",
    "street_edges",
    "import_runs",
    "dataset_versions",
    "coverage_runs",
    "coverage_nodes",
    "coverage_edges",
    "coverage_centers",
    "coverage_buildings",
    "coverage_isochrones",
    "coverage_tiers",
    "coverage_gaps",
)


def _test_url(settings: Settings) -> str:
    explicit = os.environ.get("GEO_TEST_DATABASE_URL")
    if explicit:
        return explicit
    url = database_url(settings)
    # One database per pytest process, so that two runs at once never drop each other's.
    return fresh_database(url, f"{make_url(url).database}_test_{os.getpid()}")


@pytest.fixture(scope="session")
def settings() -> Settings:
    # The database a user's commands in this checkout would use, wherever pytest starts.
    return checkout_settings()


@pytest.fixture(scope="session")
def db_url(settings: Settings) -> Iterator[str]:
    url = _test_url(settings)
    yield url
    if not os.environ.get("GEO_TEST_DATABASE_URL"):
        drop_database(url)


def halt(cluster: EmbeddedCluster) -> None:
    """Stop a throwaway cluster a test started, if it runs (immediate: nothing is kept)."""
    if (cluster.pgdata / "postmaster.pid").exists():
        cluster._run(
            "pg_ctl", "-D", str(cluster.pgdata), "-m", "immediate", "-w", "stop", check=False
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Say that the embedded database still runs, and where (other runs may be using it, so
    the tests never stop it themselves)."""
    settings = checkout_settings()
    if os.environ.get("GEO_TEST_DATABASE_URL") or not settings.database.embedded:
        return
    embedded = cluster(settings)
    if embedded.running():
        terminalreporter.write_line(
            f"The embedded PostGIS of {settings.database.data_dir} "
            f"(port {settings.database.embedded_port}) is "
            "still running: the tests used scratch databases in it and dropped them, and "
            "leave it up for the next run. Stop it with: make db-stop"
        )


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    ensure_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Engine:
    """The engine, on empty tables."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    return engine


# -- tokens: test clients act as admin unless a test says who calls ------------------------------
_ADMIN_TOKENS: dict[str, str] = {}


def ensure_token(engine: Engine, settings: Settings, name: str, role: str, token: str, **kw) -> str:
    """`token` as a token of `name` with `role` (issued once per database; auth_tokens is not
    emptied between tests)."""
    with engine.connect() as conn:
        known = conn.execute(
            text("SELECT 1 FROM auth_tokens WHERE token_hash = :h"), {"h": hash_token(token)}
        ).first()
    if known is None:
        add_user(engine, settings, name, role, token=token, expires_days=0, **kw)
    return token


def admin_headers(app) -> dict[str, str]:
    """An admin's Authorization header for the database of `app`."""
    engine = app.state.engine
    if engine is None:
        return {}
    url = str(engine.url)
    if url not in _ADMIN_TOKENS:
        token = "test-admin-token-" + os.urandom(8).hex()
        ensure_token(engine, app.state.settings, "test-admin", "admin", token)
        _ADMIN_TOKENS[url] = token
    return {"Authorization": f"Bearer {_ADMIN_TOKENS[url]}"}


@pytest.fixture(scope="session", autouse=True)
def _clients_are_admin_by_default() -> Iterator[None]:
    """A TestClient made without `headers` calls as admin, so the tests of each domain keep
    testing their domain; tests of roles and tokens pass their own headers (even `{}`)."""
    original = TestClient.__init__

    def init(self, app, *args, headers=None, **kwargs):  # type: ignore[no-untyped-def]
        if headers is None:
            headers = admin_headers(app)
        original(self, app, *args, headers=headers, **kwargs)

    TestClient.__init__ = init  # type: ignore[method-assign]
    yield
    TestClient.__init__ = original  # type: ignore[method-assign]
