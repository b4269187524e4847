"""The rules of field work that need no database (pure): a campaign's scope and period, a
visit's round, time and distance, and progress rolled up from grids to communities, workers
and the city, with its CSV form.

Progress counts, per round, the buildings a visit *reached* (any outcome but no_one_home:
nobody answered, so the building is still to do); a second visit of a building in the same
round is a revisit and never more progress. In households, a building counts the most
households one of its reaching visits of that round met, never more than it has. Without a
round, the whole campaign: each building once per round. Each visit's share of that is fixed
when it is recorded (`added`), so the figures are sums.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import numpy as np

from geo_service.errors import InvalidInput
from geo_service.fieldwork.bodies import ScopeIn
from geo_service.times import parse_instant

By = Literal["grid", "community", "worker"]
BY: Final = ("grid", "community", "worker")
# The figures per group, summed from grids to communities, workers and the city.
COUNTS: Final = (
    "buildings",
    "households",
    "buildings_done",
    "households_done",
    "visits",
    "revisits",
    "no_one_home",
    "flagged",
)


def scope_of(scope: ScopeIn) -> tuple[str, list[str]]:
    """('communities' | 'grids', the codes without repeats), exactly one of them given."""
    given = {
        kind: codes
        for kind, codes in (("communities", scope.communities), ("grids", scope.grids))
        if codes is not None
    }
    if len(given) != 1:
        raise InvalidInput(
            "scope must name either communities or grids (one of the two): got "
            f"{sorted(given) or 'neither'}"
        )
    [(kind, codes)] = given.items()
    unique = list(dict.fromkeys(codes))
    if not unique:
        raise InvalidInput(f"scope.{kind} is empty: name at least one")
    return kind, unique


def period(starts: str, due: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """When a campaign starts and is due; a due date without a time means the end of that
    day. Due before the start is refused naming both."""
    start = parse_instant("starts", starts, tz)
    end = parse_instant("due", due, tz)
    if start is None or end is None:
        raise InvalidInput("starts and due are required (ISO 8601 dates or date-times)")
    if "T" not in due.strip() and " " not in due.strip():  # a date: the whole day counts
        end = end + timedelta(days=1)
    if end < start:
        raise InvalidInput(f"due {due!r} is before starts {starts!r}")
    return start, end


def check_round(round_: int, rounds: int, campaign: int) -> None:
    """A round of the campaign: 1 .. its rounds."""
    if not 1 <= round_ <= rounds:
        raise InvalidInput(f"round {round_} is outside 1..{rounds} of campaign {campaign}")


def check_not_future(at: datetime, now: datetime, skew_s: float) -> None:
    """A visit's time is not ahead of now by more than the clock skew: a phone's clock may run
    ahead of the server's, so a visit up to `skew_s` seconds in the future is taken as now-ish;
    beyond it the time is wrong."""
    if at > now + timedelta(seconds=skew_s):
        raise InvalidInput(
            f"at {at.isoformat(timespec='seconds')} is in the future (now "
            f"{now.astimezone(at.tzinfo).isoformat(timespec='seconds')}; {skew_s:g} s of "
            "clock skew allowed, GEO_VISIT_CLOCK_SKEW_S)"
        )


def check_started(at: datetime, starts_at: datetime, campaign: int) -> None:
    """A visit's time is not before its campaign started."""
    if at < starts_at:
        raise InvalidInput(
            f"at {at.isoformat(timespec='seconds')} is before campaign {campaign} starts "
            f"({starts_at.astimezone(at.tzinfo).isoformat(timespec='seconds')})"
        )


def check_households(outcome: str, households_reached: int) -> None:
    """Nobody home reaches no household."""
    if outcome == "no_one_home" and households_reached:
        raise InvalidInput(
            f"households_reached {households_reached} with outcome 'no_one_home': nobody "
            "was reached (0)"
        )


def added(
    outcome: str, households_reached: int, households: int, so_far: Mapping[str, Any]
) -> tuple[bool, int]:
    """What a visit adds to its building's round, given the round so far (`reached`: a visit
    reached someone; `households`: the most met): whether it is the first to reach someone,
    and how many households it adds (a building counts the most one visit met, at most what
    it has)."""
    if outcome == "no_one_home":
        return False, 0
    met = min(households_reached, households)
    return not so_far["reached"], max(met - int(so_far["households"]), 0)


def progress_of(visit: Mapping[str, Any]) -> dict[str, int]:
    """What a stored visit adds to the progress of its campaign, round and grid: the figures
    of COUNTS it moves (buildings and households are the snapshot's, never a visit's)."""
    return {
        "buildings_done": int(visit["first_reach"]),
        "households_done": int(visit["households_added"]),
        "visits": 1,
        "revisits": int(visit["revisit"]),
        "no_one_home": int(visit["outcome"] == "no_one_home"),
        "flagged": int(visit["flagged"]),
    }


def flag(distance_m: float, max_distance_m: float) -> str | None:
    """Why a visit is flagged (recorded too far from its building), or None."""
    if distance_m > max_distance_m:
        return (
            f"recorded {distance_m:,.0f} m from the building (more than {max_distance_m:g} m, "
            "GEO_VISIT_MAX_DISTANCE_M)"
        )
    return None


# -- progress ---------------------------------------------------------------------------------
# Vectorised: a city has ~4,000 grids and ~6,000 workers, and a Python loop per figure of each
# would cost more than the SQL that counted them.
def rollup(
    grids: Sequence[Mapping[str, Any]],
    by: By,
    target: str,
    rounds: int,
    workers: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> list[dict[str, Any]]:
    """Progress per group from the figures per grid (each with code, name, community_code,
    community_name and COUNTS). Per worker (`workers`: (code, name) of those serving each
    grid today), a grid's figures are shared evenly among its workers, so the workers add up
    to the city; a grid nobody serves is one row with no worker."""
    counts = _matrix(grids)
    if by == "grid":
        heads = {k: [g[k] for g in grids] for k in ("code", "name", "community_code",
                                                   "community_name")}  # fmt: skip
        return _rows({**heads, **figures(counts, target, rounds)})
    keys: list[Any] = []
    rows: list[int] = []
    shares: list[float] = []
    names: dict[Any, Any] = {}
    for i, g in enumerate(grids):
        pairs: Sequence[tuple[Any, Any]]
        if by == "community":
            pairs = [(g["community_code"], g["community_name"])]
        else:
            pairs = (workers or {}).get(g["code"]) or [(None, None)]  # None: nobody serves
        for key, name in pairs:
            keys.append(key)
            rows.append(i)
            shares.append(1 / len(pairs))
            names.setdefault(key, name)
    order = sorted(names, key=lambda k: (k is None, k or ""))
    group_of = {key: n for n, key in enumerate(order)}
    group = np.fromiter((group_of[k] for k in keys), dtype=np.int64, count=len(keys))
    summed = np.zeros((len(order), len(COUNTS)))
    if len(group):
        np.add.at(summed, group, counts[np.asarray(rows, dtype=np.int64)] * np.c_[shares])
    members: dict[Any, list[str]] = {key: [] for key in order}
    for key, i in zip(keys, rows, strict=True):
        members[key].append(grids[i]["code"])
    heads = {"code": order, "name": [names[k] for k in order], "grids": list(members.values())}
    return _rows({**heads, **figures(summed, target, rounds)})


def totals(grids: Sequence[Mapping[str, Any]], target: str, rounds: int) -> dict[str, Any]:
    """The figures of all the grids together."""
    summed = _matrix(grids).sum(axis=0, keepdims=True)
    return {"grids": len(grids), **_rows(figures(summed, target, rounds))[0]}


def figures(counts: np.ndarray, target: str, rounds: int) -> dict[str, list[Any]]:
    """Columns of figures from rows of COUNTS: in scope (buildings or households, once per
    round counted), done, remaining and the share done, beside the counts."""
    column = {k: counts[:, i] for i, k in enumerate(COUNTS)}
    in_scope = column[target] * rounds
    done = column[f"{target}_done"]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(in_scope > 0, np.round(done / in_scope, 4), np.nan).tolist()
    return {
        "in_scope": _tidy(in_scope),
        "done": _tidy(done),
        "remaining": _tidy(np.maximum(in_scope - done, 0)),
        "share_done": [None if s != s else s for s in share],  # NaN: nothing in scope
        **{k: _tidy(v) for k, v in column.items()},
    }


def _rows(columns: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Columns of equal length as a list of rows."""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _matrix(grids: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The COUNTS of each grid as a (grids, counts) array."""
    return np.array([[g[k] for k in COUNTS] for g in grids], dtype=float).reshape(-1, len(COUNTS))


def _tidy(values: np.ndarray) -> list[Any]:
    """Whole numbers as int; shares of a grid split among its workers to 3 decimals."""
    rounded = np.round(values, 3)
    if np.all(rounded == np.floor(rounded)):
        return rounded.astype(np.int64).tolist()  # type: ignore[no-any-return]
    return [int(v) if v.is_integer() else v for v in rounded.tolist()]


CSV_HEAD: Final = ("code", "name", "in_scope", "done", "remaining", "share_done", *COUNTS)


def to_csv(answer: Mapping[str, Any]) -> str:
    """A progress answer as CSV: one row per group, then the city's."""
    columns = list(CSV_HEAD)
    if answer["by"] == "grid":
        columns[2:2] = ["community_code", "community_name"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([answer["by"] if c == "code" else c for c in columns])
    for item in answer["items"]:
        writer.writerow(["" if item.get(c) is None else item.get(c) for c in columns])
    city = {**answer["city"], "code": "city", "name": answer["campaign"]["name"]}
    writer.writerow(["" if city.get(c) is None else city.get(c) for c in columns])
    return buffer.getvalue()
