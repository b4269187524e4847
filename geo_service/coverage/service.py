"""The 15-minute life circle as stored by the last compute: its status (stale or not),
the figures city-wide, per community, per grid and per building, the shapes, the isolated
street pieces and the CSV export. Computing is coverage/compute.py; what-if and suggest,
on a model of the stored network, are coverage/planning.py.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine

from geo_service.coverage import figures as fig
from geo_service.coverage import store
from geo_service.coverage.params import CoverageParams
from geo_service.coverage.store import BuildingQuery
from geo_service.db.engine import reading
from geo_service.errors import InvalidInput, NotFound
from geo_service.settings import Settings


# -- status and stored figures ----------------------------------------------------------------
def status(conn: Connection, settings: Settings) -> dict[str, Any]:
    """When coverage was computed, and whether it is stale (data or settings changed)."""
    run = store.latest_run(conn)
    if run is None:
        raise NotFound("coverage has not been computed yet: run `geo-service coverage compute`")
    now = store.versions(conn)
    because = [
        f"{kind} imported since (version {run[f'{kind}_version']} -> {now[kind]})"
        for kind in store.KINDS
        if now[kind] != run[f"{kind}_version"]
    ]
    if CoverageParams.of_run(run) != CoverageParams.from_settings(settings):
        because.append("coverage settings changed")
    return {
        "computed_at": run["computed_at"].isoformat(),
        "stale": bool(because),
        "stale_because": because,
        **CoverageParams.of_run(run).row(),
        "network": {"nodes": run["nodes"], "edges": run["edges"], "components": run["components"]},
        "seconds": run["seconds"],
    }


def summary(engine: Engine, settings: Settings) -> dict[str, Any]:
    """City-wide figures, the state of the network and whether the figures are stale."""
    with reading(engine) as conn:
        state = status(conn, settings)
        counts = store.city_counts(conn)
        pieces = store.components(conn)
    city = fig.from_counts(counts, state["tiers_min"]).get("city") or fig.figures(
        np.zeros(0, int), np.zeros(0), np.zeros(0, int), state["tiers_min"]
    )
    return {
        **state,
        "city": fig.with_shares(city),
        "isolated_pieces": [p for p in pieces if not p["routable"]],
    }


def communities(engine: Engine, settings: Settings) -> dict[str, Any]:
    """Figures per community."""
    with reading(engine) as conn:
        state = status(conn, settings)
        counts, names = store.community_counts(conn)
    per = fig.from_counts(counts, state["tiers_min"])
    items = [
        {"code": code, "name": names.get(code) if code else None, **fig.with_shares(per[code])}
        for code in sorted(per, key=lambda c: (c is None, c or ""))
    ]
    return {**state_head(state), "items": items}


def grids(engine: Engine, settings: Settings, community: str | None = None) -> dict[str, Any]:
    """Figures per grid (of one community when given)."""
    with reading(engine) as conn:
        state = status(conn, settings)
        if community is not None and not store.community_exists(conn, community):
            raise NotFound(f"unknown community code {community!r}")
        counts, names = store.grid_counts(conn, community)
    per = fig.from_counts(counts, state["tiers_min"])
    items = [
        {
            "code": code,
            **(names.get(code) or {"name": None, "community_code": None}),
            **fig.with_shares(per[code]),
        }
        for code in sorted(per, key=lambda c: (c is None, c or ""))
    ]
    return {**state_head(state), "items": items}


def buildings(engine: Engine, settings: Settings, query: BuildingQuery) -> dict[str, Any]:
    """A page of per-building results (the uncovered ones, farthest first, with `uncovered`)."""
    with reading(engine) as conn:
        state = status(conn, settings)
        if query.tier is not None and query.tier not in state["tiers_min"]:
            raise InvalidInput(f"tier={query.tier} is not one of the tiers {state['tiers_min']}")
        total, rows = store.building_page(conn, query)
    return {
        **state_head(state),
        "total": total,
        "limit": query.limit,
        "offset": query.offset,
        "items": rows,
    }


def status_of(engine: Engine, settings: Settings) -> dict[str, Any]:
    """The coverage status (NotFound until coverage is computed)."""
    with reading(engine) as conn:
        return status(conn, settings)


def components(engine: Engine) -> list[dict[str, Any]]:
    """The connected pieces of the walking network (piece 0 is the routable one)."""
    with reading(engine) as conn:
        return store.components(conn)


def export_csv(engine: Engine, settings: Settings, out: Path) -> dict[str, Any]:
    """Write building code, nearest centre code, walk_m, minutes, tier for every building."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with engine.connect() as conn:
        state = status(conn, settings)
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["building_code", "center_code", "walk_m", "minutes", "tier_min"])
            for code, center, walk, minutes, tier in store.export_rows(conn):
                writer.writerow(
                    [
                        code,
                        center or "",
                        "" if walk is None else f"{walk:.1f}",
                        "" if minutes is None else f"{minutes:.2f}",
                        tier or "",
                    ]
                )
                rows += 1
        conn.rollback()
    return {"rows": rows, "output": str(out), "stale": state["stale"]}


def state_head(state: dict[str, Any]) -> dict[str, Any]:
    """The part of the coverage status every answer carries."""
    return {k: state[k] for k in ("computed_at", "stale", "stale_because", "tiers_min")}


def building_coverage_of(engine: Engine, code: str) -> dict[str, Any] | None:
    """`building_coverage` on a connection of its own."""
    with reading(engine) as conn:
        return building_coverage(conn, code)


def building_coverage(conn: Connection, code: str) -> dict[str, Any] | None:
    """Coverage fields of one building (None when coverage has not been computed)."""
    return store.building_coverage(conn, code)
