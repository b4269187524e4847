"""Grid workers (网格员): who serves which grids, from when to when. A worker can serve
several grids and a grid have several workers; leaving ends every assignment. A change that
leaves a grid without a worker is stored and answered with a warning naming the grid (the
grid QA lists such grids too), since a worker who leaves cannot be kept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from geo_service.db import versions
from geo_service.errors import Conflict, InvalidInput, NotFound
from geo_service.grids import workers_store as store
from geo_service.grids.edits import moment
from geo_service.settings import Settings


def public_view(worker: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """What a notice board may show of a worker: only the fields the city marks public."""
    return {f: worker.get(f) for f in fields if f in worker}


def list_workers(
    engine: Engine,
    settings: Settings,
    *,
    grid: str | None = None,
    community: str | None = None,
    as_of: str | None = None,
    include_left: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """Workers with the grids they serve (today, or `as_of` a moment)."""
    with engine.connect() as conn:
        at = moment(settings, "as_of", as_of) or store.now(conn)
        total, items = store.find(
            conn,
            at,
            grid=grid,
            community=community,
            include_left=include_left,
            limit=limit,
            offset=offset,
        )
    return {"as_of": at.isoformat(), "total": total, "items": items}


def worker(engine: Engine, code: str) -> dict[str, Any]:
    """A worker, the grids served today and every assignment."""
    with engine.connect() as conn:
        found = store.one(conn, code, store.now(conn))
        if found is None:
            raise NotFound(f"unknown worker code {code!r}")
        return {**found, "assignments": store.assignments(conn, code)}


def add_worker(
    engine: Engine, code: str, name: str, phone: str | None, grids: Sequence[str]
) -> dict[str, Any]:
    """A new worker serving `grids` (the first is the home grid)."""
    with engine.begin() as conn:
        _grids_exist(conn, grids)
        try:
            with conn.begin_nested():
                store.insert(conn, code, name, phone, grids[0] if grids else None)
        except IntegrityError:
            raise Conflict(f"worker code {code!r} is already in use") from None
        if grids:
            store.assign(conn, code, grids)
        versions.bump(conn, "workers")
        return _answer(conn, code, [])


def update_worker(engine: Engine, code: str, name: str | None, phone: str | None) -> dict[str, Any]:
    """Change a worker's name or phone."""
    if name is None and phone is None:
        raise InvalidInput("give a new name, a new phone, or both")
    with engine.begin() as conn:
        _current(conn, code)
        store.update(conn, code, name, phone)
        versions.bump(conn, "workers")
        return _answer(conn, code, [])


def assign(engine: Engine, code: str, grids: Sequence[str]) -> dict[str, Any]:
    """The worker serves these grids too (from now on)."""
    if not grids:
        raise InvalidInput("name the grids to assign (grids=[...])")
    with engine.begin() as conn:
        current = _current(conn, code)
        if current["left_at"] is not None:
            raise Conflict(f"worker {code} left on {current['left_at'].isoformat()}")
        _grids_exist(conn, grids)
        store.assign(conn, code, grids)
        versions.bump(conn, "workers")
        return _answer(conn, code, [])


def unassign(engine: Engine, code: str, grids: Sequence[str]) -> dict[str, Any]:
    """The worker no longer serves these grids (from now on)."""
    if not grids:
        raise InvalidInput("name the grids to unassign (grids=[...])")
    with engine.begin() as conn:
        current = _current(conn, code)
        missing = [g for g in grids if g not in current["grids"]]
        if missing:
            raise InvalidInput(f"worker {code} does not serve grid {missing[0]}")
        store.unassign(conn, code, grids)
        versions.bump(conn, "workers")
        return _answer(conn, code, grids)


def leave(engine: Engine, code: str) -> dict[str, Any]:
    """The worker leaves: every assignment ends now."""
    with engine.begin() as conn:
        current = _current(conn, code)
        if current["left_at"] is not None:
            raise Conflict(f"worker {code} already left on {current['left_at'].isoformat()}")
        store.leave(conn, code)
        versions.bump(conn, "workers")
        return _answer(conn, code, current["grids"])


def _current(conn: Connection, code: str) -> dict[str, Any]:
    found = store.one(conn, code, store.now(conn), lock=True)
    if found is None:
        raise NotFound(f"unknown worker code {code!r}")
    return found


def _grids_exist(conn: Connection, grids: Sequence[str]) -> None:
    known = store.existing_grids(conn, grids)
    unknown = [g for g in grids if g not in known]
    if unknown:
        raise NotFound(f"unknown grid code {unknown[0]!r}")


def _answer(conn: Connection, code: str, left_grids: Sequence[str]) -> dict[str, Any]:
    """The worker as stored now, with a warning for each grid the change left unstaffed."""
    found = store.one(conn, code, store.now(conn))
    assert found is not None
    return {
        **found,
        "assignments": store.assignments(conn, code),
        "warnings": [
            {"kind": "no_worker", "grid": g, "message": f"grid {g} has no worker now"}
            for g in store.unstaffed(conn, left_grids)
        ],
    }
