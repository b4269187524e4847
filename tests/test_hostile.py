"""Hostile input: a bounded schemathesis run over every operation of the OpenAPI schema
(zero server errors, as admin), size limits, and hypothesis fuzz of the coordinate parsers.
(The address parser's fuzz lives in test_address.py: never raises, normalize idempotent.)"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from geo_service.api.app import create_app
from geo_service.coords import parse_coordinates
from geo_service.crs import parse_input_crs
from geo_service.errors import InvalidInput
from geo_service.settings import Settings
from tests import test_incidents
from tests.conftest import ROOT, ensure_token, free_port

BIN = Path(sys.executable).parent

grids_planted = test_incidents.grids_planted


# -- schemathesis --------------------------------------------------------------------------------
def test_schemathesis_as_a_stranger_runs_it(
    grids_planted: Engine, settings: Settings, db_url: str, tmp_path: Path
):
    """Schemathesis's own command line against `geo-service serve` on a real socket, with its
    default checks (tests/schemathesis.toml says which one is off and why) and every phase:
    examples, coverage, fuzzing and stateful. Bounded (GEO_FUZZ_EXAMPLES per operation, a
    fixed seed) so that every CI run tries the same requests."""
    token = ensure_token(grids_planted, settings, "schemathesis", "admin", "schemathesis-admin")
    port = free_port()
    env = {**os.environ, "GEO_DATABASE_URL": db_url, "GEO_WORKERS": "1", "GEO_LOG_JSON": "false"}
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [str(BIN / "geo-service"), "serve", "--port", str(port)],
            env=env, cwd=tmp_path, stdout=sink, stderr=sink,
        )  # fmt: skip
    try:
        run = subprocess.run(
            [
                str(BIN / "st"), "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
                "run", f"http://127.0.0.1:{port}/openapi.json",
                "-H", f"Authorization: Bearer {token}",
                "--max-examples", os.environ.get("GEO_FUZZ_EXAMPLES", "10"),
                "--seed", "1", "--workers", "1",  # (hypothesis's source inspection is not
                "--wait-for-schema", "60",        # safe across threads: one worker)
                "--no-color",
            ],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary = run.stdout[run.stdout.find("=== FAILURES") :] or run.stdout[-3000:]
    assert run.returncode == 0, summary + run.stderr
    assert " passed" in run.stdout and "Traceback" not in log.read_text()


# -- size limits ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(grids_planted: Engine, settings: Settings) -> Iterator[TestClient]:
    small = settings.updated(server={"max_body_bytes": 1000, "max_query_bytes": 200})
    with TestClient(create_app(small, engine=grids_planted)) as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/api/v1/incidents", "/api/v1/locate", "/open311/v2/requests.json"]
)
def test_every_body_has_a_size_limit(client: TestClient, path: str):
    response = client.post(path, content=b"x" * 1001, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/api/v1/geocode", "/ogc/collections", "/livez"])
def test_every_query_string_has_a_size_limit(client: TestClient, path: str):
    response = client.get(path, params={"q": "长" * 100})
    assert response.status_code == 414 and "limit of 200" in response.json()["message"]


def test_unknown_fields_and_wrong_types_are_refused(client: TestClient):
    report = {"category": "exposed_rubbish", "lon": 117.801, "lat": 30.931}
    for bad in ({**report, "admin": True}, {**report, "lon": [1]}, {**report, "category": 5}):
        response = client.post("/api/v1/incidents", json=bad)
        assert response.status_code == 422, response.text


# -- NUL characters and control characters --------------------------------------------------------
def _query_parameters() -> list[tuple[str, str]]:
    """(path, name) of every query parameter of every GET, from the OpenAPI document."""
    found = []
    for path, methods in create_app(Settings()).openapi()["paths"].items():
        for parameter in methods.get("get", {}).get("parameters", []):
            if parameter["in"] == "query":
                found.append((path, parameter["name"]))
    return found


def _concrete(path: str) -> str:
    """A path template with plausible values in its slots."""
    values = {"fmt": "json", "collection_id": "grids", "layers": "grids", "z": "12"}
    for name, value in {**values, "x": "3400", "y": "1700"}.items():
        path = path.replace("{" + name + "}", value)
    return path.replace("{", "").replace("}", "")


QUERY_PARAMETERS = _query_parameters()


@pytest.mark.parametrize(
    ("path", "name"), QUERY_PARAMETERS, ids=[f"{p}?{n}" for p, n in QUERY_PARAMETERS]
)
def test_a_nul_in_any_query_parameter_is_refused_naming_it(
    client: TestClient, path: str, name: str
):
    response = client.get(_concrete(path), params={name: "路\U00014c89\x00b"})
    if path.startswith("/open311/"):
        assert response.status_code == 400, response.text
        assert f"query parameter {name!r}" in response.json()[0]["description"]
    else:
        assert response.status_code == 422, response.text
        assert f"query parameter {name!r} holds a NUL" in response.json()["message"]


@pytest.mark.parametrize(
    "path", ["/ogc/collections/grids/items/%00", "/api/v1/incidents/E%00", "/tiles/grids%00.json"]
)
def test_a_nul_in_a_path_is_refused_as_json(client: TestClient, path: str):
    response = client.get(path)
    assert response.status_code == 422 and "NUL" in response.json()["message"]


@pytest.mark.parametrize("field", ["description", "reporter_name", "address", "reporter_phone"])
def test_a_nul_in_an_incident_field_is_refused_naming_it(client: TestClient, field: str):
    report = {"category": "exposed_rubbish", "lon": 117.801, "lat": 30.931, field: "a\x00b"}
    response = client.post("/api/v1/incidents", json=report)
    assert response.status_code == 422, response.text
    assert f"body field {field} holds a NUL" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("POST", "/api/v1/locate", [{"id": "a\x00", "lon": 117.8, "lat": 30.9}], "body field 0.id"),
        ("POST", "/api/v1/locate", {"points": [{"id": "p", "lon": "1\x00"}]}, "points.0.lon"),
        ("PATCH", "/api/v1/incidents/E000001", {"action": "start", "actor": "W\x00"}, "actor"),
        ("PATCH", "/api/v1/incidents/E000001", {"action": "start", "note": "\x00"}, "note"),
        ("POST", "/api/v1/coverage/what-if", {"remove": ["C\x00"]}, "remove.0"),
        ("POST", "/api/v1/coverage/what-if", {"add": [], "crs\x00": "x"}, "crs\\u0000"),
    ],
)
def test_a_nul_in_any_json_body_is_refused_naming_the_field(
    client: TestClient, method: str, path: str, body: object, where: str
):
    response = client.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert where in response.json()["message"] and "NUL" in response.json()["message"]


@pytest.mark.parametrize("field", ["description", "address_string", "first_name", "service_code"])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_nul_in_an_open311_form_field_is_refused_in_its_format(
    client: TestClient, field: str, fmt: str
):
    form = {"api_key": "k", "service_code": "noise", "lat": "30.931", "long": "117.801"}
    response = client.post(f"/open311/v2/requests.{fmt}", data={**form, field: "a\x00b"})
    assert response.status_code == 400, response.text
    text = response.json()[0]["description"] if fmt == "json" else response.text
    if fmt == "xml":
        assert ET.fromstring(response.content).tag == "errors"
    assert f"form field {field!r}" in text


@pytest.mark.parametrize("field", ["description", "address"])
@pytest.mark.parametrize("char", ["\x01", "\x08", "\x0b", "\x1f", "\ufffe"])
def test_open311_xml_stays_well_formed_whatever_residents_type(
    grids_planted: Engine, settings: Settings, char: str, field: str
):
    from tests.test_incidents import IN_G1

    with TestClient(create_app(settings, engine=grids_planted)) as admin:
        text = f"路灯{char}不亮\t第二行\n第三行"
        created = admin.post(
            "/api/v1/incidents",
            json={"category": "noise", "lon": IN_G1[0], "lat": IN_G1[1], field: text},
        )
        assert created.status_code == 201, created.text
        ref = created.json()["ref"]
        root = ET.fromstring(admin.get("/open311/v2/requests.xml").content)  # parses
        mine = [r for r in root.iter("request") if r.findtext("service_request_id") == ref]
        assert mine[0].findtext(field) == "路灯\ufffd不亮\t第二行\n第三行"
        # Stored and answered as JSON exactly as given: nothing the resident wrote is lost.
        [answer] = admin.get(f"/open311/v2/requests/{ref}.json").json()
        assert answer[field] == text


# Numbers and dates past every range: each answers 4xx naming the value, never 500.
OUT_OF_RANGE = [
    "99999999999999999999",
    "-99999999999999999999",
    "9999999999999999999999.5",
    "1e-320",
    "1e400",
    "0001-01-01",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(
    ("path", "name"), QUERY_PARAMETERS, ids=[f"{p}?{n}" for p, n in QUERY_PARAMETERS]
)
def test_out_of_range_values_in_any_query_parameter_are_4xx(
    client: TestClient, path: str, name: str, value: str
):
    response = client.get(_concrete(path), params={name: value})
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].split(";")[0] in (
        "application/json",
        "application/geo+json",
        "application/vnd.mapbox-vector-tile",
        "text/xml",
        "text/html",
    )


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/coverage/isochrones?tier=99999999999999999999",
        "/api/v1/coverage/tiers?tier=99999999999999999999",
        "/api/v1/incidents?offset=99999999999999999999",
        "/api/v1/incidents/stats?since=0001-01-01T00:00:00%2B14:00",
        "/open311/v2/requests.json?end_date=0001-01-01",
        "/ogc/collections/grids/items?offset=9999999999999999999999",
        "/ogc/collections/buildings/items?households=99999999999999999999",
        "/api/v1/reverse?lon=117.81&lat=30.93&radius=1e-320",
    ],
)
def test_the_reported_overflows_name_their_parameter(client: TestClient, url: str):
    response = client.get(url)
    assert response.status_code in (400, 422), response.text
    name = url.split("?")[1].split("&")[-1].split("=")[0]  # the last parameter is the bad one
    assert name in response.text


def test_unknown_routes_and_methods_answer_json(client: TestClient):
    missing = client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "no such resource: /no/such/route"}
    wrong = client.delete("/api/v1/locate")
    assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]
    assert wrong.json()["error"] == "method_not_allowed"


# -- coordinate parsers ----------------------------------------------------------------------------
_ANY_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.text(max_size=40),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
_CRS_NAMES = st.sampled_from(["wgs84", "cgcs2000", "gcj02", "bd09", "EPSG:4527", "EPSG:3857"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_ANY_VALUE, _ANY_VALUE), min_size=1, max_size=5), _CRS_NAMES)
@example([("1e309", "-0"), ("nan", "inf"), ("117.8", "30.9")], "gcj02")
@example([("  117.8\n", "30.9"), ("0x1p3", "1_000")], "bd09")
def test_any_coordinates_are_parsed_or_named_never_raised(pairs, crs_name):
    lons, lats = [p[0] for p in pairs], [p[1] for p in pairs]
    x, y, reasons = parse_coordinates(lons, lats, parse_input_crs(crs_name))
    assert len(x) == len(y) == len(reasons) == len(pairs)
    for xi, yi, reason in zip(x, y, reasons, strict=True):
        if reason is None:
            assert -180 <= xi <= 180 and -90 <= yi <= 90
        else:
            assert math.isnan(xi) and math.isnan(yi) and "coordinates" in reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
@example("EPSG:" + "9" * 9)
@example("epsg::::4326")
@example("EPSG:4978")  # geocentric: not a lon/lat system
@example("\x00")
def test_any_crs_name_is_known_or_a_clear_invalid_input(text):
    try:
        crs = parse_input_crs(text)
    except InvalidInput as exc:
        assert "coordinate system" in exc.message
    else:
        x, y = np.array([117.8]), np.array([30.9])
        assert crs.name  # a usable system: converting a point does not raise either
        parse_coordinates(x, y, crs)


# -- a server error keeps the connection --------------------------------------------------------
def test_an_internal_error_is_json_and_the_keep_alive_connection_stays_usable(
    grids_planted: Engine, settings: Settings
):
    """Over a real socket: a request that fails inside the service answers the documented
    JSON 500, and the next request on the same connection is answered (uvicorn closed it
    when the exception escaped the app)."""
    import http.client
    import threading

    import uvicorn

    app = create_app(settings.updated(auth={"required": False}), engine=grids_planted)

    @app.get("/__boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/__boom")
        failed = conn.getresponse()
        assert failed.status == 500
        assert failed.getheader("content-type") == "application/json"
        assert b'"error": "internal"' in failed.read()
        conn.request("GET", "/livez")  # the same connection
        again = conn.getresponse()
        assert again.status == 200 and b"alive" in again.read()
        conn.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/v1/incidents", "GET, POST"),
        ("/api/v1/incidents/E000001", "GET, PATCH"),
        ("/api/v1/incidents/overdue", "GET"),  # not also /incidents/{ref}: no PATCH
        ("/api/v1/locate", "GET, POST"),
        ("/open311/v2/requests.json", "GET, POST"),
    ],
)
def test_a_405_lists_every_method_of_the_path(client: TestClient, path: str, methods: str):
    response = client.options(path)
    assert response.status_code == 405
    assert response.headers["allow"] == methods
    assert methods in response.json()["message"]


def test_a_body_that_is_not_json_is_a_422_naming_it(client: TestClient):
    response = client.post(
        "/api/v1/coverage/what-if",
        content=b"\xff\x7f\xffEC\x01S",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert "request body cannot be read" in response.json()["message"]
