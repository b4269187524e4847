"""The layer catalogue: the repository's layer files load; a bad file is refused with a
message naming the file and the field; personal data never reaches anonymous users."""

from __future__ import annotations

from pathlib import Path

import pytest

from geo_service.errors import BadRequest
from geo_service.layers.catalogue import LayerFileError, load_catalogue
from geo_service.layers.hexbin import Hexagon, aggregate, reach, touching
from geo_service.layers.ogc import parse_bbox
from geo_service.layers.tiles import BadTile, CachedTile, TileCache, etag_matches, parse_tile
from geo_service.packaged import layers_dir

GOOD = """
title = { zh = "网格", en = "Grids" }
table = "grids"
id_field = "code"
roles = ["admin", "anonymous"]
[fields.code]
[fields.name]
[style]
type = "fill"
popup = ["name"]
"""


def write(tmp_path: Path, text: str, name: str = "grids.toml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_the_repository_layers_load_with_their_labels_and_roles():
    catalogue = load_catalogue(layers_dir())
    ids = set(catalogue.layers)
    assert {
        "communities",
        "grids",
        "buildings",
        "centers",
        "streets",
        "incidents",
        "incident_hexbins",
        "household_hexbins",
        "coverage_buildings",
        "coverage_isochrones",
        "coverage_tiers",
        "coverage_gaps",
    } <= ids
    for layer in catalogue:
        assert layer.title.zh and layer.title.en
        assert layer.roles
        for entry in layer.style.legend:
            assert entry.label.zh and entry.label.en
    assert "anonymous" not in catalogue.layers["incidents"].roles
    # Grids are drawn from their shapes stored in Web Mercator (migration 0004).
    assert catalogue.layers["grids"].tile_geometry == "geom_3857"
    assert catalogue.layers["buildings"].tile_geometry is None
    assert "reporter_phone" not in catalogue.layers["incidents"].fields


def test_a_good_file_loads_and_its_id_is_the_file_name(tmp_path):
    catalogue = load_catalogue(write(tmp_path, GOOD))
    layer = catalogue.layers["grids"]
    assert layer.source_sql == 'SELECT * FROM "grids"'
    assert layer.output_fields == ["code", "name"]
    assert layer.live  # no versions: generated per request


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda t: t.replace('title = { zh = "网格", en = "Grids" }\n', ""), ["title", "required"]),
        (lambda t: t.replace('"admin", "anonymous"', '"admin", "mayor"'), ["roles.1", "mayor"]),
        (lambda t: t.replace('table = "grids"', 'table = "grids; drop"'), ["table"]),
        (
            lambda t: t.replace('table = "grids"', 'table = "grids"\nsql = "SELECT 1"'),
            ["exactly one"],
        ),
        (lambda t: t.replace('popup = ["name"]', 'popup = ["phone_no"]'), ["phone_no"]),
        (lambda t: t.replace('id_field = "code"', 'id_field = "gid"'), ["gid"]),
        (lambda t: t + "[simplify]\n5 = 1.0\n", ["simplify", "zoom 0"]),
        (lambda t: t + "colour = 1\n", ["colour"]),
        (
            lambda t: t.replace("[fields.name]", "[fields.name]\n[fields.reporter_phone]"),
            ["reporter_phone", "anonymous"],
        ),
        (
            lambda t: t.replace("[fields.name]", "[fields.name]\npersonal = true"),
            ["'name'", "personal"],
        ),
        (
            lambda t: t.replace(
                'table = "grids"', 'sql = "SELECT code, description AS name, geom FROM incidents"'
            ),
            ["description", "anonymous"],
        ),
        (lambda t: t.replace('table = "grids"', 'sql = "DELETE FROM grids"'), ["SELECT"]),
        (
            lambda t: t.replace(
                'table = "grids"', "sql = \"SELECT * FROM grids WHERE name LIKE 'a%'\""
            ),
            ["%"],
        ),
        (lambda t: t.replace("[style]", "[style\n"), ["not valid TOML"]),
        (
            lambda t: t.replace('table = "grids"', 'table = "grids"\ntile_geometry = "geom 3857"'),
            ["tile_geometry"],
        ),
        (
            lambda t: (
                t.replace('table = "grids"', 'table = "grids"\ntile_geometry = "geom_3857"')
                + "[hexbin]\nresolutions = { 0 = 8 }\n"
            ),
            ["hexbin", "tile_geometry"],
        ),
        (  # simplified copies of a shape the layer does not draw
            lambda t: t + '[tile_simplified]\n"5" = "geom_3857_s5"\n',
            ["tile_simplified", "tile_geometry"],
        ),
        (  # a copy simplified by a tolerance no zoom uses
            lambda t: (
                t.replace('table = "grids"', 'table = "grids"\ntile_geometry = "geom_3857"')
                + '[simplify]\n0 = 20.0\n12 = 5.0\n[tile_simplified]\n"2" = "geom_3857_s2"\n'
            ),
            ["tile_simplified", "tolerance 2.0", "simplify"],
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_field(tmp_path, change, fragments):
    write(tmp_path, change(GOOD))
    with pytest.raises(LayerFileError) as err:
        load_catalogue(tmp_path)
    assert "grids.toml" in err.value.message
    for fragment in fragments:
        assert fragment in err.value.message


def test_personal_fields_are_allowed_when_anonymous_users_cannot_see_the_layer(tmp_path):
    text = GOOD.replace('"admin", "anonymous"', '"dispatcher"').replace(
        "[fields.name]", "[fields.name]\npersonal = true"
    )
    assert load_catalogue(write(tmp_path, text)).layers["grids"].fields["name"].personal


def test_two_files_with_one_id_are_refused(tmp_path):
    write(tmp_path, GOOD)
    write(tmp_path, 'id = "grids"\n' + GOOD, "other.toml")
    with pytest.raises(LayerFileError, match="already used"):
        load_catalogue(tmp_path)


def test_the_centres_layer_is_centers_like_its_table_and_answers_to_its_former_id():
    catalogue = load_catalogue(layers_dir())
    assert "centers" in catalogue.layers and "centres" not in catalogue.layers
    assert catalogue.layers["centers"].table == "centers"
    assert catalogue.canonical("centres") == catalogue.canonical("centers") == "centers"
    assert catalogue.canonical("nowhere") == "nowhere"


def test_an_alias_is_one_more_name_and_may_not_take_another_layers(tmp_path):
    write(tmp_path, GOOD.replace('table = "grids"', 'table = "grids"\naliases = ["cells"]'))
    assert load_catalogue(tmp_path).canonical("cells") == "grids"
    write(tmp_path, GOOD.replace("[style]", '[style]\ncolor = "#000000"'), "cells.toml")
    with pytest.raises(
        LayerFileError, match=r"grids.toml: alias 'cells' is already used by .*cells.toml"
    ):
        load_catalogue(tmp_path)
    (tmp_path / "cells.toml").unlink()
    write(tmp_path, GOOD.replace('table = "grids"', 'table = "grids"\naliases = ["grids"]'))
    with pytest.raises(LayerFileError, match="alias 'grids' is the layer's own id"):
        load_catalogue(tmp_path)


def test_simplification_and_h3_resolution_follow_the_zoom_steps():
    catalogue = load_catalogue(layers_dir())
    grids = catalogue.layers["grids"]
    assert [grids.simplify_at(z) for z in (5, 12, 13, 14, 18)] == [20.0, 5.0, 5.0, 1.0, 0.0]
    hexes = catalogue.layers["incident_hexbins"]
    assert [hexes.resolution_at(z) for z in (0, 10, 12, 13, 16, 20)] == [3, 6, 8, 8, 10, 10]


@pytest.mark.parametrize(
    ("z", "x", "y", "fragment"),
    [
        ("25", "0", "0", "zoom 25"),
        ("3", "8", "0", "x 8"),
        ("3", "0", "9", "y 9"),
        ("a", "0", "0", "'a'"),
    ],
)
def test_a_tile_that_does_not_exist_is_named(z, x, y, fragment):
    with pytest.raises(BadTile, match=fragment):
        parse_tile(z, x, y)


def test_bbox_parsing_names_the_bad_value_and_splits_at_the_antimeridian():
    assert parse_bbox("170,-10,-170,10") == ((170, -10, 180, 10), (-180, -10, -170, 10))
    for bad in ("1,2,3", "a,b,c,d", "0,50,1,40", "0,0,200,1"):
        with pytest.raises(BadRequest, match=bad.split(",")[0]):
            parse_bbox(bad)


def test_etags_match_with_weak_forms_and_lists():
    assert etag_matches('"a", W/"b"', '"b"')
    assert etag_matches("*", '"x"')
    assert not etag_matches('"a"', '"b"') and not etag_matches(None, '"b"')


def test_the_tile_cache_keeps_to_its_byte_budget_dropping_the_oldest():
    cache = TileCache(max_bytes=3 * 1200)
    for i in range(5):
        cache.put((i,), CachedTile(b"x" * 1000, str(i), False))
    assert cache.get((0,)) is None and cache.get((4,)) is not None
    assert cache.size <= 3 * 1200


def test_hexagons_count_every_point_once_and_have_right_hand_rings():
    lons = [117.81, 117.8101, 117.83, 117.9]
    lats = [30.93, 30.9301, 30.94, 30.95]
    found = aggregate(lons, lats, [1, 2, 3, 4], 8)
    assert sum(h.count for h in found) == 4 and sum(h.weight for h in found) == 10
    from shapely.geometry import LinearRing

    for hexagon in found:
        assert LinearRing(hexagon.ring()).is_ccw
    box = (117.805, 30.925, 117.815, 30.935)
    assert [h.count for h in touching(found, box)] == [2]
    grown = reach(box, 8)
    assert grown[0] < box[0] - 0.01 and grown[3] > box[3] + 0.01
    assert isinstance(found[0], Hexagon)
