"""Moments as callers type them: ISO 8601 dates and times, read once for every door (incident
filters, Open311 windows, grid history and `as_of`). A time without an offset is in the city's
working time zone (GEO_INCIDENT_TIMEZONE), as people there write it."""

from __future__ import annotations

from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from geo_service.errors import InvalidInput

# The years a date given in a query may name: wider than any case a service holds, narrow
# enough that converting between time zones can never overflow (year 1 at +14:00 does).
YEARS: Final = (1900, 2200)


def parse_instant(name: str, text: str | None, tz: ZoneInfo) -> datetime | None:
    """An ISO 8601 date or date-time given as parameter `name`; without an offset it is in
    the working time zone `tz`. None for nothing given; InvalidInput naming the value else."""
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{name} {text!r} is not an ISO 8601 date or date-time") from None
    if not YEARS[0] <= value.year <= YEARS[1]:
        first, last = YEARS
        raise InvalidInput(f"{name} {text!r} is out of range: the year must be in {first}..{last}")
    return value if value.tzinfo else value.replace(tzinfo=tz)
