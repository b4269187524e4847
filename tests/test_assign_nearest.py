"""`assign` takes its own route to the locate rules for a million points (every uncovered point
at once, large grids cut into pieces, the file read once), and must give what `locate` gives:
the same grid and distance for every point, the nearest grid by millimetres rather than the
smallest code, and a progress count of each row once when a malformed file is read again."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from pyproj import Geod
from shapely.geometry import Polygon, box
from sqlalchemy import Engine

from geo_service.crs import parse_input_crs
from geo_service.grids import assign
from geo_service.grids.locate import locate_points
from geo_service.settings import Settings
from tests import factories

COMMUNITY = factories.PLANTED_COMMUNITY
G1, G2, G3 = (f"{COMMUNITY}{n:03d}" for n in range(1, 4))
TOLERANCE_M = 50.0
GAP_LAT = 30.931  # a parallel across the 0.0005° gap between G1 and G2
CIRCLE = Polygon(
    [
        (
            117.8045 + 0.001 * math.cos(2 * math.pi * k / 300),
            30.9285 + 0.001 * math.sin(2 * math.pi * k / 300),
        )
        for k in range(300)
    ]
)  # 300 vertices: more than one piece holds
PLANTED = {
    G1: box(117.800, 30.930, 117.802, 30.932),
    G2: box(117.8025, 30.930, 117.8045, 30.932),
    G3: CIRCLE,
}


@pytest.fixture
def planted(db: Engine, settings: Settings, tmp_path: Path) -> Engine:
    return factories.plant_grids(db, settings, tmp_path / "grids", PLANTED, [])


def assigned(engine: Engine, folder: Path, points: list[tuple[float, float]]) -> list[list[str]]:
    """The output rows (without the header) of `assign` on these lon/lat points."""
    source, out = folder / "in.csv", folder / "out.csv"
    source.write_text(
        "id,lon,lat\n" + "".join(f"{k},{x!r},{y!r}\n" for k, (x, y) in enumerate(points))
    )
    assign.assign_csv(engine, source, out, parse_input_crs("wgs84"), TOLERANCE_M)
    return list(csv.reader(io.StringIO(out.read_text())))[1:]


def test_the_nearest_grid_wins_by_millimetres_not_by_its_code(planted: Engine, tmp_path: Path):
    # In the gap, a hair nearer G2 than G1, both distances the same to the centimetre: the
    # rule is the nearest, then the smallest code (G1's) only on a tie.
    geod = Geod(ellps="WGS84")
    for step in range(1, 200):
        x = 117.80225 + step * 1e-9
        to_g1 = geod.inv(117.802, GAP_LAT, x, GAP_LAT)[2]
        to_g2 = geod.inv(x, GAP_LAT, 117.8025, GAP_LAT)[2]
        cm = to_g1 * 100 % 1, to_g2 * 100 % 1
        if (
            to_g1 - to_g2 > 0.001
            and round(to_g1, 2) == round(to_g2, 2)
            and 0.1 < min(cm) < max(cm) < 0.9
        ):
            break
    else:
        pytest.fail("no point in the gap is nearer G2 by a millimetre at the same centimetre")

    [row] = assigned(planted, tmp_path, [(x, GAP_LAT)])
    assert row[3:7] == [G2, COMMUNITY, "nearest", f"{round(to_g2, 2):g}"]


def test_every_point_gets_what_locate_gives(planted: Engine, tmp_path: Path):
    rng = np.random.default_rng(5)
    lon = rng.uniform(117.7992, 117.8061, 3000).round(7)
    lat = rng.uniform(30.9269, 30.9326, 3000).round(7)
    on_edges = [(117.801, 30.932), (117.800, 30.9305), (117.8025, 30.931), (117.8035, 30.930)]
    lon = np.append(lon, [x for x, _ in on_edges])
    lat = np.append(lat, [y for _, y in on_edges])
    rows = assigned(planted, tmp_path, list(zip(lon.tolist(), lat.tolist(), strict=True)))

    with planted.connect() as conn:
        located = locate_points(conn, lon, lat, parse_input_crs("wgs84"), TOLERANCE_M)
    ours = [(r[5], r[3], float(r[6]) if r[6] else None) for r in rows]
    theirs = [(p.status, p.grid_code or "", p.distance_m) for p in located]
    assert ours == theirs
    statuses = {status for status, _, _ in ours}
    assert {"inside", "nearest", "outside", "boundary"} <= statuses
    assert any(code == G3 and status == "nearest" for status, code, _ in ours)


def test_a_malformed_file_counts_each_row_once(
    planted: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Arrow reads a few batches before the short row near the end; the file is then read
    # again through its tolerant copy, and the progress shown must not count those twice.
    monkeypatch.setattr(assign, "BLOCK_BYTES", 256)
    lines = [f"{k},117.801,30.931" for k in range(300)]
    lines[290] = "290,117.801"
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("id,lon,lat\n" + "\n".join(lines) + "\n")
    seen: list[int] = []

    report = assign.assign_csv(
        planted, source, out, parse_input_crs("wgs84"), TOLERANCE_M, progress=seen.append
    )

    assert sum(seen) == 300
    assert report.by_status == {"inside": 299, "invalid": 1}
    rows = list(csv.reader(io.StringIO(out.read_text())))[1:]
    assert rows[290][5] == "invalid" and "a value is missing" in rows[290][7]
