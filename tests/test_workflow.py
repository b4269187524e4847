"""The incident workflow and working-time deadlines, without a database."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from geo_service.db.models import INCIDENT_STATUSES
from geo_service.errors import Conflict, InvalidInput
from geo_service.incidents.categories import categories_for
from geo_service.incidents.workflow import (
    ACTIONS,
    STATUSES,
    TimeLimit,
    WorkCalendar,
    allowed_actions,
    due_at,
    is_overdue,
    open311_status,
    transition,
)
from geo_service.settings import Settings

OPEN = ["needs_location", "received", "filed", "dispatched", "in_progress", "reported"]
# The workflow as the issue states it, written out (not derived from the code under test).
LEGAL = {
    ("locate", "needs_location"): "received",
    ("locate", "received"): "received",
    ("file", "received"): "filed",
    ("dispatch", "filed"): "dispatched",
    ("dispatch", "dispatched"): "dispatched",  # re-routing
    ("start", "dispatched"): "in_progress",
    ("report", "in_progress"): "reported",
    ("close", "reported"): "closed",
    ("reopen", "closed"): "dispatched",
    ("reopen", "reported"): "in_progress",  # verification failed
    **{("cancel", s): "cancelled" for s in OPEN},
}
ILLEGAL = [(a, s) for a in ACTIONS for s in STATUSES if (a, s) not in LEGAL]


def test_statuses_match_the_database_check():
    assert STATUSES == INCIDENT_STATUSES


@pytest.mark.parametrize(("action", "status"), list(LEGAL), ids=lambda v: v)
def test_legal_transitions(action, status):
    assert transition(action, status, "E000001") == LEGAL[(action, status)]


@pytest.mark.parametrize(("action", "status"), ILLEGAL, ids=lambda v: v)
def test_illegal_transitions_name_action_status_and_what_is_allowed(action, status):
    with pytest.raises(Conflict) as caught:
        transition(action, status, "E000012")
    message = caught.value.message
    assert message.startswith(f"cannot {action} incident E000012: it is {status}; allowed: ")
    for allowed in allowed_actions(status):
        assert allowed in message


def test_conflict_message_reads_like_the_issue():
    with pytest.raises(
        Conflict,
        match=r"^cannot close incident E000012: it is dispatched; "
        r"allowed: dispatch, start, cancel$",
    ):
        transition("close", "dispatched", "E000012")
    with pytest.raises(Conflict, match=r"it is closed; allowed: reopen$"):
        transition("start", "closed", "E1")
    with pytest.raises(Conflict, match=r"allowed: none \(final status\)"):
        transition("reopen", "cancelled", "E1")


def test_unknown_action_is_invalid_input_naming_it():
    with pytest.raises(InvalidInput, match="unknown action 'finish'"):
        transition("finish", "dispatched")


@pytest.mark.parametrize("status", STATUSES)
def test_open311_status(status):
    assert open311_status(status) == ("closed" if status in ("closed", "cancelled") else "open")


def test_overdue_only_while_open():
    due = datetime(2026, 11, 23, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    later = due + timedelta(minutes=1)
    assert is_overdue("dispatched", due, later)
    assert not is_overdue("dispatched", due, due)
    assert not is_overdue("closed", due, later)
    assert not is_overdue("received", None, later)


# -- working time ---------------------------------------------------------------------------------
SH = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in the week of Monday 2026-11-23 (day 23) in Shanghai."""
    return datetime(2026, 11, day, hour, minute, tzinfo=SH)


def calendar(**changes) -> WorkCalendar:
    s = Settings().updated(incidents=changes)
    return WorkCalendar.parse(
        s.incidents.timezone,
        s.incidents.work_periods,
        s.incidents.work_weekdays,
        s.incidents.holidays,
        s.incidents.makeup_days,
    )


HOURS_5 = TimeLimit(5, "hours")
HOURS_1 = TimeLimit(1, "hours")
DAY_1 = TimeLimit(1, "days")


@pytest.mark.parametrize(
    ("start", "limit", "expected"),
    [
        (at(23, 10), HOURS_5, at(23, 17)),  # 2 h before lunch + 3 h after
        (at(23, 11, 30), HOURS_1, at(23, 14, 30)),  # over lunch
        (at(23, 8, 30), TimeLimit(3.5, "hours"), at(23, 12)),  # ends at the end of a period
        (at(23, 12, 30), HOURS_1, at(23, 15)),  # dispatched at lunch: clock starts 14:00
        (at(24, 7), HOURS_1, at(24, 9, 30)),  # before hours
        (at(24, 18), HOURS_1, at(25, 9, 30)),  # after hours -> next morning
        (at(27, 16, 30), HOURS_5, at(30, 14, 30)),  # Friday -> over the weekend -> Monday
        (at(28, 10), HOURS_1, at(30, 9, 30)),  # dispatched on Saturday
        (at(23, 10), DAY_1, at(24, 10)),  # a working day is 7 working hours
        (at(27, 10), DAY_1, at(30, 10)),  # ... over a weekend
        (at(23, 10), TimeLimit(15, "days"), datetime(2026, 12, 14, 10, tzinfo=SH)),
        (at(23, 10), TimeLimit(0.5, "hours"), at(23, 10, 30)),
    ],
    ids=[
        "5h-same-day",
        "over-lunch",
        "end-of-period",
        "at-lunch",
        "before-hours",
        "after-hours",
        "over-weekend",
        "on-saturday",
        "1-day",
        "1-day-weekend",
        "15-days",
        "half-hour",
    ],
)
def test_due_at_counts_working_time_only(start, limit, expected):
    assert due_at(start, limit, calendar()) == expected


def test_due_at_accepts_any_time_zone_and_answers_in_the_working_one():
    dispatched = datetime(2026, 11, 23, 2, 0, tzinfo=ZoneInfo("UTC"))  # 10:00 in Shanghai
    due = due_at(dispatched, HOURS_5, calendar())
    assert due == at(23, 17) and due.utcoffset() == timedelta(hours=8)


def test_holidays_stop_the_clock_and_makeup_days_run_it():
    holidays = calendar(holidays=[date(2026, 11, 24)])
    assert due_at(at(23, 10), DAY_1, holidays) == at(25, 10)
    makeup = calendar(makeup_days=[date(2026, 11, 28)])
    assert due_at(at(27, 16, 30), HOURS_5, makeup) == at(28, 14, 30)


def test_custom_working_day():
    long_days = calendar(work_periods=["09:00-18:00"], work_weekdays=[1, 2, 3, 4, 5, 6])
    assert long_days.day_length == timedelta(hours=9)
    assert due_at(at(28, 17), HOURS_5, long_days) == at(30, 13)  # Saturday works, Sunday not


def test_naive_dispatch_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        due_at(datetime(2026, 11, 23, 10), HOURS_1, calendar())


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"work_periods": ["8:30-12"]}, "'8:30-12'"),
        ({"work_periods": ["12:00-08:30"]}, "ends before it starts"),
        ({"work_periods": ["08:00-12:00", "11:00-13:00"]}, "overlap"),
        ({"work_periods": []}, "no working periods"),
        ({"timezone": "Mars/Olympus"}, "'Mars/Olympus'"),
        ({"work_weekdays": [0, 1]}, r"1 \(Monday\) to 7"),
    ],
)
def test_bad_calendar_settings_are_named(changes, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        calendar(**changes)


def test_calendar_without_working_days_fails_instead_of_looping():
    with pytest.raises(InvalidInput, match="no working time"):
        due_at(at(23, 10), HOURS_1, calendar(work_weekdays=[]))


# -- categories ---------------------------------------------------------------------------------
def test_packaged_categories_carry_the_domain_time_limits():
    known = categories_for(None)
    assert str(known["illegal_construction"].limit) == "15 working days"
    assert str(known["exposed_rubbish"].limit) == "1 working day"
    assert str(known["road_not_clean"].limit) == "5 working hours"
    assert {"broken_street_light", "noise", "blocked_fire_lane", "other"} <= set(known)
    assert all(c.name.get("zh") and c.name.get("en") for c in known.values())


def test_a_city_file_replaces_the_categories(tmp_path: Path):
    path = tmp_path / "cats.toml"
    path.write_text(
        '[categories.pothole]\nname = { zh = "坑洼", en = "Pothole" }\n'
        "limit = { working_hours = 8 }\n",
        encoding="utf-8",
    )
    assert list(categories_for(path)) == ["pothole"]
    path.write_text(
        '[categories.pothole]\nname = "坑洼"\nlimit = { working_days = 0 }\n', encoding="utf-8"
    )
    with pytest.raises(InvalidInput, match=r"'pothole': working_days must be a positive number: 0"):
        categories_for(path)


def test_missing_categories_file_is_named(tmp_path: Path):
    with pytest.raises(InvalidInput, match=r"nope\.toml"):
        categories_for(tmp_path / "nope.toml")
