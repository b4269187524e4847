"""Vector tiles decoded with an independent decoder (mapbox-vector-tile) and checked against
the database; ETag/304; an import between two requests changes the tile; TileJSON 3.0."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime

import mapbox_vector_tile
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from geo_service.api.app import create_app
from geo_service.ingest import ImportOptions, import_file
from geo_service.layers import store
from geo_service.layers.catalogue import Layer, load_catalogue
from geo_service.layers.tiles import Tile
from geo_service.packaged import layers_dir
from geo_service.settings import Settings
from tests import factories as f
from tests.map_data import plant, rows, tile_of

ORIGIN = (117.812, 30.931)  # inside the planted communities
IN_TILE = "ST_Intersects({g}, ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326))"


@pytest.fixture
def planted(db: Engine, settings: Settings, tmp_path) -> Engine:
    return plant(db, settings, tmp_path / "map")


@pytest.fixture
def client(planted: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=planted)) as client:
        yield client


@pytest.fixture(scope="module")
def bare_client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    """A client for requests refused before any data is read."""
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


def get_tile(client: TestClient, layers: str, z: int, x: int, y: int, **headers):
    return client.get(f"/tiles/{layers}/{z}/{x}/{y}.mvt", headers=headers)


def decode(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    return mapbox_vector_tile.decode(response.content)


def test_a_grids_tile_holds_the_grids_in_it_with_their_attributes(client, planted):
    z, x, y = tile_of(*ORIGIN, 15)
    response = get_tile(client, "grids", z, x, y, **{"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["etag"] and response.headers["cache-control"]
    layer = decode(response)["grids"]
    assert layer["extent"] == 4096
    expected = rows(
        planted,
        "SELECT code, name, community_code, area_m2 FROM grids WHERE "
        + IN_TILE.format(g="geom")
        + " ORDER BY code",
        z=z,
        x=x,
        y=y,
    )
    assert expected
    got = sorted((feat["properties"] for feat in layer["features"]), key=lambda p: p["code"])
    assert [p["code"] for p in got] == [r["code"] for r in expected]
    for props, row in zip(got, expected, strict=True):
        assert props["name"] == row["name"] and props["community_code"] == row["community_code"]
        assert props["area_m2"] == pytest.approx(row["area_m2"])
    for feat in layer["features"]:
        assert feat["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_several_layers_in_one_tile(client, planted):
    z, x, y = tile_of(*ORIGIN, 15)
    tile = decode(get_tile(client, "grids,buildings,centers", z, x, y))
    assert list(tile) == ["grids", "buildings", "centers"]
    expected = rows(
        planted,
        "SELECT code, households FROM buildings WHERE "
        + IN_TILE.format(g="coalesce(footprint, geom)"),
        z=z,
        x=x,
        y=y,
    )
    assert {
        (p["properties"]["code"], p["properties"]["households"])
        for p in tile["buildings"]["features"]
    } == {(r["code"], r["households"]) for r in expected}
    assert all(feat["geometry"]["type"] == "Polygon" for feat in tile["buildings"]["features"])


def test_layers_outside_their_zoom_range_are_left_out(client):
    z, x, y = tile_of(*ORIGIN, 11)  # buildings start at 13
    tile = decode(get_tile(client, "grids,buildings", z, x, y))
    assert "grids" in tile and "buildings" not in tile


def test_etag_and_304(client):
    z, x, y = tile_of(*ORIGIN, 14)
    first = get_tile(client, "grids", z, x, y)
    etag = first.headers["etag"]
    again = get_tile(client, "grids", z, x, y, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = get_tile(client, "grids", z, x, y, **{"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content
    # The gzipped and the plain tile are different bytes: different strong ETags.
    gzipped = get_tile(client, "grids", z, x, y, **{"Accept-Encoding": "gzip"})
    plain = get_tile(client, "grids", z, x, y, **{"Accept-Encoding": "identity"})
    assert gzipped.headers["etag"] != plain.headers["etag"]
    for response, encoding in ((gzipped, "gzip"), (plain, "identity")):
        tag = response.headers["etag"]
        assert not tag.startswith("W/")
        revalidated = get_tile(
            client, "grids", z, x, y, **{"If-None-Match": tag, "Accept-Encoding": encoding}
        )
        assert revalidated.status_code == 304


def test_an_import_between_two_requests_changes_the_tile(client, settings, tmp_path):
    z, x, y = tile_of(*ORIGIN, 15)
    before = get_tile(client, "grids", z, x, y)
    names = {p["properties"]["name"] for p in decode(before)["grids"]["features"]}
    assert "改名网格" not in names
    grids = f.grids()
    grids["name"] = "改名网格"
    f.write(grids, tmp_path / "renamed.shp")
    import_file(
        client.app.state.engine, settings, "grids", tmp_path / "renamed.shp", ImportOptions()
    )
    after = get_tile(client, "grids", z, x, y, **{"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]
    assert {p["properties"]["name"] for p in decode(after)["grids"]["features"]} == {"改名网格"}


def test_live_incident_tiles_follow_each_report(client):
    z, x, y = tile_of(*ORIGIN, 15)
    empty = get_tile(client, "incidents,incident_hexbins", z, x, y)
    assert decode(empty) == {}
    for n in (1, 2):
        response = client.post(
            "/api/v1/incidents",
            json={"category": "exposed_rubbish", "lon": ORIGIN[0], "lat": ORIGIN[1] + n * 1e-4},
        )
        assert response.status_code == 201
    tile = decode(get_tile(client, "incidents,incident_hexbins", z, x, y))
    refs = sorted(feat["properties"]["ref"] for feat in tile["incidents"]["features"])
    assert refs == ["E000001", "E000002"]
    assert all(feat["properties"]["overdue"] is False for feat in tile["incidents"]["features"])
    assert sum(feat["properties"]["count"] for feat in tile["incident_hexbins"]["features"]) == 2
    # Times as in the GeoJSON (ISO 8601), not PostgreSQL's own text form.
    features = client.get("/ogc/collections/incidents/items").json()["features"]
    as_json = {f["properties"]["ref"]: f["properties"]["received_at"] for f in features}
    for feat in tile["incidents"]["features"]:
        received = feat["properties"]["received_at"]
        assert received == as_json[feat["properties"]["ref"]]
        assert datetime.fromisoformat(received).utcoffset() is not None and "T" in received
    assert get_tile(client, "incidents", z, x, y).headers["etag"] != empty.headers["etag"]


def test_household_hexbins_in_a_tile_sum_to_the_households(client, planted):
    z, x, y = tile_of(*ORIGIN, 13)
    tile = decode(get_tile(client, "household_hexbins", z, x, y))
    total = rows(planted, "SELECT sum(households) AS n FROM buildings")[0]["n"]
    assert (
        sum(feat["properties"]["households"] for feat in tile["household_hexbins"]["features"])
        == total
    )
    for feat in tile["household_hexbins"]["features"]:
        assert feat["geometry"]["type"] == "Polygon"


def test_anonymous_hexbin_tiles_are_never_finer_than_the_public_resolution(
    client, planted, settings
):
    import h3

    z, x, y = tile_of(*ORIGIN, 17)  # the layer's zoom table says resolution 10 here

    def resolutions(c: TestClient) -> set[int]:
        tile = decode(get_tile(c, "household_hexbins", z, x, y))
        return {
            h3.get_resolution(f["properties"]["cell"])
            for f in tile["household_hexbins"]["features"]
        }

    with TestClient(create_app(settings, engine=planted), headers={}) as anonymous:
        assert resolutions(anonymous) == {settings.layers.public_hexbin_max_res}
    assert resolutions(client) == {10}


def test_tile_features_carry_ids_clients_can_match(client, planted):
    import h3

    z, x, y = tile_of(*ORIGIN, 15)
    tile = decode(get_tile(client, "grids,buildings", z, x, y))
    grids = tile["grids"]["features"]
    assert grids and all(f["id"] == int(f["properties"]["code"]) for f in grids)
    buildings = tile["buildings"]["features"]
    ids = [f["id"] for f in buildings]
    assert buildings and all(i > 0 for i in ids) and len(set(ids)) == len(ids)
    hexes = decode(get_tile(client, "household_hexbins", *tile_of(*ORIGIN, 13)))
    cells = hexes["household_hexbins"]["features"]
    assert cells and all(f["id"] == h3.str_to_int(f["properties"]["cell"]) for f in cells)


def _in_postgis(db_url: str, work):
    """Run `work(conn)` on an asyncio connection like the API's read pool gives."""
    conninfo = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def main():
        options = "-c plan_cache_mode=force_generic_plan"  # as the read pool's connections
        async with await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, options=options
        ) as conn:
            return await work(conn)

    return asyncio.run(main())


def _features(data: bytes, layer_id: str) -> list[dict]:
    found = mapbox_vector_tile.decode(data).get(layer_id, {"features": []})["features"]
    return sorted(found, key=lambda feat: feat["properties"]["code"])


@pytest.mark.parametrize("z", [11, 12, 13, 15, 17])
def test_stored_web_mercator_shapes_draw_the_same_tile_as_transforming_each_row(planted, db_url, z):
    """Grids are drawn from shapes PostgreSQL stored in Web Mercator, simplified once for the
    zooms of each tolerance (z11: 20 m, z12-13: 5 m, z15: 1 m, z17: none): the same tile as
    transforming and simplifying every row for every tile."""
    layer_id = "grids"
    layer = load_catalogue(layers_dir()).layers[layer_id]
    assert layer.tile_geometry is not None and layer.simplified_at(z) == (
        {11: "geom_3857_s20", 12: "geom_3857_s5", 13: "geom_3857_s5", 15: "geom_3857_s1"}.get(z)
    )
    transformed = layer.model_copy(update={"tile_geometry": None, "tile_simplified": {}})
    t = Tile(*tile_of(*ORIGIN, z))
    stored = _in_postgis(db_url, lambda conn: store.tile(conn, [layer], t))
    per_row = _in_postgis(db_url, lambda conn: store.tile(conn, [transformed], t))
    assert _features(stored, layer_id)  # the planted data is in this tile
    assert _features(stored, layer_id) == _features(per_row, layer_id)


def test_the_simplified_shapes_follow_a_grid_that_moves(planted, db_url):
    """Whatever writes a grid's shape (an import, an edit), its simplified copies follow: the
    tile draws the new shape, as simplifying the row at the request would."""
    layer = load_catalogue(layers_dir()).layers["grids"]
    per_row = layer.model_copy(update={"tile_geometry": None, "tile_simplified": {}})
    t = Tile(*tile_of(*ORIGIN, 12))
    before = _features(_in_postgis(db_url, lambda conn: store.tile(conn, [layer], t)), "grids")
    code = before[0]["properties"]["code"]
    with planted.begin() as conn:
        conn.execute(
            text(
                "UPDATE grids SET geom = ST_Multi(ST_Scale(geom, 'POINT(0.5 0.5)'::geometry, "
                "ST_Centroid(geom))) WHERE code = :code"
            ),
            {"code": code},
        )
    after = _features(_in_postgis(db_url, lambda conn: store.tile(conn, [layer], t)), "grids")
    moved = [feat["geometry"] for feat in after if feat["properties"]["code"] == code]
    assert moved and moved != [feat["geometry"] for feat in before[:1]]
    assert after == _features(
        _in_postgis(db_url, lambda conn: store.tile(conn, [per_row], t)), "grids"
    )


def test_a_simplified_column_of_another_tolerance_leaves_the_layer_out(planted, db_url):
    grids = load_catalogue(layers_dir()).layers["grids"]
    with planted.begin() as conn:  # a grid with a boundary of 2 m steps: 1 m keeps them, 5 m not
        conn.execute(
            text(
                "UPDATE grids SET geom = ST_Multi(ST_Transform(ST_MakePolygon(ST_MakeLine(ARRAY["
                " ST_Translate(ST_Transform(ST_Centroid(geom), 3857), 0, 0),"
                " ST_Translate(ST_Transform(ST_Centroid(geom), 3857), 20, 2),"
                " ST_Translate(ST_Transform(ST_Centroid(geom), 3857), 40, 0),"
                " ST_Translate(ST_Transform(ST_Centroid(geom), 3857), 60, 2),"
                " ST_Translate(ST_Transform(ST_Centroid(geom), 3857), 60, 60),"
                " ST_Translate(ST_Transform(ST_Centroid(geom), 3857), 0, 60),"
                " ST_Translate(ST_Transform(ST_Centroid(geom), 3857), 0, 0)])), 4326))"
                " WHERE code = (SELECT min(code) FROM grids)"
            )
        )
    assert _in_postgis(db_url, lambda conn: store.describe(conn, grids))  # as they should be
    swapped = grids.model_copy(update={"tile_simplified": {5.0: "geom_3857_s1"}})
    with pytest.raises(store.SourceMissing, match="'geom_3857_s1' does not hold 'geom_3857'"):
        _in_postgis(db_url, lambda conn: store.describe(conn, swapped))


def test_a_tile_whose_shapes_all_vanish_at_its_zoom_is_empty(planted, db_url):
    """A shape ST_AsMVTGeom drops (here a 2 cm square at z13) is not a feature, and a layer of
    none is no layer at all: empty bytes, as when no row is in the tile."""
    speck = Layer.model_validate(
        {
            "id": "specks",
            "title": {"zh": "点", "en": "Specks"},
            "sql": f"SELECT 'a' AS code, ST_Buffer(ST_SetSRID(ST_MakePoint({ORIGIN[0]}, "
            f"{ORIGIN[1]}), 4326), 1e-7, 1) AS geom",
            "id_field": "code",
            "fields": {"code": {}},
            "roles": ["admin"],
            "style": {"type": "fill"},
        }
    )
    t = Tile(*tile_of(*ORIGIN, 13))
    assert _in_postgis(db_url, lambda conn: store.tile(conn, [speck], t)) == b""
    big = speck.model_copy(update={"sql": speck.source_sql.replace("1e-7", "1e-3")})
    assert _features(_in_postgis(db_url, lambda conn: store.tile(conn, [big], t)), "specks")


def test_a_tile_geometry_not_in_web_mercator_leaves_the_layer_out(planted, db_url):
    grids = load_catalogue(layers_dir()).layers["grids"]
    wrong = grids.model_copy(update={"tile_geometry": "geom"})  # WGS-84
    with pytest.raises(store.SourceMissing, match="'geom' is in SRID 4326, not 3857"):
        _in_postgis(db_url, lambda conn: store.describe(conn, wrong))
    assert "geom_3857" in _in_postgis(db_url, lambda conn: store.describe(conn, grids))


def test_tilejson_asked_with_a_token_gives_tile_urls_with_it(client):
    body = client.get("/tiles/grids.json", params={"access_token": "tok en+1"}).json()
    assert body["tiles"][0].endswith("/tiles/grids/{z}/{x}/{y}.mvt?access_token=tok+en%2B1")
    assert "access_token" not in client.get("/tiles/grids.json").json()["tiles"][0]


def test_tilejson_describes_the_layers(client):
    body = client.get("/tiles/grids,buildings.json").json()
    assert body["tilejson"] == "3.0.0"
    assert body["tiles"][0].endswith("/tiles/grids,buildings/{z}/{x}/{y}.mvt")
    assert body["minzoom"] == 10 and body["maxzoom"] == 22
    assert [layer["id"] for layer in body["vector_layers"]] == ["grids", "buildings"]
    assert "households" in body["vector_layers"][1]["fields"]
    west, south, east, north = body["bounds"]
    assert 117.80 < west < east < 117.83 and 30.92 < south < north < 30.94


def test_tiles_asked_by_the_former_id_centres_hold_the_centers_under_that_name(client, planted):
    # A map style written for the old id reads an MVT layer called `centres`: it gets one.
    z, x, y = tile_of(*ORIGIN, 14)
    old = decode(get_tile(client, "grids,centres", z, x, y))
    new = decode(get_tile(client, "grids,centers", z, x, y))
    assert list(old) == ["grids", "centres"]
    assert old["centres"]["features"] == new["centers"]["features"]
    assert {p["properties"]["code"] for p in old["centres"]["features"]} == {
        r["code"]
        for r in rows(
            planted, "SELECT code FROM centers WHERE " + IN_TILE.format(g="geom"), z=z, x=x, y=y
        )
    }
    assert old["centres"]["features"]
    body = client.get("/tiles/centres.json").json()
    assert [layer["id"] for layer in body["vector_layers"]] == ["centres"]
    assert body["bounds"] == client.get("/tiles/centers.json").json()["bounds"]


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/tiles/grids/25/0/0.mvt", 400, "zoom 25"),
        ("/tiles/grids/3/8/0.mvt", 400, "x 8"),
        ("/tiles/grids/3/0/8.mvt", 400, "y 8"),
        ("/tiles/grids/-1/0/0.mvt", 400, "'-1'"),
        ("/tiles/grids/z/0/0.mvt", 400, "'z'"),
        ("/tiles/nowhere/3/0/0.mvt", 404, "'nowhere'"),
        ("/tiles/grids,nowhere/3/0/0.mvt", 404, "'nowhere'"),
        ("/tiles/grids,grids/3/0/0.mvt", 400, "twice"),
        ("/tiles/Grids!/3/0/0.mvt", 400, "'Grids!'"),
        ("/tiles/nowhere.json", 404, "'nowhere'"),
    ],
)
def test_bad_tile_requests_are_4xx_naming_the_value(bare_client, path, status, fragment):
    response = bare_client.get(path)
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]
