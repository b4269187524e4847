"""Planning on the stored coverage: what-if (centres added or removed, nothing stored) and
suggest (where the next k centres should go), on an in-memory model of the network of the
last compute (`Models`: loaded once per compute and held by whoever calls, the app for its
lifetime), so they answer without touching the stored results.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from sqlalchemy import Connection, Engine

from geo_service.coords import parse_coordinates
from geo_service.coverage import collector, network, siting, store
from geo_service.coverage import figures as fig
from geo_service.coverage.compute import metric_lines, metric_transformers, metric_xy
from geo_service.coverage.network import Entries, Graph
from geo_service.coverage.params import CoverageParams
from geo_service.coverage.service import state_head, status
from geo_service.crs import parse_input_crs
from geo_service.db.engine import reading
from geo_service.errors import InvalidInput, PayloadTooLarge
from geo_service.settings import Settings

log = logging.getLogger(__name__)


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
    params: CoverageParams  # of the compute it mirrors
    base_walk: np.ndarray
    base_tier: np.ndarray
    to_m: Transformer
    to_ll: Transformer
    # Made once per model, so that a what-if pays for its own centres only.
    tree: shapely.STRtree  # the routable edges, for entry points
    node_component: np.ndarray  # network.node_components(graph)
    building_component: np.ndarray  # of each building's entry edge, -1 for none
    community_index: tuple[np.ndarray, np.ndarray]  # fig.group_index(community)
    reach: network.TargetIndex  # the buildings a bounded walk reaches, found by edge
    stranded: np.ndarray  # buildings on the network with no centre to walk to
    base_city: dict[str, Any]  # fig.figures of the compute
    base_communities: dict[Any, dict[str, Any]]  # fig.by_group of the compute
    # suggest's problem from street nodes, per candidate cap: made on first use, as it walks
    # from every candidate (0.3 s of a city's suggest, seconds of a province's)
    node_sitings: dict[int, Siting] = field(default_factory=dict)
    # each community's what-if item when no building of it moves, in the answer's order
    # (code, no community last); filled in by `_model`
    unchanged: dict[Any, dict[str, Any]] = field(default_factory=dict)

    def entries(self, lon: np.ndarray, lat: np.ndarray) -> Entries:
        """Entry points of lon/lat places, by the same rule as compute."""
        return network.locate_entries(
            metric_xy(self.to_m, lon, lat),
            self.geoms,
            self.routable,
            self.params.max_access_m,
            self.tree,
        )

    def walks(self, sources: Entries, limit: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """Each building's walk to the nearest of `sources`, and its tier."""
        walk, _ = network.nearest_source(self.graph, sources, self.buildings, limit)
        _, tier = self.params.tier_of(walk)
        return walk, tier

    def moved_after(
        self, new: Entries, removed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The buildings whose tier or reachability changes with the centres `removed` (a
        mask over `center_codes`) taken away and `new` ones added: (their indices, walks,
        tiers).

        Without removals only the new centres are walked, only as far as the widest tier (a
        longer walk changes no tier), and only the buildings that walk reaches are looked at:
        the cost is the new centres' surroundings, not the city. A building that had no
        centre to walk to and is now joined to one beyond every tier gets a finite walk past
        the widest tier (it is reachable, in no tier): only tiers and reachability are read
        from these walks."""
        if removed.any():
            sources = Entries.concat([self.centers.take(np.flatnonzero(~removed)), new])
            walk, tier = self.walks(sources)
            moved = np.flatnonzero(
                (tier != self.base_tier) | (np.isfinite(walk) != np.isfinite(self.base_walk))
            )
            return moved, walk[moved], tier[moved]
        idx, walk = np.zeros(0, np.int64), np.zeros(0)
        on = new.edge[new.edge != network.NO_EDGE]
        if len(on):
            reach = self.params.reach_m
            idx, walk, _ = network.walks_within(self.graph, new, self.buildings, reach, self.reach)
            closer = walk < self.base_walk[idx]
            idx, walk = idx[closer], walk[closer]
            if len(self.stranded):  # none, once any centre was on the network before
                joined = self.stranded[
                    np.isin(
                        self.building_component[self.stranded],
                        self.node_component[self.graph.source[on]],
                    )
                ]
                joined = np.setdiff1d(joined, idx, assume_unique=True)
                idx = np.r_[idx, joined]
                walk = np.r_[walk, np.full(len(joined), np.nextafter(reach, np.inf))]
        _, tier = self.params.tier_of(walk)
        moved = (tier != self.base_tier[idx]) | ~np.isfinite(self.base_walk[idx])
        return idx[moved], walk[moved], tier[moved]

    @property
    def tiers(self) -> list[int]:
        """The walking tiers, minutes ascending."""
        return list(self.params.tiers_min)


class Models:
    """The models of the latest compute of each database, loaded on first use and again after
    each compute. The app holds one for its lifetime (what-if and suggest then answer without
    reloading); a CLI command or a test makes its own."""

    def __init__(self) -> None:
        # Keyed by database, not by URL: a primary and its standbys (GEO_DATABASE_READ_URLS)
        # share one model, which the server loads at its start from the primary.
        self._models: dict[tuple[int, str], Model] = {}
        self._identity: dict[str, tuple[int, str]] = {}  # engine URL -> database
        self._lock = threading.Lock()
        # A server process sets this: each model it loads is frozen out of the cycle
        # collector's reach (collector.settle); tests and commands leave it off.
        self.settle = False

    def _key(self, engine: Engine, conn: Connection) -> tuple[int, str]:
        url = engine.url.render_as_string(hide_password=True)
        key = self._identity.get(url)
        if key is None:
            key = self._identity[url] = store.database_identity(conn)
        return key

    def get(self, engine: Engine, settings: Settings) -> tuple[Model, dict[str, Any]]:
        """The model of the latest compute, and the coverage status."""
        with reading(engine) as conn:
            state = status(conn, settings)
            run = store.latest_run(conn)
            assert run is not None
            key = self._key(engine, conn)
            with self._lock:
                cached = self._models.get(key)
                while cached is None or cached.run != (run["id"], run["computed_at"]):
                    with collector.paused():  # 100k streets made, none in a cycle
                        loaded = _load_model(engine, conn, run)
                    # Each statement of a load sees the data of its moment: a compute that
                    # committed meanwhile would have given it parts of two. Then read again.
                    if store.latest_run(conn) == run:
                        cached = self._models[key] = loaded
                        del loaded
                        if self.settle:
                            collector.settle()
                    else:
                        state, run = status(conn, settings), store.latest_run(conn)
                        assert run is not None
        return cached, state

    def holds(self, engine: Engine) -> bool:
        """Whether a model of this database is held (it may be of an older compute)."""
        with reading(engine) as conn:
            key = self._key(engine, conn)
        with self._lock:
            return key in self._models

    def warm(self, engine: Engine, settings: Settings) -> threading.Thread:
        """Load the latest compute's model in the background (a server's start), so that
        the first what-if a planner asks answers as fast as the next; a database without a
        compute, or one that cannot be read yet, is left for the first request to say so."""

        def load() -> None:
            try:
                with reading(engine) as conn:
                    if store.latest_run(conn) is None:
                        return
                self.get(engine, settings)
            except Exception:  # the first request reports what is wrong
                log.info("coverage model not loaded at start", exc_info=True)

        thread = threading.Thread(target=load, name="coverage-model", daemon=True)
        thread.start()
        return thread


def _load_model(engine: Engine, conn: Connection, run: dict[str, Any]) -> Model:
    """The model of compute `run`, read on `conn` and, for the streets' shapes, on a
    connection of its own in a second thread: PostgreSQL, pyproj and GEOS let go of the GIL
    while the network is read and walked here (0.3 s less of a city's 1 s on a loaded
    machine)."""
    crs = CRS.from_epsg(run["metric_srid"])
    to_m, to_ll = metric_transformers(crs)
    with ThreadPoolExecutor(1) as pool:
        shapes = pool.submit(_metric_edges, engine, to_m)
        return _model(run, store.model_arrays(conn), to_m, to_ll, shapes)


def _metric_edges(engine: Engine, to_m: Transformer) -> np.ndarray:
    """The network's edges as metric LineStrings (index = edge id - 1)."""
    with reading(engine) as conn:
        lines = store.edge_lines(conn)
    return metric_lines(to_m, lines)


def _model(
    run: dict[str, Any],
    arrays: dict[str, Any],
    to_m: Transformer,
    to_ll: Transformer,
    shapes: Future[np.ndarray],
) -> Model:
    """The model of `run` from its arrays (`store.model_arrays`) and its metric edges (read
    meanwhile)."""
    graph = Graph(arrays["n_nodes"], arrays["source"], arrays["target"], arrays["length"])
    params = CoverageParams.of_run(run)
    b = Entries(arrays["b_edge"], arrays["b_frac"], arrays["b_access"])
    c = Entries(arrays["c_edge"], arrays["c_frac"], arrays["c_access"])
    walk, _ = network.nearest_source(graph, c, b)
    _, tier = params.tier_of(walk)
    routable = arrays["component"] == 0
    components = network.node_components(graph)
    b_component = np.where(
        b.edge != network.NO_EDGE, components[graph.source[np.maximum(b.edge, 0)]], -1
    )
    groups = arrays["community_codes"], arrays["community"]
    community = groups[0][groups[1]]
    tiers = list(params.tiers_min)
    geoms = shapes.result()
    model = Model(
        run=(run["id"], run["computed_at"]),
        srid=run["metric_srid"],
        graph=graph,
        geoms=geoms,
        routable=routable,
        buildings=b,
        households=arrays["households"],
        community=community,
        community_names=arrays["community_names"],
        center_codes=arrays["center_code"],
        centers=c,
        params=params,
        base_walk=walk,
        base_tier=tier,
        to_m=to_m,
        to_ll=to_ll,
        tree=network.routable_tree(geoms, routable),
        node_component=components,
        building_component=b_component,
        reach=network.TargetIndex.of(graph, b),
        stranded=np.flatnonzero(~np.isfinite(walk) & (b_component >= 0)),
        community_index=groups,
        base_city=fig.figures(tier, walk, arrays["households"], tiers),
        base_communities=fig.by_group(groups, tier, walk, arrays["households"], tiers),
    )
    for code in sorted(model.base_communities, key=lambda c: (c is None, c or "")):
        model.unchanged[code] = _community(model, code, None, None)
    return model


def what_if(
    engine: Engine,
    settings: Settings,
    add: list[dict[str, Any]],
    remove: list[str],
    crs: str | None = None,
    *,
    models: Models | None = None,
) -> dict[str, Any]:
    """Figures with centres added (lon/lat) and/or removed (codes), and the change per
    community; nothing is stored."""
    if len(add) + len(remove) > settings.coverage.whatif_max_centers:
        raise PayloadTooLarge(
            f"{len(add) + len(remove)} centres to add or remove; at most "
            f"{settings.coverage.whatif_max_centers} per what-if"
        )
    m, state = (models or Models()).get(engine, settings)
    known = set(m.center_codes.tolist())
    unknown = [code for code in remove if code not in known]
    if unknown:
        raise InvalidInput(f"unknown centre code(s) to remove: {', '.join(map(repr, unknown))}")
    lon, lat = _lonlat(add, crs, "add")
    new = m.entries(lon, lat)
    far = np.flatnonzero(new.edge < 0)
    # The figures after are those before with the buildings whose tier or reach changed
    # counted again (figures are counts: a planner's centre changes a few thousand of 120k).
    moved, walk, tier = m.moved_after(new, np.isin(m.center_codes, remove))
    hh = m.households[moved]
    was = (m.base_tier[moved], m.base_walk[moved], hh, m.tiers)
    now = (tier, walk, hh, m.tiers)
    before = _copied(m.base_city)  # with_shares writes into what it is given
    after = fig.moved(m.base_city, fig.figures(*was), fig.figures(*now))
    # Only the communities holding a moved building are counted again; the others' items
    # are the model's, made once (a province has 560 communities, a centre touches a few).
    names, index = m.community_index
    touched = np.unique(index[moved])
    groups = (np.asarray(names)[touched], np.searchsorted(touched, index[moved]))
    per_was, per_now = fig.by_group(groups, *was), fig.by_group(groups, *now)
    items = [
        _community(m, code, per_was[code], per_now[code]) if code in per_now else m.unchanged[code]
        for code in m.unchanged
    ]
    return {
        **state_head(state),
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
            f"{m.params.max_access_m:g} m from any routable street: it covers nothing"
            for i in far
        ],
        "city": {
            "before": fig.with_shares(before),
            "after": fig.with_shares(after),
            "change": fig.change(before, after),
        },
        "communities": items,
    }


def _community(
    m: Model, code: str | None, was: dict[str, Any] | None, now: dict[str, Any] | None
) -> dict[str, Any]:
    """A community's item of a what-if: its figures before, after (some of its buildings'
    figures `was` replaced by what they are `now`) and the change."""
    before = _copied(m.base_communities[code])  # with_shares writes into what it is given
    after = before if was is None or now is None else fig.moved(before, was, now)
    delta = fig.change(before, after)
    return {
        "code": code,
        "name": m.community_names.get(code) if code else None,
        "before": fig.with_shares(before),
        "after": fig.with_shares(_copied(after)),
        "change": delta,
        "changed": any(d["households"] or d["buildings"] for d in delta),
    }


def _copied(figures: dict[str, Any]) -> dict[str, Any]:
    """A copy of figures that `fig.with_shares` may write into."""
    return {**figures, "tiers": [dict(t) for t in figures["tiers"]]}


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
    *,
    models: Models | None = None,
) -> tuple[Siting, dict[str, Any]]:
    """The siting problem of the latest compute (given candidate points, or street nodes in
    uncovered areas), and the coverage status."""
    m, state = (models or Models()).get(engine, settings)
    limit = m.params.reach_m
    open_b = np.flatnonzero((m.base_tier == 0) & (m.buildings.edge >= 0))
    if candidates:
        if len(candidates) > settings.coverage.suggest_max_candidates:
            raise PayloadTooLarge(
                f"{len(candidates)} candidates; at most {settings.coverage.suggest_max_candidates}"
            )
        lon, lat = _lonlat(candidates, crs, "candidates")
        cand = m.entries(lon, lat)
        far = np.flatnonzero(cand.edge < 0)
        if len(far):
            raise InvalidInput(
                "candidate(s) farther than "
                f"{m.params.max_access_m:g} m from any routable street: "
                + ", ".join(f"{lon[i]:.6f},{lat[i]:.6f}" for i in far)
            )
        origin = "given"
    else:
        most = settings.coverage.suggest_max_candidates
        if most in m.node_sitings:
            return m.node_sitings[most], state
        cand, lon, lat = _node_candidates(m, open_b, most)
        origin = "street nodes near uncovered buildings"
    site, target, walk = network.within(m.graph, cand, m.buildings.take(open_b), limit)
    _, tier = m.params.tier_of(walk)
    hit = tier > 0
    households = m.households[open_b].astype(float)
    problem = Siting(lon, lat, origin, site[hit], target[hit], households)
    if not candidates:
        m.node_sitings[most] = problem
    return problem, state


def suggest(
    engine: Engine,
    settings: Settings,
    k: int,
    candidates: list[dict[str, Any]] | None = None,
    crs: str | None = None,
    *,
    models: Models | None = None,
) -> dict[str, Any]:
    """k new sites maximising households newly within the widest tier (existing centres
    kept), from the given candidate points or from street nodes in uncovered areas."""
    if k < 1 or k > settings.coverage.suggest_max_k:
        raise InvalidInput(f"k={k} is out of range: 1 to {settings.coverage.suggest_max_k}")
    p, state = siting_problem(engine, settings, candidates, crs, models=models)
    if k > len(p.lon):
        raise InvalidInput(f"k={k} is more than the {len(p.lon)} candidate sites")
    choice = siting.mclp(
        len(p.lon),
        p.site,
        p.building,
        p.households,
        k,
        settings.coverage.suggest_time_limit_s,
        settings.coverage.suggest_gap,
    )
    return {
        **state_head(state),
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
