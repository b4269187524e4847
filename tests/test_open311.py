"""Open311 GeoReport v2, as a client uses it: services, POST a request, follow it to closure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geo_service.api.app import create_app
from geo_service.settings import Settings
from tests import test_incidents
from tests.conftest import ensure_token
from tests.test_incidents import G1, IN_G1

# The same planted community and grids as the incidents tests (fixtures, re-registered here).
grids_planted = test_incidents.grids_planted
planted = test_incidents.planted

API = "/open311/v2"
KEY = "demo-open311-key"
PERSONAL = ("赵六", "13812345678", "zhao@example.com")


@pytest.fixture
def client(planted: Engine, settings: Settings) -> Iterator[TestClient]:
    ensure_token(planted, settings, "open311-app", "reporter", KEY)  # api_key is a token
    with TestClient(create_app(settings, engine=planted)) as client:  # runs the lifespan
        yield client


def submit(client: TestClient, fmt: str = "json", **fields):
    form = {
        "api_key": KEY,
        "service_code": "exposed_rubbish",
        "lat": str(IN_G1[1]),
        "long": str(IN_G1[0]),
        "description": "垃圾桶满溢",
        "first_name": "赵",
        "last_name": "六",
        "phone": PERSONAL[1],
        "email": PERSONAL[2],
        **fields,
    }
    return client.post(f"{API}/requests.{fmt}", data={k: v for k, v in form.items() if v})


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM incidents")).scalar_one()


def test_services_json_and_xml(client: TestClient):
    services = client.get(f"{API}/services.json").json()
    rubbish = next(s for s in services if s["service_code"] == "exposed_rubbish")
    assert rubbish == {
        "service_code": "exposed_rubbish",
        "service_name": "暴露垃圾",
        "description": "道路、绿地、小区内堆放或散落的暴露垃圾",
        "metadata": False,
        "type": "realtime",
        "keywords": "垃圾, 乱扔, rubbish, litter",
        "group": "市容环境",
    }
    response = client.get(f"{API}/services.xml")
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "services"
    assert [s.findtext("service_code") for s in root] == [s["service_code"] for s in services]
    assert root[0].findtext("metadata") == "false"


def test_service_definition(client: TestClient):
    assert client.get(f"{API}/services/noise.json").json() == {
        "service_code": "noise",
        "attributes": [],
    }
    root = ET.fromstring(client.get(f"{API}/services/noise.xml").content)
    assert (root.tag, root.findtext("service_code"), len(root.find("attributes"))) == (
        "service_definition",
        "noise",
        0,
    )
    missing = client.get(f"{API}/services/potholes.json")
    assert missing.status_code == 404
    assert missing.json() == [{"code": 404, "description": "no service 'potholes'"}]


def test_request_lifecycle(client: TestClient):
    posted = submit(client)
    assert posted.status_code == 201, posted.text
    [receipt] = posted.json()
    assert receipt["service_request_id"] == "E000001" and receipt["account_id"] is None
    assert "金山社区第1网格" in receipt["service_notice"]

    [request] = client.get(f"{API}/requests/E000001.json").json()
    assert request["status"] == "open"
    assert request["agency_responsible"] == f"金山社区第1网格 ({G1})"
    assert (request["service_code"], request["service_name"]) == ("exposed_rubbish", "暴露垃圾")
    assert (request["lat"], request["long"]) == pytest.approx((IN_G1[1], IN_G1[0]))
    assert request["description"] == "垃圾桶满溢"
    for field in ("requested_datetime", "updated_datetime", "expected_datetime"):
        assert datetime.fromisoformat(request[field]).utcoffset() is not None, field
    assert request["expected_datetime"] > request["requested_datetime"]

    root = ET.fromstring(client.get(f"{API}/requests/E000001.xml").content)
    assert root.tag == "service_requests"
    assert root.find("request").findtext("agency_responsible") == f"金山社区第1网格 ({G1})"
    assert root.find("request").findtext("status") == "open"

    for action in ("start", "report", "close"):
        response = client.patch("/api/v1/incidents/E000001", json={"action": action, "actor": "W1"})
        assert response.status_code == 200, response.text
    [closed] = client.get(f"{API}/requests/E000001.json").json()
    assert (closed["status"], closed["status_notes"]) == ("closed", "已核查结案")


def test_search_requests(client: TestClient):
    submit(client)
    submit(client, service_code="noise")
    client.patch("/api/v1/incidents/E000002", json={"action": "cancel", "actor": "dispatcher"})

    def ids(**params):
        response = client.get(f"{API}/requests.json", params=params)
        assert response.status_code == 200, response.text
        return [r["service_request_id"] for r in response.json()]

    assert ids() == ["E000002", "E000001"]
    assert ids(status="open") == ["E000001"]
    assert ids(status="closed") == ["E000002"]  # cancelled counts as closed
    assert ids(service_code="noise") == ["E000002"]
    assert ids(service_request_id="E000001,E000002,E000404") == ["E000002", "E000001"]
    day = timedelta(days=1)
    long_ago = (datetime.now().astimezone() - 30 * day).isoformat()
    assert (
        ids(start_date=long_ago, end_date=(datetime.now().astimezone() - 29 * day).isoformat())
        == []
    )
    root = ET.fromstring(client.get(f"{API}/requests.xml").content)
    assert [r.findtext("service_request_id") for r in root] == ["E000002", "E000001"]


def test_address_only_request_is_open_without_agency(client: TestClient):
    posted = submit(client, lat="", long="", address_string="铜官区长江西路12号")
    assert posted.status_code == 201
    [request] = client.get(f"{API}/requests/E000001.json").json()
    assert (request["status"], request["agency_responsible"], request["lat"]) == (
        "open",
        None,
        None,
    )
    assert request["address"] == "铜官区长江西路12号"


def test_no_personal_data_in_any_open311_answer(client: TestClient):
    answers = [submit(client).text, submit(client, fmt="xml").text]
    for path in ("requests.json", "requests.xml", "requests/E000001.json", "requests/E000002.xml"):
        response = client.get(f"{API}/{path}")
        assert response.status_code == 200
        answers.append(response.text)
    for answer in answers:
        for value in PERSONAL:
            assert value not in answer
    # ... while the dispatcher's view keeps them for the call back.
    detail = client.get("/api/v1/incidents/E000001").json()
    assert detail["reporter"] == {"name": "赵 六", "phone": PERSONAL[1], "email": PERSONAL[2]}


# -- errors -------------------------------------------------------------------------------------
def test_bad_api_key_is_403_in_open311_format(client: TestClient, planted: Engine):
    response = submit(client, api_key="wrong")
    assert response.status_code == 403
    assert response.json() == [{"code": 403, "description": "api_key is not valid"}]
    missing = submit(client, api_key="")
    assert missing.status_code == 403
    xml = submit(client, fmt="xml", api_key="wrong")
    root = ET.fromstring(xml.content)
    assert (xml.status_code, root.tag, root.find("error").findtext("code")) == (
        403,
        "errors",
        "403",
    )
    assert stored(planted) == 0


def test_unknown_request_is_404(client: TestClient):
    response = client.get(f"{API}/requests/E424242.json")
    assert response.status_code == 404
    assert response.json() == [{"code": 404, "description": "no service request 'E424242'"}]
    xml = client.get(f"{API}/requests/E424242.xml")
    assert xml.status_code == 404
    assert ET.fromstring(xml.content).find("error").findtext("code") == "404"


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"service_code": ""}, "service_code is required"),
        ({"service_code": "potholes"}, "unknown service_code 'potholes'"),
        ({"description": "脏" * 4001}, "4001 characters; the limit is 4000"),
        ({"lat": "", "long": ""}, "a location is required"),
        ({"long": ""}, "lat and long go together"),
        ({"long": "east"}, "long 'east' is not a number"),
        ({"lat": "95"}, "out of range"),
        ({"media_url": "javascript:alert(1)"}, "media_url"),
    ],
    ids=[
        "no-service-code",
        "bad-service-code",
        "description",
        "no-location",
        "no-long",
        "long-nan",
        "lat-range",
        "media-url",
    ],
)
def test_bad_requests_are_400_in_open311_format(
    client: TestClient,
    planted: Engine,
    fields,
    fragment,
):
    response = submit(client, **fields)
    assert response.status_code == 400, response.text
    [error] = response.json()
    assert error["code"] == 400 and fragment in error["description"]
    assert stored(planted) == 0


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"start_date": "last week"}, "'last week'"),
        ({"start_date": "2020-01-01", "end_date": "2020-12-31"}, "more than 90 days"),
        ({"start_date": "2020-02-01", "end_date": "2020-01-01"}, "before start_date"),
        ({"status": "pending"}, "'pending'"),
        ({"service_code": "potholes"}, "'potholes'"),
    ],
)
def test_bad_searches_are_400(client: TestClient, params, fragment):
    response = client.get(f"{API}/requests.json", params=params)
    assert response.status_code == 400
    assert fragment in response.json()[0]["description"]


def test_formats_and_encodings_other_than_the_spec_are_400(client: TestClient):
    assert client.get(f"{API}/services.csv").status_code == 400
    multipart = client.post(
        f"{API}/requests.json",
        data={"api_key": KEY, "service_code": "noise"},
        files={"media": ("a.jpg", b"\xff\xd8", "image/jpeg")},
    )
    assert multipart.status_code == 400
    assert "x-www-form-urlencoded" in multipart.json()[0]["description"]


@pytest.mark.parametrize(
    ("key", "sees_description"),
    [(None, False), (KEY, False), ("admin-open311-key", True)],
    ids=["anonymous", "reporter key", "admin key"],
)
def test_api_key_on_a_get_authenticates_like_a_bearer_token(
    planted: Engine, settings: Settings, key: str | None, sees_description: bool
):
    """GeoReport v2 clients pass their key as `api_key=` on GETs too: an admin's key sees the
    free text, as its bearer token would; no key, or a reporter's, does not."""
    ensure_token(planted, settings, "open311-app", "reporter", KEY)
    ensure_token(planted, settings, "open311-admin", "admin", "admin-open311-key")
    with TestClient(create_app(settings, engine=planted), headers={}) as anonymous:
        assert submit(anonymous).status_code == 201
        params = {"api_key": key} if key else {}
        for fmt in ("json", "xml"):
            response = anonymous.get(f"{API}/requests.{fmt}", params=params)
            assert response.status_code == 200, response.text
            assert ("垃圾桶满溢" in response.text) is sees_description, fmt
        [one] = anonymous.get(f"{API}/requests/E000001.json", params=params).json()
        assert ("description" in one and one["description"] == "垃圾桶满溢") is sees_description


def test_a_wrong_api_key_on_a_get_is_403_in_open311_format(planted: Engine, settings: Settings):
    with TestClient(create_app(settings, engine=planted), headers={}) as anonymous:
        response = anonymous.get(f"{API}/requests.json", params={"api_key": "wrong"})
        assert response.status_code == 403
        assert response.json() == [{"code": 403, "description": "api_key is not valid"}]
        xml = anonymous.get(f"{API}/services.xml", params={"api_key": "wrong"})
        assert xml.status_code == 403 and ET.fromstring(xml.content).tag == "errors"
