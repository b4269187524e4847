"""Backups: `pg_dump` custom format out, `pg_restore` in, one transaction, all or nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from geo_service.db.embedded import PG_BIN
from geo_service.errors import InvalidInput, Unavailable


def _tool(name: str) -> str:
    """The PostgreSQL 15 client (same major version as the server), else the one on PATH."""
    local = PG_BIN / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise Unavailable(f"{name} is not installed: apt-get install postgresql-client-15")
    return found


def _connection(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq arguments of a URL, the password in the environment (never on a command line,
    where `ps` shows it)."""
    parsed = make_url(url)
    args = ["--dbname", parsed.database or "postgres"]
    if parsed.host:
        args += ["--host", parsed.host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Unavailable(f"{what} failed: {done.stderr.strip()[-2000:]}")


def dump(url: str, out: Path) -> Path:
    """Write the whole database (schema, data, migration state) to `out`, custom format."""
    args, env = _connection(url)
    partial = out.with_name(out.name + ".partial")
    # Written aside then renamed: a dump killed half-way never looks like a good one.
    command = [_tool("pg_dump"), "--format=custom", "--no-owner", *args, "--file", str(partial)]
    _run(command, env, "pg_dump")
    partial.replace(out)
    return out


def restore(url: str, path: Path) -> None:
    """Replace the database's contents with a dump, in one transaction: a failed restore
    leaves the database as it was."""
    if not path.is_file():
        raise InvalidInput(f"{path}: no such dump file")
    args, env = _connection(url)
    _run(
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            *args,
            str(path),
        ],
        env,
        "pg_restore",
    )
