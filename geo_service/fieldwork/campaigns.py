"""Campaigns: create one over communities or grids (its buildings snapshotted with their grid
and community), list and read them, and their progress per grid, community or worker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from geo_service.db.engine import reading
from geo_service.errors import InvalidInput, NotFound
from geo_service.fieldwork import rules, store
from geo_service.fieldwork.bodies import CampaignIn
from geo_service.incidents.bodies import validated
from geo_service.incidents.workflow import iso_time
from geo_service.settings import Settings


def create_campaign(
    engine: Engine,
    settings: Settings,
    payload: Mapping[str, Any] | CampaignIn,
    *,
    created_by: str,
) -> dict[str, Any]:
    """A new campaign and the snapshot of its buildings (each in its grid by the locate
    rule). Unknown communities or grids are NotFound naming them; an empty scope, rounds out
    of range or due before the start are InvalidInput naming the value."""
    body = validated(CampaignIn, payload)
    kind, codes = rules.scope_of(body.scope)
    tz = _tz(settings)
    starts_at, due_at = rules.period(body.starts, body.due, tz)
    with engine.begin() as conn:
        unknown = store.unknown_codes(conn, kind, codes)
        if unknown:
            what = "community" if kind == "communities" else "grid"
            raise NotFound(f"unknown {what} code(s) in scope.{kind}: {', '.join(unknown)}")
        campaign = store.insert_campaign(
            conn,
            {
                "name": body.name,
                "kind": body.kind,
                "target": body.target,
                "rounds": body.rounds,
                "scope_kind": kind,
                "scope_codes": codes,
                "starts_at": starts_at,
                "due_at": due_at,
                "created_by": created_by,
            },
        )
        store.snapshot(conn, campaign, kind, codes, settings.grids.locate_tolerance_m)
        return _one(conn, settings, campaign, None)


def list_campaigns(
    engine: Engine, settings: Settings, *, grids: Sequence[str] | None = None
) -> dict[str, Any]:
    """Every campaign, newest first (with `grids`: those covering one of them)."""
    with reading(engine) as conn:
        rows = store.campaign_rows(conn, None, grids)
    items = [campaign_out(r, _tz(settings)) for r in rows]
    return {"total": len(items), "items": items}


def get_campaign(
    engine: Engine, settings: Settings, campaign: int, *, grids: Sequence[str] | None = None
) -> dict[str, Any]:
    """One campaign with the grids it covers (NotFound for an unknown id, and for a caller
    restricted to `grids` it covers none of)."""
    with reading(engine) as conn:
        return _one(conn, settings, campaign, grids)


def _one(
    conn: Connection, settings: Settings, campaign: int, grids: Sequence[str] | None
) -> dict[str, Any]:
    rows = store.campaign_rows(conn, campaign, grids)
    if not rows:
        raise NotFound(f"no campaign {campaign}")
    return {**campaign_out(rows[0], _tz(settings)), "grids": store.campaign_grids(conn, campaign)}


def campaign_row(conn: Connection, campaign: int) -> dict[str, Any]:
    """The stored campaign, without its count of visits (NotFound for an unknown id)."""
    rows = store.campaign_rows(conn, campaign, None, counted=False)
    if not rows:
        raise NotFound(f"no campaign {campaign}")
    return rows[0]


def campaign_out(row: Mapping[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """The JSON form of a campaign."""
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "target": row["target"],
        "rounds": row["rounds"],
        "scope": {row["scope_kind"]: list(row["scope_codes"])},
        "starts": iso_time(row["starts_at"], tz),
        "due": iso_time(row["due_at"], tz),
        "created_by": row["created_by"],
        "created_at": iso_time(row["created_at"], tz),
        "buildings": row["buildings"],
        "households": row["households"],
        "visits": row["visits"],
    }


def progress(
    engine: Engine,
    settings: Settings,
    campaign: int,
    *,
    by: rules.By = "grid",
    round_: int | None = None,
    grids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Progress per grid, community or worker (of one round, or the whole campaign: each
    building once per round), and the city's. With `grids` (a grid worker's), the groups
    hold only those grids' buildings; the city's figures stay the whole campaign's."""
    if by not in rules.BY:
        raise InvalidInput(f"by {by!r}: expected one of {', '.join(rules.BY)}")
    with reading(engine) as conn:
        row = campaign_row(conn, campaign)
        if round_ is not None:
            rules.check_round(round_, row["rounds"], campaign)
        per_grid = store.progress_per_grid(conn, campaign, round_)
        allowed = None if grids is None else set(grids)
        mine = per_grid if allowed is None else [g for g in per_grid if g["code"] in allowed]
        workers = store.grid_workers(conn, campaign) if by == "worker" else None
    rounds = 1 if round_ is not None else row["rounds"]
    head = campaign_out(row, _tz(settings))
    del head["visits"]  # the city's figures count them
    return {
        "campaign": head,
        "by": by,
        "round": round_,
        "target": row["target"],
        "rounds_counted": rounds,
        "grids_only": None if grids is None else sorted(grids),
        "city": rules.totals(per_grid, row["target"], rounds),
        "items": rules.rollup(mine, by, row["target"], rounds, workers),
    }


def progress_csv(answer: Mapping[str, Any]) -> str:
    """A progress answer as CSV (one row per group, then the city's)."""
    return rules.to_csv(answer)


def _tz(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.incidents.timezone)
