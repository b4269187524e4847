"""Coverage figures from per-building results (pure). The stored figures come from the same
definitions in SQL (store._figures_sql): within a tier = a walk of at most that many minutes;
unreachable = no street within the access distance, or no route to any centre."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely


def figures(
    tier: np.ndarray, walk: np.ndarray, households: np.ndarray, tiers: list[int]
) -> dict[str, Any]:
    """Buildings and households in total, within each tier (cumulative), and unreachable."""
    reach = ~np.isfinite(walk)
    return {
        "buildings": len(tier),
        "households": int(households.sum()),
        "unreachable_buildings": int(reach.sum()),
        "unreachable_households": int(households[reach].sum()),
        "tiers": [
            {
                "tier_min": t,
                "buildings": int(((tier > 0) & (tier <= t)).sum()),
                "households": int(households[(tier > 0) & (tier <= t)].sum()),
            }
            for t in sorted(tiers)
        ],
    }


def group_index(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of `groups` ("" for None) and each element's index among them:
    what `by_group` counts by (made once by callers that count the same groups often)."""
    if groups.dtype.kind != "U":
        groups = np.asarray(["" if g is None else str(g) for g in groups])
    names, index = np.unique(groups, return_inverse=True)
    return names, index


def by_group(
    groups: np.ndarray | tuple[np.ndarray, np.ndarray],
    tier: np.ndarray,
    walk: np.ndarray,
    households: np.ndarray,
    tiers: list[int],
) -> dict[Any, dict[str, Any]]:
    """`figures` for every distinct value of `groups` (None included; or `group_index` of
    them), counted with one bincount per figure rather than one mask per group."""
    names, index = groups if isinstance(groups, tuple) else group_index(groups)
    n = len(names)
    hh = households.astype(float)
    reach = ~np.isfinite(walk)

    def count(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[mask]
        return np.bincount(index[mask], weights=w, minlength=n).astype(np.int64)

    b_all, h_all = count(np.ones(len(tier), bool)), count(np.ones(len(tier), bool), hh)
    b_un, h_un = count(reach), count(reach, hh)
    within = [((tier > 0) & (tier <= t)) for t in sorted(tiers)]
    b_t = [count(m) for m in within]
    h_t = [count(m, hh) for m in within]
    out: dict[Any, dict[str, Any]] = {}
    for i, name in enumerate(names):
        out[str(name) or None] = {
            "buildings": int(b_all[i]),
            "households": int(h_all[i]),
            "unreachable_buildings": int(b_un[i]),
            "unreachable_households": int(h_un[i]),
            "tiers": [
                {"tier_min": t, "buildings": int(b_t[j][i]), "households": int(h_t[j][i])}
                for j, t in enumerate(sorted(tiers))
            ],
        }
    return out


def moved(base: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`base` with some buildings' figures as they were (`old`) replaced by the same
    buildings' figures as they are now (`new`): figures are counts, so they add up."""
    out: dict[str, Any] = {
        k: base[k] - old[k] + new[k]
        for k in ("buildings", "households", "unreachable_buildings", "unreachable_households")
    }
    out["tiers"] = [
        {
            "tier_min": b["tier_min"],
            "buildings": b["buildings"] - o["buildings"] + n["buildings"],
            "households": b["households"] - o["households"] + n["households"],
        }
        for b, o, n in zip(base["tiers"], old["tiers"], new["tiers"], strict=True)
    ]
    return out


def with_shares(fig: dict[str, Any]) -> dict[str, Any]:
    """Add each tier's share of buildings and households (0..1, 4 decimals)."""
    total_b, total_h = fig.get("buildings") or 0, fig.get("households") or 0
    for t in fig.get("tiers") or []:
        t["building_share"] = round(t["buildings"] / total_b, 4) if total_b else None
        t["household_share"] = round(t["households"] / total_h, 4) if total_h else None
    return fig


def change(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Per tier: buildings and households gained (negative: lost)."""
    return [
        {
            "tier_min": a["tier_min"],
            "buildings": a["buildings"] - b["buildings"],
            "households": a["households"] - b["households"],
        }
        for b, a in zip(before["tiers"], after["tiers"], strict=True)
    ]


def from_counts(rows: list[dict[str, Any]], tiers: list[int]) -> dict[Any, dict[str, Any]]:
    """`figures` per group from (code, tier_min, buildings, households, unreachable_*) rows,
    tier_min NULL meaning uncovered."""
    out: dict[Any, dict[str, Any]] = {}
    for r in rows:
        f = out.setdefault(
            r["code"],
            {
                "buildings": 0,
                "households": 0,
                "unreachable_buildings": 0,
                "unreachable_households": 0,
                "tiers": [{"tier_min": t, "buildings": 0, "households": 0} for t in sorted(tiers)],
            },
        )
        for key in ("buildings", "households", "unreachable_buildings", "unreachable_households"):
            f[key] += int(r[key])
        if r["tier_min"] is not None:
            for t in f["tiers"]:
                if r["tier_min"] <= t["tier_min"]:
                    t["buildings"] += int(r["buildings"])
                    t["households"] += int(r["households"])
    return out


def first_cover(areas: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the first of `areas` (polygons, in priority order) that covers each point
    (its boundary included), -1 for a point none covers. The areas are the query side, so
    each is prepared once and tested against the points its box holds."""
    found = np.full(len(points), len(areas), dtype=np.int64)
    if len(areas) and len(points):
        a_idx, p_idx = shapely.STRtree(points).query(areas, predicate="covers")
        np.minimum.at(found, p_idx, a_idx)
    return np.where(found < len(areas), found, -1)
