"""Living grids: edits keep the tiling, keep the past, and everything follows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import shapely
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.errors import Conflict, InvalidInput, NotFound
from geo_service.grids import edits, edits_store, topology_store
from geo_service.grids.qa import grid_qa
from geo_service.ingest import ImportOptions, import_file
from geo_service.settings import Settings
from tests.conftest import DATA_TABLES, ensure_token

DEMO = Path(__file__).resolve().parent.parent / "shapefiles" / "demo"
GRID_TABLES = ("grid_lineage", "grid_versions", "grid_edits", "workers", "grids")
BY = edits.EditBy("planner-1", "测试")


@pytest.fixture(scope="module")
def city(engine: Engine, settings: Settings) -> Engine:
    """The demo city's communities and buildings, imported once for the module."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    for kind in ("communities", "buildings"):
        import_file(engine, settings, kind, DEMO / f"{kind}.shp", ImportOptions())
    return engine


def reset_grids(engine: Engine, settings: Settings) -> None:
    """Today's demo grids and workers again, with no history but their import."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(GRID_TABLES)}, incident_events, incidents "
                          "RESTART IDENTITY CASCADE"))  # fmt: skip
    import_file(engine, settings, "grids", DEMO / "grids.shp", ImportOptions())
    import_file(engine, settings, "workers", DEMO / "workers.csv", ImportOptions())


@pytest.fixture
def grids(city: Engine, settings: Settings) -> Engine:
    reset_grids(city, settings)
    return city


@pytest.fixture
def client(grids: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=grids)) as client:
        yield client


# -- helpers --------------------------------------------------------------------------------------
def one(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def bbox(engine: Engine, code: str) -> tuple[float, float, float, float]:
    return rows(
        engine,
        "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM grids "
        "WHERE code = :c",
        c=code,
    )[0]


def across(engine: Engine, code: str, at: float = 0.5, vertical: bool = True) -> dict:
    """A line across a grid's bounding box, beyond it on both sides."""
    x0, y0, x1, y1 = bbox(engine, code)
    if vertical:
        x = x0 + (x1 - x0) * at
        coords = [[x, y0 - 0.001], [x, y1 + 0.001]]
    else:
        y = y0 + (y1 - y0) * at
        coords = [[x0 - 0.001, y], [x1 + 0.001, y]]
    return {"type": "LineString", "coordinates": coords}


def neighbours(engine: Engine, code: str) -> list[str]:
    """Grids of the same community sharing a boundary line with `code`."""
    return [
        r[0]
        for r in rows(
            engine,
            "SELECT b.code FROM grids a JOIN grids b ON a.code <> b.code "
            "AND a.community_code = b.community_code AND ST_Intersects(a.geom, b.geom) "
            "WHERE a.code = :c AND ST_Dimension(ST_Intersection(a.geom, b.geom)) = 1 "
            "ORDER BY b.code",
            c=code,
        )
    ]


def state(engine: Engine) -> dict[str, tuple[int, float]]:
    return {
        code: (v, round(a, 3))
        for code, v, a in rows(engine, "SELECT code, version, area_m2 FROM grids")
    }


def households_by_grid(engine: Engine) -> dict[str, int]:
    """Households per grid by the locate rule (the smallest code covering a building)."""
    return dict(
        rows(
            engine,
            """
            SELECT grid, sum(households)::int FROM (
              SELECT b.households, (SELECT min(g.code) FROM grids g
                                     WHERE ST_Covers(g.geom, b.geom)) AS grid
              FROM buildings b) x GROUP BY grid
            """,
        )
    )


TOTAL_HOUSEHOLDS_SQL = "SELECT sum(households)::int FROM buildings"


def assert_tiled(engine: Engine, settings: Settings) -> None:
    """QA clean, and every building in exactly one grid."""
    report = grid_qa(engine, settings)
    assert report.ok, report.to_dict()
    by_grid = households_by_grid(engine)
    assert None not in by_grid
    assert sum(by_grid.values()) == one(engine, TOTAL_HOUSEHOLDS_SQL)
    inside_two = one(
        engine,
        "SELECT count(*) FROM buildings b WHERE (SELECT count(*) FROM grids g "
        "WHERE ST_Contains(g.geom, b.geom)) > 1",
    )
    assert inside_two == 0
    assert_boundaries_shared(engine)


def assert_boundaries_shared(engine: Engine) -> None:
    """The topology is sound (no two edges overlap, so a line is stored once), every grid's
    polygon is its faces, each grid's boundary is made of edges with its faces on one side
    only, and each edge between two grids lies on both grids' boundaries."""
    with engine.connect() as conn:
        assert topology_store.problems(conn) == []
        pairs = topology_store.shared_boundaries(conn)
    # (a node another grid's edit put on a boundary may sit 1e-16° off its old line)
    apart = rows(engine, "SELECT code, ST_HausdorffDistance(geom, topo::geometry) AS d "
                 "FROM grids WHERE ST_HausdorffDistance(geom, topo::geometry) > 1e-9")  # fmt: skip
    assert apart == []
    layer = "(SELECT layer_id FROM topology.layer WHERE table_name = 'grids')"
    unmade = rows(
        engine,
        f"""
        WITH face_grid AS (
          SELECT r.element_id AS face_id, g.code FROM grid_topo.relation r
          JOIN grids g ON id(g.topo) = r.topogeo_id
          WHERE r.layer_id = {layer} AND r.element_type = 3),
        rim AS (  -- edges with the grid's faces on exactly one side
          SELECT g.code, sum(ST_Length(e.geom)) AS edges
          FROM grids g JOIN grid_topo.edge_data e
            ON (SELECT count(*) FROM face_grid f WHERE f.code = g.code
                AND f.face_id IN (e.left_face, e.right_face)) = 1
               AND e.left_face <> e.right_face AND e.geom && g.geom
          GROUP BY g.code)
        SELECT g.code, ST_Length(ST_Boundary(g.topo::geometry)) AS drawn, rim.edges
        FROM grids g LEFT JOIN rim USING (code)
        WHERE abs(ST_Length(ST_Boundary(g.topo::geometry)) - coalesce(rim.edges, 0)) > 1e-9
        """,
    )
    assert unmade == []
    off = [
        (p["grid_a"], p["grid_b"])
        for p in pairs
        if one(
            engine,
            "SELECT max(greatest(ST_Distance(pt.geom, ST_Boundary(a.topo::geometry)), "
            "ST_Distance(pt.geom, ST_Boundary(b.topo::geometry)))) "
            "FROM grids a, grids b, ST_DumpPoints(ST_GeomFromGeoJSON(:g)) pt "
            "WHERE a.code = :a AND b.code = :b",
            g=json.dumps(p["geometry"]),
            a=p["grid_a"],
            b=p["grid_b"],
        )
        > 2e-7  # the snapping tolerance (1e-7°), and GeoJSON rounds to 7 decimals (< 0.71e-7)
    ]
    assert off == []


# -- split ----------------------------------------------------------------------------------------
def test_split_through_the_api_answers_what_changed_and_keeps_the_tiling(client, grids, settings):
    code = "340705001001005"
    households = households_by_grid(grids)[code]
    worker = rows(grids, "SELECT code FROM workers WHERE grid_code = :c", c=code)[0][0]
    response = client.post(
        f"/api/v1/grids/{code}/split",
        json={"line": across(grids, code, vertical=False), "reason": "新建道路", "version": 1},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["retired"] == [code] and len(body["created"]) == 2
    assert all(c.startswith("340705001001") and len(c) == 15 for c in body["created"])
    assert sum(g["households"] for g in body["grids"]) == households
    assert body["households_moved"] == households  # every household of the old grid moved
    assert {worker} == {w for g in body["grids"] for w in g["workers"]}
    assert [(item["from_code"], item["to_code"]) for item in body["lineage"]] == [
        (code, c) for c in body["created"]
    ]
    assert_tiled(grids, settings)
    history = client.get(f"/api/v1/grids/{code}/history").json()["versions"]
    assert history[-1]["valid_to"] is not None and history[-1]["ended_kind"] == "split"
    assert {w["code"] for w in history[-1]["went_to"]} == set(body["created"])
    new = client.get(f"/api/v1/grids/{body['created'][0]}/history").json()["versions"]
    assert [v["came_from"][0]["code"] for v in new] == [code]
    assert new[0]["edit_actor"] == "test-admin" and new[0]["edit_reason"] == "新建道路"


def test_a_preview_answers_the_same_and_stores_nothing(client, grids):
    code = "340705001001005"
    before = state(grids)
    edits_before = one(grids, "SELECT count(*) FROM grid_edits")
    preview = client.post(
        f"/api/v1/grids/{code}/split?preview=true",
        json={"line": across(grids, code), "reason": "看看"},
    )
    assert preview.status_code == 200 and preview.json()["preview"] is True
    assert preview.json()["edit"] is None and len(preview.json()["grids"]) == 2
    assert state(grids) == before
    assert one(grids, "SELECT count(*) FROM grid_edits") == edits_before
    done = client.post(
        f"/api/v1/grids/{code}/split", json={"line": across(grids, code), "reason": "做"}
    ).json()
    assert {g["code"]: g["households"] for g in done["grids"]} == {
        g["code"]: g["households"] for g in preview.json()["grids"]
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("short", "does not cross grid 340705001001005 from boundary to boundary: it ends inside"),
        ("far", "does not reach grid 340705001001005"),
        ({"type": "Point", "coordinates": [117.8, 30.9]}, "must be a GeoJSON LineString"),
        ({"type": "LineString", "coordinates": [[117.8, 30.9]]}, "unusable coordinates"),
        ({"type": "LineString", "coordinates": [[117.8, 91], [117.9, 30.9]]}, "out of range"),
        ({"type": "LineString", "coordinates": [["a", 1], [2, 3]]}, "unusable coordinates"),
    ],
)
def test_a_line_that_does_not_cross_is_named(client, grids, line, message):
    code = "340705001001005"
    x0, y0, x1, y1 = bbox(grids, code)
    if line == "short":
        y = (y0 + y1) / 2
        line = {"type": "LineString", "coordinates": [[x0 + 1e-4, y], [x1 - 1e-4, y]]}
    elif line == "far":
        line = {"type": "LineString", "coordinates": [[x0 + 1, y0], [x1 + 1, y1]]}
    before = state(grids)
    response = client.post(f"/api/v1/grids/{code}/split", json={"line": line, "reason": "x"})
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]
    assert state(grids) == before


def test_an_older_version_is_refused_and_changes_nothing(client, grids):
    code = "340705001001005"
    client.patch(f"/api/v1/grids/{code}", json={"name": "新名", "reason": "更名"})
    before = state(grids)
    stale = client.post(
        f"/api/v1/grids/{code}/split",
        json={"line": across(grids, code), "reason": "x", "version": 1},
    )
    assert stale.status_code == 409
    assert stale.json()["details"] == {"grid": code, "version": 2, "yours": 1}
    assert state(grids) == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reason", "ok\x07", "holds a control character"),
        ("reason", "", "at least 1 character"),
        ("names", ["a", "b\x07c"], "holds a control character"),
        ("codes", ["1", "2", "3"], "give 2 distinct codes"),
        ("codes", ["340705001001005", "abc"], "does not match GEO_GRID_CODE_PATTERN"),
        ("codes", ["340705001001005", "340705001001001"], "is or was in use"),
        ("crs", "EPSG:999999", "EPSG:999999"),
    ],
)
def test_bad_fields_are_named(client, grids, field, value, message):
    code = "340705001001005"
    body = {"line": across(grids, code), "reason": "x", field: value}
    response = client.post(f"/api/v1/grids/{code}/split", json=body)
    assert response.status_code in (409, 422), response.text
    assert message in response.json()["message"]


# -- merge, retire, redraw, create, rename --------------------------------------------------------
def test_merge_keeps_the_smallest_code_and_moves_the_workers(client, grids, settings):
    a = "340705001001005"
    b = neighbours(grids, a)[0]
    households = households_by_grid(grids)
    workers = {
        r[0] for r in rows(grids, "SELECT code FROM workers WHERE grid_code IN (:a, :b)", a=a, b=b)
    }
    body = client.post(
        "/api/v1/grids/merge", json={"codes": [b, a], "reason": "合并", "name": "合并网格"}
    ).json()
    keep = min(a, b)
    assert body["changed"] == [keep] and body["retired"] == [max(a, b)]
    [grid] = body["grids"]
    assert grid["households"] == households[a] + households[b] and grid["name"] == "合并网格"
    assert set(grid["workers"]) == workers
    assert grid["version"] == 2
    assert_tiled(grids, settings)


@pytest.mark.parametrize(
    ("pick", "message"),
    [
        ("apart", "does not share a boundary"),
        ("communities", "belong to different communities"),
        ("unknown", "unknown grid code"),
    ],
)
def test_a_merge_that_cannot_be_is_named(client, grids, pick, message):
    a = "340705001001005"
    if pick == "apart":
        others = [
            r[0]
            for r in rows(
                grids,
                "SELECT b.code FROM grids a JOIN grids b ON a.community_code = b.community_code "
                "AND NOT ST_Intersects(a.geom, b.geom) WHERE a.code = :a ORDER BY b.code",
                a=a,
            )
        ]
        codes = [a, others[0]]
    elif pick == "communities":
        other = one(grids, "SELECT min(code) FROM grids WHERE community_code <> "
                    "(SELECT community_code FROM grids WHERE code = :a)", a=a)  # fmt: skip
        codes = [a, other]
    else:
        codes = [a, "340705001001999"]
    response = client.post("/api/v1/grids/merge", json={"codes": codes, "reason": "x"})
    assert response.status_code in (404, 422) and message in response.json()["message"]


def test_retire_hands_area_and_workers_to_a_neighbour(client, grids, settings):
    code = "340705001001005"
    to = neighbours(grids, code)[0]
    households = households_by_grid(grids)
    body = client.post(f"/api/v1/grids/{code}/retire", json={"to": [to], "reason": "撤并"}).json()
    assert body["retired"] == [code] and body["changed"] == [to]
    assert body["grids"][0]["households"] == households[code] + households[to]
    assert one(grids, "SELECT count(*) FROM workers WHERE grid_code = :c", c=code) == 0
    assert_tiled(grids, settings)
    gone = client.get(f"/api/v1/grids/{code}")
    assert gone.status_code == 404
    was = client.get(f"/api/v1/grids/{code}", params={"as_of": body["at"][:-6] + "Z"})
    assert was.status_code == 404  # the moment of the edit already shows the new grids


def test_redraw_adjust_moves_a_shared_boundary_and_strict_refuses(client, grids, settings):
    code = "340705001001005"
    near = neighbours(grids, code)[0]
    shape = shapely.from_geojson(json.dumps(client.get(f"/api/v1/grids/{code}").json()["geometry"]))
    other = shapely.from_geojson(json.dumps(client.get(f"/api/v1/grids/{near}").json()["geometry"]))
    # a strip of the neighbour along the shared boundary (about 10 m wide)
    grown = shapely.union_all([shape, other.intersection(shape.buffer(1e-4))])
    geometry = json.loads(shapely.to_geojson(grown))
    strict = client.put(
        f"/api/v1/grids/{code}/geometry",
        json={"geometry": geometry, "neighbours": "strict", "reason": "x"},
    )
    assert strict.status_code == 422 and "overlaps grid" in strict.json()["message"]
    adjust = client.put(
        f"/api/v1/grids/{code}/geometry", json={"geometry": geometry, "reason": "路改"}
    )
    assert adjust.status_code == 200, adjust.text
    body = adjust.json()
    assert code in body["changed"] and near in body["changed"]
    assert len(body["changed"]) >= 2
    assert_tiled(grids, settings)
    # back where it was: the neighbour gets its area back
    shrink = client.put(
        f"/api/v1/grids/{code}/geometry",
        json={"geometry": json.loads(shapely.to_geojson(shape)), "reason": "还原"},
    )
    assert shrink.status_code == 200, shrink.text
    assert_tiled(grids, settings)


def shared_vertices(engine: Engine) -> list[tuple[float, float]]:
    """Vertices of boundaries between grids (a grid's faces on each side of the edge), off
    every community's edge."""
    return rows(
        engine,
        """
        SELECT DISTINCT ST_X(p.geom), ST_Y(p.geom) FROM grid_topo.edge_data e
        CROSS JOIN LATERAL ST_DumpPoints(e.geom) p
        WHERE e.left_face <> 0 AND e.right_face <> 0
          AND EXISTS (SELECT 1 FROM grid_topo.relation r WHERE r.element_id = e.left_face)
          AND EXISTS (SELECT 1 FROM grid_topo.relation r WHERE r.element_id = e.right_face)
          AND NOT EXISTS (SELECT 1 FROM communities c
                          WHERE ST_DWithin(ST_Boundary(c.geom), p.geom, 1e-6))
        ORDER BY 1, 2
        """,
    )


def test_moving_a_shared_vertex_moves_it_for_every_grid_along_it(client, grids, settings):
    x, y = shared_vertices(grids)[0]
    along = [r[0] for r in rows(
        grids, "SELECT code FROM grids WHERE ST_DWithin(ST_Boundary(geom), "
        "ST_SetSRID(ST_MakePoint(:x, :y), 4326), 1e-9) ORDER BY code", x=x, y=y)]  # fmt: skip
    assert len(along) >= 2
    body = {"vertex": [x, y], "to": [x + 5e-5, y + 3e-5], "reason": "边界移到新路"}
    preview = client.post("/api/v1/grids/vertex", json={**body, "preview": True})
    assert preview.status_code == 200, preview.text
    assert preview.json()["edit"] is None and state(grids)[along[0]][0] == 1  # nothing stored
    moved = client.post("/api/v1/grids/vertex", json=body)
    assert moved.status_code == 200, moved.text
    assert moved.json()["changed"] == along
    assert_tiled(grids, settings)
    there = rows(grids, "SELECT code FROM grids WHERE ST_DWithin(ST_Boundary(geom), "
                 "ST_SetSRID(ST_MakePoint(:x, :y), 4326), 1e-9) ORDER BY code",
                 x=x + 5e-5, y=y + 3e-5)  # fmt: skip
    assert [r[0] for r in there] == along
    versions = {c: state(grids)[c][0] for c in along}
    assert set(versions.values()) == {2}
    stale = client.post("/api/v1/grids/vertex", json={
        "vertex": [x + 5e-5, y + 3e-5], "to": [x, y], "reason": "x",
        "versions": {along[0]: 1}})  # fmt: skip
    assert stale.status_code == 409 and "version 2, not 1" in stale.json()["message"]


@pytest.mark.parametrize(
    ("where", "status", "message"),
    [
        ("nowhere", 422, "no grid has a boundary vertex within 10 cm of lon"),
        ("edge", 409, "would be in no grid"),
        ("same", 422, "its points are all the same"),
        ("bad", 422, "vertex"),
    ],
)
def test_a_vertex_move_that_cannot_be_is_named(client, grids, where, status, message):
    x, y = rows(grids, "SELECT ST_X(p.geom), ST_Y(p.geom) FROM communities c, "
                "ST_DumpPoints(c.geom) p ORDER BY c.code, p.path LIMIT 1")[0]  # fmt: skip
    x0, y0, x1, y1 = rows(grids, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                          "FROM (SELECT ST_Extent(geom) e FROM communities) c")[0]  # fmt: skip
    inward = [
        x + (1e-4 if x < (x0 + x1) / 2 else -1e-4),
        y + (1e-4 if y < (y0 + y1) / 2 else -1e-4),
    ]
    body = {
        "nowhere": {"vertex": [x0 - 0.01, y0 - 0.01], "to": [x0, y0]},
        "edge": {"vertex": [x, y], "to": inward},
        "same": {"vertex": [x, y], "to": [x, y]},
        "bad": {"vertex": [x, float("inf")], "to": [x, y]},
    }[where]
    before = state(grids)
    answer = client.post("/api/v1/grids/vertex", content=json.dumps({**body, "reason": "x"}),
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == status, answer.text
    assert message in answer.json()["message"]
    assert state(grids) == before


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
         "self-intersection at lon 0.500000, lat 0.500000"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "must be a GeoJSON Polygon"),
        ("outside", "m² outside community 340705001001 at lon"),
    ],
)  # fmt: skip
def test_a_bad_drawn_polygon_is_named(client, grids, geometry, message):
    code = "340705001001005"
    if geometry == "outside":
        x0, y0, x1, y1 = bbox(grids, code)
        geometry = json.loads(shapely.to_geojson(shapely.box(x0, y0, x1 + 0.05, y1)))
    response = client.put(
        f"/api/v1/grids/{code}/geometry", json={"geometry": geometry, "reason": "x"}
    )
    assert response.status_code == 422 and message in response.json()["message"]


def test_create_takes_only_area_no_grid_holds(client, grids, settings):
    code = "340705001001005"
    shape = client.get(f"/api/v1/grids/{code}").json()
    # make room: the grid leaves (its area to a neighbour), then the planner carves it again
    with grids.begin() as conn:
        conn.execute(text("UPDATE workers SET grid_code = :n WHERE grid_code = :c"),
                     {"n": neighbours(grids, code)[0], "c": code})  # fmt: skip
        conn.execute(text("DELETE FROM grids WHERE code = :c"), {"c": code})
    drawn = shapely.from_geojson(json.dumps(shape["geometry"])).buffer(0.002)  # spills over
    request = {
        "community": shape["community_code"],
        "geometry": json.loads(shapely.to_geojson(drawn)),
        "name": "新网格",
        "reason": "新建",
    }
    unknown = client.post("/api/v1/grids", json={**request, "workers": ["W999999"]})
    assert unknown.status_code == 422 and "unknown worker code 'W999999'" in unknown.text
    lone, its_grid = rows(
        grids,
        "SELECT min(code), grid_code FROM workers GROUP BY grid_code HAVING count(*) = 1 "
        "ORDER BY grid_code LIMIT 1",
    )[0]
    body = client.post("/api/v1/grids", json={**request, "workers": [lone]})
    assert body.status_code == 201, body.text
    created = body.json()
    assert created["created"] == ["340705001001019"]  # the community's next code, never reused
    assert created["grids"][0]["workers"] == [lone]
    # the worker serves the new grid too; their grid keeps them
    assert client.get(f"/api/v1/workers/{lone}").json()["grids"] == sorted(
        [its_grid, "340705001001019"]
    )
    assert abs(created["grids"][0]["area_m2"] - shape["area_m2"]) < 1.0
    assert_tiled(grids, settings)


def test_rename_and_recode_keep_the_history(client, grids):
    code = "340705001001005"
    renamed = client.patch(f"/api/v1/grids/{code}", json={"name": "滨江网格", "reason": "更名"})
    assert renamed.status_code == 200 and renamed.json()["grids"][0]["name"] == "滨江网格"
    recoded = client.patch(
        f"/api/v1/grids/{code}", json={"code": "340705001001050", "reason": "编码"}
    )
    assert recoded.status_code == 200, recoded.text
    assert recoded.json()["kind"] == "recode"
    assert one(grids, "SELECT grid_code FROM workers WHERE code = 'W000008'") == "340705001001050"
    new = client.get("/api/v1/grids/340705001001050/history").json()["versions"]
    assert new[0]["came_from"] == [
        {"code": code, "version": 2, "area_m2": pytest.approx(new[0]["area_m2"])}
    ]
    again = client.patch("/api/v1/grids/340705001001001", json={"code": code, "reason": "x"})
    assert again.status_code == 409 and "never given twice" in again.json()["message"]


# -- what follows an edit ------------------------------------------------------------------------
def test_open_incidents_follow_their_grid(client, grids):
    code = "340705001001005"
    x0, y0, x1, y1 = bbox(grids, code)
    west = ((x0 * 3 + x1) / 4, (y0 + y1) / 2)
    report = client.post(
        "/api/v1/incidents",
        json={"category": "exposed_rubbish", "lon": west[0], "lat": west[1], "description": "垃圾"},
    ).json()
    assert report["grid_code"] == code
    split = client.post(
        f"/api/v1/grids/{code}/split", json={"line": across(grids, code), "reason": "新路"}
    ).json()
    western = split["created"][0]  # numbered west to east
    assert split["incidents"] == [{"ref": report["ref"], "from": code, "to": western}]
    case = client.get(f"/api/v1/incidents/{report['ref']}").json()
    assert case["grid_code"] == western and case["status"] == report["status"]
    last = case["events"][-1]
    assert last["action"] == "regrid" and last["grid_code"] == western
    assert f"grid edit #{split['edit']} (split)" in last["note"]
    assert one(grids, "SELECT grid_version FROM incidents WHERE ref = :r", r=report["ref"]) == 1


def test_the_tiles_of_the_grids_layer_change_their_etag(client, grids):
    tile = "/tiles/grids/14/13642/6712.mvt"
    first = client.get(tile)
    assert first.status_code == 200, first.text
    code = "340705001001005"
    client.post(f"/api/v1/grids/{code}/split", json={"line": across(grids, code), "reason": "x"})
    second = client.get(tile)
    assert second.headers["etag"] != first.headers["etag"]


def test_an_import_that_changes_grids_is_an_edit(grids, settings, tmp_path):
    import geopandas as gpd

    frame = gpd.read_file(DEMO / "grids.shp")
    frame.loc[frame["code"] == "340705001001005", "name"] = "导入改名"
    frame.to_file(tmp_path / "grids.gpkg")
    import_file(grids, settings, "grids", tmp_path / "grids.gpkg", ImportOptions())
    history = edits.history(grids, "340705001001005")["versions"]
    assert [(v["version"], v["name"], v["edit_kind"]) for v in history] == [
        (1, "石城社区第5网格", "import"),
        (2, "导入改名", "import"),
    ]
    import_file(grids, settings, "grids", tmp_path / "grids.gpkg", ImportOptions())  # no change
    assert one(grids, "SELECT count(*) FROM grid_edits WHERE kind = 'import'") == 2


# -- roles ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "status"), [("dispatcher", 403), ("worker", 403), ("planner", 200)]
)
def test_only_admin_and_planner_edit(grids, settings, role, status):
    scope = {"grids": ["340705001001005"]} if role == "worker" else {}
    token = ensure_token(grids, settings, f"edit-{role}", role, f"grid-edit-token-{role}", **scope)
    with TestClient(create_app(settings, engine=grids)) as c:
        headers = {"Authorization": f"Bearer {token}"}
        code = "340705001001005"
        answer = c.post(
            f"/api/v1/grids/{code}/split?preview=true",
            json={"line": across(grids, code), "reason": "x"},
            headers=headers,
        )
        assert answer.status_code == status, answer.text
        assert c.get(f"/api/v1/grids/{code}/history", headers=headers).status_code == 200


# -- the CLI --------------------------------------------------------------------------------------
CLI = str(Path(sys.executable).parent / "geo-service")


def test_cli_split_dry_run_then_history(grids, db_url):
    env = {**os.environ, "GEO_DATABASE_URL": db_url}
    code = "340705001001005"
    line = json.dumps(across(grids, code))
    dry = subprocess.run(
        [CLI, "grids", "split", code, "--line", line, "--reason", "看看", "--dry-run", "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["preview"] is True
    assert one(grids, "SELECT count(*) FROM grids WHERE code = :c", c=code) == 1
    done = subprocess.run(
        [CLI, "grids", "split", code, "--line", line, "--reason", "新路", "--actor", "李规划"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "retired 340705001001005" in done.stdout
    history = subprocess.run(
        [CLI, "grids", "history", code],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert history.returncode == 0 and "李规划" in history.stdout and "split" in history.stdout
    bad = subprocess.run(
        [CLI, "grids", "merge", code, "340705001001004", "--reason", "x"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert bad.returncode == 4 and "unknown grid code" in bad.stderr  # retired: not today's


@pytest.mark.parametrize("at", ["ok", "117.8,abc", "1,2,3", "nan,30"])
def test_cli_move_vertex(grids, db_url, settings, at):
    env = {**os.environ, "GEO_DATABASE_URL": db_url}
    x, y = shared_vertices(grids)[0]
    where = f"{x!r},{y!r}" if at == "ok" else at
    done = subprocess.run(
        [CLI, "grids", "move-vertex", "--at", where, "--to", f"{x + 4e-5!r},{y!r}",
         "--reason", "新路", "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if at != "ok":
        assert done.returncode == 3 and f"--at {at!r} is not 'x,y'" in done.stderr
        assert "Traceback" not in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["changed"]) >= 2
    assert_tiled(grids, settings)


# -- the property: any sequence of edits keeps the tiling and the past ----------------------------
STEP = st.one_of(
    st.tuples(st.just("split"), st.integers(0, 10_000), st.floats(0.2, 0.8), st.booleans()),
    st.tuples(st.just("merge"), st.integers(0, 10_000), st.integers(0, 10)),
    st.tuples(
        st.just("move"),
        st.integers(0, 10_000),
        st.integers(0, 1000),
        st.floats(-2e-4, 2e-4),
        st.floats(-2e-4, 2e-4),
    ),
    st.tuples(
        st.just("drag"), st.integers(0, 10_000), st.floats(-1e-4, 1e-4), st.floats(-1e-4, 1e-4)
    ),
)


def _step(engine: Engine, settings: Settings, step: tuple) -> dict | None:
    codes = [r[0] for r in rows(engine, "SELECT code FROM grids ORDER BY code")]
    code = codes[step[1] % len(codes)]
    try:
        if step[0] == "drag":  # a vertex of a boundary between grids, wherever it goes
            shared = shared_vertices(engine)
            x, y = shared[step[1] % len(shared)]
            return edits.move_vertex(engine, settings, (x, y), (x + step[2], y + step[3]), BY)
        if step[0] == "split":
            return edits.split(engine, settings, code, across(engine, code, step[2], step[3]), BY)
        if step[0] == "merge":
            near = neighbours(engine, code)
            if not near:
                return None
            return edits.merge(engine, settings, [code, near[step[2] % len(near)]], BY)
        shape = shapely.from_wkb(
            one(
                engine,
                "SELECT ST_AsBinary(ST_GeometryN(geom, 1)) FROM grids WHERE code = :c",
                c=code,
            )
        )
        ring = list(shape.exterior.coords)[:-1]
        k = step[2] % len(ring)
        ring[k] = (ring[k][0] + step[3], ring[k][1] + step[4])
        moved = shapely.Polygon(ring)
        return edits.redraw(engine, settings, code, json.loads(shapely.to_geojson(moved)), BY)
    except (InvalidInput, Conflict):
        return None


@hypothesis_settings(
    max_examples=int(os.environ.get("GEO_FUZZ_EXAMPLES", "6")),
    # The suite's run is the same every time; GEO_FUZZ_EXAMPLES=N explores with fresh seeds.
    derandomize="GEO_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=1, max_size=5))
# Found by a fuzz run: a redraw whose neighbours' new shapes overlapped by a 0.07 m² sliver, a
# face both grids claimed (now given to one: topology_store._settle_slivers).
@example(
    steps=[
        ("move", 100, 241, 4.618773126012019e-05, 0.0),
        ("split", 8252, 0.6, False),
        ("move", 886, 573, 0.0, -1.6047804597249494e-05),
    ]
)
def test_any_sequence_of_edits_keeps_the_tiling_and_the_past(city, settings, steps):
    reset_grids(city, settings)
    start = one(city, "SELECT max(valid_from) FROM grid_versions")
    moments: list[tuple[datetime, dict]] = [(start, state(city))]
    total = one(city, TOTAL_HOUSEHOLDS_SQL)
    for step in steps:
        before = state(city)
        answer = _step(city, settings, step)
        event(f"{step[0]} {'refused' if answer is None else 'stored'}")
        if answer is None:
            assert state(city) == before  # a refused edit changes nothing
            continue
        assert_tiled(city, settings)
        assert sum(households_by_grid(city).values()) == total
        moments.append((datetime.fromisoformat(answer["at"]), state(city)))
    with city.connect() as conn:
        for at, expected in moments:
            then = edits_store.grids_as_of(conn, at)
            assert {g["code"]: (g["version"], round(g["area_m2"], 3)) for g in then} == expected


# -- as_of ----------------------------------------------------------------------------------------
def test_locate_and_grid_detail_as_of_a_moment_before_an_edit(client, grids):
    code = "340705001001005"
    x0, y0, x1, y1 = bbox(grids, code)
    point = {"lon": (x0 * 3 + x1) / 4, "lat": (y0 + y1) / 2}
    before = one(grids, "SELECT now()").isoformat()
    split = client.post(
        f"/api/v1/grids/{code}/split", json={"line": across(grids, code), "reason": "新路"}
    ).json()
    now = client.get("/api/v1/locate", params=point).json()
    then = client.get("/api/v1/locate", params={**point, "as_of": before}).json()
    assert (now["grid_code"], then["grid_code"]) == (split["created"][0], code)
    assert then["community_name"] == now["community_name"]
    batch = client.post(
        "/api/v1/locate", params={"as_of": before}, json=[{"id": "a", **point}]
    ).json()
    assert batch["results"][0]["grid_code"] == code
    local = datetime.fromisoformat(before).astimezone(ZoneInfo("Asia/Shanghai"))
    naive = local.replace(tzinfo=None).isoformat()  # the city's time zone when none is given
    assert (
        client.get("/api/v1/locate", params={**point, "as_of": naive}).json()["grid_code"] == code
    )
    detail = client.get(f"/api/v1/grids/{code}", params={"as_of": before}).json()
    assert detail["version"] == 1 and detail["valid_to"] is not None
    assert client.get(f"/api/v1/grids/{code}").status_code == 404  # not today's any more
    for bad in ("yesterday", "2026-13-01", "0001-01-01T00:00:00Z"):
        answer = client.get("/api/v1/locate", params={**point, "as_of": bad})
        assert answer.status_code == 422 and "as_of" in answer.json()["message"]
    edits_since = client.get("/api/v1/grids/edits", params={"since": before}).json()["items"]
    assert [e["kind"] for e in edits_since] == ["split"]


def test_incident_statistics_by_the_grids_of_the_time_or_of_today(client, grids):
    code = "340705001001005"
    x0, y0, x1, y1 = bbox(grids, code)
    for lon in ((x0 * 3 + x1) / 4, (x0 + x1 * 3) / 4):  # one each side of the split line
        body = {
            "category": "exposed_rubbish",
            "lon": lon,
            "lat": (y0 + y1) / 2,
            "description": "垃圾",
        }
        assert client.post("/api/v1/incidents", json=body).status_code == 201
    with grids.begin() as conn:  # closed cases do not follow an edit: they stay where routed
        conn.execute(text("UPDATE incidents SET status = 'closed', closed_at = now()"))
    west, east = client.post(
        f"/api/v1/grids/{code}/split", json={"line": across(grids, code), "reason": "新路"}
    ).json()["created"]
    then = client.get("/api/v1/incidents/stats", params={"grids": "then"}).json()["groups"]
    today = client.get("/api/v1/incidents/stats", params={"grids": "today"}).json()["groups"]
    assert {g["code"]: g["total"] for g in then} == {code: 2}
    assert {g["code"]: g["total"] for g in today} == {west: 1, east: 1}
    bad = client.get("/api/v1/incidents/stats", params={"grids": "tomorrow"})
    assert bad.status_code == 422 and "tomorrow" in bad.json()["message"]


def test_the_grids_layer_as_of_a_moment(client, grids):
    code = "340705001001005"
    before = one(grids, "SELECT now()").isoformat()
    client.post(f"/api/v1/grids/{code}/split", json={"line": across(grids, code), "reason": "x"})
    items = "/ogc/collections/grids/items"
    now = client.get(items, params={"limit": 1000}).json()
    then = client.get(items, params={"limit": 1000, "as_of": before}).json()
    codes_now = {f["properties"]["code"] for f in now["features"]}
    codes_then = {f["properties"]["code"] for f in then["features"]}
    assert codes_then - codes_now == {code} and len(codes_now - codes_then) == 2
    assert then["numberMatched"] == now["numberMatched"] - 1
    one_then = client.get(items, params={"code": code, "as_of": before}).json()
    assert [f["properties"]["version"] for f in one_then["features"]] == [1]
    bad = client.get(items, params={"as_of": "someday"})
    assert bad.status_code == 400 and "as_of" in bad.json()["message"]
    other = client.get("/ogc/collections/buildings/items", params={"as_of": before})
    assert other.status_code == 400 and "unknown query parameter 'as_of'" in other.json()["message"]


def test_a_shape_sent_back_as_shown_changes_nothing_and_no_neighbour(client, grids):
    """The grid detail shows 7 decimals; the stored shape has more. Sent back unchanged (the
    planner map's redraw does), it is the same shape: no neighbour gets a new version."""
    code = "340705001001005"
    merged = client.post(
        "/api/v1/grids/merge", json={"codes": [code, neighbours(grids, code)[0]], "reason": "x"}
    ).json()
    kept = merged["changed"][0]
    shown = client.get(f"/api/v1/grids/{kept}").json()
    before = state(grids)
    again = client.put(
        f"/api/v1/grids/{kept}/geometry", json={"geometry": shown["geometry"], "reason": "原样"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["changed"] == [kept] and again.json()["buildings_moved"] == 0
    after = state(grids)
    assert {c: v for c, v in after.items() if c != kept} == {
        c: v for c, v in before.items() if c != kept
    }


def test_two_planners_editing_one_grid_at_once_never_overwrite_each_other(grids, settings):
    from concurrent.futures import ThreadPoolExecutor

    code = "340705001001005"
    line = across(grids, code)

    def attempt(who: str) -> str:
        by = edits.EditBy(who, "同时", versions={code: 1})
        try:
            edits.split(grids, settings, code, line, by)
        except (Conflict, NotFound) as refused:
            return type(refused).__name__
        return "done"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(attempt, ["planner-a", "planner-b"]))
    assert outcomes[1] == "done" and outcomes[0] in ("Conflict", "NotFound")
    assert one(grids, "SELECT count(*) FROM grid_edits WHERE kind = 'split'") == 1
