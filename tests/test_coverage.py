"""The 15-minute life circle on small planted streets (metres from the planted origin):
topology, partial edges, tiers, the river with one bridge, stale marking, what-if, siting,
shapes, bad input, CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import CRS
from shapely.geometry import LineString, Point
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from geo_service.api.app import create_app
from geo_service.cli import app as cli_app
from geo_service.coverage import compute, figures, planning, service, shapes, store, topology
from geo_service.errors import InvalidInput
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests import factories as f

X0, Y0 = f.X0, f.Y0


def line(*pts: tuple[float, float]) -> LineString:
    return LineString([(X0 + x, Y0 + y) for x, y in pts])


def pt(x: float, y: float) -> Point:
    return Point(X0 + x, Y0 + y)


def lonlat(x: float, y: float) -> tuple[float, float]:
    g = f.frame([{"geometry": pt(x, y)}]).geometry.iloc[0]
    return g.x, g.y


def plant(
    engine: Engine,
    settings: Settings,
    folder: Path,
    roads: list[LineString],
    buildings: list[tuple[str, float, float, int]],
    centers: list[tuple[str, float, float]],
) -> None:
    """Import roads, point buildings (code, x, y, households) and centres (code, x, y)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {
        "roads": [{"code": f"R{i}", "name": "路", "geometry": g} for i, g in enumerate(roads)],
        "buildings": [
            {
                "code": c,
                "address": f"安徽省铜陵市铜官区长江路{i + 1}号",
                "households": h,
                "geometry": pt(x, y),
            }
            for i, (c, x, y, h) in enumerate(buildings)
        ],
        "centers": [{"code": c, "name": f"{c}中心", "geometry": pt(x, y)} for c, x, y in centers],
    }
    for kind, features in rows.items():
        if features:  # none: that kind is never imported
            f.frame(features).to_file(folder / f"{kind}.geojson")
            import_file(engine, settings, kind, folder / f"{kind}.geojson", ImportOptions())


def walks(engine: Engine) -> dict[str, tuple[str | None, float | None, int | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT building_code, center_code, walk_m, tier_min FROM coverage_buildings")
        )
        return {code: (center, walk, tier) for code, center, walk, tier in rows}


# -- topology (pure) ------------------------------------------------------------------------
def test_lines_are_split_where_they_share_a_vertex_or_one_ends_on_the_other():
    cross = [line((0, 0), (100, 0), (200, 0)), line((100, -100), (100, 0), (100, 100))]
    topo = topology.build(np.array(cross, dtype=object), 0.05)
    assert len(topo.geoms) == 4 and topo.n_nodes == 5
    tee = [line((0, 0), (200, 0)), line((100, 0), (100, 100))]  # no vertex at (100, 0)
    topo = topology.build(np.array(tee, dtype=object), 0.05)
    assert len(topo.geoms) == 3 and topo.n_nodes == 4
    assert sorted(np.round(shapely.length(topo.geoms))) == [100, 100, 100]


def test_a_crossing_without_shared_vertex_is_a_bridge_unless_asked_to_join():
    bridge = np.array([line((0, 0), (200, 0)), line((100, -100), (100, 100))], dtype=object)
    topo = topology.build(bridge, 0.05)
    assert len(topo.geoms) == 2 and set(topo.component) == {0, 1}
    joined = topology.build(bridge, 0.05, split_crossings=True)
    assert len(joined.geoms) == 4 and set(joined.component) == {0}


# -- shapes (pure) ----------------------------------------------------------------------------
def test_straight_streets_join_into_strokes_and_buffer_to_the_same_area():
    # a 3 x 3 lattice of 100 m segments plus a dead end turning 90 degrees at (300, 300)
    pieces = [line((x, y), (x + 100, y)) for y in (0, 100, 200, 300) for x in (0, 100, 200)]
    pieces += [line((x, y), (x, y + 100)) for x in (0, 100, 200, 300) for y in (0, 100, 200)]
    pieces += [line((300, 300), (300, 350))]
    lines = np.array(pieces, dtype=object)
    joined = shapely.get_parts(shapes.strokes(lines))
    # 4 east-west streets, 4 north-south ones, the last one carried on by the dead end
    assert len(joined) == 8
    assert sorted(np.round(shapely.length(joined))) == [300] * 7 + [350]
    by_piece = shapely.buffer(shapely.multilinestrings(lines), 25, quad_segs=2)
    by_stroke = shapes.outline(lines, 25)
    assert shapely.area(shapely.symmetric_difference(by_piece, by_stroke)) < 1e-6 * shapely.area(
        by_piece
    )
    corner = np.array([line((0, 0), (100, 0)), line((100, 0), (100, 100))], dtype=object)
    assert len(shapely.get_parts(shapes.strokes(corner))) == 2  # a right turn is no stroke


SQUARE_AT_400 = [
    line((400, 50), (500, 50)),
    line((500, 50), (500, 150)),
    line((500, 150), (400, 150)),
    line((400, 150), (400, 50)),
]
SMALL_SQUARE = [
    line((40, 10), (60, 10)),
    line((60, 10), (60, 30)),
    line((60, 30), (40, 30)),
    line((40, 30), (40, 10)),
]


def _block_sets(lines: list[LineString]) -> tuple[object, set[bytes]]:
    topo = topology.build(np.array(lines, dtype=object), 0.05)
    r = topo.routable
    traced = shapes.planar_faces(topo.geoms[r], topo.source[r], topo.target[r])
    blocks = shapes.faces(topo.geoms[r], topo.source[r], topo.target[r])
    found = blocks.polygons
    noded = shapely.get_parts(shapely.node(shapely.multilinestrings(topo.geoms[r])))
    expected = shapely.get_parts(shapely.polygonize(noded))
    assert {g.wkb for g in shapely.normalize(found)} == {g.wkb for g in shapely.normalize(expected)}
    # every stretch of each block's outline lies on a street said to bound it, and no other
    for k, block in enumerate(found):
        mine = topo.geoms[r][blocks.edge[blocks.face == k]]
        assert (
            shapely.difference(block.boundary, shapely.buffer(shapely.union_all(mine), 1e-6)).length
            < 1e-6
        )
        assert (
            shapely.length(shapely.intersection(mine, shapely.buffer(block.boundary, 1e-6))) > 1
        ).all()
    return traced, {g.wkb for g in shapely.normalize(expected)}


DIAMOND = [
    line((50, 0), (60, 10)),
    line((60, 10), (50, 20)),
    line((50, 20), (40, 10)),
    line((40, 10), (50, 0)),
]
LATTICE = [line((x, y), (x + 100, y)) for y in (0, 100, 200) for x in (0, 100)] + [
    line((x, y), (x, y + 100)) for x in (0, 100, 200) for y in (0, 100)
]


@pytest.mark.parametrize(
    ("name", "extra", "traced"),
    [
        ("lattice", [], True),
        # a dead end into a block, a cul-de-sac off the edge, a bent street with inner vertices
        (
            "dead ends",
            [line((50, 0), (50, 40)), line((200, 200), (260, 260), (300, 260))],
            True,
        ),
        ("T-junction", [line((0, 50), (100, 50))], True),
        # two blocks joined by one street: each still a block
        ("barbell", [line((200, 100), (400, 100)), *SQUARE_AT_400], True),
        # a block hanging inside another by one street: a block with a hole, traced too
        ("keyhole", [line((0, 20), (40, 20)), *SMALL_SQUARE], True),
        # a block touching the one around it at a single node: a hole touching the outline
        ("pinch", DIAMOND, True),
        # a bridge over the lattice, no node where it crosses: polygonize
        ("bridge", [line((0, 200), (200, 50))], False),
    ],
)
def test_blocks_traced_on_the_graph_are_polygonize_s(name, extra, traced):
    found, expected = _block_sets(LATTICE + extra)
    assert expected
    assert (found is not None) == traced, name


def test_each_point_counts_in_the_first_area_covering_it_boundary_included():
    areas = np.array([f.rect(0, 0, 200, 200), f.rect(100, 0, 300, 200)], dtype=object)
    points = np.array([pt(150, 50), pt(250, 50), pt(200, 0), pt(400, 50)], dtype=object)
    assert figures.first_cover(areas, points).tolist() == [0, 1, 0, -1]
    assert figures.first_cover(areas[:0], points).tolist() == [-1] * 4


def test_areas_agree_with_postgis_geography(db: Engine):
    shapes_m = np.array(
        [
            f.rect(0, 0, 1000, 1000),
            shapely.buffer(line((0, 0), (3000, 0), (3000, 2000)), 25),
            f.rect(-20000, -20000, 20000, 20000).difference(f.rect(0, 0, 500, 500)),
        ],
        dtype=object,
    )
    lonlat_shapes = f.frame([{"geometry": g} for g in shapes_m]).geometry.to_numpy()
    ours = topology.areas_m2(shapes_m, CRS(f.UTM), lonlat_shapes)
    with db.connect() as conn:
        theirs = [
            conn.execute(
                text("SELECT ST_Area(ST_GeomFromWKB(:g, 4326)::geography)"), {"g": g.wkb}
            ).scalar_one()
            for g in lonlat_shapes
        ]
    assert ours == pytest.approx(theirs, rel=1e-6)


# -- distances --------------------------------------------------------------------------------
def _brute_within(graph, sources, targets, limit):  # type: ignore[no-untyped-def]
    """Every (source, target) walk by full Dijkstra from each source's entry point."""
    from scipy.sparse.csgraph import dijkstra

    from geo_service.coverage.network import _with_sources

    matrix, virt = _with_sources(graph, sources)
    dist = dijkstra(matrix, directed=True, indices=virt)[:, : graph.n_nodes]
    out = set()
    for s in range(len(sources)):
        for t in range(len(targets)):
            e, fr = targets.edge[t], targets.frac[t]
            length = graph.length[e]
            walk = min(
                dist[s, graph.source[e]] + fr * length, dist[s, graph.target[e]] + (1 - fr) * length
            )
            if sources.edge[s] == e:
                walk = min(walk, sources.access[s] + abs(fr - sources.frac[s]) * length)
            walk += targets.access[t]
            if walk <= limit:
                out.add((s, t, round(float(walk), 6)))
    return out


@pytest.mark.parametrize("limit", [150.0, 300.0, 1200.0, 5000.0])
def test_walks_within_a_limit_match_a_full_dijkstra_long_edges_included(limit: float):
    # 0 -2000 m- 1 -100 m- 2 -700 m- 3, and 1 -300 m- 4: one street longer than the limit
    from geo_service.coverage.network import Entries, Graph, within

    graph = Graph(
        5, np.array([0, 1, 2, 1]), np.array([1, 2, 3, 4]), np.array([2000.0, 100.0, 700.0, 300.0])
    )
    sources = Entries(np.array([0, 2, 3]), np.array([0.5, 0.1, 1.0]), np.array([10.0, 0.0, 5.0]))
    rng = np.random.default_rng(int(limit))
    targets = Entries(rng.integers(0, 4, 40), rng.random(40), rng.uniform(0, 50, 40))
    s, t, d = within(graph, sources, targets, limit, chunk=2)
    got = {(int(a), int(b), round(float(c), 6)) for a, b, c in zip(s, t, d, strict=True)}
    assert len(got) == len(s)  # each pair once
    assert got == _brute_within(graph, sources, targets, limit)


@pytest.mark.parametrize(
    ("covers", "k", "method", "total", "first"),
    [
        # sites far apart: greedy covers what the k best would alone, proven optimal at once
        ({0: [0, 1], 1: [2], 2: [3, 4, 5]}, 2, "greedy", 5, 2),
        # the trap: greedy takes site 0 (4 buildings), then 1 more; sites 1 + 2 cover 6, found
        # by one swap (interchange) and proven by the Lagrangian relaxation before any solver
        ({0: [0, 1, 3, 4], 1: [0, 1, 2], 2: [3, 4, 5]}, 2, "interchange", 6, 1),
        # a second site would gain nothing: fewer sites than asked, said so
        ({0: [0, 1], 1: []}, 2, "greedy", 2, 0),
    ],
)
def test_siting_is_optimal_and_says_how_it_knows(
    covers: dict[int, list[int]], k: int, method: str, total: int, first: int
):
    from geo_service.coverage import siting

    site = np.array([s for s, bs in covers.items() for _ in bs])
    building = np.array([b for bs in covers.values() for b in bs])
    choice = siting.mclp(len(covers), site, building, np.ones(6), k, time_limit_s=10)
    assert (choice.method, choice.optimal, choice.total) == (method, True, total)
    assert choice.upper_bound == total and choice.sites[0] == first
    assert sum(choice.gains) == total
    assert (len(choice.sites) < k) == any("only" in n for n in choice.notes)


def test_greedy_proven_close_enough_still_gets_the_better_sites_when_cheap():
    from geo_service.coverage import siting

    # the trap above: greedy covers 5 of a best possible 6, and its bound is 6 (only six
    # buildings can be covered at all), so greedy is proven within 1/6; one swap finds 6
    site = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    building = np.array([0, 1, 3, 4, 0, 1, 2, 3, 4, 5])
    for gap in (0.2, 0.1):
        solved = siting.mclp(3, site, building, np.ones(6), 2, time_limit_s=10, gap=gap)
        assert (solved.optimal, solved.total, solved.stopped) == (True, 6, None)


def test_partial_edges_and_access_legs_count(db: Engine, settings: Settings, tmp_path: Path):
    # one 1 km street; the centre stands 10 m off it at x=100, the building 20 m off at x=700
    plant(
        db, settings, tmp_path, [line((0, 0), (1000, 0))], [("B1", 700, 20, 5)], [("C1", 100, -10)]
    )
    compute.compute(db, settings)
    center, walk, tier = walks(db)["B1"]
    assert center == "C1"
    assert walk == pytest.approx(10 + 600 + 20, abs=1.0)  # not via a node at either end
    assert tier == 10  # 630 m at 4 km/h is 9.5 minutes
    with db.connect() as conn:
        stored = conn.execute(text("SELECT access_m, edge_frac FROM coverage_centers")).one()
    assert stored == pytest.approx((10, 0.1), abs=1e-6)  # what-if starts from it


@pytest.mark.parametrize("code", ["B\\1", "B\t2", "楼栋-3", "B 4", "B\n5"])
def test_any_building_code_comes_back_as_it_was(
    db: Engine, settings: Settings, tmp_path: Path, code: str
):
    plant(db, settings, tmp_path, [line((0, 0), (1000, 0))], [(code, 700, 20, 5)], [("C1", 100, 0)])
    compute.compute(db, settings)
    assert walks(db)[code][0] == "C1"


@pytest.mark.parametrize("buildings", [[], [("B1", 700, 20, 5), ("B2", 300, -15, 7)]])
def test_compute_before_any_centre_is_imported_leaves_every_building_in_a_gap(
    db: Engine, settings: Settings, tmp_path: Path, buildings: list[tuple[str, float, float, int]]
):
    # streets (and buildings) come first, centres later: a planner computes what is there
    plant(db, settings, tmp_path, [line((0, 0), (1000, 0))], buildings, [])
    result = compute.compute(db, settings)
    assert (result["centers"], result["covered_buildings"]) == (0, 0)
    assert {code: tier for code, (_, _, tier) in walks(db).items()} == {
        code: None for code, *_ in buildings
    }
    with db.connect() as conn:
        tiers = conn.execute(text("SELECT tier_min, area_m2 FROM coverage_tiers")).all()
        gaps = conn.execute(
            text(
                "SELECT count(*), coalesce(sum(buildings), 0), coalesce(sum(households), 0) "
                "FROM coverage_gaps"
            )
        ).one()
    assert sorted(tiers) == [(5, 0.0), (10, 0.0), (15, 0.0)]  # no centre reaches anywhere
    assert tuple(gaps)[1:] == (len(buildings), sum(h for *_, h in buildings))
    # what would a first centre at x=500 bring? Every building, within 5 minutes
    lon, lat = lonlat(500, 0)
    gain = planning.what_if(db, settings, [{"lon": lon, "lat": lat}], [])["city"]["change"]
    assert [t["households"] for t in gain] == [sum(h for *_, h in buildings)] * 3


def test_tiers_follow_walking_speed_and_households_add_up(
    db: Engine, settings: Settings, tmp_path: Path
):
    # 4 km/h: 5 min = 333 m, 10 min = 667 m, 15 min = 1,000 m
    plant(
        db,
        settings,
        tmp_path,
        [line((0, 0), (3000, 0))],
        [("B5", 300, 0, 10), ("B10", 600, 0, 20), ("B15", 950, 0, 30), ("BX", 1200, 0, 40)],
        [("C1", 0, 0)],
    )
    compute.compute(db, settings)
    assert {code: tier for code, (_, _, tier) in walks(db).items()} == {
        "B5": 5,
        "B10": 10,
        "B15": 15,
        "BX": None,
    }
    city = service.summary(db, settings)["city"]
    assert [(t["tier_min"], t["buildings"], t["households"]) for t in city["tiers"]] == [
        (5, 1, 10),
        (10, 2, 30),
        (15, 3, 60),
    ]
    assert city["households"] == 100 and city["tiers"][-1]["household_share"] == 0.6
    slower = settings.updated(coverage={"walk_speed_kmh": 3.0})
    assert service.summary(db, slower)["stale_because"] == ["coverage settings changed"]


def test_river_with_one_bridge_leaves_the_building_across_uncovered(
    db: Engine, settings: Settings, tmp_path: Path
):
    # Two banks 200 m apart, one bridge 1 km east. The centre is on the south bank; the
    # building faces it 210 m away across the water: a straight-line buffer covers it,
    # the streets do not (2.2 km round by the bridge).
    roads = [
        line((-200, 0), (1000, 0)),
        line((-200, 200), (1000, 200)),
        line((1000, 0), (1000, 200)),  # the bridge
    ]
    plant(db, settings, tmp_path, roads, [("B1", 0, 210, 8), ("B2", 600, -10, 8)], [("C1", 0, 0)])
    compute.compute(db, settings)
    result = walks(db)
    straight = pt(0, 210).distance(pt(0, 0))
    assert straight < 1000 / 4  # well inside any straight-line circle of 15 minutes
    center, walk, tier = result["B1"]
    assert center == "C1" and walk == pytest.approx(1000 + 200 + 1000 + 10, abs=2)
    assert tier is None
    assert result["B2"][2] == 10  # 610 m along the same bank: covered
    page = service.buildings(db, settings, store.BuildingQuery(uncovered=True))
    assert [b["code"] for b in page["items"]] == ["B1"]


def test_isolated_pieces_are_listed_and_not_routed_on(
    db: Engine, settings: Settings, tmp_path: Path
):
    roads = [line((0, 0), (500, 0)), line((0, 1000), (100, 1000))]  # the second is alone
    plant(
        db,
        settings,
        tmp_path,
        roads,
        [("NEAR", 50, 1010, 3), ("MAIN", 400, 10, 3)],
        [("C1", 0, 0), ("C2", 60, 1000)],
    )
    report = compute.compute(db, settings)
    assert report["isolated_pieces"] == 1
    # the centre on the isolated piece is more than 300 m from the routable network
    assert report["centers_without_street"] == ["C2"]
    summary = service.summary(db, settings)
    [piece] = summary["isolated_pieces"]
    assert piece["edges"] == 1 and piece["length_m"] == pytest.approx(100, abs=1)
    result = walks(db)
    assert result["NEAR"] == (None, None, None)  # unreachable, not silently "covered"
    assert summary["city"]["unreachable_buildings"] == 1


# -- stale marking, what-if, siting, shapes, API ----------------------------------------------
@pytest.fixture
def lattice(db: Engine, settings: Settings, tmp_path: Path) -> Engine:
    """A 3 km × 1 km street lattice (100 m blocks) with buildings along the streets and
    two centres in the west, so the east is uncovered."""
    # one segment per block side: streets meet at shared end points, as in city GIS data
    roads = [line((x, y), (x + 100, y)) for y in range(0, 1001, 100) for x in range(0, 3000, 100)]
    roads += [line((x, y), (x, y + 100)) for x in range(0, 3001, 100) for y in range(0, 1000, 100)]
    buildings = [
        (f"B{x:04d}{y:04d}", x + 50, y + 15, 10 + (x // 100) % 3)
        for x in range(0, 3000, 100)
        for y in range(0, 1000, 200)
    ]
    f.write(f.communities(), tmp_path / "communities.shp")
    import_file(db, settings, "communities", tmp_path / "communities.shp", ImportOptions())
    plant(db, settings, tmp_path, roads, buildings, [("C1", 100, 500), ("C2", 300, 300)])
    compute.compute(db, settings)
    return db


@pytest.fixture
def client(lattice: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=lattice)) as client:
        yield client


def test_importing_centres_makes_coverage_stale_until_recomputed(
    lattice: Engine, settings: Settings, tmp_path: Path, client: TestClient
):
    assert client.get("/api/v1/coverage/summary").json()["stale"] is False
    moved = f.frame([{"code": "C1", "name": "C1中心", "geometry": pt(1500, 500)}])
    moved.to_file(tmp_path / "moved.geojson")
    import_file(lattice, settings, "centers", tmp_path / "moved.geojson", ImportOptions())
    body = client.get("/api/v1/coverage/summary").json()
    assert body["stale"] is True and body["stale_because"][0].startswith("centers imported")
    assert client.get("/api/v1/coverage/communities").json()["stale"] is True
    compute.compute(lattice, settings)
    assert client.get("/api/v1/coverage/summary").json()["stale"] is False


def test_buildings_outside_every_grid_count_in_the_community_they_lie_in(client: TestClient):
    # The lattice has two 400 m communities at its south-west corner and no grids: the
    # buildings there (4 columns x 2 rows each) count in them, the rest in none.
    items = client.get("/api/v1/coverage/communities").json()["items"]
    counted = {item["code"]: item["buildings"] for item in items}
    assert counted == {"340705001001": 8, "340705001002": 8, None: 150 - 16}


def test_ready_only_once_the_model_what_if_reads_is_loaded(lattice: Engine, settings: Settings):
    """A load balancer waiting for /readyz sends the first what-if to a server holding its
    model: that what-if does not wait for the load."""
    app = create_app(settings, engine=lattice)
    with TestClient(app) as client:
        while (ready := client.get("/readyz")).status_code == 503:
            assert ready.headers["Retry-After"] == "1"
            assert set(ready.json()["warming"]) <= {"coverage model", "routes"}
            time.sleep(0.05)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert app.state.coverage_models.holds(lattice)
        assert client.get("/livez").status_code == 200


def test_what_if_answers_without_changing_stored_results(lattice: Engine, client: TestClient):
    before_rows = walks(lattice)
    summary = client.get("/api/v1/coverage/summary").json()
    same = client.post("/api/v1/coverage/what-if", json={}).json()
    assert same["city"]["after"]["tiers"] == summary["city"]["tiers"]  # one definition
    lon, lat = lonlat(1600, 500)
    body = client.post(
        "/api/v1/coverage/what-if", json={"add": [{"lon": lon, "lat": lat}], "remove": ["C2"]}
    ).json()
    gained = body["city"]["change"][-1]["households"]
    assert gained > 0
    assert body["removed"] == ["C2"] and body["added"][0]["on_network"] is True
    assert sum(c["change"][-1]["households"] for c in body["communities"]) == gained
    assert walks(lattice) == before_rows  # nothing stored
    assert client.get("/api/v1/coverage/summary").json() == summary


def test_suggested_sites_gain_what_a_recompute_with_them_gains(lattice: Engine, client: TestClient):
    body = client.get("/api/v1/coverage/suggest", params={"k": 2}).json()
    assert body["optimal"] is True
    gains = [s["households_gained"] for s in body["sites"]]
    assert len(gains) == 2 and gains == sorted(gains, reverse=True) and gains[-1] > 0
    add = [{"lon": s["lon"], "lat": s["lat"]} for s in body["sites"]]
    check = client.post("/api/v1/coverage/what-if", json={"add": add}).json()
    assert check["city"]["change"][-1]["households"] == body["households_gained"] == sum(gains)


def test_suggest_from_given_candidates_picks_the_better_one(client: TestClient):
    near = "{:f},{:f}".format(*lonlat(300, 300))  # beside C2: gains little
    far = "{:f},{:f}".format(*lonlat(1500, 500))
    body = client.get(
        "/api/v1/coverage/suggest", params={"k": 1, "candidates": f"{near};{far}"}
    ).json()
    assert body["candidates"] == {"count": 2, "from": "given"}
    assert (body["sites"][0]["lon"], body["sites"][0]["lat"]) == pytest.approx(
        lonlat(1500, 500), abs=1e-6
    )


def test_isochrones_follow_the_streets_and_gaps_hold_the_uncovered(client: TestClient):
    iso = client.get("/api/v1/coverage/isochrones", params={"center": "C1", "tier": 5}).json()
    [feature] = iso["features"]
    shape = shapely.geometry.shape(feature["geometry"])
    assert shape.contains(Point(lonlat(100, 800)))  # 300 m up the street
    assert not shape.contains(Point(lonlat(100, 900)))  # 400 m up the street
    # 283 m in a straight line, inside any 333 m circle; 400 m on foot round the block
    assert not shape.contains(Point(lonlat(300, 700)))
    # a block walked round within 5 minutes is filled: its middle is 50 m from any street
    assert shape.contains(Point(lonlat(150, 550)))
    # the street on the lattice's edge is drawn: only one of its sides is a filled block
    assert shape.contains(Point(lonlat(-12, 550)))
    # one whose far side is not reached keeps only the street edges' 25 m
    assert not shape.contains(Point(lonlat(250, 650)))
    tiers = client.get("/api/v1/coverage/tiers").json()
    assert [t["properties"]["tier_min"] for t in tiers["features"]] == [5, 10, 15]
    gaps = client.get("/api/v1/coverage/gaps").json()["features"]
    uncovered = client.get(
        "/api/v1/coverage/buildings", params={"uncovered": "true", "limit": 1000}
    ).json()
    assert gaps and sum(g["properties"]["buildings"] for g in gaps) == uncovered["total"]
    far = Point(uncovered["items"][0]["lon"], uncovered["items"][0]["lat"])
    assert any(shapely.geometry.shape(g["geometry"]).contains(far) for g in gaps)


def test_building_detail_gains_its_walk(client: TestClient):
    body = client.get("/api/v1/buildings/B01000400").json()  # 165 m from C1 by the streets
    assert body["coverage"]["center_code"] == "C1" and body["coverage"]["tier_min"] == 5


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "fragment"),
    [
        ("post", "/what-if", {"remove": ["C999"]}, 422, "'C999'"),
        ("post", "/what-if", {"add": [{"lon": 200, "lat": 30.9}]}, 422, "200"),
        ("post", "/what-if", {"add": [{"lon": 117.8}]}, 422, "add.0.lat is required"),
        ("post", "/what-if", {"remove": "C1"}, 422, "'C1'"),
        ("get", "/suggest", {"k": 21}, 422, "k=21"),
        ("get", "/suggest", {"k": 3, "candidates": "117.81,30.93"}, 422, "k=3"),
        ("get", "/suggest", {"k": 1, "candidates": "117.81"}, 422, "'117.81'"),
        ("get", "/suggest", {"k": 1, "candidates": "120.5,30.93"}, 422, "120.500000,30.930000"),
        ("get", "/grids", {"community": "999"}, 404, "'999'"),
        ("get", "/buildings", {"tier": 7}, 422, "tier=7"),
    ],
)
def test_bad_input_is_a_clear_4xx_naming_the_value(
    client: TestClient, method, path, payload, status, fragment
):
    if method == "post":
        response = client.post(f"/api/v1/coverage{path}", json=payload)
    else:
        response = client.get(f"/api/v1/coverage{path}", params=payload)
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]


def test_summary_before_any_compute_says_how_to_get_one(db: Engine, settings: Settings):
    with TestClient(create_app(settings, engine=db)) as client:
        response = client.get("/api/v1/coverage/summary")
    assert response.status_code == 404 and "coverage compute" in response.json()["message"]


def test_cli_compute_report_export(lattice: Engine, db_url: str, tmp_path: Path):
    runner, env = CliRunner(), {"GEO_DATABASE_URL": db_url}
    result = runner.invoke(cli_app, ["coverage", "compute"], env=env)
    assert result.exit_code == 0, result.output
    assert "150 buildings" in result.output
    result = runner.invoke(cli_app, ["coverage", "report", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert '"stale": false' in result.output and '"communities"' in result.output
    out = tmp_path / "walks.csv"
    result = runner.invoke(cli_app, ["coverage", "export", str(out)], env=env)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "building_code,center_code,walk_m,minutes,tier_min" and len(lines) == 151
    _, center, walk, minutes, _ = lines[1].split(",")
    assert center in ("C1", "C2") and float(minutes) == pytest.approx(
        float(walk) / (4000 / 60), abs=0.01
    )


@pytest.mark.slow
def test_suggested_sites_on_the_demo_city_gain_what_recomputing_with_them_gains(
    db: Engine, settings: Settings, tmp_path: Path
):
    from geo_service.packaged import demo_dir

    for kind in ("communities", "grids", "buildings", "centers", "roads"):
        import_file(db, settings, kind, demo_dir() / f"{kind}.shp", ImportOptions())
    compute.compute(db, settings, shapes_too=False)
    before = service.summary(db, settings)["city"]["tiers"][-1]["households"]
    body = planning.suggest(db, settings, 3)
    assert len(body["sites"]) == 3 and body["households_gained"] > 0
    # import the sites as real centres and recompute everything from scratch
    f.frame(
        [
            {"code": f"S{s['rank']}", "name": "新中心", "geometry": Point(s["lon"], s["lat"])}
            for s in body["sites"]
        ],
        crs="EPSG:4326",
    ).to_file(tmp_path / "sites.geojson")
    import_file(db, settings, "centers", tmp_path / "sites.geojson", ImportOptions())
    assert service.summary(db, settings)["stale"] is True
    compute.compute(db, settings, shapes_too=False)
    after = service.summary(db, settings)["city"]["tiers"][-1]["households"]
    assert after - before == body["households_gained"]


def test_a_failed_compute_keeps_the_last_results(lattice: Engine, settings: Settings):
    before = walks(lattice)
    with lattice.begin() as conn:
        conn.execute(text("UPDATE street_edges SET walkable = false"))
    with pytest.raises(InvalidInput, match="no walkable streets"):
        compute.compute(lattice, settings)
    assert walks(lattice) == before
    assert service.summary(lattice, settings)["city"]["buildings"] == 150


def test_a_failed_compute_leaves_garbage_collection_on(lattice: Engine, settings: Settings):
    # compute pauses the cyclic collector while it works: a server must not be left without
    import gc

    with lattice.begin() as conn:
        conn.execute(text("UPDATE street_edges SET walkable = false"))
    assert gc.isenabled()
    with pytest.raises(InvalidInput, match="no walkable streets"):
        compute.compute(lattice, settings)
    assert gc.isenabled()


def test_collector_pauses_held_by_several_threads_end_with_the_last():
    import gc
    import threading

    from geo_service.coverage import collector

    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with collector.paused():
            inside.set()
            leave.wait(10)

    other = threading.Thread(target=hold)
    other.start()
    inside.wait(10)
    with collector.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's pause still holds
    leave.set()
    other.join(10)
    assert gc.isenabled()


def test_what_if_before_anything_changes_is_each_communitys_stored_figures(client: TestClient):
    # the model reads every building's community in bulk: its figures are the stored ones
    stored = {
        item["code"]: {k: v for k, v in item.items() if k not in ("code", "name")}
        for item in client.get("/api/v1/coverage/communities").json()["items"]
    }
    body = client.post("/api/v1/coverage/what-if", json={}).json()
    assert {item["code"]: item["before"] for item in body["communities"]} == stored
    assert all(item["before"] == item["after"] for item in body["communities"])
    assert len(stored) == 3  # two communities and the buildings outside both


def test_a_compute_committed_while_the_model_loads_gives_the_newer_model(
    lattice: Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # The model is read by several statements on two connections: a compute committing
    # between them must not leave a model made of two computes.
    moved = f.frame([{"code": "C1", "name": "C1中心", "geometry": pt(1500, 500)}])
    moved.to_file(tmp_path / "moved.geojson")
    edge_lines = store.edge_lines
    computed = []

    def compute_meanwhile(conn):  # type: ignore[no-untyped-def]
        if not computed:
            import_file(lattice, settings, "centers", tmp_path / "moved.geojson", ImportOptions())
            computed.append(compute.compute(lattice, settings)["run"])
        return edge_lines(conn)

    monkeypatch.setattr(store, "edge_lines", compute_meanwhile)
    model, state = planning.Models().get(lattice, settings)
    assert model.run[0] == computed[0] and state["stale"] is False
    monkeypatch.setattr(store, "edge_lines", edge_lines)
    fresh, _ = planning.Models().get(lattice, settings)
    assert model.base_city == fresh.base_city and model.base_communities == fresh.base_communities
    assert np.array_equal(model.centers.edge, fresh.centers.edge)


def test_packed_rows_read_back_what_postgresql_packed(db: Engine):
    from geo_service.db import bulk

    fields = (("id", ">i4"), ("edge", ">i8"), ("walk", ">f8"))
    with db.connect() as conn:
        data, empty = conn.execute(
            text(
                "SELECT string_agg(int4send(i) || int8send(e) || float8send(w), ''::bytea), "
                "(SELECT string_agg(int4send(1), ''::bytea) WHERE false) "
                "FROM (VALUES (7, -1::int8, 'Infinity'::float8), (-2, 5000000000, 0.1)) v(i, e, w)"
            )
        ).one()
    rows = bulk.packed_rows(data, fields)
    assert rows["id"].tolist() == [7, -2] and rows["edge"].tolist() == [-1, 5_000_000_000]
    assert rows["walk"].tolist() == [float("inf"), 0.1]
    assert len(bulk.packed_rows(empty, fields)) == 0  # no rows: NULL
    with pytest.raises(ValueError, match="do not hold rows of 20 bytes"):
        bulk.packed_rows(data[:-1], fields)
