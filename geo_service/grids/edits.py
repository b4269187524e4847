"""Grid edits: split, merge, redraw, create, retire, rename and recode, each one transaction
with an actor and a reason, checked by the QA rules before it is stored.

Every edit runs the same way (`_apply`): lock the grids it touches (an edit naming an older
version than the stored one is refused), work out the new shapes (`reshape`, pure), write
them (the `grids` triggers keep every version, `edits_store.record_lineage` which version
gave area to which), check the communities touched (no new overlap or gap, nothing outside
its community), let buildings, open incidents, coverage figures and map versions follow, and
answer what changed. A refused edit raises Conflict with the findings and changes nothing; a
preview answers the same and rolls back.

A re-division proposal is applied the same way (`apply_proposal`, kind `redivide`): one edit
over all the grids of its communities.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, Engine

from geo_service.coverage import store as coverage_store
from geo_service.crs import parse_input_crs
from geo_service.errors import Conflict, InvalidInput, NotFound
from geo_service.grids import drawing, edits_store, reshape, topology_store
from geo_service.incidents.regrid import follow_grid_edit
from geo_service.settings import Settings
from geo_service.times import parse_instant

Kind = Literal["split", "merge", "redraw", "create", "retire", "rename", "recode", "redivide"]
Neighbours = Literal["adjust", "strict"]


@dataclass(frozen=True)
class EditBy:
    """Who edits, why, and what they saw: the versions of the grids they edited (an older
    one than stored is refused), and whether only to preview."""

    actor: str
    reason: str
    preview: bool = False
    versions: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Plan:
    """What an edit does to the grids of one community (of several: a re-division, whose
    new grids name their community in `created_in`)."""

    community: str
    before: dict[str, BaseGeometry]  # shapes of the grids it changes or retires, as they were
    created: dict[str, tuple[str, BaseGeometry]] = field(default_factory=dict)  # code: name, shape
    reshaped: dict[str, BaseGeometry] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    recoded: tuple[str, str] | None = None
    retired: list[str] = field(default_factory=list)
    workers: dict[str, str] = field(default_factory=dict)  # worker code -> grid code
    also_serve: dict[str, list[str]] = field(default_factory=dict)  # worker -> grids added
    more_communities: list[str] = field(default_factory=list)
    created_in: dict[str, str] = field(default_factory=dict)  # new grid code -> community
    summary: dict[str, Any] = field(default_factory=dict)  # kept with the edit besides

    @property
    def communities(self) -> list[str]:
        """Every community whose grids the edit changes."""
        return [self.community, *self.more_communities]

    @property
    def result_codes(self) -> list[str]:
        """The grids the edit leaves changed or new."""
        kept = [c for c in {*self.reshaped, *self.renamed} if c not in self.retired]
        if self.recoded:
            kept = [self.recoded[1] if c == self.recoded[0] else c for c in kept]
            kept.append(self.recoded[1])
        return sorted({*self.created, *kept})


# -- the edits ------------------------------------------------------------------------------------
def split(
    engine: Engine,
    settings: Settings,
    code: str,
    line: Any,
    by: EditBy,
    *,
    crs: str | None = None,
    codes: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    workers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Cut a grid in pieces along a line drawn across it."""
    cut = drawing.read_line(line, parse_input_crs(crs))

    def plan(conn: Connection) -> Plan:
        grid = _grids(conn, [code], by)[code]
        pieces = reshape.split(code, grid["shape"], cut)
        new_codes = _new_codes(
            conn, settings, grid["community_code"], codes, len(pieces), keep=code
        )
        new_names = _names(
            names, len(pieces), [f"{grid['name']}{i + 1}" for i in range(len(pieces))]
        )
        p = Plan(grid["community_code"], {code: grid["shape"]})
        for c, n, shape in zip(new_codes, new_names, pieces, strict=True):
            if c == code:
                p.reshaped[c], p.renamed[c] = shape, n
            else:
                p.created[c] = (n, shape)
        if code not in new_codes:
            p.retired.append(code)
        largest = new_codes[max(range(len(pieces)), key=lambda i: pieces[i].area)]
        stay = code if code in new_codes else largest
        p.workers = _workers_to(conn, [code], new_codes, workers, default=stay)
        return p

    return _apply(engine, settings, "split", by, plan)


def merge(
    engine: Engine,
    settings: Settings,
    codes: Sequence[str],
    by: EditBy,
    *,
    code: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Join adjacent grids of one community into one (`code`: one of them to keep, or a new
    code; default the smallest)."""
    if len(set(codes)) < 2:
        raise InvalidInput(f"codes={list(codes)!r}: name two or more grids to merge")

    def plan(conn: Connection) -> Plan:
        grids = _grids(conn, codes, by)
        communities = {g["community_code"] for g in grids.values()}
        if len(communities) > 1:
            raise InvalidInput(
                f"grids {', '.join(sorted(grids))} belong to different communities "
                f"({', '.join(sorted(communities))}): only grids of one community can be merged"
            )
        shape = reshape.merge({c: g["shape"] for c, g in grids.items()})
        keep = code or min(grids)
        p = Plan(communities.pop(), {c: g["shape"] for c, g in grids.items()})
        if keep in grids:
            p.reshaped[keep] = shape
            if name:
                p.renamed[keep] = name
        else:
            _check_new_code(conn, settings, keep, p.community)
            p.created[keep] = (name or grids[min(grids)]["name"], shape)
        p.retired = sorted(c for c in grids if c != keep)
        p.workers = _workers_to(conn, p.retired, [keep], None, default=keep)
        return p

    return _apply(engine, settings, "merge", by, plan)


def redraw(
    engine: Engine,
    settings: Settings,
    code: str,
    geometry: Any,
    by: EditBy,
    *,
    neighbours: Neighbours = "adjust",
    crs: str | None = None,
) -> dict[str, Any]:
    """Give a grid a new shape; with `adjust` the touching grids of its community give and
    take the difference, with `strict` they must not change."""
    if neighbours not in ("adjust", "strict"):
        raise InvalidInput(f'neighbours={neighbours!r}: expected "adjust" or "strict"')
    new = drawing.read_polygon(geometry, parse_input_crs(crs))

    def plan(conn: Connection) -> Plan:
        grid = _grids(conn, [code], by)[code]
        community = _community(conn, grid["community_code"])
        near = edits_store.touching(
            conn, shapely.union_all([new, grid["shape"]]), grid["community_code"], [code]
        )
        _check_versions(near, by)
        # onto the stored vertices it nearly touches: a shape sent back as shown (rounded) is
        # the stored one, and a vertex dragged along a shared boundary stays on it
        references = [grid["shape"], *(n["shape"] for n in near.values()), community["shape"]]
        snapped = reshape.snap(new, references)
        _inside(snapped, community, f"the new shape of grid {code}", settings.grids.qa_min_area_m2)
        changed = reshape.redraw(
            code,
            grid["shape"],
            snapped,
            {c: n["shape"] for c, n in near.items()},
            neighbours,
            settings.grids.qa_min_area_m2,
        )
        before = {code: grid["shape"], **{c: near[c]["shape"] for c in changed if c != code}}
        return Plan(grid["community_code"], before, reshaped=changed)

    return _apply(engine, settings, "redraw", by, plan)


def move_vertex(
    engine: Engine,
    settings: Settings,
    vertex: Sequence[float],
    to: Sequence[float],
    by: EditBy,
    *,
    crs: str | None = None,
) -> dict[str, Any]:
    """Move one vertex of the grid boundaries: every grid along it follows (a boundary is
    stored once), so two grids never part or overlap where they met."""
    move = drawing.read_line(
        {"type": "LineString", "coordinates": [list(vertex), list(to)]},
        parse_input_crs(crs),
        "vertex and to",
    )
    at, there = (shapely.Point(xy) for xy in move.coords)

    def plan(conn: Connection) -> Plan:
        near = edits_store.lock_near(conn, at, reshape.SNAP_DEG)
        _check_versions(near, by)
        moved = reshape.move_vertex({c: g["shape"] for c, g in near.items()}, at, there)
        if not moved:
            raise InvalidInput(
                f"no grid has a boundary vertex within 10 cm of lon {at.x:.7f}, lat {at.y:.7f}"
            )
        communities = sorted({near[c]["community_code"] for c in moved})
        if len(communities) > 1:
            raise InvalidInput(
                f"the vertex at lon {at.x:.7f}, lat {at.y:.7f} is on the boundary between "
                f"communities {' and '.join(communities)}: grid edits do not move community "
                "boundaries"
            )
        return Plan(communities[0], {c: near[c]["shape"] for c in moved}, reshaped=moved)

    return _apply(engine, settings, "redraw", by, plan)


def create(
    engine: Engine,
    settings: Settings,
    community: str,
    geometry: Any,
    by: EditBy,
    *,
    name: str,
    code: str | None = None,
    crs: str | None = None,
    workers: Sequence[str] = (),
) -> dict[str, Any]:
    """A new grid from area of its community that no grid holds (the drawn shape is cut to
    that area)."""
    drawn = drawing.read_polygon(geometry, parse_input_crs(crs))

    def plan(conn: Connection) -> Plan:
        place = _community(conn, community)
        shape = reshape.free_area(
            drawn, place["shape"], edits_store.community_grids_union(conn, community)
        )
        new = (
            code
            or drawing.next_codes(
                community,
                edits_store.codes_ever_used(conn, community),
                1,
                settings.grids.grid_code_pattern,
            )[0]
        )
        _check_new_code(conn, settings, new, community)
        p = Plan(community, {}, created={new: (name, shape)})
        p.workers = {w: new for w in workers}
        return p

    return _apply(engine, settings, "create", by, plan)


def retire(
    engine: Engine,
    settings: Settings,
    code: str,
    to: Sequence[str],
    by: EditBy,
    *,
    workers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """End a grid, handing its area to the named neighbours (each part to the one sharing the
    longest boundary with it) and its workers to them (default: the first named)."""
    if not to:
        raise InvalidInput(f"name the grids that receive the area of grid {code} (to=[...])")
    if code in to:
        raise InvalidInput(f"grid {code} cannot receive its own area")

    def plan(conn: Connection) -> Plan:
        grids = _grids(conn, [code, *to], by)
        grid = grids[code]
        strangers = [c for c in to if grids[c]["community_code"] != grid["community_code"]]
        if strangers:
            raise InvalidInput(
                f"grid {strangers[0]} is not in community {grid['community_code']} of grid "
                f"{code}: only its community's grids can receive its area"
            )
        grown = reshape.retire(
            code, grid["shape"], {c: grids[c]["shape"] for c in to}, settings.grids.qa_min_area_m2
        )
        p = Plan(
            grid["community_code"], {code: grid["shape"], **{c: grids[c]["shape"] for c in grown}}
        )
        p.reshaped, p.retired = grown, [code]
        p.workers = _workers_to(conn, [code], list(to), workers, default=to[0])
        return p

    return _apply(engine, settings, "retire", by, plan)


def rename(
    engine: Engine,
    settings: Settings,
    code: str,
    by: EditBy,
    *,
    name: str | None = None,
    new_code: str | None = None,
) -> dict[str, Any]:
    """Give a grid a new name, or a new code (its history and lineage follow it)."""
    if not name and not new_code:
        raise InvalidInput("give a new name, a new code, or both")

    def plan(conn: Connection) -> Plan:
        grid = _grids(conn, [code], by)[code]
        p = Plan(grid["community_code"], {code: grid["shape"]})
        if name:
            p.renamed[code] = name
        if new_code and new_code != code:
            _check_new_code(conn, settings, new_code, grid["community_code"])
            p.recoded = (code, new_code)
        return p

    return _apply(
        engine, settings, "recode" if new_code and new_code != code else "rename", by, plan
    )


def apply_proposal(engine: Engine, settings: Settings, proposal: int, by: EditBy) -> dict[str, Any]:
    """Replace the grids of a re-division proposal's communities by the proposal's grids, as
    one edit (kind `redivide`, the proposal's id kept with it); refused (Conflict, with a
    finding per grid) when those grids changed since the proposal was made.

    A proposed grid that continues one of today's (the pairing of the proposal's figures: the
    one keeping the most households in place) keeps that grid's code, name and workers; the
    others get the community's next free codes and are named as the community names its
    grids (…第N网格); today's grids that none continues are retired. The workers of a grid
    that ends go to the proposed grid taking most of its households; a new grid still
    without a worker is served as well by the workers of the grid it takes most households
    from (they keep their other grids, so no household loses its worker). Grids left without
    any worker (a first division; a source grid with none) are the answer's warnings."""

    # here, not at the top: the division's libraries (scipy.optimize) load only when needed
    from geo_service.division import metrics as division_metrics
    from geo_service.division import store as division_store

    def plan(conn: Connection) -> Plan:
        row = division_store.proposal(conn, proposal)
        if row is None:
            raise NotFound(f"no proposal {proposal}")
        if row["status"] != "done":
            raise Conflict(
                f"proposal {proposal} is {row['status']}: only a finished proposal can be applied"
            )
        applied = division_store.applied(conn, proposal)
        if applied is not None:
            raise Conflict(
                f"proposal {proposal} was applied already, by edit #{applied['edit']} "
                f"({applied['actor']}, {applied['at'].isoformat(timespec='seconds')})",
                details={"edit": applied["edit"]},
            )
        communities = sorted(row["figures"].get("communities") or {})
        if not communities:
            raise Conflict(f"proposal {proposal} divided no community: nothing to apply")
        today = edits_store.lock_communities(conn, communities)
        _unchanged_since(conn, proposal, (row["versions"] or {}).get("grids", {}), today)
        proposed = division_store.proposal_grids(conn, proposal)
        p = Plan(
            communities[0],
            {c: g["shape"] for c, g in today.items()},
            more_communities=communities[1:],
            summary={"proposal": proposal},
        )
        takes: dict[str, dict[str, int]] = {}  # each resulting grid: households from today's
        for community in communities:
            place = _community(conn, community)
            mine = [g for g in proposed if g["community_code"] == community]
            continued = division_metrics.continues([g["takes"] for g in mine])
            fresh = iter(
                drawing.next_codes(
                    community,
                    edits_store.codes_ever_used(conn, community),
                    continued.count(None),
                    settings.grids.grid_code_pattern,
                )
            )
            codes = [was if was is not None else next(fresh) for was in continued]
            shapes = reshape.fit(
                {c: g["shape"] for c, g in zip(codes, mine, strict=True)},
                place["shape"],
                settings.grids.qa_min_area_m2,
            )
            for code, g, was in zip(codes, mine, continued, strict=True):
                takes[code] = {k: int(v) for k, v in g["takes"].items()}
                if was is None:
                    number = int(code[len(community) :])
                    p.created[code] = (f"{place['name']}第{number}网格", shapes[code])
                    p.created_in[code] = community
                elif not shapes[code].equals(today[code]["shape"]):
                    p.reshaped[code] = shapes[code]
        p.retired = sorted(set(today) - set(takes))
        shapes_now = {**p.reshaped, **{c: shape for c, (_, shape) in p.created.items()}}
        p.workers, p.also_serve = _proposal_workers(
            edits_store.workers_of(conn, sorted(today)),
            {c: today[c]["shape"] for c in p.retired},
            takes,
            shapes_now,
            sorted(p.created),
        )
        return p

    return _apply(engine, settings, "redivide", by, plan)


def _unchanged_since(
    conn: Connection,
    proposal: int,
    then: Mapping[str, int],
    today: Mapping[str, Mapping[str, Any]],
) -> None:
    """Conflict, a finding per grid, when the grids of a proposal's communities are not the
    versions it was made from (edited, made or retired since)."""
    codes = sorted({*then, *today})
    last = edits_store.last_edits(conn, codes)
    findings: list[dict[str, Any]] = []
    for code in codes:
        was, now = then.get(code), today.get(code)
        if was is None:
            kind, what = "grid_made", f"grid {code} was made since"
        elif now is None:
            kind, what = "grid_retired", f"grid {code} was retired since"
        elif now["version"] != was:
            kind = "grid_changed"
            what = f"grid {code} is at version {now['version']}, the proposal has version {was}"
        else:
            continue
        edit = last.get(code)
        if edit is not None:
            what += (
                f" (edit #{edit['id']} {edit['kind']} by {edit['actor']} at "
                f"{edit['at'].isoformat(timespec='seconds')}: {edit['reason']})"
            )
        findings.append({
            "kind": kind, "grid": code, "version": now["version"] if now else None,
            "proposal_version": was, "edit": edit["id"] if edit else None, "message": what,
        })  # fmt: skip
    if findings:
        shown = "; ".join(str(f["message"]) for f in findings[:5])
        more = f"; and {len(findings) - 5} more" if len(findings) > 5 else ""
        raise Conflict(
            f"proposal {proposal} is out of date: the grids of its communities changed since it "
            f"was made ({shown}{more}); make a new proposal",
            details={"findings": findings},
        )


def _proposal_workers(
    workers: Mapping[str, Sequence[str]],
    ended: Mapping[str, BaseGeometry],
    takes: Mapping[str, Mapping[str, int]],
    shapes: Mapping[str, BaseGeometry],
    created: Sequence[str],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Where today's workers serve after a re-division (see `apply_proposal`): workers of the
    grids that end -> the grid they move to, and workers -> the new grids they serve as well."""
    moved: dict[str, str] = {}
    added: dict[str, list[str]] = {}

    def heir(old: str) -> str:
        """The resulting grid taking most households of `old` (most of its area when none)."""
        if any(old in took for took in takes.values()):
            return max(takes, key=lambda c: (takes[c].get(old, -1), c))
        return max(shapes, key=lambda c: (shapes[c].intersection(ended[old]).area, c))

    for old in sorted(ended):
        if not workers.get(old) or not shapes:
            continue
        to = heir(old)
        for w in workers[old]:
            if w not in moved:
                moved[w] = to
            elif moved[w] != to:
                added.setdefault(w, []).append(to)
    staffed = {g for g in moved.values()} | {g for g in takes if workers.get(g)}
    staffed |= {g for grids in added.values() for g in grids}
    for code in created:
        took = takes[code]
        if code in staffed or not took:
            continue
        source = max(took, key=lambda c: (took[c], c))
        for w in workers.get(source, ()):
            if code not in added.setdefault(w, []):
                added[w].append(code)
    return moved, {w: grids for w, grids in added.items() if grids}


# -- history --------------------------------------------------------------------------------------
def moment(settings: Settings, name: str, text: str | None) -> datetime | None:
    """A moment a caller names (ISO 8601; without an offset, in the city's time zone)."""
    return parse_instant(name, text, ZoneInfo(settings.incidents.timezone))


def grid(engine: Engine, settings: Settings, code: str, as_of: str | None = None) -> dict[str, Any]:
    """A grid today (with its buildings, households and workers) or as it was at `as_of`."""
    at = moment(settings, "as_of", as_of)
    with engine.connect() as conn:
        if at is None:
            found = edits_store.grid_figures(conn, [code])
            if found:
                return {**found[0], "as_of": None}
        else:
            version = edits_store.version_at(conn, code, at)
            if version is not None:
                return {**version, "as_of": at.isoformat()}
            if edits_store.history(conn, code):
                raise NotFound(f"grid {code} did not exist at {at.isoformat()}")
    raise NotFound(f"unknown grid code {code!r}")


def history(engine: Engine, code: str) -> dict[str, Any]:
    """Every version of a grid code, with the edits and lineage."""
    with engine.connect() as conn:
        versions = edits_store.history(conn, code)
    if not versions:
        raise NotFound(f"unknown grid code {code!r}")
    return {"code": code, "versions": versions}


def edits(
    engine: Engine, settings: Settings, since: str | None = None, limit: int = 100
) -> dict[str, Any]:
    """The edits from `since` on, oldest first."""
    start = moment(settings, "since", since)
    with engine.connect() as conn:
        return {"items": edits_store.edits_since(conn, start, limit)}


# -- the one way an edit runs ---------------------------------------------------------------------
def _apply(
    engine: Engine,
    settings: Settings,
    kind: Kind,
    by: EditBy,
    plan_of: Callable[[Connection], Plan],
) -> dict[str, Any]:
    if not by.actor.strip():
        raise InvalidInput("actor is required: who makes this edit")
    if not by.reason.strip():
        raise InvalidInput("reason is required: why the grids change")
    min_area = settings.grids.qa_min_area_m2
    with engine.connect() as conn, conn.begin() as tx:
        edits_store.lock_edits(conn)
        plan = plan_of(conn)
        area = shapely.union_all(
            [*plan.before.values(), *(shape for _, shape in plan.created.values())]
        )
        before = edits_store.buildings_in(conn, area)
        holes = {c: edits_store.gaps(conn, c) for c in plan.communities}
        serving = edits_store.known_workers(conn, list(plan.workers))
        unknown = sorted(set(plan.workers) - set(serving))
        if unknown:
            raise InvalidInput(f"unknown worker code {unknown[0]!r}")
        edit = edits_store.begin_edit(conn, kind, by.actor, by.reason)
        _write(conn, plan)
        topology_store.sync(conn, settings.grids.import_tolerance_deg, min_area)
        lineage = edits_store.record_lineage(conn, edit)
        if plan.recoded:
            edits_store.record_recode(conn, edit, *plan.recoded)
        codes = plan.result_codes
        findings = _findings(conn, plan, codes, holes, min_area)
        served = sorted({g for grids in serving.values() for g in grids})
        for left in edits_store.grids_without_workers(conn, served):
            findings.append({
                "kind": "no_worker_left", "grid": left,
                "message": f"grid {left} would be left without a worker: name another for it, "
                "or leave one of its workers there",
            })  # fmt: skip
        after = edits_store.buildings_in(conn, area)
        moves = {b: after[b][0] for b in sorted(before) if after[b][0] != before[b][0]}
        coverage_store.regrid_buildings(conn, moves)
        moved = [
            {"code": b, "from": before[b][0], "to": to, "households": before[b][1]}
            for b, to in moves.items()
        ]
        incidents = follow_grid_edit(
            conn,
            settings,
            area,
            sorted({*plan.before, *plan.retired}),
            by.actor,
            f"grid edit #{edit} ({kind}): {by.reason}",
        )
        grids = edits_store.grid_figures(conn, codes)
        summary = {
            "created": sorted(plan.created),
            "changed": sorted(c for c in codes if c not in plan.created),
            "retired": sorted(plan.retired),
            "buildings_moved": len(moved),
            "households_moved": sum(before[b][1] for b in moves),
            "incidents_moved": len(incidents),
            **plan.summary,
        }
        kinds = ["grids", "workers"] if plan.workers or plan.also_serve else ["grids"]
        at = edits_store.finish_edit(conn, edit, summary, kinds)
        answer = {
            "edit": None if by.preview else edit,
            "kind": kind,
            "preview": by.preview,
            "at": at.isoformat(),
            **summary,
            "grids": grids,
            "buildings": moved,
            "incidents": incidents,
            "workers_moved": plan.workers,
            "workers_added": plan.also_serve,
            "lineage": lineage,
            "findings": findings,
            "warnings": [
                {
                    "kind": "no_worker",
                    "grid": g["code"],
                    "message": f"grid {g['code']} has no worker",
                }
                for g in grids
                if not g["workers"]
            ],
        }
        if by.preview:
            tx.rollback()
        elif findings:
            tx.rollback()
            raise Conflict(
                f"{kind} refused: " + "; ".join(f["message"] for f in findings),
                details={"findings": findings, "grids": grids},
            )
        else:
            tx.commit()
    return answer


def _write(conn: Connection, plan: Plan) -> None:
    for code, (name, shape) in plan.created.items():
        edits_store.insert_grid(conn, code, name, plan.created_in.get(code, plan.community), shape)
    for code in sorted({*plan.reshaped, *plan.renamed} - set(plan.retired)):
        edits_store.update_grid(
            conn, code, shape=plan.reshaped.get(code), name=plan.renamed.get(code)
        )
    if plan.recoded:
        edits_store.update_grid(conn, plan.recoded[0], new_code=plan.recoded[1])
    edits_store.move_workers(conn, plan.workers, plan.retired)
    edits_store.add_assignments(conn, plan.also_serve)
    edits_store.delete_grids(conn, plan.retired)


def _findings(
    conn: Connection,
    plan: Plan,
    codes: list[str],
    holes: Mapping[str, BaseGeometry],
    min_area: float,
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for o in edits_store.overlaps_of(conn, codes, min_area):
        found.append(
            {
                "kind": "overlap",
                **o,
                "message": f"grids {o['grid_a']} and {o['grid_b']} would overlap by "
                f"{o['area_m2']:.1f} m² at lon {o['lon']:.6f}, lat {o['lat']:.6f}",
            }
        )
    for community, hole in holes.items():
        for g in edits_store.new_gaps(conn, community, hole, min_area):
            found.append(
                {
                    "kind": "gap",
                    "community": community,
                    **g,
                    "message": f"{g['area_m2']:.1f} m² of community {community} would be in no "
                    f"grid at lon {g['lon']:.6f}, lat {g['lat']:.6f}",
                }
            )
    for o in edits_store.outside_community(conn, codes, min_area):
        found.append(
            {
                "kind": "outside_community",
                **o,
                "message": f"grid {o['grid']} would reach {o['area_m2']:.1f} m² outside its "
                f"community at lon {o['lon']:.6f}, lat {o['lat']:.6f}",
            }
        )
    return found


# -- checks shared by the edits -------------------------------------------------------------------
def _grids(conn: Connection, codes: Sequence[str], by: EditBy) -> dict[str, dict[str, Any]]:
    found = edits_store.lock_grids(conn, codes)
    unknown = [c for c in codes if c not in found]
    if unknown:
        raise NotFound(f"unknown grid code {unknown[0]!r}")
    _check_versions(found, by)
    return found


def _check_versions(grids: Mapping[str, Mapping[str, Any]], by: EditBy) -> None:
    for code, seen in by.versions.items():
        if code in grids and grids[code]["version"] != seen:
            raise Conflict(
                f"grid {code} is at version {grids[code]['version']}, not {seen}: it was edited "
                "since you loaded it; load it again and redo the edit",
                details={"grid": code, "version": grids[code]["version"], "yours": seen},
            )


def _community(conn: Connection, code: str) -> dict[str, Any]:
    found = edits_store.community(conn, code)
    if found is None:
        raise NotFound(f"unknown community code {code!r}")
    return found


def _inside(shape: BaseGeometry, community: Mapping[str, Any], what: str, min_m2: float) -> None:
    rest = reshape.outside(shape, community["shape"], min_m2)
    if rest is not None:
        p = rest.representative_point()
        raise InvalidInput(
            f"{what} reaches {reshape.area_m2(rest):,.1f} m² outside community "
            f"{community['code']} at lon {p.x:.6f}, lat {p.y:.6f}"
        )


def _check_new_code(conn: Connection, settings: Settings, code: str, community: str) -> None:
    if not re.search(settings.grids.grid_code_pattern, code):
        raise InvalidInput(
            f"grid code {code!r} does not match GEO_GRID_CODE_PATTERN "
            f"{settings.grids.grid_code_pattern}"
        )
    if edits_store.code_ever_used(conn, code):
        raise Conflict(f"grid code {code!r} is or was in use: codes are never given twice")


def _new_codes(
    conn: Connection,
    settings: Settings,
    community: str,
    given: Sequence[str] | None,
    count: int,
    keep: str,
) -> list[str]:
    if given:
        if len(given) != count or len(set(given)) != count:
            raise InvalidInput(
                f"codes={list(given)!r}: the line makes {count} grids; give {count} distinct codes"
            )
        for c in given:
            if c != keep:
                _check_new_code(conn, settings, c, community)
        return list(given)
    return drawing.next_codes(
        community,
        edits_store.codes_ever_used(conn, community),
        count,
        settings.grids.grid_code_pattern,
    )


def _names(given: Sequence[str] | None, count: int, default: list[str]) -> list[str]:
    if not given:
        return default
    if len(given) != count:
        raise InvalidInput(
            f"names={list(given)!r}: the line makes {count} grids; give {count} names"
        )
    return list(given)


def _workers_to(
    conn: Connection,
    leaving: Sequence[str],
    allowed: Sequence[str],
    chosen: Mapping[str, str] | None,
    *,
    default: str,
) -> dict[str, str]:
    """Where the workers of grids that end go: as chosen, else to `default`."""
    current = edits_store.workers_of(conn, leaving)
    theirs = {w for ws in current.values() for w in ws}
    chosen = dict(chosen or {})
    for worker, grid in chosen.items():
        if worker not in theirs:
            raise InvalidInput(f"worker {worker!r} does not work in grid {', '.join(leaving)}")
        if grid not in allowed:
            raise InvalidInput(f"worker {worker!r} can go to {', '.join(allowed)}, not {grid!r}")
    return {w: chosen.get(w, default) for w in sorted(theirs)}
