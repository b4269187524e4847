"""Observability: Prometheus metrics by route template and of the pools, request ids echoed,
JSON log lines that carry the request id and never personal data."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from geo_service.api.app import create_app
from geo_service.api.observe import JsonFormatter
from geo_service.db.engine import make_engine
from geo_service.settings import Settings
from tests import test_incidents
from tests.test_incidents import IN_G1

grids_planted = test_incidents.grids_planted
PERSONAL = ("赵小六", "13812345678", "zhao@example.com", "楼上邻居半夜装修", "金山花园9栋")


@pytest.fixture
def client(grids_planted: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=grids_planted)) as client:
        yield client


def test_metrics_count_requests_by_route_template_and_show_the_pools(client: TestClient):
    assert client.get("/api/v1/incidents/E999999").status_code == 404
    assert client.get("/api/v1/incidents/E999998").status_code == 404
    client.get("/api/v1/locate", params={"lon": IN_G1[0], "lat": IN_G1[1]})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    counted = re.search(
        r'geo_http_requests_total\{method="GET",route="/api/v1/incidents/\{ref\}",'
        r'status="404"\} (\S+)',
        text,
    )
    assert counted and float(counted.group(1)) == 2.0  # one series per template, not per ref
    assert "E999999" not in text
    assert (
        'geo_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/locate"}'
        in text
    )
    for gauge in ("geo_db_pool_size", "geo_db_pool_checked_out", "geo_db_read_pool_pool_size"):
        assert re.search(rf"^{gauge} \d", text, re.M), gauge


def test_a_request_id_is_echoed_or_made(client: TestClient):
    given = client.get("/livez", headers={"X-Request-ID": "abc-123.x"})
    assert given.headers["x-request-id"] == "abc-123.x"
    made = client.get("/livez").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    hostile = client.get("/livez", headers={"X-Request-ID": 'a" injected=1 ' + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])


def test_logs_are_json_with_the_request_id_and_no_personal_data(
    client: TestClient, caplog: pytest.LogCaptureFixture
):
    report = {
        "category": "exposed_rubbish",
        "lon": IN_G1[0],
        "lat": IN_G1[1],
        "reporter_name": PERSONAL[0],
        "reporter_phone": PERSONAL[1],
        "reporter_email": PERSONAL[2],
        "description": PERSONAL[3],
    }
    with caplog.at_level(logging.DEBUG):
        created = client.post("/api/v1/incidents", json=report, headers={"X-Request-ID": "req-42"})
        assert created.status_code == 201
        client.get("/api/v1/geocode", params={"q": PERSONAL[4]})
        client.get("/api/v1/incidents", params={"access_token": "secret-token-in-url"})
        client.post("/api/v1/incidents", json={**report, "lon": "x"})  # a 422
    ours = [r for r in caplog.records if r.name.startswith(("geo_service", "uvicorn"))]
    lines = [JsonFormatter().format(record) for record in ours]
    entries = [json.loads(line) for line in lines]
    request_line = next(e for e in entries if e.get("request_id") == "req-42")
    assert request_line["route"] == "/api/v1/incidents" and request_line["status"] == 201
    assert request_line["method"] == "POST" and request_line["ms"] >= 0
    everything = "\n".join(lines)
    for secret in (*PERSONAL, "secret-token-in-url"):
        assert secret not in everything


def test_database_errors_never_carry_statement_parameters(db_url: str):
    engine = make_engine(db_url)
    assert engine.hide_parameters  # SQLAlchemy then leaves [parameters: ...] out of messages
    engine.dispose()
