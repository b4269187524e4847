"""The embedded cluster started by several processes at once: pytest's workers on a machine
whose cluster is down (rebooted, or restored from a snapshot that kept a stale postmaster.pid)
all start it together, and every one of them must get a working database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from geo_service.db.embedded import RUN_AS, EmbeddedCluster
from tests.conftest import free_port, halt

STARTERS = 3
START = (
    "import sys; from pathlib import Path; from geo_service.db.embedded import EmbeddedCluster;"
    "EmbeddedCluster(Path(sys.argv[1]), int(sys.argv[2])).start()"
)


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder for a throwaway cluster (in memory where there is a tmpfs: initdb is fsync-bound
    on a disk), reachable by the server's user; its cluster stopped and removed at the end."""
    shm = Path("/dev/shm")
    memory = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="geo-embedded-", dir=memory))
    if os.geteuid() == 0:
        shutil.chown(path, RUN_AS, RUN_AS)
    yield path / "data"
    cluster = EmbeddedCluster(path / "data", 0)
    halt(cluster)
    shutil.rmtree(cluster.socket_dir, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)


def start_together(data_dir: Path, port: int) -> list[subprocess.CompletedProcess[str]]:
    """`STARTERS` processes each starting the cluster, launched together."""
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", START, str(data_dir), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(STARTERS)
    ]
    done = []
    for starter in starters:
        out, err = starter.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(starter.args, starter.returncode, out, err))
    return done


def gone(pid: int) -> None:
    """Wait until process `pid` has exited (pg_ctl's stop returns when the pid file is gone,
    a moment before the postmaster itself)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"the postmaster {pid} did not exit")


def answers(cluster: EmbeddedCluster) -> int:
    engine = create_engine(cluster.url())
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT 1")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("state", ["new", "stale pid", "pid now another program's"])
def test_processes_starting_the_cluster_together_all_get_it(folder: Path, state: str) -> None:
    port = free_port()
    cluster = EmbeddedCluster(folder, port)
    other = subprocess.Popen(["sleep", "60"])  # a live program that is no postmaster
    if state != "new":
        # As a machine restored from a snapshot of a running cluster: down, with the dead
        # postmaster's pid file still in place.
        cluster.start()
        pid_file = cluster.pgdata / "postmaster.pid"
        stale = pid_file.read_text()
        cluster.stop()
        old_pid, rest = stale.split("\n", 1)
        gone(int(old_pid))
        if state == "pid now another program's":
            stale = f"{other.pid}\n{rest}"
        pid_file.write_text(stale)
        if os.geteuid() == 0:
            shutil.chown(pid_file, RUN_AS, RUN_AS)
        assert not cluster.running()

    try:
        results = start_together(folder, port)
    finally:
        other.kill()
        other.wait()

    assert [r.returncode for r in results] == [0] * STARTERS, [r.stderr for r in results]
    assert cluster.running()
    assert answers(cluster) == 1
