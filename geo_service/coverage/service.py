"""The 15-minute life circle, every door: compute, report, export, what-if, suggest.

`compute` reads the walkable streets, buildings and centres from PostGIS, builds the
topology, finds where each place enters the network, runs one multi-source Dijkstra for the
nearest centre of every building, draws isochrones and gaps, and stores everything in one
transaction (all or nothing). What-if and suggest work on an in-memory model of the stored
network (loaded once per compute and cached per database), so they answer without touching
the stored results.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from sqlalchemy import Connection, Engine

from geo_service.coverage import figures as fig
from geo_service.coverage import network, shapes, siting, store, topology
from geo_service.coverage.network import Entries, Graph
from geo_service.crs import parse_input_crs
from geo_service.db import bulk
from geo_service.db.engine import reading
from geo_service.errors import InvalidInput, NotFound, PayloadTooLarge
from geo_service.grids.locate import parse_coordinates
from geo_service.settings import Settings

OSM_PREFIX = "osm-"  # codes of roads imported from an OpenStreetMap extract (coverage/osm.py)


class _Clock:
    """Wall time per stage."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(now - self.last, 4)
        self.last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start


def _transformers(crs: CRS) -> tuple[Transformer, Transformer]:
    return (
        Transformer.from_crs("EPSG:4326", crs, always_xy=True),
        Transformer.from_crs(crs, "EPSG:4326", always_xy=True),
    )


def _apply(tr: Transformer, geoms: np.ndarray) -> np.ndarray:
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))  # type: ignore[no-any-return]


def _xy(tr: Transformer, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    x, y = tr.transform(np.asarray(lon, float), np.asarray(lat, float))
    return shapely.points(np.column_stack([x, y]))  # type: ignore[no-any-return]


# -- compute --------------------------------------------------------------------------------
def compute(engine: Engine, settings: Settings, *, shapes_too: bool = True) -> dict[str, Any]:
    """Recompute coverage from the current streets, buildings and centres, and store it."""
    tiers = _tiers(settings)
    clock = _Clock()
    # Work overlaps where it can: the places are read, and each building's grid found, while
    # the topology is built; the blocks are traced and the isochrones drawn (GEOS lets go of
    # the GIL) while the entries and walks are found here. Once the topology is built, the
    # connection belongs to `db`, one thread that stores in order (network, centres, walks,
    # shapes) while the rest is still worked out: PostgreSQL is a third worker beside the
    # two cores' Python. Bulk reads and writes are numpy arrays, never a Python object per
    # row, and the GIL is the scarcer resource (docs/PERFORMANCE.md).
    with engine.begin() as conn, ThreadPoolExecutor(5) as pool, ThreadPoolExecutor(1) as db:
        store.lock(conn)
        versions = store.versions(conn)
        street_ids, streets, osm = store.walkable_streets(conn, OSM_PREFIX)
        if len(streets.xy) == 0:
            raise InvalidInput("no walkable streets: import roads (or an OSM extract) first")
        (x0, y0), (x1, y1) = streets.xy.min(axis=0), streets.xy.max(axis=0)
        crs = topology.utm_crs((x0 + x1) / 2, (y0 + y1) / 2)
        to_m, to_ll = _transformers(crs)
        places = pool.submit(_places, conn, to_m)
        topo = topology.build(
            _linestrings(to_m, streets),
            settings.coverage_node_tolerance_m,
            split_crossings=settings.coverage_split_crossings,
            # OSM ways meet only at shared nodes: no T-junction or crossing guesses for them
            noded=osm,
        )
        # the blocks, which the isochrones wait for, are traced from here on
        aids = _Aids.start(pool, topo) if shapes_too else None
        lines_ll = _lonlat_edges(topo, streets, to_ll)
        graph = Graph(
            topo.n_nodes,
            topo.source,
            topo.target,
            topology.geodesic_lengths(lines_ll.xy, lines_ll.count),
        )
        bld, ctr = places.result()
        clock.lap("read and topology")
        # From here on the connection belongs to `db`, which stores in order while the
        # walks and shapes are worked out here and in `pool`.
        stored = [
            db.submit(store.clear, conn),
            db.submit(_write_network, conn, topo, street_ids, graph, lines_ll, to_ll),
        ]
        max_access = settings.coverage_max_access_m
        c_in = network.locate_entries(
            _xy(to_m, ctr["lon"], ctr["lat"]), topo.geoms, topo.routable, max_access
        )
        iso = (
            _isochrones(pool, settings, tiers, graph, topo, c_in, ctr, aids, to_ll, crs)
            if aids is not None
            else None
        )
        center_codes = np.array([c.encode() for c in ctr["code"]], dtype="S")
        stored.append(
            db.submit(store.write_centers, conn, center_codes, c_in.edge, c_in.frac, c_in.access)
        )
        b_in = network.locate_entries(bld["metric"], topo.geoms, topo.routable, max_access)
        clock.lap("entries")
        walk, which = network.nearest_source(graph, c_in, b_in)
        minutes, tier = network.tier_of(walk, settings.coverage_walk_speed_kmh, tiers)
        clock.lap("distances")
        drawing = (
            pool.submit(
                _draw,
                settings,
                tiers,
                iso,
                aids,
                bld,
                tier,
                to_m,
                to_ll,
                crs,
            )
            if iso is not None and aids is not None
            else None
        )
        columns = {
            "id": bld["id"],
            "code": bld["code"],
            "households": bld["households"],
            "center_code": _at(center_codes, which),
            "grid_code": bld["grid_code"],
            "community_code": bld["community_code"],
            "walk_m": walk,
            "minutes": minutes,
            "tier": tier,
            "access": b_in.access,
            "edge": b_in.edge,
            "frac": b_in.frac,
        }
        stored.append(db.submit(store.write_buildings, conn, columns))
        stored.append(db.submit(store.analyze, conn))
        if iso is not None and drawing is not None:
            stored.append(db.submit(_write_shapes, conn, iso, drawing))
        for job in stored:
            job.result()
        clock.lap("store (and shapes)")
        run: dict[str, Any] = {
            "roads_version": versions["roads"],
            "buildings_version": versions["buildings"],
            "centers_version": versions["centers"],
            "metric_srid": int(crs.to_epsg() or 0),
            "walk_speed_kmh": settings.coverage_walk_speed_kmh,
            "tiers_min": tiers,
            "max_access_m": max_access,
            "nodes": topo.n_nodes,
            "edges": len(topo.geoms),
            "components": int(topo.node_component.max() + 1) if topo.n_nodes else 0,
            "seconds": round(clock.total, 3),
            "timings": json.dumps(clock.stages),
        }
        run_id = store.insert_run(conn, run)
    return {
        "run": run_id,
        "seconds": round(clock.total, 3),
        "timings": clock.stages,
        "buildings": len(bld["id"]),
        "centers": len(ctr["id"]),
        "nodes": topo.n_nodes,
        "edges": len(topo.geoms),
        "isolated_pieces": max(0, int(run["components"]) - 1),
        "buildings_without_street": int((b_in.edge < 0).sum()),
        "centers_without_street": [str(c) for c in ctr["code"][c_in.edge < 0]],
        "covered_buildings": int((tier > 0).sum()),
    }


def _write_network(
    conn: Connection,
    topo: topology.Topology,
    street_ids: np.ndarray,
    graph: Graph,
    lines_ll: bulk.Lines,
    to_ll: Transformer,
) -> None:
    """The topology's nodes and edges (ids from 1), with lengths and components."""
    node_xy = np.column_stack(to_ll.transform(topo.node_xy[:, 0], topo.node_xy[:, 1]))
    store.write_network(
        conn,
        node_xy.reshape(-1, 2),
        topo.node_component,
        topo.source,
        topo.target,
        street_ids[topo.street],
        graph.length,
        topo.component,
        lines_ll,
    )


def _write_shapes(conn: Connection, iso: list[Future[_Isochrones]], drawing: Future[Any]) -> None:
    """The isochrones, once drawn (stored while the gaps are still cut), then the merged
    tiers and gaps."""
    drawn = sorted((r for part in iso for r in part.result().rows), key=lambda r: r[:2])
    store.write_isochrones(conn, drawn)  # while the gaps are cut
    store.write_areas(conn, *drawing.result())


def _places(
    conn: Connection, to_m: Transformer
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Buildings, with their metric points, the grid each counts in and its community
    (outside every grid, the community it lies in; codes as UTF-8 bytes, empty for none),
    and centres. Read and looked up while the topology is built."""
    bld = store.buildings(conn)
    bld["metric"] = _xy(to_m, bld["lon"], bld["lat"])
    grid_codes, grid_communities, grid_polys = store.areas(conn, "grids")
    points = shapely.points(np.column_stack([bld["lon"], bld["lat"]]))
    grid = fig.first_cover(grid_polys, points)
    bld["grid_code"] = _at(grid_codes, grid)
    bld["community_code"] = _at(grid_communities, grid)
    outside = np.flatnonzero(grid < 0)
    if len(outside):
        community_codes, _, community_polys = store.areas(conn, "communities")
        community = np.full(len(points), -1, dtype=np.int64)
        community[outside] = fig.first_cover(community_polys, points[outside])
        bld["community_code"] = np.where(
            grid >= 0, bld["community_code"], _at(community_codes, community)
        )
    return bld, store.centers(conn)


def _linestrings(tr: Transformer, lines: bulk.Lines) -> np.ndarray:
    """The lines transformed by `tr`, as shapely LineStrings (empty where fewer than 2
    vertices)."""
    xy = np.column_stack(tr.transform(lines.xy[:, 0], lines.xy[:, 1]))
    ok = lines.count >= 2
    if ok.all():
        return shapely.linestrings(xy, indices=lines.owner)  # type: ignore[no-any-return]
    out = np.full(len(lines.count), shapely.LineString(), dtype=object)
    keep = np.repeat(ok, lines.count)
    out[ok] = shapely.linestrings(xy[keep], indices=np.repeat(np.arange(ok.sum()), lines.count[ok]))
    return out


def _lonlat_edges(topo: topology.Topology, streets: bulk.Lines, to_ll: Transformer) -> bulk.Lines:
    """The edges in lon/lat: a street left whole has its own stored vertices; only the
    pieces of split streets are projected back."""
    whole = np.bincount(topo.street, minlength=len(streets.count))[topo.street] == 1
    kept, split = np.flatnonzero(whole), np.flatnonzero(~whole)
    xy, piece = shapely.get_coordinates(topo.geoms[split], return_index=True)
    pieces = bulk.Lines(
        np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])),
        np.bincount(piece, minlength=len(split)),
    )
    both = bulk.Lines.concat([streets.take(topo.street[kept]), pieces])
    position = np.empty(len(topo.geoms), dtype=np.int64)
    position[np.r_[kept, split]] = np.arange(len(topo.geoms))
    return both.take(position)


@dataclass
class _Aids:
    """What drawing the isochrones waits for, worked out side by side in the pool."""

    blocks: Future[shapes.Faces]
    strokes: Future[np.ndarray]

    @staticmethod
    def start(pool: ThreadPoolExecutor, topo: topology.Topology) -> _Aids:
        return _Aids(pool.submit(_blocks, topo), pool.submit(_strokes, topo))


def _blocks(topo: topology.Topology) -> shapes.Faces:
    """The blocks of the routable network, streets numbered as edges of `topo`."""
    routable = np.flatnonzero(topo.routable)
    found = shapes.faces(topo.geoms[routable], topo.source[routable], topo.target[routable])
    split = np.zeros(len(topo.geoms), bool)
    split[routable] = found.split
    return shapes.Faces(found.polygons, routable[found.edge], found.face, split)


def _strokes(topo: topology.Topology) -> np.ndarray:
    """The stroke of each routable edge of `topo` (-1 for the others)."""
    routable = np.flatnonzero(topo.routable)
    stroke = np.full(len(topo.geoms), -1, dtype=np.int64)
    stroke[routable] = shapes.stroke_labels(topo.geoms[routable])
    return stroke


def _at(codes: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The codes (bytes) at `index`, empty where the index is -1 (none)."""
    if len(codes) == 0:
        return np.full(len(index), b"", dtype="S1")
    return np.where(index >= 0, codes[np.maximum(index, 0)], b"")


_ISO_PARTS = 2  # isochrones are drawn in this many threads


@dataclass
class _Isochrones:
    """Isochrones of some centres: metric (per centre, per tier) and as stored rows (centre
    code, tier, lon/lat geometry, area m²)."""

    metric: list[list[Any]]
    rows: list[tuple[str, int, Any, float]]


def _isochrones(
    pool: ThreadPoolExecutor,
    settings: Settings,
    tiers: list[int],
    graph: Graph,
    topo: topology.Topology,
    c_in: Entries,
    ctr: dict[str, np.ndarray],
    aids: _Aids,
    to_ll: Transformer,
    crs: CRS,
) -> list[Future[_Isochrones]]:
    """Start drawing the isochrones of every centre with a street, per tier, in
    `_ISO_PARTS` slices of centres (once the blocks are traced)."""
    speed = settings.coverage_walk_speed_kmh
    radii = [network.metres_of(t, speed) for t in tiers]
    reach = np.flatnonzero(c_in.edge >= 0)

    def part(idx: np.ndarray) -> _Isochrones:
        sources = c_in.take(idx)
        dist = network.source_distances(graph, sources, limit=max(radii))
        polys = shapes.isochrones(
            graph,
            topo.geoms,
            dist,
            sources,
            radii,
            settings.coverage_isochrone_buffer_m,
            aids.blocks.result(),
            aids.strokes.result(),
        )
        metric = np.asarray([p for row in polys for p in row], dtype=object)
        lonlat = _apply(to_ll, metric) if len(metric) else metric
        area = topology.areas_m2(metric, crs, lonlat)
        codes = [str(ctr["code"][c]) for c in idx for _ in tiers]
        tier_of = [t for _ in idx for t in tiers]
        return _Isochrones(polys, list(zip(codes, tier_of, lonlat, area, strict=True)))

    # interleaved slices: neighbouring centres (similar work) go to different threads
    return [pool.submit(part, reach[k::_ISO_PARTS]) for k in range(_ISO_PARTS)]


def _draw(
    settings: Settings,
    tiers: list[int],
    iso: list[Future[_Isochrones]],
    aids: _Aids,
    bld: dict[str, np.ndarray],
    tier: np.ndarray,
    to_m: Transformer,
    to_ll: Transformer,
    crs: CRS,
) -> tuple[list[tuple[int, Any, float]], list[tuple[Any, int, int, float]]]:
    """The merged tiers (tier, lon/lat geometry, area m²) of the isochrones drawn by `iso`,
    and the gap areas (geometry, buildings, households, area m²)."""
    uncovered = np.flatnonzero(tier == 0)
    blocks = shapes.blocks(
        aids.blocks.result(), bld["metric"][uncovered], settings.coverage_isochrone_buffer_m
    )
    polys = [row for part in iso for row in part.result().metric]
    merged = [(t, shapes.merge([p[j] for p in polys])) for j, t in enumerate(tiers)]
    gap = shapes.gaps_of(
        blocks,
        bld["households"][uncovered],
        merged[-1][1] if merged else shapely.MultiPolygon(),
    )
    metric = np.asarray([g for _, g in merged] + [g for g, _, _ in gap], dtype=object)
    lonlat = _apply(to_ll, metric) if len(metric) else metric
    area = topology.areas_m2(metric, crs, lonlat)
    n = len(merged)
    return (
        [(t, g, a) for (t, _), g, a in zip(merged, lonlat[:n], area[:n], strict=True)],
        [(g, k, h, a) for (_, k, h), g, a in zip(gap, lonlat[n:], area[n:], strict=True)],
    )


def _tiers(settings: Settings) -> list[int]:
    tiers = sorted(set(settings.coverage_tiers_min))
    if not tiers or tiers[0] <= 0:
        raise InvalidInput(
            f"GEO_COVERAGE_TIERS_MIN={settings.coverage_tiers_min!r}: need minutes > 0"
        )
    return tiers


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
    if (
        run["walk_speed_kmh"] != settings.coverage_walk_speed_kmh
        or list(run["tiers_min"]) != _tiers(settings)
        or run["max_access_m"] != settings.coverage_max_access_m
    ):
        because.append("coverage settings changed")
    return {
        "computed_at": run["computed_at"].isoformat(),
        "stale": bool(because),
        "stale_because": because,
        "walk_speed_kmh": run["walk_speed_kmh"],
        "tiers_min": list(run["tiers_min"]),
        "max_access_m": run["max_access_m"],
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
    return {**_state_head(state), "items": items}


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
    return {**_state_head(state), "items": items}


def buildings(
    engine: Engine,
    settings: Settings,
    *,
    uncovered: bool = False,
    tier: int | None = None,
    community: str | None = None,
    grid: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of per-building results (the uncovered ones, farthest first, with `uncovered`)."""
    with reading(engine) as conn:
        state = status(conn, settings)
        if tier is not None and tier not in state["tiers_min"]:
            raise InvalidInput(f"tier={tier} is not one of the tiers {state['tiers_min']}")
        total, rows = store.building_page(
            conn,
            uncovered=uncovered,
            tier=tier,
            community=community,
            grid=grid,
            limit=limit,
            offset=offset,
        )
    return {**_state_head(state), "total": total, "limit": limit, "offset": offset, "items": rows}


def layer(
    engine: Engine, settings: Settings, name: str, center: str | None, tier: int | None
) -> dict[str, Any]:
    """Isochrones, merged tiers or gaps as a GeoJSON FeatureCollection (+ stale flag)."""
    with reading(engine) as conn:
        state = status(conn, settings)
        doc = store.feature_collection(conn, name, center, tier)
    return {**doc, **_state_head(state)}


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


def _state_head(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in ("computed_at", "stale", "stale_because", "tiers_min")}


def building_coverage(conn: Connection, code: str) -> dict[str, Any] | None:
    """Coverage fields of one building (None when coverage has not been computed)."""
    return store.building_coverage(conn, code)


# -- the in-memory model: what-if and suggest -----------------------------------------------
@dataclass
class Model:
    """The stored network and entry points, ready for Dijkstra."""

    run: tuple[int, Any]  # (id, computed_at) of the compute it mirrors
    srid: int
    graph: Graph
    geoms: np.ndarray  # metric edges
    routable: np.ndarray
    buildings: Entries
    households: np.ndarray
    community: np.ndarray  # community code of each building, "" for none
    community_names: dict[str, str]
    center_codes: np.ndarray
    centers: Entries
    tiers: list[int]
    speed: float
    max_access_m: float
    base_walk: np.ndarray
    base_tier: np.ndarray
    to_m: Transformer
    to_ll: Transformer

    def entries(self, lon: np.ndarray, lat: np.ndarray) -> Entries:
        """Entry points of lon/lat places, by the same rule as compute."""
        return network.locate_entries(
            _xy(self.to_m, lon, lat), self.geoms, self.routable, self.max_access_m
        )

    def walks(self, sources: Entries, limit: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """Each building's walk to the nearest of `sources`, and its tier."""
        walk, _ = network.nearest_source(self.graph, sources, self.buildings, limit)
        _, tier = network.tier_of(walk, self.speed, self.tiers)
        return walk, tier


_MODELS: dict[str, Model] = {}
_MODEL_LOCK = threading.Lock()


def model(engine: Engine, settings: Settings) -> tuple[Model, dict[str, Any]]:
    """The model of the latest compute (cached per database), and the coverage status."""
    with reading(engine) as conn:
        state = status(conn, settings)
        run = store.latest_run(conn)
        assert run is not None
        key = engine.url.render_as_string(hide_password=True)
        with _MODEL_LOCK:
            cached = _MODELS.get(key)
            if cached is None or cached.run != (run["id"], run["computed_at"]):
                cached = _load_model(conn, run)
                _MODELS[key] = cached
    return cached, state


def _load_model(conn: Connection, run: dict[str, Any]) -> Model:
    arrays = store.model_arrays(conn)
    crs = CRS.from_epsg(run["metric_srid"])
    to_m, to_ll = _transformers(crs)
    geoms = _apply(to_m, shapely.from_wkb(arrays["wkb"])) if arrays["wkb"] else np.zeros(0, object)
    graph = Graph(arrays["n_nodes"], arrays["source"], arrays["target"], arrays["length"])
    tiers = list(run["tiers_min"])
    b = Entries(arrays["b_edge"], arrays["b_frac"], arrays["b_access"])
    c = Entries(arrays["c_edge"], arrays["c_frac"], arrays["c_access"])
    walk, _ = network.nearest_source(graph, c, b)
    _, tier = network.tier_of(walk, run["walk_speed_kmh"], tiers)
    return Model(
        run=(run["id"], run["computed_at"]),
        srid=run["metric_srid"],
        graph=graph,
        geoms=geoms,
        routable=arrays["component"] == 0,
        buildings=b,
        households=arrays["households"],
        community=np.asarray(["" if c is None else str(c) for c in arrays["community"]]),
        community_names=arrays["community_names"],
        center_codes=arrays["center_code"],
        centers=c,
        tiers=tiers,
        speed=run["walk_speed_kmh"],
        max_access_m=run["max_access_m"],
        base_walk=walk,
        base_tier=tier,
        to_m=to_m,
        to_ll=to_ll,
    )


def what_if(
    engine: Engine,
    settings: Settings,
    add: list[dict[str, Any]],
    remove: list[str],
    crs: str | None = None,
) -> dict[str, Any]:
    """Figures with centres added (lon/lat) and/or removed (codes), and the change per
    community; nothing is stored."""
    if len(add) + len(remove) > settings.coverage_whatif_max_centers:
        raise PayloadTooLarge(
            f"{len(add) + len(remove)} centres to add or remove; at most "
            f"{settings.coverage_whatif_max_centers} per what-if"
        )
    m, state = model(engine, settings)
    known = set(m.center_codes.tolist())
    unknown = [code for code in remove if code not in known]
    if unknown:
        raise InvalidInput(f"unknown centre code(s) to remove: {', '.join(map(repr, unknown))}")
    lon, lat = _lonlat(add, crs, "add")
    new = m.entries(lon, lat)
    far = np.flatnonzero(new.edge < 0)
    keep = np.flatnonzero(~np.isin(m.center_codes, remove))
    sources = Entries.concat([m.centers.take(keep), new])
    walk, tier = m.walks(sources)
    before = fig.figures(m.base_tier, m.base_walk, m.households, m.tiers)
    after = fig.figures(tier, walk, m.households, m.tiers)
    per_before = fig.by_group(m.community, m.base_tier, m.base_walk, m.households, m.tiers)
    per_after = fig.by_group(m.community, tier, walk, m.households, m.tiers)
    items = []
    for code in sorted(per_after, key=lambda c: (c is None, c or "")):
        delta = fig.change(per_before[code], per_after[code])
        items.append(
            {
                "code": code,
                "name": m.community_names.get(code) if code else None,
                "before": fig.with_shares(per_before[code]),
                "after": fig.with_shares(per_after[code]),
                "change": delta,
                "changed": any(d["households"] or d["buildings"] for d in delta),
            }
        )
    return {
        **_state_head(state),
        "added": [
            {
                "lon": float(x),
                "lat": float(y),
                "access_m": None if new.edge[i] < 0 else round(float(new.access[i]), 1),
                "on_network": bool(new.edge[i] >= 0),
            }
            for i, (x, y) in enumerate(zip(lon, lat, strict=True))
        ],
        "removed": sorted(set(remove)),
        "warnings": [
            f"added centre {i + 1} ({lon[i]:.6f}, {lat[i]:.6f}) is more than "
            f"{m.max_access_m:g} m from any routable street: it covers nothing"
            for i in far
        ],
        "city": {
            "before": fig.with_shares(before),
            "after": fig.with_shares(after),
            "change": fig.change(before, after),
        },
        "communities": items,
    }


def _lonlat(
    items: list[dict[str, Any]], crs: str | None, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validated WGS-84 lon/lat of {lon, lat} items (converted from `crs`)."""
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "lon" not in item or "lat" not in item:
            raise InvalidInput(f"{what}[{i}] = {item!r} needs lon and lat")
    if not items:
        return np.zeros(0), np.zeros(0)
    x, y, reasons = parse_coordinates(
        [it["lon"] for it in items], [it["lat"] for it in items], parse_input_crs(crs)
    )
    bad = [f"{what}[{i}]: {r}" for i, r in enumerate(reasons) if r]
    if bad:
        raise InvalidInput("; ".join(bad))
    return np.asarray(x, float), np.asarray(y, float)


def parse_points(text: str, what: str) -> list[dict[str, Any]]:
    """ "lon,lat;lon,lat;..." -> [{lon, lat}, ...] (values checked later)."""
    items = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        pieces = part.split(",")
        if len(pieces) != 2:
            raise InvalidInput(f"{what}: {part!r} is not lon,lat")
        items.append({"lon": pieces[0].strip(), "lat": pieces[1].strip()})
    return items


@dataclass
class Siting:
    """What suggest solves: the candidate sites (lon/lat, and where they came from), which
    uncovered building each reaches within the widest tier (pairs of indices), and the
    households of those buildings."""

    lon: np.ndarray
    lat: np.ndarray
    origin: str
    site: np.ndarray
    building: np.ndarray
    households: np.ndarray


def siting_problem(
    engine: Engine,
    settings: Settings,
    candidates: list[dict[str, Any]] | None = None,
    crs: str | None = None,
) -> tuple[Siting, dict[str, Any]]:
    """The siting problem of the latest compute (given candidate points, or street nodes in
    uncovered areas), and the coverage status."""
    m, state = model(engine, settings)
    limit = network.metres_of(max(m.tiers), m.speed)
    open_b = np.flatnonzero((m.base_tier == 0) & (m.buildings.edge >= 0))
    if candidates:
        if len(candidates) > settings.coverage_suggest_max_candidates:
            raise PayloadTooLarge(
                f"{len(candidates)} candidates; at most {settings.coverage_suggest_max_candidates}"
            )
        lon, lat = _lonlat(candidates, crs, "candidates")
        cand = m.entries(lon, lat)
        far = np.flatnonzero(cand.edge < 0)
        if len(far):
            raise InvalidInput(
                "candidate(s) farther than "
                f"{m.max_access_m:g} m from any routable street: "
                + ", ".join(f"{lon[i]:.6f},{lat[i]:.6f}" for i in far)
            )
        origin = "given"
    else:
        cand, lon, lat = _node_candidates(m, open_b, settings.coverage_suggest_max_candidates)
        origin = "street nodes near uncovered buildings"
    site, target, walk = network.within(m.graph, cand, m.buildings.take(open_b), limit)
    _, tier = network.tier_of(walk, m.speed, m.tiers)
    hit = tier > 0
    households = m.households[open_b].astype(float)
    return Siting(lon, lat, origin, site[hit], target[hit], households), state


def suggest(
    engine: Engine,
    settings: Settings,
    k: int,
    candidates: list[dict[str, Any]] | None = None,
    crs: str | None = None,
) -> dict[str, Any]:
    """k new sites maximising households newly within the widest tier (existing centres
    kept), from the given candidate points or from street nodes in uncovered areas."""
    if k < 1 or k > settings.coverage_suggest_max_k:
        raise InvalidInput(f"k={k} is out of range: 1 to {settings.coverage_suggest_max_k}")
    p, state = siting_problem(engine, settings, candidates, crs)
    if k > len(p.lon):
        raise InvalidInput(f"k={k} is more than the {len(p.lon)} candidate sites")
    choice = siting.mclp(
        len(p.lon),
        p.site,
        p.building,
        p.households,
        k,
        settings.coverage_suggest_time_limit_s,
        settings.coverage_suggest_gap,
    )
    return {
        **_state_head(state),
        "k": k,
        "candidates": {"count": len(p.lon), "from": p.origin},
        "method": choice.method,
        "optimal": choice.optimal,
        "upper_bound_households": None
        if choice.upper_bound is None
        else round(choice.upper_bound, 1),
        # why not proven optimal: "gap" (proven within GEO_COVERAGE_SUGGEST_GAP),
        # "time_limit" (GEO_COVERAGE_SUGGEST_TIME_LIMIT_S) or "solver"; None when optimal
        "stopped": choice.stopped,
        "gap": None if choice.gap is None else round(choice.gap, 6),
        "notes": choice.notes,
        "households_gained": choice.total,
        "sites": [
            {
                "rank": r + 1,
                "lon": float(p.lon[s]),
                "lat": float(p.lat[s]),
                "households_gained": g,
            }
            for r, (s, g) in enumerate(zip(choice.sites, choice.gains, strict=True))
        ],
    }


def _node_candidates(
    m: Model, open_b: np.ndarray, most: int
) -> tuple[Entries, np.ndarray, np.ndarray]:
    """Street nodes at the ends of the edges uncovered buildings enter by, ranked by the
    uncovered households on those edges (the `most` first)."""
    e = m.buildings.edge[open_b]
    w = m.households[open_b].astype(float)
    g = m.graph
    nodes = np.r_[g.source[e], g.target[e]]
    weight = np.bincount(nodes, weights=np.r_[w, w], minlength=g.n_nodes)
    ranked = np.flatnonzero(weight > 0)
    ranked = ranked[np.lexsort((ranked, -weight[ranked]))][:most]
    # each node as an entry at the start or end of one routable edge touching it
    edge_of = np.full(g.n_nodes, -1, dtype=np.int64)
    frac_of = np.zeros(g.n_nodes)
    r = np.flatnonzero(m.routable)
    edge_of[g.target[r]] = r
    frac_of[g.target[r]] = 1.0
    edge_of[g.source[r]] = r
    frac_of[g.source[r]] = 0.0
    ranked = ranked[edge_of[ranked] >= 0]
    edges = edge_of[ranked]
    fracs = frac_of[ranked]
    ends = shapely.line_interpolate_point(m.geoms[edges], fracs, normalized=True)
    xy = shapely.get_coordinates(ends)
    lon, lat = m.to_ll.transform(xy[:, 0], xy[:, 1]) if len(xy) else (np.zeros(0), np.zeros(0))
    return Entries(edges, fracs, np.zeros(len(edges))), np.asarray(lon), np.asarray(lat)
