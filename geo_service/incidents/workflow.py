"""Incident workflow (pure): statuses, the transition table, Open311 status, working-time deadlines.

The seven stages of digital city management become statuses::

    needs_location --locate--> received --file--> filed --dispatch--> dispatched
        --start--> in_progress --report--> reported --close--> closed

plus `reopen` (closed -> dispatched; reported -> in_progress when verification fails),
`cancel` (any open status -> cancelled) and re-routing (`dispatch` from dispatched, with a new
grid). Evaluation (综合评价) is a report over closed incidents, not a status.

Deadlines count working time: the clock starts at dispatch and runs only inside the working
periods of working days (see `WorkCalendar`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from geo_service.db.models import INCIDENT_STATUSES
from geo_service.errors import Conflict, InvalidInput

# The statuses, in workflow order: defined with the table that stores them (its CHECK).
STATUSES: Final = INCIDENT_STATUSES
TERMINAL: Final = frozenset({"closed", "cancelled"})
OPEN: Final = tuple(s for s in STATUSES if s not in TERMINAL)

# action -> {from status: to status}. The order of actions is the order `allowed` lists them.
TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    # An address-only report gets coordinates; a `received` one (located outside every grid)
    # may be located again with corrected coordinates.
    "locate": {"needs_location": "received", "received": "received"},
    "file": {"received": "filed"},
    # From `dispatched` this is re-routing to another grid (the deadline does not restart).
    "dispatch": {"filed": "dispatched", "dispatched": "dispatched"},
    "start": {"dispatched": "in_progress"},
    "report": {"in_progress": "reported"},
    "close": {"reported": "closed"},
    # Rework: a closed case goes back to the grid; a report that fails verification goes back
    # to the handler.
    "reopen": {"closed": "dispatched", "reported": "in_progress"},
    "cancel": dict.fromkeys(OPEN, "cancelled"),
}
ACTIONS: Final = tuple(TRANSITIONS)


def allowed_actions(status: str) -> list[str]:
    """The actions legal from `status`, in workflow order."""
    return [action for action, moves in TRANSITIONS.items() if status in moves]


def transition(action: str, status: str, ref: str = "") -> str:
    """The status after `action` from `status`; Conflict naming both when it is illegal."""
    moves = TRANSITIONS.get(action)
    if moves is None:
        raise InvalidInput(
            f"unknown action {action!r}; expected one of: {', '.join(ACTIONS)}",
            details={"value": action, "accepted": list(ACTIONS)},
        )
    if status not in STATUSES:
        raise ValueError(f"unknown incident status {status!r}")
    if status not in moves:
        allowed = allowed_actions(status)
        subject = f"incident {ref}" if ref else "incident"
        raise Conflict(
            f"cannot {action} {subject}: it is {status}; "
            f"allowed: {', '.join(allowed) if allowed else 'none (final status)'}",
            details={"action": action, "status": status, "allowed": allowed},
        )
    return moves[status]


def open311_status(status: str) -> Literal["open", "closed"]:
    """Open311 knows two statuses: closed and cancelled are closed, everything else open."""
    return "closed" if status in TERMINAL else "open"


def is_overdue(status: str, due_at: datetime | None, now: datetime) -> bool:
    """Overdue: still open, with a deadline that has passed."""
    return status not in TERMINAL and due_at is not None and now > due_at


# -- working time -------------------------------------------------------------------------------
# A misconfigured calendar (no working day at all) must fail, not loop forever.
_MAX_DAYS: Final = 3660


@dataclass(frozen=True)
class WorkCalendar:
    """When the deadline clock runs: periods of each working day in one time zone."""

    tz: ZoneInfo
    periods: tuple[tuple[time, time], ...]
    weekdays: frozenset[int]  # ISO: 1 = Monday ... 7 = Sunday
    holidays: frozenset[date] = frozenset()
    # Weekend days worked in exchange for a holiday bridge (调休): working days despite weekdays.
    makeup_days: frozenset[date] = frozenset()

    @classmethod
    def parse(
        cls,
        timezone: str,
        periods: Iterable[str],
        weekdays: Iterable[int],
        holidays: Iterable[date] = (),
        makeup_days: Iterable[date] = (),
    ) -> WorkCalendar:
        """Build from settings text ("08:30-12:00"); InvalidInput naming any bad value."""
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {timezone!r}") from None
        texts = list(periods)
        parsed = sorted(_period(text) for text in texts)
        if not parsed:
            raise InvalidInput("the working day has no working periods")
        for (_, end), (start, _) in pairwise(parsed):
            if start < end:
                raise InvalidInput(f"working periods overlap: {', '.join(texts)}")
        days = frozenset(int(d) for d in weekdays)
        if not days <= set(range(1, 8)):
            raise InvalidInput(f"working weekdays must be 1 (Monday) to 7: {sorted(days)}")
        return cls(tz, tuple(parsed), days, frozenset(holidays), frozenset(makeup_days))

    @property
    def day_length(self) -> timedelta:
        """Working time in one working day (one 'working day' of a time limit)."""
        return sum(
            (
                datetime.combine(date.min, end) - datetime.combine(date.min, start)
                for start, end in self.periods
            ),
            timedelta(),
        )

    def is_working_day(self, day: date) -> bool:
        """True when the clock runs on `day` (make-up days win over weekdays and holidays)."""
        if day in self.makeup_days:
            return True
        return day.isoweekday() in self.weekdays and day not in self.holidays


def _period(text: str) -> tuple[time, time]:
    """("08:30-12:00") -> (08:30, 12:00)."""
    start, sep, end = text.partition("-")
    try:
        if not sep:
            raise ValueError
        begin, finish = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        raise InvalidInput(f"working period {text!r} is not of the form HH:MM-HH:MM") from None
    if begin >= finish:
        raise InvalidInput(f"working period {text!r} ends before it starts")
    return begin, finish


@dataclass(frozen=True)
class TimeLimit:
    """A category's time limit, in working hours or working days."""

    amount: float
    unit: Literal["hours", "days"]

    def __post_init__(self) -> None:
        if not self.amount > 0:
            raise ValueError(f"a time limit must be positive: {self.amount!r}")

    def working_time(self, calendar: WorkCalendar) -> timedelta:
        """The limit as working time: a working day is the calendar's working-day length."""
        if self.unit == "hours":
            return timedelta(hours=self.amount)
        return calendar.day_length * self.amount

    def __str__(self) -> str:
        amount = f"{self.amount:g}"
        return f"{amount} working {self.unit[:-1] if amount == '1' else self.unit}"


def due_at(dispatched_at: datetime, limit: TimeLimit, calendar: WorkCalendar) -> datetime:
    """The deadline: `limit` of working time counted from `dispatched_at` (timezone-aware).

    Time outside the working periods (lunch, nights, weekends, holidays) does not count; a
    dispatch outside working hours starts the clock at the next working moment. A limit that
    ends exactly at the end of a period ends there (12:00), not at the start of the next.
    """
    if dispatched_at.tzinfo is None:
        raise ValueError("dispatched_at must be timezone-aware")
    start = dispatched_at.astimezone(calendar.tz)
    remaining = limit.working_time(calendar)
    day = start.date()
    for _ in range(_MAX_DAYS):
        if calendar.is_working_day(day):
            for period_start, period_end in calendar.periods:
                begin = max(datetime.combine(day, period_start, calendar.tz), start)
                end = datetime.combine(day, period_end, calendar.tz)
                if begin >= end:
                    continue
                if remaining <= end - begin:
                    return begin + remaining
                remaining -= end - begin
        day += timedelta(days=1)
    raise InvalidInput(f"the working calendar has no working time within {_MAX_DAYS} days")


def utc_now() -> datetime:
    """The one clock of incident operations (tests pass their own `now`)."""
    return datetime.now(UTC)


def iso_time(value: datetime | None, tz: ZoneInfo | None = None) -> str | None:
    """ISO 8601 with the offset, to the second, in the working time zone."""
    if value is None:
        return None
    return (value.astimezone(tz) if tz else value).isoformat(timespec="seconds")
