"""Computing the 15-minute life circle: the pipeline behind `geo-service coverage compute`.

It reads the walkable streets, buildings and centres from PostGIS, builds the topology,
finds where each place enters the network, runs one multi-source Dijkstra for the nearest
centre of every building, draws isochrones and gaps, and stores everything in one
transaction (all or nothing). What is stored is read by coverage/service.py; what-if and
suggest work on a model of it (coverage/planning.py).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from sqlalchemy import Connection, Engine

from geo_service.coverage import collector, network, shapes, store, topology
from geo_service.coverage import figures as fig
from geo_service.coverage.network import Entries, Graph
from geo_service.coverage.params import CoverageParams
from geo_service.db import bulk
from geo_service.errors import InvalidInput
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


def metric_transformers(crs: CRS) -> tuple[Transformer, Transformer]:
    """WGS-84 to the metric CRS of the data, and back."""
    return (
        Transformer.from_crs("EPSG:4326", crs, always_xy=True),
        Transformer.from_crs(crs, "EPSG:4326", always_xy=True),
    )


def transform_all(tr: Transformer, geoms: np.ndarray) -> np.ndarray:
    """Every geometry of `geoms` through `tr`, vectorised."""
    moved = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return moved  # type: ignore[no-any-return]


def metric_xy(tr: Transformer, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Points of lon/lat pairs, in the metric CRS of `tr`."""
    x, y = tr.transform(np.asarray(lon, float), np.asarray(lat, float))
    return shapely.points(np.column_stack([x, y]))  # type: ignore[no-any-return]


# -- compute --------------------------------------------------------------------------------
def compute(engine: Engine, settings: Settings, *, shapes_too: bool = True) -> dict[str, Any]:
    """Recompute coverage from the current streets, buildings and centres, and store it."""
    params = CoverageParams.from_settings(settings)
    tiers = list(params.tiers_min)
    clock = _Clock()
    # Work overlaps where it can: the places are read, and each building's grid found, while
    # the topology is built; the blocks are traced and the isochrones drawn (GEOS lets go of
    # the GIL) while the entries and walks are found here. Once the topology is built, the
    # connection belongs to `db`, one thread that stores in order (network, centres, walks,
    # shapes) while the rest is still worked out: PostgreSQL is a third worker beside the
    # two cores' Python. Bulk reads and writes are numpy arrays, never a Python object per
    # row, and the GIL is the scarcer resource (docs/PERFORMANCE.md).
    with (
        collector.paused(),  # hundreds of thousands of objects, none in a cycle
        engine.begin() as conn,
        ThreadPoolExecutor(5) as pool,
        ThreadPoolExecutor(1) as db,
    ):
        store.lock(conn)
        versions = store.versions(conn)
        street_ids, streets, osm = store.walkable_streets(conn, OSM_PREFIX)
        if len(streets.xy) == 0:
            raise InvalidInput("no walkable streets: import roads (or an OSM extract) first")
        (x0, y0), (x1, y1) = streets.xy.min(axis=0), streets.xy.max(axis=0)
        crs = topology.utm_crs((x0 + x1) / 2, (y0 + y1) / 2)
        to_m, to_ll = metric_transformers(crs)
        places = pool.submit(_places, conn, to_m)
        topo = topology.build(
            metric_lines(to_m, streets),
            settings.coverage.node_tolerance_m,
            split_crossings=settings.coverage.split_crossings,
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
        max_access = params.max_access_m
        tree = network.routable_tree(topo.geoms, topo.routable)  # for centres and buildings
        c_in = network.locate_entries(
            metric_xy(to_m, ctr["lon"], ctr["lat"]), topo.geoms, topo.routable, max_access, tree
        )
        iso = (
            _isochrones(pool, settings, params, graph, topo, c_in, ctr, aids, to_ll, crs)
            if aids is not None
            else None
        )
        center_codes = np.array([c.encode() for c in ctr["code"]], dtype="S")
        stored.append(
            db.submit(store.write_centers, conn, center_codes, c_in.edge, c_in.frac, c_in.access)
        )
        b_in = network.locate_entries(bld["metric"], topo.geoms, topo.routable, max_access, tree)
        clock.lap("entries")
        walk, which = network.nearest_source(graph, c_in, b_in)
        minutes, tier = params.tier_of(walk)
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
            **params.row(),
            "nodes": topo.n_nodes,
            "edges": len(topo.geoms),
            "components": int(topo.node_component.max() + 1) if topo.n_nodes else 0,
            "seconds": round(clock.total, 3),
            "timings": clock.stages,
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
    bld["metric"] = metric_xy(to_m, bld["lon"], bld["lat"])
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


def metric_lines(tr: Transformer, lines: bulk.Lines) -> np.ndarray:
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
    params: CoverageParams,
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
    tiers = list(params.tiers_min)
    radii = [params.metres(t) for t in tiers]
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
            settings.coverage.isochrone_buffer_m,
            aids.blocks.result(),
            aids.strokes.result(),
        )
        metric = np.asarray([p for row in polys for p in row], dtype=object)
        lonlat = transform_all(to_ll, metric) if len(metric) else metric
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
        aids.blocks.result(), bld["metric"][uncovered], settings.coverage.isochrone_buffer_m
    )
    polys = [row for part in iso for row in part.result().metric]
    merged = [(t, shapes.merge([p[j] for p in polys])) for j, t in enumerate(tiers)]
    gap = shapes.gaps_of(
        blocks,
        bld["households"][uncovered],
        merged[-1][1] if merged else shapely.MultiPolygon(),
    )
    metric = np.asarray([g for _, g in merged] + [g for g, _, _ in gap], dtype=object)
    lonlat = transform_all(to_ll, metric) if len(metric) else metric
    area = topology.areas_m2(metric, crs, lonlat)
    n = len(merged)
    return (
        [(t, g, a) for (t, _), g, a in zip(merged, lonlat[:n], area[:n], strict=True)],
        [(g, k, h, a) for (_, k, h), g, a in zip(gap, lonlat[n:], area[n:], strict=True)],
    )
