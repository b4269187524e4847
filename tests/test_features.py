"""OGC API - Features over the layer catalogue, on a real PostGIS: valid RFC 7946 GeoJSON,
paging links followed to the end, bbox and property filters, 400/404 naming the bad value."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from geojson_pydantic import Feature, FeatureCollection
from shapely.geometry import box, shape
from sqlalchemy import Engine

from geo_service.api.app import create_app
from geo_service.packaged import layers_dir
from geo_service.settings import Settings
from tests.map_data import plant, rows

OGC = "/ogc"


@pytest.fixture(scope="module")
def planted(engine: Engine, settings: Settings, tmp_path_factory) -> Engine:
    return plant(engine, settings, tmp_path_factory.mktemp("map"))


@pytest.fixture(scope="module")
def client(planted: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=planted)) as client:
        yield client


def check_rfc7946(feature: dict) -> None:
    """Longitude first, within range, valid geometry, exterior rings counter-clockwise."""
    Feature.model_validate(feature)
    geom = shape(feature["geometry"])
    assert geom.is_valid
    west, south, east, north = geom.bounds
    assert 117 < west <= east < 119 and 30 < south <= north < 32  # lon, lat (not lat, lon)
    polygons = getattr(geom, "geoms", [geom]) if "Polygon" in geom.geom_type else []
    for polygon in polygons:
        assert polygon.exterior.is_ccw
        assert all(not ring.is_ccw for ring in polygon.interiors)


def test_landing_page_and_conformance_point_to_collections(client: TestClient):
    body = client.get(OGC).json()
    rels = {link["rel"]: link["href"] for link in body["links"]}
    assert rels["conformance"].endswith("/ogc/conformance")
    assert rels["data"].endswith("/ogc/collections")
    assert client.get(rels["service-desc"]).status_code == 200
    conforms = client.get("/ogc/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conforms
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conforms


def test_collections_describe_each_layer_with_extent_fields_and_style(client: TestClient):
    collections = {c["id"]: c for c in client.get(f"{OGC}/collections").json()["collections"]}
    assert {"communities", "grids", "buildings", "centers", "streets", "incidents"} <= set(
        collections
    )
    assert "centres" not in collections  # an alias answers, but is never listed
    grids = collections["grids"]
    west, south, east, north = grids["extent"]["spatial"]["bbox"][0]
    assert 117.80 < west < east < 117.83 and 30.92 < south < north < 30.94
    assert grids["properties"]["area_m2"]["type"] == "number"
    assert grids["properties"]["name"]["title"] == {"zh": "网格名称", "en": "Grid"}
    assert grids["style"]["legend"][0]["label"]["en"] == "Grid"
    assert "anonymous" in grids["roles"]
    items = next(link for link in grids["links"] if link["rel"] == "items")
    assert items["type"] == "application/geo+json"
    one = client.get(f"{OGC}/collections/grids").json()
    assert one["id"] == "grids" and one["extent"] == grids["extent"]


def test_items_are_valid_geojson_with_the_declared_fields(client: TestClient, planted: Engine):
    response = client.get(f"{OGC}/collections/grids/items", params={"limit": 100})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    body = response.json()
    FeatureCollection.model_validate(body)
    assert body["numberMatched"] == body["numberReturned"] == 8
    expected = {
        r["code"]: r
        for r in rows(planted, "SELECT code, name, community_code, area_m2, version FROM grids")
    }
    for feature in body["features"]:
        check_rfc7946(feature)
        row = expected[feature["id"]]
        assert feature["properties"] == row  # exactly the fields of the layer file
    buildings = client.get(f"{OGC}/collections/buildings/items").json()
    for feature in buildings["features"]:
        check_rfc7946(feature)
        assert feature["geometry"]["type"] == "MultiPolygon"  # the footprint, not the point


def test_following_next_links_visits_every_feature_once(client: TestClient, planted: Engine):
    url = f"{OGC}/collections/grids/items?limit=3"
    seen: list[str] = []
    pages = 0
    matched = None
    while url:
        body = client.get(url).json()
        pages += 1
        matched = body["numberMatched"]
        assert body["numberReturned"] == len(body["features"])
        seen += [f["id"] for f in body["features"]]
        links = {link["rel"]: link["href"] for link in body["links"]}
        if pages > 1:
            assert "prev" in links
        url = links.get("next")
        assert pages < 10
    assert pages == 3
    assert len(seen) == len(set(seen)) == matched == 8
    assert seen == sorted(seen)
    assert matched == rows(planted, "SELECT count(*) AS n FROM grids")[0]["n"]


def test_bbox_keeps_the_features_that_intersect_it(client: TestClient, planted: Engine):
    bbox = (117.8105, 30.9301, 117.8125, 30.9315)
    body = client.get(
        f"{OGC}/collections/grids/items", params={"bbox": ",".join(map(str, bbox))}
    ).json()
    assert body["numberMatched"] > 0
    for feature in body["features"]:
        assert shape(feature["geometry"]).intersects(box(*bbox))
    expected = rows(
        planted,
        "SELECT code FROM grids WHERE ST_Intersects(geom, ST_MakeEnvelope(:w, :s, :e, :n, 4326))"
        " ORDER BY code",
        w=bbox[0],
        s=bbox[1],
        e=bbox[2],
        n=bbox[3],
    )
    assert [f["id"] for f in body["features"]] == [r["code"] for r in expected]


def test_property_filters_on_declared_fields(client: TestClient):
    body = client.get(
        f"{OGC}/collections/grids/items", params={"community_code": "340705001002"}
    ).json()
    assert body["numberMatched"] == 4
    assert {f["properties"]["community_code"] for f in body["features"]} == {"340705001002"}
    twelve = client.get(f"{OGC}/collections/buildings/items", params={"households": 12}).json()
    assert twelve["numberMatched"] == 8
    none = client.get(f"{OGC}/collections/buildings/items", params={"households": 13}).json()
    assert none["numberMatched"] == 0 and none["features"] == []


def test_one_item_by_id(client: TestClient):
    feature = client.get(f"{OGC}/collections/centers/items/C001").json()
    check_rfc7946(feature)
    assert feature["id"] == "C001" and feature["properties"]["name"] == "金山邻里中心"
    assert feature["geometry"]["type"] == "Point"
    assert any(link["rel"] == "collection" for link in feature["links"])


def test_the_former_id_centres_answers_like_centers(client: TestClient, planted: Engine):
    new = client.get(f"{OGC}/collections/centers").json()
    old = client.get(f"{OGC}/collections/centres").json()
    assert old == new and old["id"] == "centers"
    items = client.get(f"{OGC}/collections/centres/items").json()
    codes = [r["code"] for r in rows(planted, "SELECT code FROM centers ORDER BY code")]
    assert sorted(f["id"] for f in items["features"]) == codes == ["C001", "C002"]
    assert items["features"] == client.get(f"{OGC}/collections/centers/items").json()["features"]
    one = client.get(f"{OGC}/collections/centres/items/C002").json()
    assert one["properties"] == items["features"][1]["properties"]


@pytest.mark.parametrize(
    ("path", "params", "status", "fragment"),
    [
        ("/collections/grids/items", {"limit": 10001}, 400, "limit 10001"),
        ("/collections/grids/items", {"limit": 0}, 400, "limit 0"),
        ("/collections/grids/items", {"limit": "ten"}, 400, "'ten'"),
        ("/collections/grids/items", {"offset": -1}, 400, "offset -1"),
        ("/collections/grids/items", {"bbox": "1,2,3"}, 400, "'1,2,3'"),
        ("/collections/grids/items", {"bbox": "117,31,118,30"}, 400, "south 31"),
        ("/collections/grids/items", {"bbox": "117,a,118,31"}, 400, "117,a,118,31"),
        ("/collections/grids/items", {"colour": "red"}, 400, "'colour'"),
        ("/collections/grids/items", {"bbox-crs": "EPSG:3857", "bbox": "1,2,3,4"}, 400, "3857"),
        ("/collections/buildings/items", {"households": "many"}, 400, "'many'"),
        ("/collections/nowhere/items", {}, 404, "'nowhere'"),
        ("/collections/nowhere", {}, 404, "'nowhere'"),
        ("/collections/grids/items/999", {}, 404, "'999'"),
    ],
)
def test_bad_requests_are_4xx_naming_the_value(client, path, params, status, fragment):
    response = client.get(OGC + path, params=params)
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]


def test_incidents_never_carry_the_reporter(client: TestClient):
    report = client.post(
        "/api/v1/incidents",
        json={
            "category": "exposed_rubbish",
            "description": "门口垃圾 secret-text",
            "lon": 117.811,
            "lat": 30.931,
            "reporter_name": "王小明",
            "reporter_phone": "13812345678",
        },
    )
    assert report.status_code == 201, report.text
    response = client.get(f"{OGC}/collections/incidents/items")
    body = response.json()
    assert body["numberMatched"] == 1
    check_rfc7946(body["features"][0])
    assert body["features"][0]["properties"]["status"] == report.json()["status"]
    for secret in ("13812345678", "王小明", "secret-text"):
        assert secret not in response.text
    hexes = client.get(f"{OGC}/collections/incident_hexbins/items").json()
    assert [f["properties"]["count"] for f in hexes["features"]] == [1]
    check_rfc7946(hexes["features"][0])


def test_household_hexbins_add_up_to_the_households(client: TestClient, planted: Engine):
    body = client.get(
        f"{OGC}/collections/household_hexbins/items", params={"resolution": 9, "limit": 1000}
    ).json()
    total = rows(planted, "SELECT sum(households) AS n, count(*) AS c FROM buildings")[0]
    assert sum(f["properties"]["households"] for f in body["features"]) == total["n"]
    assert sum(f["properties"]["count"] for f in body["features"]) == total["c"]
    cell = body["features"][0]["id"]
    one = client.get(f"{OGC}/collections/household_hexbins/items/{cell}").json()
    assert one["properties"] == body["features"][0]["properties"]


def test_anonymous_hexbins_are_never_finer_than_the_public_resolution(
    client: TestClient, planted: Engine, settings: Settings
):
    import h3

    finest = settings.layers.public_hexbin_max_res
    with TestClient(create_app(settings, engine=planted), headers={}) as anonymous:
        for asked in (finest + 1, 15):
            body = anonymous.get(
                f"{OGC}/collections/household_hexbins/items",
                params={"resolution": asked, "limit": 1000},
            ).json()
            assert body["features"] and {h3.get_resolution(f["id"]) for f in body["features"]} == {
                finest
            }
        fine = client.get(  # staff see what they ask for
            f"{OGC}/collections/household_hexbins/items", params={"resolution": 15, "limit": 1}
        ).json()["features"][0]["id"]
        assert h3.get_resolution(fine) == 15
        hidden = anonymous.get(f"{OGC}/collections/household_hexbins/items/{fine}")
        assert hidden.status_code == 404
        coarse = h3.cell_to_parent(fine, finest)
        assert (
            anonymous.get(f"{OGC}/collections/household_hexbins/items/{coarse}").status_code == 200
        )


def test_a_layer_whose_table_is_missing_is_skipped_with_a_warning(
    planted: Engine, settings: Settings, tmp_path: Path, caplog
):
    shutil.copy(layers_dir() / "grids.toml", tmp_path / "grids.toml")
    (tmp_path / "later.toml").write_text(
        'title = { zh = "以后", en = "Later" }\ntable = "not_built_yet"\nid_field = "id"\n'
        'roles = ["admin"]\n[fields.id]\n[style]\ntype = "fill"\n',
        encoding="utf-8",
    )
    own = settings.updated(layers={"layers_dir": tmp_path})
    with caplog.at_level(logging.WARNING), TestClient(create_app(own, engine=planted)) as client:
        ids = [c["id"] for c in client.get(f"{OGC}/collections").json()["collections"]]
        assert ids == ["grids"]
        assert client.get(f"{OGC}/collections/later/items").status_code == 404
    assert any(
        "later" in r.getMessage() and "not_built_yet" in r.getMessage() for r in caplog.records
    )


def test_queryables_list_what_items_filters_on(client: TestClient, planted: Engine):
    """OGC API Features Part 3, which OWSLib and QGIS ask for before they filter."""
    response = client.get(f"{OGC}/collections/grids/queryables")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/schema+json")
    doc = response.json()
    assert doc["type"] == "object" and doc["$id"].endswith("/collections/grids/queryables")
    assert doc["properties"]["code"]["type"] == "string"
    assert doc["properties"]["geometry"]["x-ogc-role"] == "primary-geometry"
    # Each queryable filters items.
    code = rows(planted, "SELECT code FROM grids ORDER BY code LIMIT 1")[0]["code"]
    items = client.get(f"{OGC}/collections/grids/items", params={"code": code, "f": "json"}).json()
    assert [f["properties"]["code"] for f in items["features"]] == [code]
    links = client.get(f"{OGC}/collections/grids").json()["links"]
    assert any(link["href"].endswith("/grids/queryables") for link in links)
    conformance = client.get(f"{OGC}/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables" in conformance
    incidents = client.get(f"{OGC}/collections/incidents/queryables").json()["properties"]
    assert incidents["received_at"] == {**incidents["received_at"], "format": "date-time"}
    hexbins = client.get(f"{OGC}/collections/household_hexbins/queryables").json()
    assert list(hexbins["properties"]) == ["geometry"]
    assert client.get(f"{OGC}/collections/nope/queryables").status_code == 404
