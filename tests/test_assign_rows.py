"""`assign` keeps the README's promise that bad rows never abort the file: each malformed or
unusable row comes out `invalid` with a reason naming what is wrong, in its place, and every
other row gets its answer. Through the installed console script, the HTTP batch door (which
reads coordinates the same way) and, for batch boundaries, the domain function."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box
from sqlalchemy import Engine

from geo_service.api.app import create_app
from geo_service.coords import numbers
from geo_service.crs import parse_input_crs
from geo_service.grids import assign
from geo_service.settings import Settings
from tests import factories
from tests.test_cli import geo, no_traceback

COMMUNITY = factories.PLANTED_COMMUNITY
G1, G2 = f"{COMMUNITY}001", f"{COMMUNITY}002"
HEADER = "id,lon,lat,grid_code,community_code,status,distance_m,reason"
# Well-formed rows around the bad one, and the output lines they must give (numbers bare).
BEFORE = "g1,117.801,30.931"
AFTER = ("g2,117.803,30.931", "g3,117.810,30.929")
ANSWERED = {
    "g1": f"g1,117.801,30.931,{G1},{COMMUNITY},inside,0,",
    "g2": f"g2,117.803,30.931,{G2},{COMMUNITY},inside,0,",
    "g3": "g3,117.810,30.929,,,outside,,",
}


@pytest.fixture
def planted(db: Engine, settings: Settings, tmp_path: Path) -> Engine:
    grids = {G1: box(117.800, 30.930, 117.802, 30.932), G2: box(117.802, 30.930, 117.804, 30.932)}
    return factories.plant_grids(db, settings, tmp_path / "grids", grids, [])


def run_assign(text: str, folder: Path, db_url: str, *, encoding: str = "utf-8") -> list[str]:
    """The output lines of `geo-service assign` on a CSV holding `text`."""
    source, out = folder / "in.csv", folder / "out.csv"
    source.write_bytes(text.encode(encoding))
    done = geo("assign", str(source), "--output", str(out), cwd=folder, db_url=db_url)
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    return out.read_text(encoding="utf-8").splitlines()


def cells(line: str) -> list[str]:
    return next(csv.reader([line]))


@pytest.mark.parametrize(
    ("bad", "row_id", "named"),
    [
        ("b,117.801", "b", "2 values where the header has 3 (a value is missing): 'b,117.801'"),
        ("b,117.801,30.931,x", "b", "4 values where the header has 3"),
        ("b,117,801,30.931", "b", "(a value holding a comma must be quoted): 'b,117,801,30.931'"),
        ("", "", "an empty row"),
        ("b,abc,30.931", "b", "coordinates are not numbers: lon='abc', lat='30.931'"),
        ("b,１１７，８０１,30.931", "b", "lon='１１７，８０１'"),
        ("b,117.801,", "b", "lat=''"),
        ("b,217.801,30.931", "b", "out of range for wgs84: lon='217.801'"),
    ],
    ids=[
        "short-row",
        "long-row",
        "unquoted-comma",
        "empty-line",
        "not-a-number",
        "full-width-comma",
        "missing-lat",
        "out-of-range",
    ],
)
def test_a_bad_row_is_invalid_with_its_reason_and_the_others_answered(
    planted: Engine, db_url: str, tmp_path: Path, bad: str, row_id: str, named: str
):
    lines = run_assign("\n".join(["id,lon,lat", BEFORE, bad, *AFTER]) + "\n", tmp_path, db_url)
    assert lines[0] == HEADER
    assert len(lines) == 5  # one output row per input row, in input order
    assert [lines[1], lines[3], lines[4]] == [ANSWERED["g1"], ANSWERED["g2"], ANSWERED["g3"]]
    got = cells(lines[2])
    assert (got[0], got[5]) == (row_id, "invalid")
    assert named in got[7]


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("\ufeffid,lon,lat\nq,117.801,30.931\n", "inside"),  # Excel's "CSV UTF-8"
        ("id,lon,lat\nq,１１７．８０１,３０．９３１\n", "inside"),  # full-width digits and point
        ("id,lon,lat\nq, 117.801 ,　30.931\n", "inside"),  # spaces, a full-width one too
        ("id,lon,lat\r\nq,117.801,30.931\r\n", "inside"),
        ("id,lon,lat\nq,－１１７．８０１,30.931\n", "outside"),  # full-width minus: -117.801
        ('id,lon,lat\n"q","117.801","30.931"\n', "inside"),
    ],
    ids=["bom", "full-width-digits", "spaces", "crlf", "full-width-minus", "quoted"],
)
def test_rows_typed_in_other_ways_are_read_and_answered(
    planted: Engine, db_url: str, tmp_path: Path, text: str, status: str
):
    lines = run_assign(text, tmp_path, db_url)
    assert lines[0] == HEADER and len(lines) == 2
    got = cells(lines[1])
    assert (got[0], got[5], got[7]) == ("q", status, "")
    assert got[3] == (G1 if status == "inside" else "")


def test_a_gb18030_file_with_a_short_row(planted: Engine, db_url: str, tmp_path: Path):
    text = "id,lon,lat,备注\n甲,117.801,30.931,铜官区\n乙,117.801\n"
    lines = run_assign(text, tmp_path, db_url, encoding="gb18030")
    assert [cells(line)[5] for line in lines[1:]] == ["inside", "invalid"]
    assert "'乙,117.801'" in cells(lines[2])[7]


def test_values_that_need_quotes_are_quoted_and_nothing_else(
    planted: Engine, db_url: str, tmp_path: Path
):
    text = 'id,note,lon,lat\n"a,""1""","two\nlines",117.801,30.931\nb,,117.801\n'
    lines = run_assign(text, tmp_path, db_url)
    assert lines[1] == f'"a,""1""",117.801,30.931,{G1},{COMMUNITY},inside,0,'
    assert lines[2].startswith("b,,,,,invalid,,") and lines[2].endswith('"')
    assert len(lines) == 3  # the value spanning two lines is one row


# -- the HTTP batch door reads coordinates the same way --------------------------------------
@pytest.fixture
def client(planted: Engine, settings: Settings):
    with TestClient(create_app(settings, engine=planted)) as client:
        yield client


@pytest.mark.parametrize(
    ("lon", "lat", "status", "named"),
    [
        ("１１７．８０１", "３０．９３１", "inside", None),
        ("－１１７．８０１", "30.931", "outside", None),
        ("abc", "30.931", "invalid", "lon='abc'"),
        ("１１７，８０１", "30.931", "invalid", "lon='１１７，８０１'"),
        ("", "30.931", "invalid", "lon=''"),
        ("217.801", "30.931", "invalid", "out of range for wgs84: lon='217.801'"),
    ],
    ids=[
        "full-width-digits",
        "full-width-minus",
        "not-a-number",
        "full-width-comma",
        "empty",
        "out-of-range",
    ],
)
def test_http_batch_answers_each_point_and_names_bad_values(
    client: TestClient, lon: str, lat: str, status: str, named: str | None
):
    points = [
        {"id": "g1", "lon": 117.801, "lat": 30.931},
        {"id": "b", "lon": lon, "lat": lat},
        {"id": "g2", "lon": "117.803", "lat": "30.931"},
    ]
    response = client.post("/api/v1/locate", json=points)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["id"], r["grid_code"]) for r in (results[0], results[2])] == [("g1", G1), ("g2", G2)]
    assert results[1]["status"] == status
    if named:
        assert named in results[1]["message"]
    else:
        assert results[1]["message"] is None


def test_http_single_point_reads_full_width_digits(client: TestClient):
    response = client.get("/api/v1/locate", params={"lon": "１１７．８０１", "lat": "３０．９３１"})
    assert response.status_code == 200 and response.json()["grid_code"] == G1


def test_numbers_share_the_address_normaliser():
    got = numbers(["１１７．８１", "－３０．５", "117，81", " 1.5 ", None, 2.0])
    assert got[:2].tolist() == [117.81, -30.5] and got[3:4].tolist() == [1.5]
    assert got[2] != got[2] and got[4] != got[4] and got[5] == 2.0  # NaN for junk
    many = numbers(["１１７．８１"] * 100 + ["x"])  # the vectorised path reads them too
    assert many[0] == 117.81 and many[-1] != many[-1]


# -- malformed rows across batch boundaries, with two workers ---------------------------------
def test_bad_rows_keep_their_place_across_batches_and_workers(
    planted: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(assign, "BLOCK_BYTES", 256)  # a handful of rows per batch
    kinds = {
        0: ("{i},117.801", "invalid"),
        1: ("{i},117.801,30.931,x", "invalid"),
        2: ("", "invalid"),
        3: ("{i},abc,30.931", "invalid"),
        4: ('{i},117.801,"30.931"', "inside"),
        5: ("{i},１１７．８０３,30.931", "inside"),
    }
    lines, expected = [], []
    for i in range(600):
        kind = i % 11 if i % 11 in kinds else None
        if i in (0, 599):
            kind = 0  # malformed first and last rows
        template, status = kinds[kind] if kind is not None else ("{i},117.810,30.929", "outside")
        lines.append(template.format(i=i))
        expected.append(("" if kind == 2 else str(i), status))
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("id,lon,lat\n" + "\n".join(lines) + "\n\n")  # and a blank line at the end
    expected.append(("", "invalid"))

    report = assign.assign_csv(planted, source, out, parse_input_crs("wgs84"), 50.0)

    rows = list(csv.reader(io.StringIO(out.read_text())))[1:]
    assert [(r[0], r[5]) for r in rows] == expected
    assert all(r[7] for r in rows if r[5] == "invalid")
    assert not any(r[7] for r in rows if r[5] != "invalid")
    assert report.rows == len(expected)
    assert report.by_status["invalid"] == sum(s == "invalid" for _, s in expected)


def test_a_well_formed_file_never_takes_the_row_by_row_path(
    planted: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def refuse(*args: object) -> None:
        raise AssertionError("a well-formed file was copied row by row")

    monkeypatch.setattr(assign, "_tolerant_copy", refuse)
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("id,lon,lat\n" + "\n".join([BEFORE, "e,abc,30.931", "", *AFTER]) + "\n")
    report = assign.assign_csv(planted, source, out, parse_input_crs("wgs84"), 50.0)
    assert report.by_status == {"inside": 2, "outside": 1, "invalid": 2}


def test_a_row_the_csv_module_cannot_read_is_invalid_and_the_rest_answered(
    planted: Engine, tmp_path: Path
):
    huge = "x" * 200_000  # over the csv module's 128 KB limit for one value
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text(f'id,lon,lat\n{BEFORE}\nh,"{huge}",30.931\nb,117.801\n{AFTER[0]}\n')
    assign.assign_csv(planted, source, out, parse_input_crs("wgs84"), 50.0)
    rows = list(csv.reader(io.StringIO(out.read_text())))[1:]
    assert [r[5] for r in rows] == ["inside", "invalid", "invalid", "inside"]
    assert "unreadable row: field larger than field limit" in rows[1][7]
    assert "'b,117.801'" in rows[2][7]
