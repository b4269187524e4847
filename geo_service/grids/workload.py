"""Workload: how much each grid and each worker carries (households, buildings, area,
incidents), and how unevenly it is spread across a community and the city, against the
city's standard of households per worker."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from datetime import timedelta
from typing import Any, Literal

import numpy as np
from sqlalchemy import Engine

from geo_service.db.engine import reading
from geo_service.grids import workload_store as store
from geo_service.grids.edits import moment
from geo_service.settings import Settings

By = Literal["grid", "worker"]


def imbalance(values: list[float]) -> dict[str, Any]:
    """How unevenly values are spread: count, mean, median, max, coefficient of variation
    (population standard deviation / mean) and max / median (None where undefined)."""
    if not values:
        return {
            "n": 0,
            "mean": None,
            "median": None,
            "max": None,
            "cv": None,
            "max_over_median": None,
        }
    a = np.asarray(values, dtype=float)
    mean, median, top = float(a.mean()), float(np.median(a)), float(a.max())
    return {
        "n": len(values),
        "mean": round(mean, 3),
        "median": round(median, 3),
        "max": round(top, 3),
        "cv": round(float(a.std()) / mean, 4) if mean else None,
        "max_over_median": round(top / median, 4) if median else None,
    }


def workload(
    engine: Engine,
    settings: Settings,
    *,
    by: By = "grid",
    community: str | None = None,
    as_of: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Per grid or per worker, with the imbalance per community and for the city. Incidents
    received and closed are counted over [since, until) (default: the 30 days up to the
    moment)."""
    target = settings.grids.grid_target_households
    with reading(engine) as conn:
        at = moment(settings, "as_of", as_of) or store.now(conn)
        end = moment(settings, "until", until) or at
        start = moment(settings, "since", since) or end - timedelta(days=30)
        grids = store.per_grid(conn, at, start, end, community)
        for g in grids:
            g["households_per_worker"] = (
                round(g["households"] / g["workers"], 1) if g["workers"] else None
            )
            g["over_target"] = (
                g["households_per_worker"] is not None and g["households_per_worker"] > target
            )
        names = store.workers(conn, sorted({w for g in grids for w in g["worker_codes"]}))
    items = grids if by == "grid" else _per_worker(grids, names)
    key = "households_per_worker" if by == "grid" else "households"
    groups: dict[str, list[float]] = defaultdict(list)
    for item in items:
        if item.get(key) is not None:
            for community_code in (
                item["communities"] if by == "worker" else [item["community_code"]]
            ):
                groups[community_code].append(float(item[key]))
    return {
        "by": by,
        "as_of": at.isoformat(),
        "since": start.isoformat(),
        "until": end.isoformat(),
        "target_households_per_worker": target,
        "measure": key,
        "city": imbalance([float(i[key]) for i in items if i.get(key) is not None]),
        "communities": {c: imbalance(v) for c, v in sorted(groups.items())},
        "items": items,
    }


def _per_worker(
    grids: list[dict[str, Any]], names: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each worker's share: a grid's households, buildings and area split evenly among its
    workers; its incidents counted for each of them."""
    out: dict[str, dict[str, Any]] = {}
    for g in grids:
        for code in g["worker_codes"]:
            w = out.setdefault(
                code,
                {
                    "code": code,
                    "name": names.get(code, {}).get("name"),
                    "grids": [],
                    "communities": [],
                    "households": 0.0,
                    "buildings": 0.0,
                    "area_m2": 0.0,
                    "open_incidents": 0,
                    "overdue": 0,
                    "received": 0,
                    "closed": 0,
                    "closed_on_time": 0,
                },
            )
            share = 1 / g["workers"]
            w["grids"].append(g["code"])
            if g["community_code"] not in w["communities"]:
                w["communities"].append(g["community_code"])
            for k in ("households", "buildings", "area_m2"):
                w[k] += g[k] * share
            for k in ("open_incidents", "overdue", "received", "closed", "closed_on_time"):
                w[k] += g[k]
    for w in out.values():
        for k in ("households", "buildings", "area_m2"):
            w[k] = round(w[k], 1)
    return sorted(out.values(), key=lambda w: w["code"])


CSV_COLUMNS = {
    "grid": (
        "code", "name", "community_code", "community_name", "area_m2", "buildings", "households",
        "workers", "households_per_worker", "over_target", "open_incidents", "overdue",
        "received", "closed", "closed_on_time",
    ),
    "worker": (
        "code", "name", "grids", "households", "buildings", "area_m2", "open_incidents",
        "overdue", "received", "closed", "closed_on_time",
    ),
}  # fmt: skip


def to_csv(answer: dict[str, Any]) -> str:
    """The items of a workload answer as CSV (lists joined by spaces)."""
    columns = CSV_COLUMNS[answer["by"]]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for item in answer["items"]:
        writer.writerow([_cell(item.get(c)) for c in columns])
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return "" if value is None else value
