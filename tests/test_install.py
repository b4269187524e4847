"""A plain (non-editable) install works away from the checkout: the wheel `pip install .` builds
carries the layers, the demo city, the migrations and the map's files, and the installed
console script, started from another folder, imports the demo city and serves the same layers
as the checkout. The fresh venv borrows the test venv's dependencies through a .pth file (no
network, seconds not minutes) but holds its own copy of geo_service."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from geo_service.db.engine import drop_database, fresh_database
from tests.conftest import ROOT, free_port


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of this checkout installed; its bin folder."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    # From a copy of the tree: setuptools leaves build/ and *.egg-info beside the sources, and
    # a stale build/lib would slip files long gone into the wheel.
    source = root / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".geo-service", ".*_cache"
        ),
    )
    # --no-build-isolation: the build tools of the test venv, so no index is needed.
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", wheels, source,
    )  # fmt: skip
    (wheel,) = wheels.glob("geo_service-*.whl")
    target = root / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(target), "platbase": str(target)}))
    ours = Path(sysconfig.get_path("purelib"))
    (site / "test-deps.pth").write_text(f"{ours}\n")
    # pip of the test venv, told to install into the fresh one.
    _run(
        sys.executable, "-m", "pip", "--python", target / "bin" / "python", "install",
        "--no-deps", "--no-index", "-q", wheel,
    )  # fmt: skip
    return target / "bin"


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory, db_url: str) -> Iterator[tuple[Path, dict]]:
    """A folder outside the checkout and the environment of a user there, on a fresh database."""
    url = fresh_database(db_url, f"{make_url(db_url).database}_install")
    folder = tmp_path_factory.mktemp("elsewhere")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEO_", "PYTHON"))}
    env |= {"GEO_DATABASE_URL": url, "GEO_WORKERS": "1", "HOME": str(folder)}
    env["GEO_AUTH_REQUIRED"] = "false"  # every layer, as an admin sees them
    yield folder, env
    drop_database(url)


def test_the_wheel_carries_what_the_service_reads(installed: Path):
    code = (
        "import geo_service, web_map, json; from geo_service import packaged; "
        "print(json.dumps([geo_service.__file__, str(packaged.layers_dir()), "
        "str(packaged.demo_dir()), web_map.__path__[0]]))"
    )
    done = _run(installed / "python", "-c", code, cwd="/")
    module, layers, demo, web = json.loads(done.stdout)
    venv_root = installed.parent.resolve()
    for path in (module, layers, demo, web):
        assert Path(path).resolve().is_relative_to(venv_root), path
    # Every file the map pages load (Leaflet, markercluster, the pages' scripts).
    static = ROOT / "web_map" / "static"
    ours = {p.relative_to(static) for p in static.rglob("*") if p.is_file()}
    ours = {p for p in ours if "__pycache__" not in p.parts}
    missing = sorted(str(p) for p in ours if not (Path(web) / "static" / p).is_file())
    assert not missing, missing
    assert sorted(p.name for p in Path(layers).glob("*.toml")) == sorted(
        p.name for p in (ROOT / "layers").glob("*.toml")
    )
    migrations = Path(module).parent / "db" / "migrations" / "versions"
    assert sorted(p.name for p in migrations.glob("*.py")) == sorted(
        p.name for p in (ROOT / "geo_service" / "db" / "migrations" / "versions").glob("*.py")
    )
    assert {p.name for p in (ROOT / "shapefiles" / "demo").iterdir()} <= {
        p.name for p in Path(demo).iterdir()
    }


def test_installed_script_imports_the_demo_and_serves_the_checkouts_layers(
    installed: Path, elsewhere: tuple[Path, dict]
):
    folder, env = elsewhere
    demo = subprocess.run(
        [installed / "geo-service", "demo", "--no-serve"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Traceback" not in demo.stderr
    assert not (folder / ".geo-service").exists()  # it used the database it was given
    assert "/find" in demo.stdout  # the residents' notice, and a worker's phone page
    phone_token = re.search(r"/m/\?access_token=(\S+)", demo.stdout)
    assert phone_token, demo.stdout

    port = free_port()
    server = subprocess.Popen(
        [installed / "geo-service", "serve", "--port", str(port)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            if server.poll() is not None:
                pytest.fail(f"serve exited {server.returncode}: {server.stderr.read()}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    break
            except OSError:
                subprocess.run(["sleep", "0.2"])
        with urllib.request.urlopen(base + "/ogc/collections", timeout=30) as r:
            served = {c["id"] for c in json.load(r)["collections"]}
        expected = set()
        for path in (ROOT / "layers").glob("*.toml"):
            with path.open("rb") as f:
                expected.add(tomllib.load(f).get("id", path.stem))
        assert served == expected
        with urllib.request.urlopen(base + "/ogc/collections/grids/items?limit=1", timeout=30) as r:
            assert json.load(r)["numberMatched"] > 0  # the demo city is in
        with urllib.request.urlopen(base + "/map", timeout=30) as r:
            assert r.status == 200 and b"leaflet" in r.read().lower()
        session = urllib.request.Request(
            base + "/m/session", headers={"Authorization": f"Bearer {phone_token[1]}"}
        )
        with urllib.request.urlopen(session, timeout=30) as r:
            who = json.load(r)
        assert who["role"] == "worker" and who["grids"], who
    finally:
        server.terminate()
        server.wait(timeout=30)
