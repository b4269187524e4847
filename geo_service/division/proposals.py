"""Re-division proposals, the domain functions every door calls: make one (for some
communities, or the whole city with progress), read it beside today's grids, export it in
the grids import schema.

A proposal reads the communities, today's grids, the buildings (with their estates) and the
walkable streets, traces the street blocks once (coverage's tracing: `topology.build`, then
`shapes.faces` on the routable network), divides each community (plan.divide_community, in
worker processes for a city), and stores the proposed grids and the figures of the proposal
beside today's. It changes no grid: applying a proposal is a grid edit
(`grids.edits.apply_proposal`), which `get` names once made.
"""

from __future__ import annotations

import math
import multiprocessing
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Engine

from geo_service.coverage import shapes, topology
from geo_service.coverage.compute import OSM_PREFIX, metric_transformers, transform_all
from geo_service.division import blocks, metrics, store
from geo_service.division.partition import METHODS, Range
from geo_service.division.plan import Community, Options, Plan, divide_community
from geo_service.errors import Conflict, InvalidInput, NotFound
from geo_service.settings import Settings

Progress = Callable[[int, int], None]  # (communities divided, communities in all)
MARGIN_DEG = 0.005  # streets this far around the communities are read (about 500 m)
EXPORT_FORMATS = {".gpkg": "GPKG", ".shp": "ESRI Shapefile"}


@dataclass(frozen=True)
class Request:
    """What a planner asks: the communities (None: all), the household range, the stability
    weight and the method (None: the settings' defaults)."""

    communities: Sequence[str] | None = None
    target: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    stability: float | None = None
    method: str | None = None

    def options(self, settings: Settings) -> Options:
        """The division options, checked (InvalidInput naming the bad value): before any
        work."""
        d = settings.division
        rng = Range(
            d.target_households if self.target is None else self.target,
            d.min_households if self.minimum is None else self.minimum,
            d.max_households if self.maximum is None else self.maximum,
        ).check()
        stability = d.stability if self.stability is None else self.stability
        if not isinstance(stability, int | float) or not math.isfinite(stability) or stability < 0:
            raise InvalidInput(f"--stability must be a number of at least 0, not {stability!r}")
        method = self.method or d.method
        if method not in METHODS:
            raise InvalidInput(f"unknown method {method!r} (known: {', '.join(METHODS)})")
        if self.communities is not None and not self.communities:
            raise InvalidInput("name at least one community, or ask for all")
        return Options(
            range=rng,
            stability=float(stability),
            method=method,
            per_worker=settings.grids.grid_target_households,
            min_area_m2=settings.grids.qa_min_area_m2,
            min_shared_m=d.min_shared_m,
            street_tolerance_m=d.street_tolerance_m,
            construction_iterations=d.construction_iterations,
        )

    def params(self, opt: Options) -> dict[str, Any]:
        """What the proposal was asked, as stored."""
        return {
            "communities": None if self.communities is None else list(self.communities),
            "target_households": opt.range.target,
            "min_households": opt.range.minimum,
            "max_households": opt.range.maximum,
            "stability": opt.stability,
            "method": opt.method,
        }


AREA_STREET_M = 50.0  # a whole-area community reaches this far beyond its streets
AREA_BUILDING_M = 25.0  # and this far beyond its buildings


def whole_area(engine: Engine, settings: Settings, code: str, name: str) -> dict[str, Any]:
    """One community covering what a city without communities has (its walkable streets and
    buildings), for a first division: the land within AREA_STREET_M of a street or
    AREA_BUILDING_M of a building, holes filled. Stored by the ordinary import (so its
    checks, version and import run are an import's); Conflict when the city has communities,
    InvalidInput when it has no streets or buildings. Answers the community's code, name and
    area (m²)."""
    import geopandas as gpd

    from geo_service.ingest import ImportOptions, import_file

    pattern = settings.grids.community_code_pattern
    if not re.search(pattern, code):
        raise InvalidInput(
            f"community code {code!r} does not match GEO_COMMUNITY_CODE_PATTERN {pattern}"
        )
    if not name.strip():
        raise InvalidInput("name the community (--name)")
    with engine.connect() as conn:
        have = store.communities(conn, None)
        if have:
            raise Conflict(
                f"the city has {len(have)} communities already ({have[0]['code']}, ...): divide "
                "them (--community CODE or --all) instead of one for the whole area"
            )
        bld = store.buildings(conn, None)
        lines, _ = store.streets(conn, None, OSM_PREFIX)
    if not len(lines) and not len(bld["lon"]):
        raise InvalidInput("no streets or buildings imported: nothing to cover with a community")
    xy = np.column_stack([bld["lon"], bld["lat"]])
    points = shapely.points(xy) if len(xy) else np.zeros(0, dtype=object)
    x0, y0, x1, y1 = shapely.total_bounds(np.concatenate([lines, points]))
    crs = topology.utm_crs((x0 + x1) / 2, (y0 + y1) / 2)
    to_m, to_ll = metric_transformers(crs)
    near = shapely.union_all(
        np.concatenate([
            shapely.buffer(transform_all(to_m, lines), AREA_STREET_M, quad_segs=2),
            shapely.buffer(transform_all(to_m, points), AREA_BUILDING_M, quad_segs=2),
        ])
    )  # fmt: skip
    filled = shapely.union_all(
        [shapely.Polygon(p.exterior) for p in shapely.get_parts(near) if p.area > 0]
    ).simplify(1.0)
    area = float(filled.area)
    shape = transform_all(to_ll, np.asarray([filled], dtype=object))[0]
    frame = gpd.GeoDataFrame({"code": [code], "name": [name]}, geometry=[shape], crs=4326)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "whole_area.gpkg"
        frame.to_file(path, engine="pyogrio")
        import_file(engine, settings, "communities", path, ImportOptions())
    return {"code": code, "name": name, "area_m2": round(area, 1)}


def start(engine: Engine, settings: Settings, request: Request, by: str) -> int:
    """Check the request, find its communities and store the proposal as running; its id.
    Nothing is divided yet (see `run`)."""
    opt = request.options(settings)
    with engine.begin() as conn:
        found = store.communities(conn, request.communities)
        if request.communities is not None:
            missing = sorted(set(request.communities) - {c["code"] for c in found})
            if missing:
                raise NotFound(f"no community {', '.join(missing)}")
        if not found:
            raise NotFound("no communities imported: import communities first")
        today = store.grids(conn, [c["code"] for c in found])
        versions = {
            "data": store.versions(conn),
            "grids": {g["code"]: g["version"] for g in today},
        }
        return store.start(conn, by, request.params(opt), versions, len(found))


def run(
    engine: Engine,
    settings: Settings,
    proposal: int,
    request: Request,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Divide the communities of a started proposal and store the result (a failure is
    stored too, then raised)."""
    try:
        return _run(engine, settings, proposal, request, on_progress)
    except BaseException as error:
        with engine.begin() as conn:
            store.fail(conn, proposal, f"{type(error).__name__}: {error}")
        raise


def propose(
    engine: Engine,
    settings: Settings,
    request: Request,
    by: str,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Make a proposal and wait for it: the proposal with its figures."""
    proposal = start(engine, settings, request, by)
    run(engine, settings, proposal, request, on_progress)
    return get(engine, proposal)


def _run(
    engine: Engine,
    settings: Settings,
    proposal: int,
    request: Request,
    on_progress: Progress | None,
) -> dict[str, Any]:
    clock = time.perf_counter()
    opt = request.options(settings)
    found, inputs = prepare(engine, settings, request.communities)
    total = len(inputs)
    plans: list[Plan] = []

    def done(plan: Plan) -> None:
        plans.append(plan)
        with engine.begin() as conn:
            store.progress(conn, proposal, len(plans))
        if on_progress is not None:
            on_progress(len(plans), total)

    processes = min(settings.division.processes, total)
    if processes <= 1:
        for c in inputs:
            done(divide_community(c, opt))
    else:
        # fork: the workers start with the libraries imported (spawning re-imports spopt,
        # seconds per worker); they touch no database connection
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            for job in as_completed([pool.submit(divide_community, c, opt) for c in inputs]):
                done(job.result())
    plans.sort(key=lambda p: p.code)
    names = {c["code"]: c["name"] for c in found}
    epsg = inputs[0].epsg if inputs else 4326
    rows = [row for p in plans for row in _grid_rows(p, names[p.code], epsg)]
    figures = _figures(plans, opt)
    notes = [{"community": p.code, "note": n} for p in plans for n in p.notes]
    notes += [
        {"community": p.code, "note": f"{opt.method} failed: {p.failed}"} for p in plans if p.failed
    ]
    with engine.begin() as conn:
        store.add_grids(conn, proposal, rows)
        store.finish(conn, proposal, figures, notes, round(time.perf_counter() - clock, 3))
    return figures


def prepare(
    engine: Engine, settings: Settings, communities: Sequence[str] | None
) -> tuple[list[dict[str, Any]], list[Community]]:
    """The communities named (all when None) and each one's inputs to a division: read from
    the database, the street blocks traced once."""
    with engine.connect() as conn:
        found = store.communities(conn, communities)
        today = store.grids(conn, [c["code"] for c in found])
        box = None if communities is None else _box([c["shape"] for c in found])
        bld = store.buildings(conn, box)
        lines, osm = store.streets(conn, box, OSM_PREFIX)
    return found, _inputs(settings, found, today, bld, lines, osm)


def _box(shapes_ll: list[Any]) -> store.Box:
    x0, y0, x1, y1 = shapely.total_bounds(np.asarray(shapes_ll, dtype=object))
    return (x0 - MARGIN_DEG, y0 - MARGIN_DEG, x1 + MARGIN_DEG, y1 + MARGIN_DEG)


def _inputs(
    settings: Settings,
    found: list[dict[str, Any]],
    today: list[dict[str, Any]],
    bld: dict[str, np.ndarray],
    lines: np.ndarray,
    osm: np.ndarray,
) -> list[Community]:
    """Each community's inputs in the metric CRS of the data, the blocks traced once."""
    outlines = np.asarray([c["shape"] for c in found], dtype=object)
    x0, y0, x1, y1 = shapely.total_bounds(outlines)
    crs = topology.utm_crs((x0 + x1) / 2, (y0 + y1) / 2)
    to_m, _ = metric_transformers(crs)
    outlines = transform_all(to_m, outlines)
    x, y = to_m.transform(bld["lon"], bld["lat"])
    points = shapely.points(np.column_stack([x, y])) if len(x) else np.zeros(0, dtype=object)
    streets = transform_all(to_m, lines) if len(lines) else lines
    faces = _faces(settings, streets, osm)
    face_tree = shapely.STRtree(faces)
    street_tree = shapely.STRtree(streets)
    _, estate = np.unique(bld["estate"].astype(str), return_inverse=True)
    estate = np.where(bld["estate"] == "", -1, estate.ravel())
    community_of = blocks.locate(points, outlines)
    grid_shapes = transform_all(to_m, np.asarray([g["shape"] for g in today], dtype=object))
    grid_community = np.asarray([g["community"] for g in today], dtype=object)
    epsg = int(crs.to_epsg() or 0)
    out = []
    for i, c in enumerate(found):
        mine = community_of == i
        theirs = grid_community == c["code"]
        out.append(
            Community(
                code=c["code"],
                epsg=epsg,
                shape=outlines[i],
                faces=faces[face_tree.query(outlines[i], predicate="intersects")],
                streets=streets[street_tree.query(outlines[i], predicate="dwithin", distance=50)],
                points=points[mine],
                households=bld["households"][mine],
                estate=estate[mine],
                grid_codes=[g["code"] for g, t in zip(today, theirs, strict=True) if t],
                grid_shapes=grid_shapes[theirs],
            )
        )
    return out


def _faces(settings: Settings, streets: np.ndarray, osm: np.ndarray) -> np.ndarray:
    """The street blocks: faces of the routable street network, as the coverage work traces
    them."""
    if len(streets) == 0:
        return np.zeros(0, dtype=object)
    topo = topology.build(
        streets,
        settings.coverage.node_tolerance_m,
        split_crossings=settings.coverage.split_crossings,
        noded=osm,
    )
    routable = np.flatnonzero(topo.routable)
    found = shapes.faces(topo.geoms[routable], topo.source[routable], topo.target[routable])
    return found.polygons  # type: ignore[no-any-return]


def _grid_rows(plan: Plan, name: str, epsg: int) -> list[dict[str, Any]]:
    """The stored rows of a community's proposed grids: codes community + 3-digit sequence
    (DB11/T 2157), names as the demo city names grids."""
    if len(plan.shapes) > 999:
        raise InvalidInput(f"community {plan.code} would have {len(plan.shapes)} grids: over 999")
    from pyproj import CRS

    crs = CRS.from_epsg(epsg)
    _, to_ll = metric_transformers(crs)
    lonlat = transform_all(to_ll, plan.shapes)
    area = topology.areas_m2(plan.shapes, crs, lonlat)
    pp = metrics.polsby_popper(plan.shapes)
    return [
        {
            "code": f"{plan.code}{k + 1:03d}",
            "name": f"{name}第{k + 1}网格",
            "community": plan.code,
            "households": int(plan.households[k]),
            "buildings": int(plan.buildings[k]),
            "area_m2": round(float(area[k]), 1),
            "polsby_popper": round(float(pp[k]), 4),
            "takes": plan.takes[k],
            "wkb": shapely.to_wkb(lonlat[k]),
        }
        for k in range(len(plan.shapes))
    ]


def _figures(plans: list[Plan], opt: Options) -> dict[str, Any]:
    """Per community and for all of them: the proposal's figures beside today's."""
    per = {
        p.code: {**p.figures, "blocks": p.blocks, "pieces": p.units, "seconds": p.seconds}
        for p in plans
    }
    city: dict[str, Any] = {}
    for side in ("proposal", "today"):
        households = [p.households if side == "proposal" else p.today_households for p in plans]
        pp = [metrics.polsby_popper(p.shapes) if side == "proposal" else p.today_pp for p in plans]

        def total(name: str, side: str = side) -> int:
            return sum(int(p.figures[side][name]) for p in plans)

        city[side] = metrics.figures(
            np.concatenate(households) if plans else np.zeros(0),
            np.concatenate(pp) if plans else np.zeros(0),
            opt.range,
            opt.per_worker,
            sum(float(p.figures[side]["boundary_off_street_m"]) for p in plans),
            total("households_moved"),
            total("buildings_moved"),
        )
    return {"communities": per, "all": city}


# -- reading and export --------------------------------------------------------------------------
def listing(engine: Engine, limit: int = 50) -> dict[str, Any]:
    """The latest proposals, newest first (what the planner's map offers to show)."""
    with engine.connect() as conn:
        rows = store.listing(conn, limit)
    items = []
    for r in rows:
        progress = {"done": r.pop("communities_done"), "total": r.pop("communities_total")}
        when = {k: r[k].isoformat() if r[k] else None for k in ("created_at", "finished_at")}
        items.append({**r, **when, "progress": progress})
    return {"items": items}


def get(engine: Engine, proposal: int, *, with_grids: bool = True) -> dict[str, Any]:
    """A proposal: what was asked, its status and progress, its figures beside today's
    grids, its notes, the edit that applied it (if one did) and (when done) its grids as
    GeoJSON features."""
    with engine.connect() as conn:
        row = store.proposal(conn, proposal)
        if row is None:
            raise NotFound(f"no proposal {proposal}")
        grids = store.proposal_grids(conn, proposal) if with_grids else []
        applied = store.applied(conn, proposal)
    out = {
        "id": row["id"],
        "status": row["status"],
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "params": row["params"],
        "versions": row["versions"]["data"] if row["versions"] else {},
        "progress": {"done": row["communities_done"], "total": row["communities_total"]},
        "figures": row["figures"],
        "notes": row["notes"],
        "error": row["error"],
        "seconds": row["seconds"],
        "applied": None if applied is None else {**applied, "at": applied["at"].isoformat()},
    }
    if with_grids:
        out["grids"] = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": g["code"],
                    "properties": {k: v for k, v in g.items() if k != "shape"},
                    "geometry": shapely.geometry.mapping(g["shape"]),
                }
                for g in grids
            ],
        }
    return out


def export(engine: Engine, proposal: int, path: Path) -> Path:
    """The proposal's grids written to `path` (.gpkg or .shp) in the grids import schema
    (code, name, community; households, buildings and Polsby-Popper besides), in EPSG:4326."""
    import geopandas as gpd

    driver = EXPORT_FORMATS.get(path.suffix.lower())
    if driver is None:
        raise InvalidInput(
            f"export to {path.name}: the file must end in {' or '.join(EXPORT_FORMATS)}"
        )
    with engine.connect() as conn:
        row = store.proposal(conn, proposal)
        if row is None:
            raise NotFound(f"no proposal {proposal}")
        if row["status"] != "done":
            raise InvalidInput(f"proposal {proposal} is {row['status']}: nothing to export yet")
        grids = store.proposal_grids(conn, proposal)
    frame = gpd.GeoDataFrame(
        {
            "code": [g["code"] for g in grids],
            "name": [g["name"] for g in grids],
            "community": [g["community_code"] for g in grids],
            "households": [g["households"] for g in grids],
            "buildings": [g["buildings"] for g in grids],
            "pp": [g["polsby_popper"] for g in grids],
        },
        geometry=[g["shape"] for g in grids],
        crs="EPSG:4326",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_file(path, driver=driver, engine="pyogrio", encoding="UTF-8")
    return path
