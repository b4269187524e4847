"""A grid worker's round: the buildings of their grid not yet reached in a round, in walking
order from where they stand, along the street network of the last coverage compute (its
in-memory model, `coverage.planning.Models`), else in a straight line; with the walk in
metres and minutes and how far it can be from the best order (`tour`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from sqlalchemy import Engine

from geo_service.coords import parse_point
from geo_service.coverage.network import NO_EDGE
from geo_service.coverage.planning import Models
from geo_service.crs import parse_input_crs
from geo_service.db.engine import reading
from geo_service.errors import Forbidden, InvalidInput, NotFound
from geo_service.fieldwork import rules, store, tour
from geo_service.fieldwork.campaigns import campaign_row
from geo_service.settings import Settings

MAX_STOPS: Final = 2000  # more than any worker's grids hold; the tour is O(n²) per pass
# Each search on the street network stops this many times the widest straight-line spread of
# the places (plus the access legs) from its start: far enough for any walk between them.
_DETOUR: Final = 3.0
_MIN_LIMIT_M: Final = 2000.0


def route(
    engine: Engine,
    settings: Settings,
    campaign: int,
    round_: int,
    lon: Any,
    lat: Any,
    *,
    crs: str | None = None,
    grid: str | None = None,
    worker_grids: Sequence[str] | None = None,
    models: Models | None = None,
) -> dict[str, Any]:
    """The unvisited buildings of `grid` (a worker: their grid, or all of their grids in the
    campaign when `grid` is not given) in round `round_`, ordered for walking from (lon,
    lat): nearest neighbour improved by 2-opt, over walking distances on the street network
    where there is one."""
    x, y = parse_point(lon, lat, parse_input_crs(crs))
    with reading(engine) as conn:
        row = campaign_row(conn, campaign)
        rules.check_round(round_, row["rounds"], campaign)
        covered = store.campaign_grids(conn, campaign)
        grids = _grids(campaign, grid, worker_grids, covered)
        stops = store.to_visit(conn, campaign, round_, grids)
    if len(stops) > MAX_STOPS:
        raise InvalidInput(
            f"{len(stops)} buildings to visit in {', '.join(grids)}: at most {MAX_STOPS} per "
            "route; ask for one grid"
        )
    lons = np.r_[x, [s["lon"] for s in stops]].astype(float)
    lats = np.r_[y, [s["lat"] for s in stops]].astype(float)
    d, distances = _distances(engine, settings, lons, lats, models)
    walked = tour.plan(d)
    speed = settings.coverage.walk_speed_kmh * 1000.0 / 60.0  # metres a minute
    ordered, so_far = [], 0.0
    for position, place in enumerate(walked.order[1:], start=1):
        leg = float(d[walked.order[position - 1], place])
        so_far += leg
        stop = stops[place - 1]
        ordered.append(
            {
                "order": position,
                "building": stop["code"],
                "address": stop["address"],
                "name": stop["name"],
                "households": stop["households"],
                "grid_code": stop["grid_code"],
                "lon": stop["lon"],
                "lat": stop["lat"],
                "tried": stop["tried"],
                "leg_m": round(leg, 1),
                "walk_m": round(so_far, 1),
            }
        )
    return {
        "campaign": campaign,
        "round": round_,
        "grids": list(grids),
        "start": {"lon": x, "lat": y},
        "buildings": len(stops),
        "distances": distances,
        "walk_m": round(walked.length, 1),
        "minutes": round(walked.length / speed, 1),
        "nearest_neighbour_m": round(walked.nearest_neighbour_length, 1),
        "lower_bound_m": round(walked.lower_bound, 1),
        "ratio_to_lower_bound": None if walked.ratio is None else round(walked.ratio, 3),
        "stops": ordered,
    }


def _grids(
    campaign: int, grid: str | None, worker_grids: Sequence[str] | None, covered: list[str]
) -> list[str]:
    """The grids to route through: the one asked for (a worker's own only), else a worker's
    grids in the campaign."""
    if grid is not None:
        if worker_grids is not None and grid not in worker_grids:
            raise Forbidden(f"grid {grid} is not one of yours ({', '.join(sorted(worker_grids))})")
        if grid not in covered:
            raise NotFound(f"grid {grid} has no buildings in campaign {campaign}")
        return [grid]
    if worker_grids is None:
        raise InvalidInput("grid is required (a grid worker's token names their grids)")
    mine = [g for g in covered if g in set(worker_grids)]
    if not mine:
        raise NotFound(f"none of your grids ({', '.join(sorted(worker_grids))}) is in campaign "
                       f"{campaign}")  # fmt: skip
    return mine


def _distances(
    engine: Engine, settings: Settings, lons: np.ndarray, lats: np.ndarray, models: Models | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Metres between the places: walking on the street network of the last coverage compute
    where both ends reach it, else straight; and what was used."""
    straight = tour.straight_matrix(lons, lats)
    try:
        model, state = (models or Models()).get(engine, settings)
    except NotFound:
        return straight, {
            "metric": "straight_line",
            "note": "no street network yet (run `geo-service coverage compute`): straight-line "
            "metres",
        }
    places = model.entries(lons, lats)
    spread = float(straight.max()) if len(straight) else 0.0
    reach = float(np.max(places.access, initial=0.0, where=np.isfinite(places.access)))
    limit = max(_MIN_LIMIT_M, _DETOUR * spread + 2 * reach)
    walk = tour.walk_matrix(model.graph, places, limit)
    d, missing = tour.filled(walk, straight)
    off = int((places.edge == NO_EDGE).sum())
    answer: dict[str, Any] = {
        "metric": "walk",
        "network_computed_at": state["computed_at"],
        "network_stale": state["stale"],
        "straight_line_pairs": missing,
    }
    if missing:
        answer["note"] = (
            f"{missing} pair(s) of places have no walk between them on the network "
            f"({off} place(s) farther than {model.params.max_access_m:g} m from a routable "
            "street): those legs are straight-line metres"
        )
    return d, answer
