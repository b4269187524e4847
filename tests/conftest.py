"""A real PostGIS for the tests: a fresh `<db>_test` database on the embedded cluster (or on
the GEO_DATABASE_URL server), migrated once per session, emptied before each test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from geo_service.db.engine import (
    database_url,
    drop_database,
    ensure_schema,
    fresh_database,
    make_engine,
)
from geo_service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA_TABLES = (
    "incident_events",
    "incidents",
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
    base = Settings()
    if base.embedded:
        base = Settings(data_dir=ROOT / ".geo-service")
    return base


@pytest.fixture(scope="session")
def db_url(settings: Settings) -> Iterator[str]:
    url = _test_url(settings)
    yield url
    if not os.environ.get("GEO_TEST_DATABASE_URL"):
        drop_database(url)


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
