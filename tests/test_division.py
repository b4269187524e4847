"""Re-division proposals: blocks, the library's partition against an exhaustive search, stored
proposals over the API and the CLI, and exports that import back as grids."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from scipy.sparse import coo_matrix
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.db.engine import drop_database, ensure_schema, fresh_database, make_engine
from geo_service.division import blocks
from geo_service.division.partition import Problem, Range, divide, floor
from geo_service.division.proposals import Request, export, propose
from geo_service.errors import Conflict, InvalidInput, NotFound
from geo_service.grids import edits, topology_store
from geo_service.grids.qa import grid_qa
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests.conftest import DATA_TABLES, ensure_token

DEMO = Path(__file__).resolve().parent.parent / "shapefiles" / "demo"
CLI = str(Path(sys.executable).parent / "geo-service")
COMMUNITY = "340705001001"
RANGE = Range(300, 200, 400)


# -- blocks (pure) ------------------------------------------------------------------------------
def square(x: float, y: float, size: float = 100.0) -> shapely.Polygon:
    return shapely.box(x, y, x + size, y + size)


def test_blocks_join_estates_and_empty_blocks_and_say_where_islands_went() -> None:
    # a 3 x 2 block community, and a lone block 500 m east of it (an island)
    faces = np.asarray(
        [square(100 * i, 100 * j) for j in range(2) for i in range(3)] + [square(800, 0)],
        dtype=object,
    )
    shape = shapely.union_all([*faces[:6], shapely.box(300, 0, 900, 100)])
    # buildings: an estate (key 7) over blocks 0 and 1; block 2 empty; one in the island
    xy = [(50, 50), (150, 50), (50, 150), (150, 150), (250, 150), (850, 50)]
    households = np.array([120, 80, 150, 150, 150, 90])
    estate = np.array([7, 7, -1, -1, -1, -1])
    u = blocks.units(
        shape,
        faces,
        shapely.points(xy),
        households,
        estate,
        np.zeros(6, dtype=np.int64),
        max_households=400,
    )
    # the estate's two blocks are one piece; no piece holds no households
    assert u.building_unit[0] == u.building_unit[1]
    assert (u.households > 0).all() and u.households.sum() == households.sum()
    # the land between the blocks and the island is a piece too: the pieces tile the community
    assert shapely.union_all(u.polygons).symmetric_difference(shape).area < 1e-6
    assert any("estates spread over several blocks kept whole" in n for n in u.notes)
    assert any("blocks with no buildings joined" in n for n in u.notes)
    # every piece reaches every other through shared boundaries or the island's link
    from scipy.sparse.csgraph import connected_components

    assert connected_components(u.adjacency, directed=False)[0] == 1


def test_an_island_touching_nothing_is_linked_to_the_nearest_and_named() -> None:
    faces = np.asarray([square(0, 0), square(100, 0), square(600, 0)], dtype=object)
    shape = shapely.MultiPolygon(list(shapely.get_parts(shapely.union_all(faces))))
    u = blocks.units(
        shape,
        faces,
        shapely.points([(50, 50), (150, 50), (650, 50)]),
        np.array([200, 200, 200]),
        np.full(3, -1),
        np.full(3, -1),
        max_households=400,
        where=lambda g: f"at {g.x:.0f}",
    )
    islands = [n for n in u.notes if n.startswith("1 islands")]
    assert islands and "at 650" in islands[0]
    assert u.adjacency[u.building_unit[2]].nnz == 1  # linked to exactly its nearest


def test_two_islands_nearest_each_other_are_both_linked_to_the_city() -> None:
    # two blocks, and two islands 400 m and 500 m east of them, 100 m from each other
    faces = np.asarray([square(0, 0), square(100, 0), square(600, 0), square(800, 0)])
    shape = shapely.MultiPolygon(list(shapely.get_parts(shapely.union_all(faces))))
    u = blocks.units(
        shape,
        faces,
        shapely.points([(50, 50), (150, 50), (650, 50), (850, 50)]),
        np.array([200, 200, 200, 200]),
        np.full(4, -1),
        np.full(4, -1),
        max_households=400,
    )
    from scipy.sparse.csgraph import connected_components

    assert connected_components(u.adjacency, directed=False)[0] == 1
    assert any(n.startswith("2 islands") for n in u.notes)


# -- the library against an exhaustive search ---------------------------------------------------
def _partitions(n: int) -> Iterator[list[int]]:
    """Every set partition of range(n), as a label per item (restricted growth strings)."""

    def grow(prefix: list[int], top: int) -> Iterator[list[int]]:
        if len(prefix) == n:
            yield prefix
            return
        for label in range(top + 2):
            yield from grow([*prefix, label], max(top, label))

    yield from grow([0], 0)


def _contiguous(labels: list[int], adjacency: np.ndarray) -> bool:
    from scipy.sparse.csgraph import connected_components

    lab = np.asarray(labels)
    for r in set(labels):
        idx = np.flatnonzero(lab == r)
        if connected_components(adjacency[np.ix_(idx, idx)], directed=False)[0] != 1:
            return False
    return True


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maxp_reaches_the_exhaustive_optimum_on_a_tiny_community(seed: int) -> None:
    # 7 blocks in a 2-row strip; households drawn at random around half the target
    rng = np.random.default_rng(seed)
    households = rng.integers(60, 240, 7)
    cells = [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (2, 1)]
    a, b = zip(
        *[(i, j) for i, j in itertools.combinations(range(7), 2)
          if abs(cells[i][0] - cells[j][0]) + abs(cells[i][1] - cells[j][1]) == 1],
        strict=True,
    )  # fmt: skip
    dense = np.zeros((7, 7))
    dense[a, b] = dense[b, a] = 100.0
    problem = Problem(
        coo_matrix(dense).tocsr(),
        households,
        np.asarray(cells, dtype=float) * 100,
        np.zeros(7, dtype=np.int64),
        RANGE,
        construction_iterations=50,
    )
    least = floor(problem)

    def objective(labels: list[int] | np.ndarray) -> tuple[int, float]:
        """max-p's: the most regions each holding the floor, then the nearest the target."""
        sums = np.bincount(np.asarray(labels), weights=households)
        return -len(sums), float(((sums - RANGE.target) ** 2).sum())

    feasible = [
        labels
        for labels in _partitions(7)
        if np.bincount(labels, weights=households).min() >= least and _contiguous(labels, dense)
    ]
    best = min(objective(labels) for labels in feasible)
    found = divide(problem, "maxp").labels
    assert _contiguous(list(found), dense)
    assert np.bincount(found, weights=households).min() >= least
    assert objective(found) <= best


def test_a_range_that_is_not_one_is_refused_before_any_work(settings: Settings) -> None:
    for request, message in [
        (Request([COMMUNITY], target=0), "target households must be a positive number"),
        (Request([COMMUNITY], minimum=500, maximum=400), "min households 500 is above max 400"),
        (Request([COMMUNITY], target=900), "target households 900 is outside the range"),
        (Request([COMMUNITY], stability=-1.0), "--stability must be a number of at least 0"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            request.options(settings)


# -- stored proposals on the demo city ----------------------------------------------------------
@pytest.fixture(scope="module")
def demo(engine: Engine, settings: Settings) -> Engine:
    """The demo city's communities, grids, buildings and roads, imported once."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    for kind in ("communities", "grids", "buildings", "roads"):
        import_file(engine, settings, kind, DEMO / f"{kind}.shp", ImportOptions())
    import_file(engine, settings, "workers", DEMO / "workers.csv", ImportOptions())
    return engine


@pytest.fixture(scope="module")
def proposal(demo: Engine, settings: Settings) -> dict:
    return propose(demo, settings, Request([COMMUNITY]), "planner-1")


def test_a_proposal_tiles_its_community_with_street_blocks_in_the_range(
    demo: Engine, proposal: dict
) -> None:
    assert proposal["status"] == "done"
    grids = proposal["grids"]["features"]
    figures = proposal["figures"]["communities"][COMMUNITY]
    mine, today = figures["proposal"], figures["today"]
    with demo.connect() as conn:
        households, buildings = conn.execute(
            text(
                "SELECT sum(b.households), count(*) FROM buildings b JOIN communities c "
                "ON ST_Intersects(c.geom, b.geom) WHERE c.code = :c"
            ),
            {"c": COMMUNITY},
        ).one()
        today_grids = conn.execute(
            text("SELECT count(*) FROM grids WHERE community_code = :c"), {"c": COMMUNITY}
        ).scalar_one()
        # the grids tile the community: no overlap, no gap (beyond floating-point dust)
        gap, overlap = conn.execute(
            text(
                "SELECT ST_Area(ST_SymDifference(c.geom, ST_Union(g.geom))::geography), "
                "sum(ST_Area(g.geom::geography)) - ST_Area(c.geom::geography) "
                "FROM division_proposal_grids g, communities c WHERE c.code = :c "
                "GROUP BY c.geom"
            ),
            {"c": COMMUNITY},
        ).one()
    assert gap < 50 and abs(overlap) < 50  # m², on a community of ~2 km²
    # every household is in exactly one proposed grid, and the figures add up
    assert sum(g["properties"]["households"] for g in grids) == households == mine["households"]
    assert sum(g["properties"]["buildings"] for g in grids) == buildings
    assert mine["grids"] == len(grids) and all(
        g["properties"]["code"].startswith(COMMUNITY) and len(g["properties"]["code"]) == 15
        for g in grids
    )
    # grids of about the target, most within the range; today's grids are far above it
    assert 0.75 * 300 <= mine["households_median"] <= 1.25 * 300
    assert mine["outside_range"] <= 0.15 * mine["grids"]
    assert today["grids"] == today_grids and today["households_median"] > 1000
    assert today["outside_range"] == today_grids and today["households_moved"] == 0
    # grids follow streets: their boundaries run along streets, as today's do
    assert mine["boundary_off_street_m"] <= today["boundary_off_street_m"] + 1
    assert mine["workers_needed"] >= mine["grids"]
    assert 0 < mine["polsby_popper_min"] <= mine["polsby_popper_mean"] <= 1


def test_stability_keeps_more_households_in_their_grid(demo: Engine, settings: Settings) -> None:
    loose = propose(demo, settings, Request([COMMUNITY], stability=0.0), "planner-1")
    steady = propose(demo, settings, Request([COMMUNITY], stability=5.0), "planner-1")

    def crossing(p: dict) -> int:  # households in a grid taken from more than one of today's
        return sum(
            sum(g["properties"]["takes"].values()) - max(g["properties"]["takes"].values())
            for g in p["grids"]["features"]
        )

    assert crossing(steady) < crossing(loose)


def test_an_unknown_community_is_named(demo: Engine, settings: Settings) -> None:
    with pytest.raises(NotFound, match="no community 340705009999"):
        propose(demo, settings, Request(["340705009999"]), "planner-1")


def test_the_export_imports_as_grids_into_a_fresh_database(
    demo: Engine, settings: Settings, proposal: dict, db_url: str, tmp_path: Path
) -> None:
    gpkg = export(demo, proposal["id"], tmp_path / "proposal.gpkg")
    shp = export(demo, proposal["id"], tmp_path / "shp" / "proposal.shp")
    url = fresh_database(db_url, db_url.rsplit("/", 1)[1] + "_division")
    other = make_engine(url)
    try:
        ensure_schema(other)
        import_file(other, settings, "communities", DEMO / "communities.shp", ImportOptions())
        for path in (gpkg, shp):
            report = import_file(other, settings, "grids", path, ImportOptions(replace=True))
            assert not report.rejected, report.rejected
            with other.connect() as conn:
                codes = set(conn.execute(text("SELECT code FROM grids")).scalars())
            assert codes == {g["id"] for g in proposal["grids"]["features"]}
            qa = grid_qa(other, settings)
            mine = next(c for c in qa.communities if c.code == COMMUNITY)
            assert not mine.overlaps and not mine.gaps
    finally:
        other.dispose()
        drop_database(url)


# -- the doors ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(demo: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=demo)) as client:
        yield client


def test_planners_propose_over_the_api_and_read_it_beside_todays_grids(
    client: TestClient, demo: Engine, settings: Settings
) -> None:
    token = ensure_token(demo, settings, "planner-9", "planner", "test-planner-division-token")
    planner = {"Authorization": f"Bearer {token}"}
    made = client.post(
        "/api/v1/grids/proposals",
        json={"communities": [COMMUNITY], "target_households": 300, "stability": 1.0},
        headers=planner,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["created_by"] == "planner-9" and body["grids"]["features"]
    read = client.get(f"/api/v1/grids/proposals/{body['id']}", headers=planner).json()
    figures = read["figures"]["communities"][COMMUNITY]
    assert set(figures) >= {"proposal", "today"} and read["progress"]["done"] == 1
    gpkg = client.get(f"/api/v1/grids/proposals/{body['id']}/export?format=shp", headers=planner)
    assert gpkg.status_code == 200 and gpkg.content[:2] == b"PK"
    dispatcher = ensure_token(demo, settings, "disp-9", "dispatcher", "test-disp-division-token")
    denied = client.post(
        "/api/v1/grids/proposals",
        json={"communities": [COMMUNITY]},
        headers={"Authorization": f"Bearer {dispatcher}"},
    )
    assert denied.status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"communities": [COMMUNITY], "target_households": 0}, 422, "target_households"),
        ({"communities": [COMMUNITY], "min_households": 450}, 422, "min households 450"),
        ({"communities": ["340705009999"]}, 404, "no community 340705009999"),
        ({"communities": [COMMUNITY], "all": True}, 422, "only one of them"),
        ({"whole_area": {"code": "3407050010", "name": "x"}}, 422, "'3407050010' does not match"),
        ({"whole_area": {"code": "340705009001", "name": "x"}}, 409, "3 communities already"),
    ],
)
def test_bad_proposals_are_named(client: TestClient, body: dict, status: int, message: str) -> None:
    answer = client.post("/api/v1/grids/proposals", json=body)
    assert answer.status_code == status and message in answer.text, answer.text


def test_the_whole_city_is_a_job_followed_to_its_end(client: TestClient) -> None:
    started = client.post("/api/v1/grids/proposals", json={"all": True})
    assert started.status_code == 202 and started.json()["progress"]["total"] == 3
    for _ in range(300):
        job = client.get(f"/api/v1/grids/proposals/{started.json()['id']}?grids=false").json()
        if job["status"] != "running":
            break
        time.sleep(0.1)
    assert job["status"] == "done" and job["progress"] == {"done": 3, "total": 3}
    assert len(job["figures"]["communities"]) == 3 and job["figures"]["all"]["proposal"]["grids"]


def test_cli_propose_exports_and_refuses_bad_input(
    demo: Engine, db_url: str, tmp_path: Path
) -> None:
    env = {"GEO_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    out = tmp_path / "proposal.gpkg"
    run = [CLI, "grids", "propose", "--community", COMMUNITY]
    made = subprocess.run(
        [*run, "--target-households", "300", "--min", "200", "--max", "400", "-o", str(out),
         "--json"], capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    assert answer["status"] == "done" and out.is_file() and answer["exported"] == str(out)
    for args, code, message in [
        (["--target-households", "0"], 2, "--target-households"),
        (["--min", "500", "--max", "400"], 3, "min households 500 is above max 400"),
    ]:
        bad = subprocess.run([*run, *args], capture_output=True, text=True, env=env, check=False)
        assert bad.returncode == code and message in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    unknown = subprocess.run(
        [CLI, "grids", "propose", "--community", "340705009999"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert unknown.returncode == 4 and "no community 340705009999" in unknown.stderr


# -- applying a proposal as one grid edit (other communities than the tests above read) --------
APPLIED = "340705002001"  # the API applies a proposal here
BY_CLI = "340705001002"  # and the CLI here


def _state(engine: Engine, community: str) -> dict:
    """What a planner sees of a community's grids: each building's grid by the locate rule,
    the grids with their versions, the edits and lineage kept, the open worker assignments."""
    with engine.connect() as conn:
        grid_of = dict(
            conn.execute(
                text(
                    "SELECT b.code, (SELECT min(g.code) FROM grids g "
                    "WHERE ST_Covers(g.geom, b.geom)) FROM buildings b "
                    "JOIN communities c ON ST_Covers(c.geom, b.geom) WHERE c.code = :c"
                ),
                {"c": community},
            ).all()
        )
        households = dict(conn.execute(text("SELECT code, households FROM buildings")).all())
        versions = dict(
            conn.execute(
                text("SELECT code, version FROM grids WHERE community_code = :c"), {"c": community}
            ).all()
        )
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM grid_edits), (SELECT count(*) FROM grid_versions), "
                "(SELECT count(*) FROM grid_lineage), "
                "(SELECT count(*) FROM worker_assignments WHERE valid_to IS NULL)"
            )
        ).one()
    return {
        "grid_of": grid_of,
        "households": households,
        "versions": versions,
        "counts": tuple(counts),
    }


def test_a_proposal_applied_over_the_api_is_one_edit_that_keeps_the_tiling(
    client: TestClient, demo: Engine, settings: Settings
) -> None:
    stale = propose(demo, settings, Request([APPLIED]), "planner-1")
    before = _state(demo, APPLIED)
    url = f"/api/v1/grids/proposals/{stale['id']}/apply"

    # a preview answers what would change and stores nothing
    preview = client.post(url, json={"reason": "预览 preview", "preview": True})
    assert preview.status_code == 200, preview.text
    seen = preview.json()
    assert seen["preview"] and seen["edit"] is None and seen["kind"] == "redivide"
    assert len(seen["grids"]) == stale["figures"]["communities"][APPLIED]["proposal"]["grids"]
    assert _state(demo, APPLIED) == before

    # an edit of one of its grids since: the proposal is out of date, 409 naming the grid
    first = sorted(before["versions"])[0]
    renamed = edits.rename(
        demo, settings, first, edits.EditBy("planner-2", "改名 rename"), name="改名网格"
    )
    refused = client.post(url, json={"reason": "应用 apply"})
    assert refused.status_code == 409, refused.text
    finding = refused.json()["details"]["findings"][0]
    assert finding["grid"] == first and finding["kind"] == "grid_changed"
    assert finding["edit"] == renamed["edit"] and "out of date" in refused.json()["message"]
    assert _state(demo, APPLIED)["versions"] == {**before["versions"], first: 2}

    # a proposal made now applies: one edit, every grid of the community replaced or kept
    fresh = propose(demo, settings, Request([APPLIED]), "planner-1")
    planned = fresh["figures"]["communities"][APPLIED]["proposal"]
    applied = client.post(
        f"/api/v1/grids/proposals/{fresh['id']}/apply", json={"reason": "按方案重新划分"}
    )
    assert applied.status_code == 200, applied.text
    answer = applied.json()
    after = _state(demo, APPLIED)
    assert answer["edit"] and not answer["findings"] and len(after["versions"]) == planned["grids"]
    # the tiling is whole: QA clean, the topology sound, each building in exactly one grid
    qa = next(c for c in grid_qa(demo, settings).communities if c.code == APPLIED)
    assert qa.ok and not qa.grids_without_worker, qa
    with demo.connect() as conn:
        assert topology_store.problems(conn) == []
    assert (
        None not in after["grid_of"].values()
        and after["grid_of"].keys() == before["grid_of"].keys()
    )
    # households conserved: the grids hold what the proposal said, and moved as it counted
    held = {g["code"]: g["households"] for g in answer["grids"]}
    assert sum(held.values()) == sum(before["households"][b] for b in before["grid_of"])
    assert sorted(held.values()) == sorted(
        g["properties"]["households"] for g in fresh["grids"]["features"]
    )
    assert answer["households_moved"] == planned["households_moved"]
    # codes: today's continue where the proposal continues them, the rest are the next free ones
    created = answer["created"]
    assert created == [f"{APPLIED}{n:03d}" for n in range(19, 19 + len(created))]
    assert set(answer["changed"]) | set(answer["retired"]) <= set(before["versions"])
    # history: the edit with actor, reason and the proposal; each new grid's lineage in m²
    edit = client.get("/api/v1/grids/edits?limit=1000").json()["items"][-1]
    assert edit["id"] == answer["edit"] and edit["kind"] == "redivide"
    assert edit["reason"] == "按方案重新划分" and edit["summary"]["proposal"] == fresh["id"]
    for code in created[:3]:
        made = client.get(f"/api/v1/grids/{code}/history").json()["versions"][0]
        assert made["edit_id"] == answer["edit"] and made["came_from"]
        sources = made["came_from"]
        assert all(s["code"] in before["versions"] and s["area_m2"] > 0 for s in sources), sources
        assert abs(sum(s["area_m2"] for s in made["came_from"]) - made["area_m2"]) < 1.0
    # workers: every grid has one (those of the grid it takes most households from)
    assert answer["warnings"] == [] and all(g["workers"] for g in answer["grids"])
    # the proposal names the edit; applying it again, or the stale one, is refused
    assert (
        client.get(f"/api/v1/grids/proposals/{fresh['id']}?grids=false").json()["applied"]["edit"]
        == answer["edit"]
    )
    again = client.post(f"/api/v1/grids/proposals/{fresh['id']}/apply", json={"reason": "again"})
    assert again.status_code == 409 and "applied already" in again.json()["message"]
    with pytest.raises(Conflict, match="out of date"):
        edits.apply_proposal(demo, settings, stale["id"], edits.EditBy("planner-1", "stale"))


@pytest.mark.parametrize(
    ("proposal", "body", "status", "message"),
    [
        (999999, {"reason": "x"}, 404, "no proposal 999999"),
        (1, {"reason": ""}, 422, "reason"),
        (1, {"reason": "x", "preview": 1}, 422, "preview"),
        (1, {"reason": "x", "extra": 1}, 422, "extra"),
    ],
)
def test_bad_applies_are_named_and_change_nothing(
    client: TestClient, demo: Engine, proposal: int, body: dict, status: int, message: str
) -> None:
    before = _state(demo, APPLIED)
    answer = client.post(f"/api/v1/grids/proposals/{proposal}/apply", json=body)
    assert answer.status_code == status and message in answer.text, answer.text
    assert _state(demo, APPLIED) == before


def test_cli_applies_a_proposal_after_a_dry_run(
    demo: Engine, settings: Settings, db_url: str
) -> None:
    # grids of about 1,200 households: fewer grids for the topology, the same path
    made = propose(demo, settings, Request([BY_CLI], 1200, 800, 1600), "planner-1")
    before = _state(demo, BY_CLI)
    env = {"GEO_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    run = [CLI, "grids", "apply-proposal", str(made["id"]), "--reason", "重新划分"]
    dry = subprocess.run([*run, "--dry-run", "--json"], capture_output=True, text=True, env=env,
                         check=False)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["preview"] and _state(demo, BY_CLI) == before
    done = subprocess.run([*run, "--actor", "planner-3"], capture_output=True, text=True, env=env,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "redivide" in done.stdout and "households" in done.stdout
    grids = made["figures"]["communities"][BY_CLI]["proposal"]["grids"]
    assert len(_state(demo, BY_CLI)["versions"]) == grids
    assert "Traceback" not in dry.stderr + done.stderr
