"""Binary COPY rows laid out by numpy (db/bulk.py), read back by PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from sqlalchemy import Engine, text

from geo_service.db import bulk


@pytest.mark.parametrize("rows", [0, 1, 7, 5000])
def test_binary_rows_round_trip_with_nulls_and_any_text_width(db: Engine, rows: int):
    rng = np.random.default_rng(rows)
    words = ["", "C1", "铜官区长江路12号", "340705001001001", "a\\b\tc\nd", "x" * 300]
    names = np.array([words[i].encode() for i in rng.integers(0, len(words), rows)], dtype="S")
    ints = rng.integers(-(2**31), 2**31 - 1, rows)
    bigs = rng.integers(-(2**62), 2**62, rows)
    reals = rng.normal(0, 1e6, rows)
    null = rng.random((4, rows)) < 0.3
    body = bulk.binary_rows(
        [
            ("int4", np.arange(rows), None),
            ("int4", ints, null[0]),
            ("int8", bigs, null[1]),
            ("float8", reals, null[2]),
            ("text", names, null[3]),
        ]
    )
    with db.begin() as conn:
        conn.execute(
            text("CREATE TEMP TABLE t (i int4, a int4, b int8, r float8, s text) ON COMMIT DROP")
        )
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(bulk.COPY_HEADER + body + bulk.COPY_TRAILER)
        back = conn.execute(text("SELECT a, b, r, s FROM t ORDER BY i")).all()
    assert len(back) == rows
    for k, (a, b, r, s) in enumerate(back):
        assert a == (None if null[0, k] else ints[k])
        assert b == (None if null[1, k] else bigs[k])
        assert r == (None if null[2, k] else reals[k])
        assert s == (None if null[3, k] else names[k].decode())


@pytest.mark.parametrize("kind", ["points", "lines", "xy", "Lines"])
def test_geometries_arrive_as_the_same_lon_lat_shapes(db: Engine, kind: str):
    rng = np.random.default_rng(7)
    xy = rng.uniform([117.7, 30.8], [117.9, 31.0], (300, 2))
    if kind in ("points", "xy"):
        geoms = shapely.points(xy)
    else:  # lines of 2 to 6 vertices
        geoms = np.array(
            [shapely.LineString(xy[i : i + 2 + i % 5]) for i in range(0, 290)], dtype=object
        )
    sent: np.ndarray | bulk.Lines = geoms
    if kind == "xy":  # points as their coordinates
        sent = xy
    elif kind == "Lines":  # lines as their vertices
        sent = bulk.Lines(shapely.get_coordinates(geoms), shapely.get_num_coordinates(geoms))
    null = np.arange(len(geoms)) % 11 == 0
    body = bulk.binary_rows([("int4", np.arange(len(geoms)), None), ("geometry", sent, null)])
    with db.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE g (i int4, geom geometry) ON COMMIT DROP"))
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy("COPY g FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(bulk.COPY_HEADER + body + bulk.COPY_TRAILER)
        back = conn.execute(text("SELECT ST_SRID(geom), ST_AsBinary(geom) FROM g ORDER BY i")).all()
    assert len(back) == len(geoms)
    for k, (srid, wkb) in enumerate(back):
        if null[k]:
            assert wkb is None
        else:
            assert srid == 4326
            assert shapely.equals_exact(shapely.from_wkb(bytes(wkb)), geoms[k], 0)


@pytest.mark.parametrize(
    ("sql_type", "wire", "values"),
    [
        ("int4", ">i4", [0, -(2**31), 2**31 - 1, 7]),
        ("int8", ">i8", [-(2**62), 2**62, 1]),
        ("float8", ">f8", [0.5, -1e300, float("inf"), 117.81234567891234]),
        ("bool", "?", [True, False, True]),
        ("float8", ">f8", []),
    ],
)
def test_array_values_reads_a_whole_column_as_sent(
    db: Engine, sql_type: str, wire: str, values: list[object]
):
    with db.connect() as conn:
        data = conn.execute(
            text(
                f"SELECT array_send(array_agg(v ORDER BY i)) FROM unnest(CAST(:v AS {sql_type}[])) "
                "WITH ORDINALITY AS u(v, i)"
            ),
            {"v": values},
        ).scalar_one()
    got = bulk.array_values(data, wire)
    assert got.tolist() == values  # no rows: array_agg gives NULL, read as empty
    assert got.dtype.isnative


def test_array_values_refuses_nulls(db: Engine):
    with db.connect() as conn:
        data = conn.execute(text("SELECT array_send(ARRAY[1, NULL, 3]::int4[])")).scalar_one()
    with pytest.raises(ValueError, match="without NULLs"):
        bulk.array_values(data, ">i4")


def test_linestrings_wkb_reads_the_vertices_postgis_sends(db: Engine):
    lines = [
        shapely.LineString([(117.81, 30.94), (117.82, 30.95)]),
        shapely.LineString([(0, 0), (1e-9, -1e-9), (-179.9, 89.9), (3, 4)]),
        shapely.LineString([(117.8123456789012, 30.9), (117.8, 30.9123456789012)]),
    ]
    with db.connect() as conn:
        count, wkb = conn.execute(
            text(
                "SELECT array_send(array_agg(ST_NPoints(g) ORDER BY i)), "
                "string_agg(ST_AsBinary(g, 'NDR'), ''::bytea ORDER BY i) "
                "FROM unnest(CAST(:wkt AS text[])) WITH ORDINALITY AS u(w, i), "
                "ST_GeomFromText(w) AS g"
            ),
            {"wkt": [line.wkt for line in lines]},
        ).one()
    got = bulk.linestrings_wkb(wkb, bulk.array_values(count, ">i4"))
    assert got.count.tolist() == [2, 4, 2]
    assert np.array_equal(got.xy, shapely.get_coordinates(lines))  # bit for bit
    picked = bulk.Lines.concat([got.take(np.array([2, 0])), got.take(np.array([1]))])
    assert np.array_equal(picked.xy, shapely.get_coordinates([lines[2], lines[0], lines[1]]))
    with pytest.raises(ValueError, match="do not hold 3 LineStrings"):
        bulk.linestrings_wkb(wkb, np.array([2, 4, 3]))


@pytest.mark.parametrize("rows", [1, 40])
def test_blob_rows_carry_numbers_and_values_of_any_length(db: Engine, rows: int):
    rng = np.random.default_rng(rows)
    shapes = [
        shapely.Point(117.8, 30.9).buffer(0.001 * (1 + i), quad_segs=i + 1) for i in range(rows)
    ]
    codes = ["C" * (i % 7) + "中心" for i in range(rows)]
    ints, reals = rng.integers(-(2**31), 2**31 - 1, rows), rng.normal(0, 1e6, rows)
    ewkb = shapely.to_wkb(shapely.set_srid(shapes, 4326), include_srid=True, byte_order=1)
    body = bulk.blob_rows(
        [("int4", np.arange(rows)), ("int4", ints), ("float8", reals)],
        [[c.encode() for c in codes], list(ewkb)],
    )
    with db.begin() as conn:
        conn.execute(
            text(
                "CREATE TEMP TABLE b (i int4, a int4, r float8, s text, geom geometry) "
                "ON COMMIT DROP"
            )
        )
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy("COPY b FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(bulk.COPY_HEADER + body + bulk.COPY_TRAILER)
        back = conn.execute(text("SELECT a, r, s, ST_AsBinary(geom) FROM b ORDER BY i")).all()
    assert [(a, r, s) for a, r, s, _ in back] == list(
        zip(ints.tolist(), reals.tolist(), codes, strict=True)
    )
    assert all(
        shapely.equals_exact(shapely.from_wkb(bytes(g)), shape, 0)
        for (*_, g), shape in zip(back, shapes, strict=True)
    )
