"""Reads on hot standbys: which server a read-only request reads from.

GEO_DATABASE_READ_URLS names hot standbys of the primary (PostgreSQL streaming replication,
made with `pg_basebackup -R`). `Reads` gives the read-only doors an engine and an asyncio pool
whose connections go to a usable standby (taken in turn), or to the primary when none is:

- a standby that stops answering (a refused connection, a pooled connection found closed) is
  skipped for GEO_DATABASE_READ_RETRY_S, then tried again; the request that found it out is
  served by the next standby or the primary, so no request fails for it;
- a standby whose replay lags more than GEO_DATABASE_READ_MAX_LAG_S is skipped until it has
  caught up;
- a server that is no standby of the primary (a primary, a promoted standby, a copy of another
  cluster) is refused at start-up, and skipped with a warning if one becomes so later.

`Standbys` keeps what is known of each standby; a watcher looks at each every CHECK_EVERY_S.
A pooled connection is checked when it is taken, without a round trip (`_alive`), and dropped
when its server is gone or no longer the one to read from, so the pools follow the standbys.
Without standbys, the engine and pool are the primary's own: nothing changes on one machine.

Migrations run on the primary only (engine.connect); a standby replays them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import select
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from geo_service.db.engine import CONNECT_KWARGS, ReadPool
from geo_service.errors import Unavailable
from geo_service.settings import DatabaseSettings

log = logging.getLogger("geo_service.replicas")

CHECK_EVERY_S = 1.0
# Connecting to a standby: a host that does not answer costs a request this long, once per
# GEO_DATABASE_READ_RETRY_S (the primary keeps the engine's 5 s).
STANDBY_CONNECT_TIMEOUT_S = 3
# Whether the server is a standby, of which cluster (every physical copy of a cluster shares
# its system identifier), and how far its replay lags: none while it has replayed all it
# received and its WAL receiver streams; else the time since the last transaction it
# replayed. A WAL receiver's status is hidden from roles without pg_read_all_stats (NULL),
# so a receiver seen without a status counts as streaming.
PROBE_SQL = """
SELECT pg_is_in_recovery() AS standby,
       (SELECT system_identifier FROM pg_control_system()) AS system,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
             AND EXISTS (SELECT FROM pg_stat_wal_receiver
                         WHERE coalesce(status, 'streaming') = 'streaming')
            THEN 0.0
            ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
       END AS lag_s
"""
SYSTEM_SQL = "SELECT system_identifier FROM pg_control_system()"


def shown(url: URL | str) -> str:
    """A URL as logs and messages show it: host, port and database, never the password."""
    url = make_url(url) if isinstance(url, str) else url
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


@dataclass(frozen=True)
class Probe:
    """What one look at a server found."""

    standby: bool
    system: int | None
    lag_s: float | None


def misconfigured(probe: Probe, primary_system: int | None) -> str | None:
    """Why a server so probed can never serve the primary's reads, or None (pure)."""
    if not probe.standby:
        return (
            "is not a hot standby (pg_is_in_recovery() is false): a primary, or a standby "
            "since promoted, does not follow the primary's writes"
        )
    if None not in (probe.system, primary_system) and probe.system != primary_system:
        return (
            f"is a standby of another cluster (system identifier {probe.system}; the "
            f"primary's is {primary_system})"
        )
    return None


def judge(probe: Probe, primary_system: int | None, max_lag_s: float) -> str | None:
    """Why reads must not go to a server so probed now, or None when they may (pure)."""
    if problem := misconfigured(probe, primary_system):
        return problem
    if probe.lag_s is None:
        return "has replayed nothing from the primary yet"
    if probe.lag_s > max_lag_s:
        return (
            f"lags {probe.lag_s:.1f} s behind the primary "
            f"(GEO_DATABASE_READ_MAX_LAG_S is {max_lag_s:g})"
        )
    return None


@dataclass(eq=False)
class Server:
    """One database server reads may go to, and what the last look at it found."""

    url: URL
    primary: bool = False
    usable: bool = False  # a standby: last found a standby of the primary within the lag limit
    retry_at: float = 0.0  # a standby found not answering: not tried before this (monotonic)
    lag_s: float | None = None
    problem: str | None = None  # why it is skipped, in words
    kind: str | None = None  # of the problem: down, config or lag (a change is logged)

    @property
    def name(self) -> str:
        """host:port/database."""
        return shown(self.url)

    @property
    def conninfo(self) -> str:
        """The libpq URL (psycopg's)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def connect_kwargs(self) -> dict[str, Any]:
        """The service's connection parameters, with a shorter wait for a standby."""
        if self.primary:
            return dict(CONNECT_KWARGS)
        return {**CONNECT_KWARGS, "connect_timeout": STANDBY_CONNECT_TIMEOUT_S}

    def state(self) -> dict[str, Any]:
        """What /healthz and `geo-service db status` show of a standby."""
        lag = None if self.lag_s is None else round(self.lag_s, 3)
        return {"server": self.name, "reading": self.usable, "lag_s": lag, "problem": self.problem}


def _probe_row(row: Sequence[Any] | None) -> Probe:
    assert row is not None
    standby, system, lag = row
    return Probe(bool(standby), None if system is None else int(system), lag)


def _probe_kwargs() -> dict[str, Any]:
    return {
        "autocommit": True,
        "connect_timeout": STANDBY_CONNECT_TIMEOUT_S,
        "application_name": "geo-service-probe",
    }


def _alive(conn: Any) -> bool:
    """False when the server has closed an idle connection (it stopped, or ended the session).
    Looks only at what has already arrived, so a healthy connection costs no round trip: an
    idle connection receives nothing, while a server going away sends its last error and then
    the end of the stream, which stays readable."""
    if conn.closed or conn.broken:
        return False
    socket = conn.pgconn.socket
    if not _readable(socket):
        return True
    try:
        conn.pgconn.consume_input()
    except psycopg.OperationalError:
        return False
    return conn.pgconn.status == psycopg.pq.ConnStatus.OK and not _readable(socket)


def _readable(fd: int) -> bool:
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


def _reason(error: BaseException | str) -> str:
    said = str(error).strip()
    return said.splitlines()[0] if said else type(error).__name__


class Standbys:
    """The standbys of the primary and what is known of each: which a new read connection
    should go to (`order`), whether one may keep serving reads (`fits`)."""

    def __init__(self, settings: DatabaseSettings, primary: URL) -> None:
        self.primary = Server(primary, primary=True, usable=True)
        self.servers = [Server(_psycopg_url(url)) for url in settings.read_urls]
        self.max_lag_s = settings.read_max_lag_s
        self.retry_s = settings.read_retry_s
        self.primary_system: int | None = None
        self._turn = itertools.count()
        # Which server each connection the routed engine and pool made is on.
        self.server_of: weakref.WeakKeyDictionary[Any, Server] = weakref.WeakKeyDictionary()

    @classmethod
    def look(cls, settings: DatabaseSettings, engine: Engine) -> Standbys:
        """The settings' standbys of the primary behind `engine`, each looked at once.
        Unavailable naming GEO_DATABASE_READ_URLS for a server that is no standby of the
        primary; one that does not answer is only logged (reads go elsewhere until it does)."""
        standbys = cls(settings, engine.url)
        standbys.primary_system = _system_of(engine)
        for server in standbys.servers:
            try:
                with psycopg.connect(server.conninfo, **_probe_kwargs()) as conn:
                    probe = _probe_row(conn.execute(PROBE_SQL).fetchone())
            except psycopg.Error as error:
                standbys.note(server, None, error)
                continue
            if problem := misconfigured(probe, standbys.primary_system):
                raise Unavailable(
                    f"GEO_DATABASE_READ_URLS: {server.name} {problem}. Name hot standbys of "
                    f"the primary ({standbys.primary.name}) there: copies made with "
                    "`pg_basebackup -R` that stream its WAL (docs/SCALING.md)"
                )
            standbys.note(server, probe, None)
        return standbys

    def order(self) -> list[Server]:
        """Where a new connection should go, best first: the usable standbys, taken in turn
        so that connections spread over them, then the primary."""
        usable = [s for s in self.servers if s.usable]
        if usable:
            start = next(self._turn) % len(usable)
            usable = usable[start:] + usable[:start]
        return [*usable, self.primary]

    def fits(self, server: Server) -> bool:
        """True while reads should stay on a connection to `server`."""
        if server.primary:
            return not any(s.usable for s in self.servers)
        return server.usable

    def failed(self, server: Server, error: BaseException | str) -> None:
        """A standby did not answer a request's connection: skip it for `retry_s`."""
        self.note(server, None, error)

    def states(self) -> list[dict[str, Any]]:
        """Each standby's state."""
        return [s.state() for s in self.servers]

    def note(self, server: Server, probe: Probe | None, error: BaseException | str | None) -> None:
        """Record what a look at `server` found (None: it did not answer, with `error`);
        log each change of whether it is read, and of why not."""
        was, kind_before = server.usable, server.kind
        if probe is None:
            server.usable, server.lag_s, server.kind = False, None, "down"
            server.retry_at = time.monotonic() + self.retry_s
            said = _reason(error or "no answer")
            server.problem = f"does not answer ({said}); tried again in {self.retry_s:g} s"
        else:
            server.lag_s = probe.lag_s
            server.problem = judge(probe, self.primary_system, self.max_lag_s)
            server.usable = server.problem is None
            config = misconfigured(probe, self.primary_system)
            server.kind = None if server.usable else ("config" if config else "lag")
        if server.usable and not was:
            log.warning("standby %s serves reads (lag %.3f s)", server.name, server.lag_s or 0)
        elif not server.usable and (was or server.kind != kind_before):
            log.warning("standby %s skipped: it %s", server.name, server.problem)

    async def watch(self) -> None:
        """Look at each standby every CHECK_EVERY_S (one not answering: after `retry_s`)."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            now = time.monotonic()
            due = [s for s in self.servers if s.usable or s.kind != "down" or now >= s.retry_at]
            looks = await asyncio.gather(*(self._look(s) for s in due), return_exceptions=True)
            for error in looks:  # a fault of ours: logged, and the watch goes on
                if isinstance(error, Exception):
                    log.error("watching the standbys failed", exc_info=error)

    async def _look(self, server: Server) -> None:
        try:
            async with asyncio.timeout(STANDBY_CONNECT_TIMEOUT_S + 1):
                conn = await psycopg.AsyncConnection.connect(server.conninfo, **_probe_kwargs())
                async with conn:
                    probe = _probe_row(await (await conn.execute(PROBE_SQL)).fetchone())
        except (psycopg.Error, OSError, TimeoutError) as error:
            self.note(server, None, error)
        else:
            self.note(server, probe, None)


@dataclass(eq=False)
class Reads:
    """Where the read-only doors read: `engine` and `pool`, each connection on a usable
    standby, else on the primary; `standbys` is None when none is configured."""

    engine: Engine
    pool: AsyncConnectionPool
    standbys: Standbys | None = None
    _watcher: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, settings: DatabaseSettings, engine: Engine, pool: AsyncConnectionPool
    ) -> Reads:
        """Reads for the settings' standbys, the primary's `engine` and `pool` when there are
        none. Each standby is looked at once (`Standbys.look`); then the routed engine and
        pool are opened and the standbys watched until `close`."""
        if not settings.read_urls:
            return cls(engine, pool)
        standbys = await asyncio.to_thread(Standbys.look, settings, engine)
        routed = RoutedPool(
            standbys,
            min_size=1,
            max_size=settings.pool_size,
            open=False,
            timeout=5,
            kwargs={"autocommit": True, **CONNECT_KWARGS},
        )
        await routed.open(wait=False)
        reads = cls(routed_engine(standbys, settings.pool_size), routed, standbys)
        reads._watcher = asyncio.create_task(standbys.watch(), name="geo-standby-watcher")
        return reads

    def states(self) -> list[dict[str, Any]] | None:
        """Each standby's state (None without standbys)."""
        return None if self.standbys is None else self.standbys.states()

    async def close(self) -> None:
        """Stop watching; close the routed engine and pool (the primary's stay open)."""
        if self._watcher is None:
            return
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        await self.pool.close()
        self.engine.dispose()


def routed_engine(standbys: Standbys, pool_size: int) -> Engine:
    """A pooled engine whose connections are made on the first server of `order` that
    answers, and dropped when taken if their server is gone or no longer the one to read
    from (SQLAlchemy then makes a new one)."""

    def connect() -> Any:
        for server in standbys.order():
            try:
                conn = psycopg.connect(server.conninfo, **server.connect_kwargs())
            except psycopg.OperationalError as error:
                if server.primary:
                    raise
                standbys.failed(server, error)
                continue
            standbys.server_of[conn] = server
            return conn
        raise AssertionError("order() always ends with the primary")

    def checkout(dbapi_conn: Any, _: ConnectionPoolEntry, __: PoolProxiedConnection) -> None:
        server = standbys.server_of.get(dbapi_conn)
        if server is None:
            return
        if not _alive(dbapi_conn):
            if not server.primary:
                standbys.failed(server, "its connection was closed")
            # Every connection made before now is suspect: SQLAlchemy remakes each when taken.
            raise exc.InvalidatePoolError(f"connection to {server.name} lost")
        if not standbys.fits(server):
            raise exc.DisconnectionError(f"reads no longer go to {server.name}")

    engine = create_engine(
        "postgresql+psycopg://",
        creator=connect,
        pool_size=pool_size,
        max_overflow=10,
        pool_timeout=5,
        hide_parameters=True,
    )
    event.listen(engine, "checkout", checkout)
    return engine


# The server the connection being made in this task was asked of (RoutedPool).
_CHOSEN: contextvars.ContextVar[Server] = contextvars.ContextVar("geo_read_server")


class RoutedPool(ReadPool):
    """The asyncio pool of `Reads`: each new connection on the first server of `order` that
    answers; a connection taken whose server is gone or no longer read from is closed and
    replaced."""

    def __init__(self, standbys: Standbys, **kwargs: Any) -> None:
        super().__init__(self._conninfo, **kwargs)
        self.standbys = standbys

    async def _conninfo(self) -> str:
        server = self.standbys.order()[0]
        # Awaited by the task making the connection, so that task's _connect sees it.
        _CHOSEN.set(server)
        return server.conninfo

    async def _connect(self, timeout: float | None = None) -> Any:
        while True:
            try:
                conn = await super()._connect(timeout)
            except psycopg.OperationalError as error:
                server = _CHOSEN.get(None)
                if server is None or server.primary:
                    raise
                self.standbys.failed(server, error)  # the next choice skips it
                continue
            self.standbys.server_of[conn] = _CHOSEN.get()
            return conn

    async def getconn(self, timeout: float | None = None) -> Any:
        """A live connection to a server reads should go to."""
        for _ in range((self.max_size or 1) + 2):
            conn = await super().getconn(timeout)
            server = self.standbys.server_of.get(conn)
            alive = _alive(conn)
            if server is None or (alive and self.standbys.fits(server)):
                return conn
            if not alive and not server.primary:
                self.standbys.failed(server, "its connection was closed")
            await conn.close()
            # As the pool does with a connection that fails its check: dropped, and replaced.
            await self._putconn(conn, from_getconn=True)
        return await super().getconn(timeout)


def _psycopg_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _system_of(engine: Engine) -> int | None:
    """The primary's system identifier (None where the role may not read it)."""
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(SYSTEM_SQL)).scalar_one())
    except exc.ProgrammingError:
        return None
    except exc.OperationalError as error:
        raise Unavailable(f"cannot reach the database: {error.orig}") from error
