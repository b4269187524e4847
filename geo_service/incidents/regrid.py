"""Open incidents follow a grid edit: each one whose place now lies in another grid moves to
it (the same locate rule as intake), with an event in its history saying which edit moved it.
The status and the deadline stay as they were: the case continues in its new grid."""

from __future__ import annotations

from typing import Any

from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection

from geo_service.crs import WGS84
from geo_service.grids.locate import locate_points
from geo_service.incidents import store
from geo_service.incidents.routing import event_row
from geo_service.incidents.workflow import utc_now
from geo_service.settings import Settings

REGRID = "regrid"  # the event of an incident moved by a grid edit (not a workflow action)


def follow_grid_edit(
    conn: Connection,
    settings: Settings,
    area: BaseGeometry,
    codes: list[str],
    actor: str,
    note: str,
) -> list[dict[str, Any]]:
    """Move the open incidents in `area`, or routed to one of `codes`, to the grid that holds
    them now; returns (ref, from, to) of each one moved."""
    found = store.open_near_grids(conn, area.wkb, codes)
    if not found:
        return []
    places = locate_points(
        conn,
        [f["lon"] for f in found],
        [f["lat"] for f in found],
        WGS84,
        settings.grids.locate_tolerance_m,
    )
    moved = []
    now = utc_now()
    routed = ("inside", "boundary", "nearest")
    for incident, place in zip(found, places, strict=True):
        grid = place.grid_code if place.status in routed else None
        if grid == incident["grid_code"]:
            continue
        store.update_incident(
            conn,
            incident["id"],
            {
                "grid_code": grid,
                "community_code": place.community_code if grid else None,
                "locate_status": place.status,
                "candidates": place.candidates if place.status == "ambiguous" else [],
                "updated_at": now,
            },
        )
        status = incident["status"]
        store.insert_events(
            conn,
            incident["id"],
            [event_row(REGRID, status, status, actor, note, now, grid)],
        )
        moved.append({"ref": incident["ref"], "from": incident["grid_code"], "to": grid})
    return moved
