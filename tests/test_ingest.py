"""Imports: real files into a real PostGIS; every failure leaves the database as it was."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from shapely import Polygon
from sqlalchemy import Engine, text

from geo_service.errors import InvalidInput, NotFound
from geo_service.ingest import ImportOptions, ImportRejected, import_file
from geo_service.settings import Settings
from tests import factories as f


def snapshot(engine: Engine) -> dict[str, list]:
    """Every row of every data table, to prove a failed import changed nothing."""
    tables = {
        "communities": "code, name, ST_AsEWKB(geom)",
        "grids": "code, name, community_code, ST_AsEWKB(geom)",
        "workers": "code, name, phone, grid_code",
        "buildings": "code, address, name, households, ST_AsEWKB(geom), ST_AsEWKB(footprint)",
        "centers": "code, name, kind, ST_AsEWKB(geom)",
        "street_edges": "code, name, ST_AsEWKB(geom)",
    }
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT {cols} FROM {t} ORDER BY code"))]
            for t, cols in tables.items()
        }


def run(engine: Engine, settings: Settings, kind: str, path: Path, **opts):
    opts.setdefault("rejects_path", path.parent / f"{kind}.rejects.csv")
    return import_file(engine, settings, kind, path, ImportOptions(**opts))


@pytest.fixture
def city(db: Engine, settings: Settings, tmp_path: Path) -> Path:
    """The planted city imported: 2 communities, 8 grids, 8 workers, 8 buildings, 2 centres."""
    f.write(f.communities(), tmp_path / "communities.shp")
    f.write(f.grids(), tmp_path / "grids.shp")
    f.workers().to_csv(tmp_path / "workers.csv", index=False)
    f.write(f.buildings(), tmp_path / "buildings.shp")
    f.write(f.centers(), tmp_path / "centers.shp")
    for kind in ("communities", "grids", "workers", "buildings", "centers"):
        name = "workers.csv" if kind == "workers" else f"{kind}.shp"
        assert run(db, settings, kind, tmp_path / name).applied
    return tmp_path


def test_import_counts_and_reimport_changes_nothing(city: Path, db: Engine, settings: Settings):
    with db.connect() as conn:
        counts = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("communities", "grids", "workers", "buildings", "centers")
        }
    assert counts == {"communities": 2, "grids": 8, "workers": 8, "buildings": 8, "centers": 2}
    before = snapshot(db)
    report = run(db, settings, "grids", city / "grids.shp")
    assert (report.inserted, report.updated, report.unchanged, report.deleted) == (0, 0, 8, 0)
    assert snapshot(db) == before


def test_reprojected_gbk_file_without_cpg_gives_the_same_rows(
    city: Path, db: Engine, settings: Settings, tmp_path: Path
):
    before = snapshot(db)
    path = f.write(
        f.grids(), tmp_path / "gk" / "grids.shp", crs="EPSG:4527", encoding="GBK", cpg=False
    )
    assert not path.with_suffix(".cpg").exists()
    report = run(db, settings, "grids", path)
    assert report.source_crs == "EPSG:4527"
    assert report.encoding == "gb18030"
    assert report.changed == 0
    assert snapshot(db) == before
    with db.connect() as conn:
        names = conn.execute(text("SELECT name FROM grids ORDER BY code")).scalars().all()
    assert names[0] == "社区1第1网格"


def test_cgcs2000_geographic_file_is_accepted(
    city: Path, db: Engine, settings: Settings, tmp_path: Path
):
    path = f.write(f.grids(), tmp_path / "cgcs" / "grids.shp", crs="EPSG:4490")
    report = run(db, settings, "grids", path)
    assert report.source_crs == "EPSG:4490"
    assert report.changed == 0


def test_changed_attribute_is_an_update(city: Path, db: Engine, settings: Settings, tmp_path: Path):
    grids = f.grids()
    grids.loc[0, "name"] = "新名字"
    report = run(db, settings, "grids", f.write(grids, tmp_path / "v2" / "grids.shp"))
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 7)
    with db.connect() as conn:
        version = conn.execute(
            text("SELECT version FROM dataset_versions WHERE kind = 'grids'")
        ).scalar_one()
    assert version == 2  # first import, then this change; the no-op re-imports did not bump


def test_the_web_mercator_copy_follows_an_import_that_moves_a_grid(
    city: Path, db: Engine, settings: Settings, tmp_path: Path
):
    """Tiles draw grids from a Web Mercator copy PostgreSQL computes on every write: an
    import that moves a shape moves the copy with it."""
    from shapely import affinity

    grids = f.grids().to_crs(f.UTM)
    grids.loc[0, "geometry"] = affinity.scale(grids.geometry[0], 0.5, 0.5)
    moved = run(db, settings, "grids", f.write(grids.to_crs(4326), tmp_path / "v2" / "g.shp"))
    assert moved.updated == 1
    with db.connect() as conn:
        stale = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE NOT ST_Equals(geom_3857, "
                "ST_Transform(geom, 3857))), count(*) FROM grids"
            )
        ).one()
    assert tuple(stale) == (0, len(grids))


def test_replace_deletes_codes_missing_from_the_file(
    city: Path, db: Engine, settings: Settings, tmp_path: Path
):
    path = f.write(f.centers().iloc[:1], tmp_path / "one" / "centers.shp")
    report = run(db, settings, "centers", path, replace=True)
    assert report.deleted == 1
    with db.connect() as conn:
        assert conn.execute(text("SELECT array_agg(code) FROM centers")).scalar_one() == ["C001"]


def test_replace_refuses_to_orphan_grids(
    city: Path, db: Engine, settings: Settings, tmp_path: Path
):
    before = snapshot(db)
    path = f.write(f.communities().iloc[:1], tmp_path / "one" / "communities.shp")
    with pytest.raises(Exception, match="refer"):
        run(db, settings, "communities", path, replace=True)
    assert snapshot(db) == before


def test_footprints_are_kept_with_a_point_inside(city: Path, db: Engine):
    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT ST_GeometryType(footprint), ST_Contains(footprint, geom) FROM buildings")
        ).all()
    assert rows and all(r == ("ST_MultiPolygon", True) for r in rows)


def test_points_from_csv_need_a_crs_and_land_where_expected(
    db: Engine, settings: Settings, tmp_path: Path
):
    csv = tmp_path / "centers.csv"
    pd.DataFrame(
        {"code": ["C9"], "name": ["测试中心"], "lon": ["117.81"], "lat": ["30.93"]}
    ).to_csv(csv, index=False)
    with pytest.raises(InvalidInput, match="--crs"):
        run(db, settings, "centers", csv)
    run(db, settings, "centers", csv, crs="cgcs2000")
    with db.connect() as conn:
        assert conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM centers")).one() == (
            117.81,
            30.93,
        )


def test_field_map_reads_differently_named_fields(db: Engine, settings: Settings, tmp_path: Path):
    gdf = f.communities().rename(columns={"code": "SQBM", "name": "SQMC"})
    path = f.write(gdf, tmp_path / "c.shp")
    with pytest.raises(InvalidInput, match="--map code=FIELD"):
        run(db, settings, "communities", path)
    report = run(db, settings, "communities", path, field_map={"code": "sqbm", "name": "SQMC"})
    assert report.inserted == 2


def test_bowtie_polygon_is_repaired_and_reported(db: Engine, settings: Settings, tmp_path: Path):
    gdf = f.communities()
    x0, y0, x1, y1 = gdf.geometry[1].bounds
    gdf.loc[1, "geometry"] = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])
    report = run(db, settings, "communities", f.write(gdf, tmp_path / "c.shp"))
    assert report.inserted == 2
    assert [(i.row, i.code) for i in report.repaired] == [(2, "340705001002")]
    assert "Self-intersection" in report.repaired[0].reason


# -- bad input: clear message naming the problem, nothing changed ----------------------------
def _missing_dbf(tmp: Path) -> tuple[str, Path, dict]:
    path = f.write(f.grids(), tmp / "grids.shp")
    path.with_suffix(".dbf").unlink()
    return "grids", path, {}


def _missing_prj(tmp: Path) -> tuple[str, Path, dict]:
    return "grids", f.write(f.grids(), tmp / "grids.shp", prj=False), {}


def _unknown_crs(tmp: Path) -> tuple[str, Path, dict]:
    return "grids", f.write(f.grids(), tmp / "grids.shp", prj=False), {"crs": "EPSG:999999"}


def _wrong_crs(tmp: Path) -> tuple[str, Path, dict]:
    # Gauss-Krüger metres declared as lon/lat: every coordinate is out of range.
    return (
        "grids",
        f.write(f.grids(), tmp / "grids.shp", crs="EPSG:4527", prj=False),
        {"crs": "EPSG:4490"},
    )


def _wrong_encoding(tmp: Path) -> tuple[str, Path, dict]:
    path = f.write(f.grids(), tmp / "grids.shp", encoding="GBK", cpg=False)
    return "grids", path, {"encoding": "utf-8"}


def _invalid_geometry(tmp: Path) -> tuple[str, Path, dict]:
    gdf = f.grids()
    gdf.loc[2, "geometry"] = Polygon([(117.81, 30.93), (117.81, 30.93), (117.811, 30.93)])
    return "grids", f.write(gdf, tmp / "grids.shp"), {}


def _duplicate_codes(tmp: Path) -> tuple[str, Path, dict]:
    gdf = f.grids()
    gdf.loc[3, "code"] = gdf.loc[0, "code"]
    return "grids", f.write(gdf, tmp / "grids.shp"), {}


def _households_text(tmp: Path) -> tuple[str, Path, dict]:
    gdf = f.buildings()
    gdf["households"] = gdf["households"].astype(str)
    gdf.loc[4, "households"] = "abc"
    return "buildings", f.write(gdf, tmp / "buildings.shp"), {}


def _unknown_community(tmp: Path) -> tuple[str, Path, dict]:
    gdf = f.grids()
    gdf.loc[5, "community"] = "340705001999"
    return "grids", f.write(gdf, tmp / "grids.shp"), {}


def _bad_grid_code(tmp: Path) -> tuple[str, Path, dict]:
    gdf = f.grids()
    gdf.loc[0, "code"] = "G-1"
    return "grids", f.write(gdf, tmp / "grids.shp"), {}


def _not_a_shapefile(tmp: Path) -> tuple[str, Path, dict]:
    tmp.mkdir()
    path = tmp / "grids.shp"
    path.write_bytes(b"this is not a shapefile")
    (tmp / "grids.dbf").write_bytes(b"\x03" + b"\x00" * 40)
    (tmp / "grids.shx").write_bytes(b"")
    return "grids", path, {}


def _truncated(part: str) -> Callable[[Path], tuple[str, Path, dict]]:
    def make(tmp: Path) -> tuple[str, Path, dict]:
        path = f.write(f.grids(), tmp / "grids.shp")
        damaged = path.with_suffix(part)
        damaged.write_bytes(damaged.read_bytes()[:150])
        return "grids", path, {}

    make.__name__ = f"_truncated_{part[1:]}"
    return make


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_truncated(".shp"), "grids.shp is truncated or damaged: its header declares"),
        (_truncated(".shx"), "grids.shx is truncated or damaged: its header declares"),
        (_truncated(".dbf"), "grids.dbf is truncated or damaged: its header declares 8 rows"),
        (_missing_dbf, "grids.dbf (attribute table) is missing"),
        (_missing_prj, "pass --crs"),
        (_unknown_crs, "unknown coordinate reference system 'EPSG:999999'"),
        (_wrong_crs, "not valid longitude/latitude"),
        (_wrong_encoding, "is not valid utf-8"),
        (_invalid_geometry, "row 3 code '340705001001003': invalid geometry"),
        (_duplicate_codes, "duplicate code '340705001001001'"),
        (_households_text, "households 'abc' is not a whole number"),
        (_unknown_community, "community '340705001999' is unknown"),
        (_bad_grid_code, "code 'G-1' does not have the configured shape"),
        (_not_a_shapefile, "grids.shp is not a shapefile shapes file, or is truncated"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:],
)
def test_bad_input_is_refused_and_nothing_changes(
    city: Path, db: Engine, settings: Settings, tmp_path: Path, make, message: str
):
    before = snapshot(db)
    kind, path, opts = make(tmp_path / "bad")
    with pytest.raises(InvalidInput) as caught:
        run(db, settings, kind, path, **opts)
    assert message in caught.value.message
    assert snapshot(db) == before


def test_rejected_rows_are_written_with_reasons_and_keep_going_imports_the_rest(
    db: Engine, settings: Settings, tmp_path: Path
):
    run(db, settings, "communities", f.write(f.communities(), tmp_path / "c.shp"))
    gdf = f.grids()
    gdf.loc[3, "code"] = gdf.loc[0, "code"]
    path = f.write(gdf, tmp_path / "grids.shp")
    with pytest.raises(ImportRejected) as caught:
        run(db, settings, "grids", path)
    rejects = pd.read_csv(caught.value.report.rejects_file, dtype=str)
    assert rejects["row"].tolist() == ["1", "4"]
    assert rejects["reason"].str.contains("duplicate code").all()
    assert rejects["wkt"].str.startswith("POLYGON").all()
    report = run(db, settings, "grids", path, keep_going=True)
    assert (report.inserted, len(report.rejected)) == (6, 2)


def test_dry_run_counts_but_changes_nothing(db: Engine, settings: Settings, tmp_path: Path):
    report = run(
        db, settings, "communities", f.write(f.communities(), tmp_path / "c.shp"), dry_run=True
    )
    assert (report.inserted, report.applied) == (2, False)
    assert snapshot(db)["communities"] == []


def test_missing_file_is_not_found(db: Engine, settings: Settings, tmp_path: Path):
    with pytest.raises(NotFound, match=r"nope\.shp"):
        run(db, settings, "grids", tmp_path / "nope.shp")


def test_unknown_kind_names_the_known_ones(db: Engine, settings: Settings, tmp_path: Path):
    with pytest.raises(InvalidInput, match="expected one of: communities, grids"):
        run(db, settings, "parcels", tmp_path / "x.shp")


def test_cli_reports_bad_input_with_exit_code_and_changes_nothing(
    city: Path, db: Engine, db_url: str, tmp_path: Path
):
    before = snapshot(db)
    gdf = f.buildings()
    gdf["households"] = gdf["households"].astype(str)
    gdf.loc[2, "households"] = "twelve"
    path = f.write(gdf, tmp_path / "bad" / "buildings.shp")
    done = subprocess.run(
        [
            str(Path(__file__).parents[1] / ".venv/bin/geo-service"),
            "import",
            "buildings",
            str(path),
            "--rejects",
            str(tmp_path / "rejects.csv"),
        ],
        env={"GEO_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3
    assert "households 'twelve' is not a whole number" in done.stderr
    assert "rejects.csv" in done.stderr
    assert snapshot(db) == before


def test_bulk_load_into_an_empty_table_keeps_every_row_and_the_index(
    db: Engine, settings: Settings, tmp_path: Path
):
    import geopandas as gpd
    import numpy as np
    import shapely

    n = 10_500  # above the bulk-load threshold
    x = f.X0 + (np.arange(n) % 100) * 30.0
    y = f.Y0 + (np.arange(n) // 100) * 30.0
    polygons = shapely.box(x, y, x + 12, y + 20)
    gdf = gpd.GeoDataFrame(
        {
            "code": [f"B{i:07d}" for i in range(n)],
            "address": [f"长江路{i}号" for i in range(n)],
            "name": ["" if i % 7 == 0 else f"{i}栋" for i in range(n)],
            "households": 10,
        },
        geometry=polygons,
        crs=f.UTM,
    ).to_crs(4326)
    gdf.loc[5, "geometry"] = shapely.multipolygons([gdf.geometry[5]])  # a MultiPolygon too
    path = f.write(gdf, tmp_path / "buildings.shp")
    report = run(db, settings, "buildings", path)
    assert (report.inserted, report.read) == (n, n)
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT count(*), count(name), sum(households), "
                "bool_and(ST_GeometryType(footprint) = 'ST_MultiPolygon'), "
                "bool_and(ST_Contains(footprint, geom)), min(ST_SRID(geom)) FROM buildings"
            )
        ).one()
        index = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'buildings_geom_gist'")
        ).scalar_one()
        # What tiles find the buildings through (the layer's index).
        tile_index = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'buildings_shape_gist'")
        ).scalar_one()
    assert rows == (n, n - len(range(0, n, 7)), 10 * n, True, True, 4326)
    assert "gist" in index and "gist" in tile_index
    again = run(db, settings, "buildings", path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, n)


def test_ewkb_for_copy_reads_back_as_the_same_geometry_with_srid_4326():
    """The bulk path splices SRID headers into WKB bytes; shapely reads them back as the
    input (a Polygon as a one-part MultiPolygon, as the typed column wants)."""
    import numpy as np
    import shapely

    from geo_service.ingest.store import _wkb

    geoms = [
        shapely.Point(117.8, 30.9),
        shapely.box(0, 0, 1, 1),
        None,
        shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)]),
        shapely.LineString([(0, 0), (1, 1)]),
    ]
    out = _wkb(np.array(geoms, dtype=object), ewkb=True)
    assert out[2] is None
    for given, raw in zip(geoms, out, strict=True):
        if given is None:
            continue
        back = shapely.from_wkb(raw)
        assert shapely.get_srid(back) == 4326
        expected = shapely.MultiPolygon([given]) if given.geom_type == "Polygon" else given
        assert back.geom_type == expected.geom_type and back.equals(expected)
