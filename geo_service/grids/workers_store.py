"""All SQL of grid workers and their assignments (which grids each serves, from when to
when). Readers of today's workers of a grid use the view `grid_workers`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

Row = dict[str, Any]

_WORKER = """
    SELECT w.code, w.name, w.phone, w.grid_code AS home_grid, w.left_at, w.updated_at,
           coalesce((SELECT array_agg(a.grid_code ORDER BY a.grid_code)
                     FROM worker_assignments a
                     WHERE a.worker_code = w.code AND a.valid_from <= :at
                       AND (a.valid_to IS NULL OR a.valid_to > :at)), '{}') AS grids
    FROM workers w
"""


def find(
    conn: Connection,
    at: datetime,
    *,
    grid: str | None,
    community: str | None,
    include_left: bool,
    limit: int,
    offset: int,
) -> tuple[int, list[Row]]:
    """Workers (with the grids they served at `at`), by code."""
    where = """
        WHERE (:include_left OR w.left_at IS NULL OR w.left_at > :at)
          AND (CAST(:grid AS text) IS NULL OR EXISTS (
                SELECT 1 FROM worker_assignments a WHERE a.worker_code = w.code
                AND a.grid_code = :grid AND a.valid_from <= :at
                AND (a.valid_to IS NULL OR a.valid_to > :at)))
          AND (CAST(:community AS text) IS NULL OR EXISTS (
                SELECT 1 FROM worker_assignments a JOIN grid_versions v ON v.code = a.grid_code
                WHERE a.worker_code = w.code AND v.community_code = :community
                AND a.valid_from <= :at AND (a.valid_to IS NULL OR a.valid_to > :at)))
    """
    params = {
        "at": at,
        "grid": grid,
        "community": community,
        "include_left": include_left,
        "limit": limit,
        "offset": offset,
    }
    total = conn.execute(text(f"SELECT count(*) FROM workers w {where}"), params).scalar_one()
    rows = conn.execute(
        text(f"{_WORKER} {where} ORDER BY w.code LIMIT :limit OFFSET :offset"), params
    ).mappings()
    return int(total), [dict(r) for r in rows]


def one(conn: Connection, code: str, at: datetime, *, lock: bool = False) -> Row | None:
    """A worker with the grids served at `at`."""
    row = (
        conn.execute(
            text(f"{_WORKER} WHERE w.code = :code{' FOR UPDATE OF w' if lock else ''}"),
            {"code": code, "at": at},
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def assignments(conn: Connection, code: str) -> list[Row]:
    """Every assignment of a worker, oldest first."""
    rows = conn.execute(
        text(
            "SELECT grid_code, valid_from, valid_to FROM worker_assignments "
            "WHERE worker_code = :code ORDER BY valid_from, grid_code"
        ),
        {"code": code},
    ).mappings()
    return [dict(r) for r in rows]


def insert(conn: Connection, code: str, name: str, phone: str | None, home: str | None) -> None:
    """A new worker (the trigger opens the assignment to the home grid)."""
    conn.execute(
        text("INSERT INTO workers (code, name, phone, grid_code) VALUES (:c, :n, :p, :g)"),
        {"c": code, "n": name, "p": phone, "g": home},
    )


def update(conn: Connection, code: str, name: str | None, phone: str | None) -> None:
    """Change a worker's name or phone (None: keep)."""
    conn.execute(
        text(
            "UPDATE workers SET name = coalesce(:n, name), phone = coalesce(:p, phone), "
            "updated_at = now() WHERE code = :c"
        ),
        {"c": code, "n": name, "p": phone},
    )


def assign(conn: Connection, code: str, grids: Sequence[str]) -> None:
    """Open assignments to grids (those already open stay as they are); a worker without a
    home grid gets the first."""
    conn.execute(
        text(
            "INSERT INTO worker_assignments (worker_code, grid_code) "
            "SELECT :c, g FROM unnest(CAST(:g AS text[])) AS g "
            "ON CONFLICT (worker_code, grid_code) WHERE valid_to IS NULL DO NOTHING"
        ),
        {"c": code, "g": list(grids)},
    )
    conn.execute(
        text(
            "UPDATE workers SET grid_code = :g, updated_at = now() "
            "WHERE code = :c AND grid_code IS NULL"
        ),
        {"c": code, "g": grids[0]},
    )


def unassign(conn: Connection, code: str, grids: Sequence[str]) -> None:
    """End assignments to grids; a home grid among them becomes another grid served (or
    none)."""
    conn.execute(
        text(
            "UPDATE worker_assignments SET valid_to = now() "
            "WHERE worker_code = :c AND grid_code = ANY(:g) AND valid_to IS NULL"
        ),
        {"c": code, "g": list(grids)},
    )
    conn.execute(
        text(
            """
            UPDATE workers w SET updated_at = now(), grid_code = (
              SELECT min(a.grid_code) FROM worker_assignments a
              WHERE a.worker_code = w.code AND a.valid_to IS NULL)
            WHERE w.code = :c AND w.grid_code = ANY(:g)
            """
        ),
        {"c": code, "g": list(grids)},
    )


def leave(conn: Connection, code: str) -> None:
    """The worker leaves: every assignment ends."""
    conn.execute(
        text(
            "UPDATE worker_assignments SET valid_to = now() "
            "WHERE worker_code = :c AND valid_to IS NULL"
        ),
        {"c": code},
    )
    conn.execute(
        text(
            "UPDATE workers SET left_at = now(), grid_code = NULL, updated_at = now() "
            "WHERE code = :c"
        ),
        {"c": code},
    )


def existing_grids(conn: Connection, codes: Sequence[str]) -> set[str]:
    """Those of the codes that are grids today."""
    return set(
        conn.execute(
            text("SELECT code FROM grids WHERE code = ANY(:c)"), {"c": list(codes)}
        ).scalars()
    )


def unstaffed(conn: Connection, codes: Sequence[str]) -> list[str]:
    """Those of the named grids (today's) that no worker serves."""
    return list(
        conn.execute(
            text(
                "SELECT g.code FROM grids g WHERE g.code = ANY(:c) AND NOT EXISTS "
                "(SELECT 1 FROM grid_workers w WHERE w.grid_code = g.code) ORDER BY g.code"
            ),
            {"c": list(codes)},
        ).scalars()
    )


def now(conn: Connection) -> datetime:
    """The transaction's moment."""
    return conn.execute(text("SELECT now()")).scalar_one()  # type: ignore[no-any-return]
