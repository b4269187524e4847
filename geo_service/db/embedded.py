"""The embedded PostGIS cluster: a private PostgreSQL in a data folder, managed by the service.

Used when GEO_DATABASE_URL is not set. PostgreSQL refuses to run as root, so when we are
root the server runs as the `postgres` system user; its data folder, socket folder and log
must then be owned by that user, and every folder above them must be traversable by it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from geo_service.errors import Unavailable

PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
DEBIAN_PACKAGES = ("postgresql-15", "postgresql-15-postgis-3", "postgresql-15-pgrouting")
# Files that prove each Debian package is installed (cheaper and more honest than dpkg -l).
_PACKAGE_PROBES = {
    "postgresql-15": PG_BIN / "postgres",
    "postgresql-15-postgis-3": Path(
        f"/usr/share/postgresql/{PG_VERSION}/extension/postgis.control"
    ),
    "postgresql-15-pgrouting": Path(
        f"/usr/share/postgresql/{PG_VERSION}/extension/pgrouting.control"
    ),
}
DB_NAME = "geo"
DB_USER = "geo"
RUN_AS = "postgres"
FALLBACK_ROOT = Path("/var/lib/geo-service")
# In a cluster kept under FALLBACK_ROOT: the data folder it serves (GEO_DATA_DIR to reach it).
DATA_DIR_POINTER = "data-dir"
# In the cluster's folder: held while one process starts the cluster (`EmbeddedCluster.start`).
START_LOCK = "start.lock"


def missing_packages() -> list[str]:
    """Debian packages the embedded cluster needs that are not installed."""
    return [pkg for pkg, probe in _PACKAGE_PROBES.items() if not probe.exists()]


def ensure_packages() -> None:
    """Install the missing Debian packages when root; otherwise say exactly what to install."""
    missing = missing_packages()
    if not missing:
        return
    cmd = "apt-get install -y " + " ".join(missing)
    if os.geteuid() != 0:
        raise Unavailable(f"PostGIS is not installed; run as root: apt-get update && {cmd}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Unavailable(f"`{' '.join(args)}` failed: {done.stderr.strip()[-500:]}")
    still = missing_packages()
    if still:
        raise Unavailable(f"packages still missing after apt-get install: {', '.join(still)}")


@dataclass
class ClusterStatus:
    """What `geo-service db status` shows."""

    data_dir: Path  # the service's data folder (GEO_DATA_DIR or the one found)
    cluster_dir: Path  # where the cluster lives: data_dir, or /var/lib/... when root
    initialised: bool
    running: bool
    port: int
    url: str | None


class EmbeddedCluster:
    """A PostgreSQL cluster living in `<data_dir>/pgdata`, listening on localhost only."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.requested_dir = Path(data_dir).absolute()
        self.port = port

    # -- paths ------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The folder that holds the cluster (see `_reachable_root` for why it may move)."""
        return self._reachable_root()

    @property
    def pgdata(self) -> Path:
        """PostgreSQL's data directory."""
        return self.root / "pgdata"

    @property
    def socket_dir(self) -> Path:
        """Unix socket folder (kept short: socket paths are limited to ~100 bytes)."""
        digest = hashlib.sha1(str(self.requested_dir).encode()).hexdigest()[:10]
        return Path("/tmp") / f"geo-service-{digest}"

    @property
    def log_file(self) -> Path:
        """Server log, inside a folder the server user owns (a root-owned path fails silently)."""
        return self.root / "log" / "postgres.log"

    @property
    def password_file(self) -> Path:
        """The generated password of the `geo` role, readable by its owner only.

        Kept beside the cluster, not in the requested folder: a cluster that outlives its
        checkout (the /var/lib fallback of a re-cloned folder) must keep its password."""
        return self.root / "password"

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _reachable_root(self) -> Path:
        """Data folder the server user can reach.

        As root, a clone under /root is not traversable by `postgres`; rather than loosen the
        permissions of the user's home we keep the cluster under /var/lib/geo-service/<hash>,
        and leave a pointer file in the requested folder.
        """
        if not self._as_root() or _traversable_by(self.requested_dir, RUN_AS):
            return self.requested_dir
        digest = hashlib.sha1(str(self.requested_dir).encode()).hexdigest()[:12]
        return FALLBACK_ROOT / digest

    # -- process helpers --------------------------------------------------------------------
    def _run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_root():
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if check and done.returncode != 0:
            log_tail = _tail(self.log_file)
            raise Unavailable(
                f"`{' '.join(args[:2])}` failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
                + (f"\nserver log:\n{log_tail}" if log_tail else "")
            )
        return done

    def _own(self, *paths: Path) -> None:
        if self._as_root():
            for path in paths:
                shutil.chown(path, RUN_AS, RUN_AS)

    # -- lifecycle --------------------------------------------------------------------------
    def initialised(self) -> bool:
        """True once initdb has run."""
        return (self.pgdata / "PG_VERSION").exists()

    def running(self) -> bool:
        """True when this cluster's postmaster is alive and answers on its port.

        Checked through postmaster.pid rather than the port alone: another server (another
        checkout's cluster) may hold the port, and its password is not ours.
        """
        pid = self._postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, owned by the postgres user
        return _port_answers(self.port)

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    def password(self) -> str:
        """The `geo` role's password, generated on first use."""
        if not self.password_file.exists():
            if self.initialised():
                raise Unavailable(
                    f"the cluster in {self.pgdata} has lost its password file "
                    f"{self.password_file}; stop it and remove {self.root} to start afresh"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            self.password_file.write_text(secrets.token_urlsafe(24))
            self.password_file.chmod(0o600)
        return self.password_file.read_text().strip()

    def url(self) -> str:
        """SQLAlchemy URL of the embedded database."""
        return (
            f"postgresql+psycopg://{DB_USER}:{quote(self.password(), safe='')}"
            f"@127.0.0.1:{self.port}/{DB_NAME}"
        )

    def init(self) -> None:
        """Create the cluster (first time only) with a password-protected `geo` superuser."""
        if self.initialised():
            return
        ensure_packages()
        for folder in (self.root, self.pgdata, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        self._own(self.root, self.pgdata, self.log_file.parent)
        pwfile = self.root / ".initpw"
        pwfile.write_text(self.password())
        self._own(pwfile)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                DB_USER,
                "--pwfile",
                str(pwfile),
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                # characters classified as C.UTF-8 does; text sorted bytewise, which for
                # UTF-8 is the same code-point order, but lets PostgreSQL compare with memcmp
                # and abbreviated keys (text indexes build 1.6x faster than under C.UTF-8)
                "--locale=C.UTF-8",
                "--lc-collate=C",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# geo-service embedded cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\n"
                "shared_buffers = 512MB\n"
                "work_mem = 64MB\n"
                "maintenance_work_mem = 512MB\n"
                "max_wal_size = 2GB\n"
                "jit = off\n"
            )
        if self.requested_dir != self.root:
            self.requested_dir.mkdir(parents=True, exist_ok=True)
            (self.requested_dir / "CLUSTER_LOCATION").write_text(f"{self.root}\n")

    def start(self) -> None:
        """Initialise if needed, start the server, and create the database.

        Serialised across processes by a lock file beside the cluster: pytest's workers, two
        commands typed at once or a server's workers may all find the cluster down (after a
        reboot, or a machine restored from a snapshot with a stale postmaster.pid) and start
        it together; the second `pg_ctl start` would fail on the first one's lock file."""
        ensure_packages()
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / START_LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            self._start_locked()

    def _start_locked(self) -> None:
        if not self.running() and _port_answers(self.port):  # before creating anything
            raise Unavailable(self._port_taken_message())
        self.init()
        if self.root != self.requested_dir:
            (self.root / DATA_DIR_POINTER).write_text(f"{self.requested_dir}\n")
        if not self.running():
            self._clear_stale_pid_file()
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            self._own(self.socket_dir)
            self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port}",
                "start",
            )
        self._create_database()

    def _clear_stale_pid_file(self) -> None:
        """Remove postmaster.pid when no postgres process has its PID: a machine restored
        from a snapshot of a running cluster keeps the file, and its PID may by now belong to
        another program, which PostgreSQL would take for a live postmaster and refuse to
        start."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        try:
            program = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            program = None  # no such process
        if program != "postgres":
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def _port_taken_message(self) -> str:
        """Why the port is not ours, and what to do: another geo-service cluster (found by
        the lock file PostgreSQL keeps beside its socket) is most often the one to use."""
        other = holder_of_port(self.port)
        if other is None:
            return (
                f"port {self.port} is taken by another PostgreSQL server (not the cluster in "
                f"{self.pgdata}); stop it, or set GEO_EMBEDDED_PORT to a free port"
            )
        return (
            f"port {self.port} is held by the geo-service cluster of data folder {other}; to "
            f"use that database, set GEO_DATA_DIR={other} (or run from its project folder); to "
            f"start a second one here, stop it first (GEO_DATA_DIR={other} geo-service db stop) "
            f"or set GEO_EMBEDDED_PORT to a free port"
        )

    def standby(self, data_dir: Path, port: int) -> EmbeddedCluster:
        """A hot standby of this running cluster, in `data_dir` on `port`, started: a copy
        made with `pg_basebackup -R` that streams this cluster's WAL (GEO_DATABASE_READ_URLS
        may name it; docs/SCALING.md). Its `geo` role and password are this cluster's."""
        copy = EmbeddedCluster(data_dir, port)
        if copy.initialised():
            raise Unavailable(f"{copy.pgdata} already holds a cluster: remove it first")
        if _port_answers(port):
            raise Unavailable(f"port {port} is taken: choose another for the standby")
        if not self.running():
            raise Unavailable(f"the cluster in {self.pgdata} does not run: start it first")
        for folder in (copy.root, copy.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        copy._own(copy.root, copy.log_file.parent)
        copy.password_file.write_text(self.password())
        copy.password_file.chmod(0o600)
        copy._run(
            "pg_basebackup",
            "--pgdata",
            str(copy.pgdata),
            "--write-recovery-conf",  # standby.signal and primary_conninfo: a streaming standby
            "--wal-method=stream",
            "--checkpoint=fast",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--username={DB_USER}",
            env={**os.environ, "PGPASSWORD": self.password()},
        )
        with (copy.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# geo-service standby (later lines win over the primary's copied above)\n"
                f"port = {port}\n"
                f"unix_socket_directories = '{copy.socket_dir}'\n"
                # the primary keeps the rows a long read on the standby still needs, rather
                # than the standby cancelling the read when it replays their removal
                "hot_standby_feedback = on\n"
            )
        copy.start()
        return copy

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown: sessions are rolled back)."""
        if self.running():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def status(self) -> ClusterStatus:
        """Where the cluster is and whether it runs."""
        running = self.running()
        return ClusterStatus(
            self.requested_dir,
            self.root,
            self.initialised(),
            running,
            self.port,
            self.url() if running else None,
        )

    def _create_database(self) -> None:
        env = {**os.environ, "PGPASSWORD": self.password()}
        base = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER]
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"
        for _ in range(50):
            found = subprocess.run(
                [*base, "-d", "postgres", "-tAc", query],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if found.returncode == 0:
                break
            time.sleep(0.1)  # the server may still be finishing recovery after pg_ctl -w
        else:
            raise Unavailable(f"embedded database does not answer: {found.stderr.strip()}")
        if found.stdout.strip() != "1":
            subprocess.run(
                [*base, "-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )


def holder_of_port(port: int) -> Path | None:
    """The data folder (GEO_DATA_DIR) of the geo-service cluster listening on `port`, if any.

    PostgreSQL writes `.s.PGSQL.<port>.lock` beside its socket: the postmaster's PID on the
    first line, its data directory on the second. Our clusters' sockets live in
    /tmp/geo-service-*, so those lock files say which cluster holds a port.
    """
    for lock in Path("/tmp").glob(f"geo-service-*/.s.PGSQL.{port}.lock"):
        try:
            pid, pgdata, *_ = lock.read_text().splitlines()
            os.kill(int(pid), 0)
        except PermissionError:
            pass  # alive, owned by the postgres user
        except (OSError, ValueError):
            continue
        root = Path(pgdata).parent
        try:
            return Path((root / DATA_DIR_POINTER).read_text().strip())
        except OSError:
            return root
    return None


def _traversable_by(folder: Path, user: str) -> bool:
    """True when `user` can reach `folder`, or its nearest existing ancestor (we create the rest
    as root and hand it over)."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    done = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(probe)], check=False)
    return done.returncode == 0


def _port_answers(port: int) -> bool:
    done = subprocess.run(
        [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
    )
    return done.returncode in (0, 1)  # 0 accepting, 1 starting up: either way the port is held


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
