"""`assign` streams a file in chunks (memory flat whatever its size) and decides most points
with the grids in memory: the answers must not depend on the chunk size, and must be the
locate door's (PostGIS) for points on and a hair off grid boundaries, diagonal edges included,
where GEOS's arithmetic and PostGIS's differ."""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box
from sqlalchemy import Engine, text

from geo_service.crs import parse_input_crs
from geo_service.grids import assign
from geo_service.grids.locate import locate_points
from geo_service.settings import Settings
from tests import factories
from tests.test_cli import geo, no_traceback

COMMUNITY = factories.PLANTED_COMMUNITY
TOLERANCE_M = 50.0
# Two boxes sharing an edge, and a square cut along its diagonal into two triangles (a shared
# edge no coordinate axis helps with), with a gap of 0.0005° between the boxes and the square.
A, B, C, D = (117.8045, 30.9283), (117.8067, 30.9283), (117.8067, 30.9317), (117.8045, 30.9317)
PLANTED = {
    f"{COMMUNITY}001": box(117.800, 30.928, 117.802, 30.932),
    f"{COMMUNITY}002": box(117.802, 30.928, 117.804, 30.932),
    f"{COMMUNITY}003": Polygon([A, B, C]),
    f"{COMMUNITY}004": Polygon([A, C, D]),
}


@pytest.fixture
def planted(db: Engine, settings: Settings, tmp_path: Path) -> Engine:
    return factories.plant_grids(db, settings, tmp_path / "grids", PLANTED, [])


def edge_points(engine: Engine, rng: np.random.Generator) -> np.ndarray:
    """Points on the stored grids' edges (vertices, points along each edge as doubles round
    them) and a hair off them on both sides, from 1e-13° to 3e-7°."""
    with engine.connect() as conn:
        wkb = conn.execute(text("SELECT ST_AsBinary(geom) FROM grids")).scalars().all()
    points = []
    for polygon in shapely.from_wkb(wkb):
        ring = shapely.get_coordinates(polygon.boundary)
        for p, q in itertools.pairwise(ring):
            t = np.concatenate([[0.0, 0.5], rng.uniform(0, 1, 20)])
            on = p + t[:, None] * (q - p)
            normal = np.array([p[1] - q[1], q[0] - p[0]]) / np.hypot(*(q - p))
            for off in (1e-13, 1e-10, 5e-8, 1e-7, 1.5e-7, 3e-7):
                points += [on + off * normal, on - off * normal]
            points.append(on)
    return np.concatenate(points)


def rows_of(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))[1:]


def test_points_on_and_off_edges_get_what_locate_gives(planted: Engine, tmp_path: Path):
    xy = edge_points(planted, np.random.default_rng(3))
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text(
        "id,lon,lat\n" + "".join(f"{k},{x!r},{y!r}\n" for k, (x, y) in enumerate(xy.tolist()))
    )
    assign.assign_csv(planted, source, out, parse_input_crs("wgs84"), TOLERANCE_M)

    with planted.connect() as conn:
        located = locate_points(conn, xy[:, 0], xy[:, 1], parse_input_crs("wgs84"), TOLERANCE_M)
    ours = [(r[5], r[3], float(r[6]) if r[6] else None) for r in rows_of(out)]
    theirs = [(p.status, p.grid_code or "", p.distance_m) for p in located]
    assert ours == theirs
    assert {"inside", "boundary", "nearest"} <= {status for status, _, _ in ours}


def test_the_console_script_gives_the_same_file_in_small_chunks(
    planted: Engine, db_url: str, tmp_path: Path
):
    rng = np.random.default_rng(8)
    n = 20_000
    lon = rng.uniform(117.7993, 117.8073, n).round(7)
    lat = rng.uniform(30.9275, 30.9325, n).round(7)
    lines = [f"p{k},{x},{y}" for k, (x, y) in enumerate(zip(lon, lat, strict=True))]
    lines[5] = "p5,abc,30.93"  # unusable coordinates, in the first chunk
    lines[-3] = ""  # an empty row near the end
    xy = edge_points(planted, np.random.default_rng(4))[::7]
    lines += [f"e{k},{x!r},{y!r}" for k, (x, y) in enumerate(xy.tolist())]
    source = tmp_path / "in.csv"
    source.write_text("id,lon,lat\n" + "\n".join(lines) + "\n")
    assert source.stat().st_size > 30 * 16_384  # some 37 chunks

    outputs = {}
    for chunk in (None, 16_384):
        out = tmp_path / f"out-{chunk}.csv"
        args = ["assign", str(source), "--output", str(out), "--json"]
        done = geo(
            *args, *(["--chunk-bytes", str(chunk)] if chunk else []), cwd=tmp_path, db_url=db_url
        )
        no_traceback(done)
        assert done.returncode == 0, done.stderr
        outputs[chunk] = out.read_bytes()

    assert outputs[16_384] == outputs[None]
    rows = rows_of(tmp_path / "out-16384.csv")
    assert len(rows) == len(lines)
    assert [r[0] for r in rows[:8]] == [f"p{k}" for k in range(8)]
    assert rows[5][5] == "invalid" and "abc" in rows[5][7]
    statuses = {r[5] for r in rows}
    assert {"inside", "boundary", "nearest", "outside", "invalid"} <= statuses


@pytest.mark.parametrize("chunk", ["0", "-5", "1", "16383"])
def test_a_chunk_too_small_to_hold_a_row_is_refused_naming_it(
    planted: Engine, db_url: str, tmp_path: Path, chunk: str
):
    source = tmp_path / "in.csv"
    source.write_text("id,lon,lat\np1,117.801,30.93\n")
    out = tmp_path / "out.csv"
    args = ["assign", str(source), "--output", str(out), "--chunk-bytes", chunk]
    done = geo(*args, cwd=tmp_path, db_url=db_url)
    no_traceback(done)
    assert done.returncode != 0
    assert f"chunk_bytes={chunk} is too small" in done.stderr
    assert not out.exists()
