"""Engine, extensions and migrations: how the service reaches its PostGIS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from geo_service.db.embedded import EmbeddedCluster
from geo_service.errors import Unavailable
from geo_service.settings import Settings

EXTENSIONS = ("postgis", "postgis_topology", "pgrouting", "pg_trgm")
MIGRATIONS = Path(__file__).parent / "migrations"


def cluster(settings: Settings) -> EmbeddedCluster:
    """The embedded cluster described by the settings."""
    return EmbeddedCluster(settings.database.data_dir, settings.database.embedded_port)


def database_url(settings: Settings, *, start: bool = True) -> str:
    """URL in use: GEO_DATABASE_URL, or the embedded cluster's (started when `start`)."""
    if settings.database.url:
        url = make_url(settings.database.url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)
    embedded = cluster(settings)
    if start:
        embedded.start()
    return embedded.url()


def describe(settings: Settings) -> str:
    """Which database the settings point at, in words (the CLI says it before it works)."""
    if settings.database.url:
        shown = make_url(settings.database.url).render_as_string(hide_password=True)
        return f"{shown} (GEO_DATABASE_URL)"
    embedded = cluster(settings)
    where = str(embedded.root)
    if embedded.root != embedded.requested_dir:
        where += f" (for {embedded.requested_dir})"
    return f"the embedded cluster in {where}, 127.0.0.1:{embedded.port}"


# What every connection of the service says and sets: the engine's, the asyncio pools', the
# standbys' (db/replicas.py).
CONNECT_KWARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "application_name": "geo-service",
    # psycopg prepares a statement after 5 runs; PostgreSQL would still re-plan it for every
    # call while custom plans look cheaper. The service's hot statements are spatial lookups
    # whose plan does not depend on the values: plan them once.
    "options": "-c plan_cache_mode=force_generic_plan",
}


def make_engine(url: str, *, pool_size: int = 16) -> Engine:
    """A pooled engine.

    No pre-ping (it would cost a round trip per request): when the database restarts, the
    first query on a dead connection fails (the API answers 503), SQLAlchemy then discards
    the whole pool, and the next request reconnects.
    """
    return create_engine(
        url,
        # At least as many connections as request threads: an overflow connection is closed
        # on return, and re-connecting (SCRAM) per request costs more than the request.
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=False,
        pool_timeout=5,
        # Error messages (and so logs) never carry statement parameters: they hold residents'
        # names, phones and addresses.
        hide_parameters=True,
        connect_args=dict(CONNECT_KWARGS),
    )


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for read-only work in autocommit: no BEGIN and ROLLBACK round trips
    around every lookup (a third of the cost of a one-point locate)."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


class _SteadyAttempt(AttemptWithBackoff):
    """Reconnection attempts every ~0.5 s (±10%) until the pool's reconnect_timeout."""

    INITIAL_DELAY = 0.5
    DELAY_BACKOFF = 1.0


class ReadPool(AsyncConnectionPool):
    """The asyncio pool, failing fast while the database is down.

    A stopped database leaves the pool with no connection to give: a request would wait the
    whole `timeout` before its 503. Once a wait has timed out, or a request has met a dead
    connection (`mark_down`), requests wait only `down_timeout` until one gets a connection
    again; the pool keeps reconnecting in the background, so the API recovers by itself.
    """

    def __init__(self, *args: Any, down_timeout: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.down_timeout = down_timeout
        self.down = False

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        # psycopg_pool retries a lost server with a doubling delay (1, 2, 4, 8 s ...), so the
        # API came back 10-12 s after the database did. Every half second instead: a
        # connection attempt is cheap, and a request waits at most `down_timeout` meanwhile.
        await super()._add_connection(
            attempt or _SteadyAttempt(timeout=self.reconnect_timeout), growing
        )

    async def ping(self) -> None:
        """One round trip on a pooled connection (the readiness check of what requests use)."""
        async with self.connection() as conn:
            await conn.execute("SELECT 1")

    def mark_down(self) -> None:
        """Say the database failed a request (the next ones wait `down_timeout` at most)."""
        self.down = True

    async def getconn(self, timeout: float | None = None) -> Any:
        """A connection; PoolTimeout after `timeout` (`down_timeout` while the database is
        down)."""
        if timeout is None and self.down:
            timeout = self.down_timeout
        try:
            conn = await super().getconn(timeout)
        except PoolTimeout:
            self.down = True
            raise
        self.down = False
        return conn


def read_pool(engine: Engine, size: int) -> AsyncConnectionPool:
    """An asyncio pool of autocommit connections to the engine's database, for the API's
    hottest reads: no thread hop and no ORM layer between the request and the query.
    Opened (and closed) by the app's lifespan; connecting lazily, so a database that is down
    at start-up makes requests fail with 503 rather than the server refuse to start."""
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return ReadPool(
        conninfo,
        min_size=1,
        max_size=size,
        open=False,
        timeout=5,
        kwargs={"autocommit": True, **CONNECT_KWARGS},
    )


def ensure_schema(engine: Engine) -> None:
    """Create the extensions (when missing) and bring the schema to the latest migration."""
    try:
        with engine.begin() as conn:
            present = set(conn.execute(text("SELECT extname FROM pg_extension")).scalars().all())
            for ext in EXTENSIONS:
                if ext not in present:
                    conn.execute(text(f"CREATE EXTENSION IF NOT EXISTS {ext} CASCADE"))
    except OperationalError as exc:
        raise Unavailable(f"cannot reach the database: {exc.orig}") from exc
    except ProgrammingError as exc:
        raise Unavailable(
            f"cannot create the extensions {', '.join(EXTENSIONS)}: {exc.orig}. "
            "Ask the server's administrator to run CREATE EXTENSION for each, or install "
            "postgresql-15-postgis-3 and postgresql-15-pgrouting on the server."
        ) from exc
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        # "heads": independent branches (one per domain) each hang off the same base.
        try:
            command.upgrade(config, "heads")
        except CommandError as exc:  # a revision these migrations do not know: a newer version
            raise Unavailable(
                f"the database's schema is at a revision this version of geo-service does not "
                f"know ({exc}); it was migrated by a newer version: run that version, or "
                "restore a backup made by this one"
            ) from None


def connect(settings: Settings, *, migrate: bool = True) -> Engine:
    """Everything a door needs before it can work: database up, schema current, an engine."""
    engine = make_engine(database_url(settings), pool_size=settings.database.pool_size)
    if migrate:
        ensure_schema(engine)
    return engine


def fresh_database(url: str, name: str) -> str:
    """Drop and create database `name` on the server of `url`; return its URL.

    Used by the tests and benchmarks so they never touch the service's own data.
    """
    base = make_url(url)
    _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the database of `url` (a scratch database made by `fresh_database`)."""
    _admin(url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def _admin(url: str, *statements: str) -> None:
    """Run statements that cannot run in a transaction, from the maintenance database."""
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        admin.dispose()
