# ruff: noqa: F811 (grids_planted, planted and client are test_incidents' fixtures, imported and
# asked for by name: a parameter of that name is not a redefinition)
"""Workflow actions safe to resend: a grid worker's phone queues `start` and `report` with an
Idempotency-Key chosen once, and sends them again after a dropped connection. Applied once, the
resend answered with the incident as it is now; the key is the caller's own; another action
under the same key is refused with nothing changed. On the planted grids of test_incidents."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geo_service.errors import Conflict
from geo_service.incidents import followup
from geo_service.settings import Settings
from tests.conftest import ensure_token
from tests.test_incidents import (  # noqa: F401 (fixtures used by name)
    G1,
    client,
    grids_planted,
    planted,
    report,
)

WORKER = "test-token-of-a-worker-of-g1"
OTHER_WORKER = "test-token-of-another-worker-of-g1"


@pytest.fixture
def phone(client: TestClient, planted: Engine, settings: Settings) -> TestClient:
    """The client, as grid G1's worker (tokens made once per database)."""
    ensure_token(planted, settings, "w-g1", "worker", WORKER, grids=[G1])
    ensure_token(planted, settings, "w2-g1", "worker", OTHER_WORKER, grids=[G1])
    return client


def send(client: TestClient, ref: str, action: str, key: str | None, token: str = WORKER) -> Any:
    headers = {"Authorization": f"Bearer {token}".encode()}
    if key is not None:
        headers["Idempotency-Key"] = key.encode()  # UTF-8 on the wire, as a phone might
    return client.patch(
        f"/api/v1/incidents/{ref}",
        json={"action": action, "actor": "W1", "note": "到场"},
        headers=headers,
    )


def events(engine: Engine, ref: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT e.action FROM incident_events e JOIN incidents i ON i.id = e.incident_id "
                "WHERE i.ref = :ref ORDER BY e.id"
            ),
            {"ref": ref},
        )
        return [r.action for r in rows]


def test_a_resent_action_is_applied_once_and_answers_the_incident(phone: TestClient, planted):
    ref = report(phone)["ref"]
    first = send(phone, ref, "start", "phone-1-start")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "in_progress"
    assert "Idempotent-Replayed" not in first.headers
    again = send(phone, ref, "start", "phone-1-start")
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["status"] == "in_progress"
    assert events(planted, ref) == ["receive", "file", "dispatch", "start"]

    # Later the phone reports the work done, then its old start comes in once more (the
    # answer it never got): not a 409 for starting a reported case, and nothing applied.
    assert send(phone, ref, "report", "phone-1-report").json()["status"] == "reported"
    late = send(phone, ref, "start", "phone-1-start")
    assert late.status_code == 200 and late.headers["Idempotent-Replayed"] == "true"
    assert late.json()["status"] == "reported"
    assert events(planted, ref) == ["receive", "file", "dispatch", "start", "report"]

    # Without a key a second start is what it always was: illegal from in_progress or later.
    assert send(phone, ref, "start", None).status_code == 409


def test_the_key_with_another_action_or_incident_is_refused(phone: TestClient, planted):
    ref = report(phone)["ref"]
    other = report(phone)["ref"]
    assert send(phone, ref, "start", "phone-2").status_code == 200
    reused = send(phone, ref, "report", "phone-2")
    assert reused.status_code == 409
    assert "'phone-2'" in reused.json()["message"] and ref in reused.json()["message"]
    elsewhere = send(phone, other, "start", "phone-2")
    assert elsewhere.status_code == 409
    assert events(planted, ref)[-1] == "start" and events(planted, other)[-1] == "dispatch"


def test_keys_are_the_callers_own(phone: TestClient, planted):
    ref = report(phone)["ref"]
    other = report(phone)["ref"]
    assert send(phone, ref, "start", "my-key").status_code == 200
    # Another worker's phone chose the same key for its own action: applied, never replayed.
    theirs = send(phone, other, "start", "my-key", token=OTHER_WORKER)
    assert theirs.status_code == 200 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["status"] == "in_progress"
    assert events(planted, other)[-1] == "start"


def test_concurrent_resends_apply_the_action_once(phone: TestClient, planted, settings):
    ref = report(phone)["ref"]

    def start(_: int) -> bool:
        change = {"action": "start", "actor": "W1"}
        done = followup.change_incident(
            planted, settings, ref, change, "burst", grids=[G1], recorded_by="w-g1"
        )
        return done.applied

    with ThreadPoolExecutor(max_workers=6) as pool:
        applied = list(pool.map(start, range(6)))
    assert applied.count(True) == 1
    assert events(planted, ref).count("start") == 1
    with pytest.raises(Conflict, match="'burst'"):
        followup.change_incident(
            planted, settings, ref, {"action": "report", "actor": "W1"}, "burst",
            grids=[G1], recorded_by="w-g1",
        )  # fmt: skip


@pytest.mark.parametrize("key", ["", "键", "x" * 256, "tab\there"])
def test_a_bad_key_is_422_naming_the_rule_and_changes_nothing(phone: TestClient, planted, key):
    ref = report(phone)["ref"]
    bad = send(phone, ref, "start", key)
    assert bad.status_code == 422, bad.text
    assert "Idempotency-Key must be 1-255 printable ASCII characters" in bad.json()["message"]
    assert events(planted, ref) == ["receive", "file", "dispatch"]
