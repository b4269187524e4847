"""The `geo-service` command as users run it: the installed console script in a subprocess,
started from a folder outside the checkout, its exit codes and messages read as a shell would.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Point, box
from sqlalchemy import Engine, text

from geo_service.settings import Settings, find_data_dir
from tests import factories
from tests.test_incidents import make_overdue

CLI = str(Path(sys.executable).parent / "geo-service")
# A server nobody listens on: a command that reached for the database would exit 6, not 2.
NO_DATABASE = "postgresql://geo:secret@127.0.0.1:9/geo"


def geo(
    *args: str, cwd: Path, db_url: str = NO_DATABASE, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the console script as a shell would, from `cwd`, with the database of `db_url`."""
    environ = {**os.environ, "GEO_DATABASE_URL": db_url, **env}
    return subprocess.run(
        [CLI, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=300
    )


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


# -- usage errors: one line, exit 2, before any database is touched ----------------------------
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["users", "add", "x", "--role", "admin", "--json"], "--json"),
        (["import", "grids", "--bogus", "x"], "--bogus"),
        (["import", "towers", "towers.shp"], "towers"),
        (["geocode", "--limit", "0", "金山花园"], "--limit"),
        (["geocode", "--limit", "many", "金山花园"], "many"),
        (["assign", "in.csv"], "--output"),
        (["coverage", "compute", "--nope"], "--nope"),
        (["serve", "--port", "eighty"], "eighty"),
        (["incidents", "stats", "--since"], "--since"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], named: str, tmp_path: Path):
    done = geo(*args, cwd=tmp_path)
    no_traceback(done)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and named in lines[0]
    assert done.stdout == ""


def test_a_bare_command_group_prints_its_commands(tmp_path: Path):
    done = geo("users", cwd=tmp_path)
    no_traceback(done)
    assert done.returncode == 2
    assert all(command in done.stdout for command in ("add", "list", "revoke"))


def test_help_exits_0(tmp_path: Path):
    done = geo("import", "--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "KIND" in done.stdout


def test_an_unreachable_database_is_exit_6_with_one_line_naming_it(tmp_path: Path):
    done = geo("qa", cwd=tmp_path)
    no_traceback(done)
    assert done.returncode == 6, done.stderr
    assert "database: postgresql://geo:***@127.0.0.1:9/geo (GEO_DATABASE_URL)" in done.stderr
    assert "secret" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "127.0.0.1" in errors[0]


# -- documented exit codes of commands that ran ------------------------------------------------
@pytest.fixture
def planted(engine: Engine, settings: Settings, tmp_path_factory) -> Engine:
    """One community tiled by four grids (QA clean), each with a worker."""
    from geo_service.ingest import ImportOptions, import_file
    from tests.conftest import DATA_TABLES

    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    folder = tmp_path_factory.mktemp("cli-planted")
    files = {
        "communities": factories.write(factories.communities(1), folder / "c.shp"),
        "grids": factories.write(factories.grids(1), folder / "g.shp"),
        "workers": folder / "w.csv",
    }
    factories.workers(1).to_csv(files["workers"], index=False)
    for kind, path in files.items():
        import_file(engine, settings, kind, path, ImportOptions())
    return engine


_POINT = Point(factories.X0 + 50, factories.Y0 + 250)
IN_GRID_1 = factories.frame([{"geometry": _POINT}]).geometry[0]
COMMUNITY = factories.communities(1)["code"][0]


def test_geocode_exit_4_when_nothing_is_named(planted: Engine, db_url: str, tmp_path: Path):
    done = geo("geocode", "请尽快处理", cwd=tmp_path, db_url=db_url)
    no_traceback(done)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "no road, estate or community" in done.stdout


def test_qa_exit_0_when_clean_and_1_on_findings(planted: Engine, db_url: str, tmp_path: Path):
    assert geo("qa", cwd=tmp_path, db_url=db_url).returncode == 0
    overlapping = factories.frame(
        [
            {
                "code": f"{COMMUNITY}009",
                "name": "重叠网格",
                "community": COMMUNITY,
                "geometry": factories.rect(150, 150, 250, 250),
            }
        ]
    )
    overlapping.to_file(tmp_path / "overlap.geojson")
    assert geo("import", "grids", "overlap.geojson", cwd=tmp_path, db_url=db_url).returncode == 0
    done = geo("qa", cwd=tmp_path, db_url=db_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "overlap" in done.stdout


def test_incidents_overdue_exit_1_when_any(
    planted: Engine, settings: Settings, db_url: str, tmp_path: Path
):
    from geo_service.incidents.intake import create_incident

    assert geo("incidents", "overdue", cwd=tmp_path, db_url=db_url).returncode == 0
    ref = create_incident(
        planted,
        settings,
        {
            "category": "exposed_rubbish",
            "description": "垃圾",
            "lon": IN_GRID_1.x,
            "lat": IN_GRID_1.y,
        },
    ).incident["ref"]
    make_overdue(planted, ref, 3)
    done = geo("incidents", "overdue", cwd=tmp_path, db_url=db_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert ref in done.stdout


def test_import_exit_codes(planted: Engine, db_url: str, tmp_path: Path):
    """3 on rejected rows, 4 on a missing file, 5 on a replace that would orphan grids."""
    bad = gpd.GeoDataFrame(
        {
            "code": ["B1", "B2"],
            "address": ["长江西路1号", "长江西路2号"],
            "households": [3, -5],
        },
        geometry=[IN_GRID_1, IN_GRID_1],
        crs=4326,
    )
    bad.to_file(tmp_path / "b.geojson")
    data = tmp_path / "data"
    rejected = geo(
        "import", "buildings", "b.geojson", cwd=tmp_path, db_url=db_url, GEO_DATA_DIR=str(data)
    )
    no_traceback(rejected)
    assert rejected.returncode == 3, rejected.stdout + rejected.stderr
    assert "households" in rejected.stdout + rejected.stderr
    # The rejected rows go to the data folder, never the folder the user stands in.
    written = data / "rejects" / "b.buildings.rejects.csv"
    assert written.exists() and str(written) in rejected.stderr
    assert not list(tmp_path.glob("*.rejects.csv"))
    dry = geo(
        "import", "buildings", "b.geojson", "--dry-run",
        cwd=tmp_path, db_url=db_url, GEO_DATA_DIR=str(tmp_path / "dry"),
    )  # fmt: skip
    assert dry.returncode == 3 and "households" in dry.stderr
    assert not (tmp_path / "dry").exists() and not list(tmp_path.glob("*.rejects.csv"))
    chosen = tmp_path / "mine.csv"
    given = geo(
        "import", "buildings", "b.geojson", "--dry-run", "--rejects", str(chosen),
        cwd=tmp_path, db_url=db_url,
    )  # fmt: skip
    assert given.returncode == 3 and chosen.exists() and "households" in chosen.read_text()

    missing = geo("import", "grids", "nowhere.shp", cwd=tmp_path, db_url=db_url)
    assert missing.returncode == 4 and "nowhere.shp" in missing.stderr

    other = gpd.GeoDataFrame(
        {"code": ["340705001999"], "name": ["别的社区"]},
        geometry=[box(117.9, 30.9, 117.91, 30.91)],
        crs=4326,
    )
    other.to_file(tmp_path / "c.geojson")
    conflict = geo("import", "communities", "c.geojson", "--replace", cwd=tmp_path, db_url=db_url)
    no_traceback(conflict)
    assert conflict.returncode == 5, conflict.stdout + conflict.stderr
    assert COMMUNITY in conflict.stderr


def test_centres_is_accepted_for_the_centers_kind(planted: Engine, db_url: str, tmp_path: Path):
    centre = gpd.GeoDataFrame(
        {"code": ["C1"], "name": ["向阳邻里中心"]}, geometry=[IN_GRID_1], crs=4326
    )
    centre.to_file(tmp_path / "centres.geojson")
    done = geo("import", "centres", "centres.geojson", cwd=tmp_path, db_url=db_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imported centers" in done.stdout
    with planted.connect() as conn:
        assert conn.execute(text("SELECT name FROM centers")).scalar_one() == "向阳邻里中心"


def test_revoking_an_unknown_user_is_exit_4(db_url: str, engine: Engine, tmp_path: Path):
    done = geo("users", "revoke", "nobody-by-this-name", cwd=tmp_path, db_url=db_url)
    assert done.returncode == 4 and "nobody-by-this-name" in done.stderr


# -- tables: never cut ---------------------------------------------------------------------------
LONG_NAME = "网格员-" + "".join(f"{i:02d}" for i in range(45))  # 94 characters, no spaces


def _first_column(table: str) -> str:
    """The first column's text of a rich table, its folded pieces joined in order."""
    pieces = []
    for line in table.splitlines():
        cells = line.split("│")
        if len(cells) > 2:
            pieces.append(cells[1].strip())
    return "".join(pieces)


def test_tables_are_not_cut_when_piped(engine: Engine, db_url: str, tmp_path: Path):
    added = geo("users", "add", LONG_NAME, "--role", "planner", cwd=tmp_path, db_url=db_url)
    assert added.returncode == 0, added.stderr
    done = geo("users", "list", cwd=tmp_path, db_url=db_url)
    assert done.returncode == 0
    assert LONG_NAME in done.stdout  # whole, on one line
    assert "…" not in done.stdout


def test_tables_fold_long_cells_on_a_narrow_terminal(engine: Engine, db_url: str, tmp_path: Path):
    geo("users", "add", LONG_NAME, "--role", "planner", cwd=tmp_path, db_url=db_url)
    leader, follower = pty.openpty()
    environ = {**os.environ, "GEO_DATABASE_URL": db_url, "COLUMNS": "60"}
    with subprocess.Popen(
        [CLI, "users", "list"], cwd=tmp_path, env=environ, stdout=follower, stderr=subprocess.PIPE
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(60)
    os.close(leader)
    table = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode())  # colours take no room
    assert process.returncode == 0
    assert max(len(line) for line in table.splitlines()) <= 60
    assert "…" not in table
    assert LONG_NAME in _first_column(table)


def test_json_output_is_the_machine_form(engine: Engine, db_url: str, tmp_path: Path):
    geo("users", "add", LONG_NAME, "--role", "planner", cwd=tmp_path, db_url=db_url)
    done = geo("users", "list", "--json", cwd=tmp_path, db_url=db_url)
    assert LONG_NAME in [user["name"] for user in json.loads(done.stdout)]


# -- which database a command uses ---------------------------------------------------------------
def test_the_data_folder_is_the_nearest_project_folder_else_the_users(tmp_path: Path):
    project = tmp_path / "project"
    (project / ".geo-service").mkdir(parents=True)
    (project / "deep" / "er").mkdir(parents=True)
    assert find_data_dir(project / "deep" / "er") == project / ".geo-service"
    assert find_data_dir(project) == project / ".geo-service"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.environ["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    try:
        assert find_data_dir(elsewhere) == tmp_path / "xdg" / "geo-service"
    finally:
        del os.environ["XDG_DATA_HOME"]


@pytest.mark.parametrize("inside", [True, False])
def test_db_status_says_which_folder_and_creates_nothing(inside: bool, tmp_path: Path):
    project, xdg = tmp_path / "project", tmp_path / "xdg"
    (project / "sub").mkdir(parents=True)
    if inside:
        (project / ".geo-service").mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in ("GEO_DATABASE_URL", "GEO_DATA_DIR")}
    environ["XDG_DATA_HOME"] = str(xdg)
    done = subprocess.run(
        [CLI, "db", "status", "--json"],
        cwd=project / "sub",
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    no_traceback(done)
    status = json.loads(done.stdout)
    expected = project / ".geo-service" if inside else xdg / "geo-service"
    assert status["data_dir"] == str(expected)
    assert not status["running"] and not status["initialised"]
    assert not (project / "sub" / ".geo-service").exists()
    assert not any(tmp_path.rglob("pgdata"))


def test_a_port_held_by_another_cluster_names_its_data_folder(
    settings: Settings, db_url: str, tmp_path: Path
):
    """Starting a second cluster on the port of the one the tests use: exit 6, one line naming
    the data folder to use instead, and nothing created for the second one."""
    if os.environ.get("GEO_TEST_DATABASE_URL") or not settings.database.embedded:
        pytest.skip("the tests use a server of their own, not an embedded cluster")
    environ = {k: v for k, v in os.environ.items() if k not in ("GEO_DATABASE_URL",)}
    environ |= {
        "GEO_DATA_DIR": str(tmp_path / "second"),
        "GEO_EMBEDDED_PORT": str(settings.database.embedded_port),
    }
    done = subprocess.run(
        [CLI, "db", "start"], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60
    )
    no_traceback(done)
    assert done.returncode == 6, done.stdout + done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"held by the geo-service cluster of data folder {settings.database.data_dir};" in error
    assert f"GEO_DATA_DIR={settings.database.data_dir}" in error
    assert not (tmp_path / "second").exists() and not any(tmp_path.rglob("pgdata"))


def test_import_osm_writes_its_rejects_in_the_data_folder(db: Engine, db_url: str, tmp_path: Path):
    from tests.test_coverage_osm import HELSINKI

    data = tmp_path / "data"
    done = geo("import", "osm", str(HELSINKI), cwd=tmp_path, db_url=db_url, GEO_DATA_DIR=str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imported roads" in done.stdout and "imported buildings" in done.stdout
    assert not list(tmp_path.glob("*.rejects.csv"))  # never where the user stands
    written = list((data / "rejects").glob("*.rejects.csv"))
    assert written and all(str(path) in done.stdout for path in written)
