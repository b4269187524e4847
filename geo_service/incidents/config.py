"""The incident settings made usable: the categories (with their time limits) and the working
calendar deadlines count in; a bad setting is named, once, when first used.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from geo_service.errors import (
    GeoServiceError,
    InvalidInput,
)
from geo_service.incidents.categories import Category, categories_for
from geo_service.incidents.workflow import (
    WorkCalendar,
)
from geo_service.settings import Settings


@contextmanager
def _configuration(what: str) -> Iterator[None]:
    """Bad settings are the operator's fault, not the caller's: a server error (500), not 422."""
    try:
        yield
    except InvalidInput as exc:
        raise GeoServiceError(f"{what} misconfigured: {exc.message}") from exc


def calendar_of(settings: Settings) -> WorkCalendar:
    """The working calendar the settings describe."""
    with _configuration("incident working calendar"):
        return WorkCalendar.parse(
            settings.incidents.timezone,
            settings.incidents.work_periods,
            settings.incidents.work_weekdays,
            settings.incidents.holidays,
            settings.incidents.makeup_days,
        )


def known_categories(settings: Settings) -> Mapping[str, Category]:
    """The categories in force."""
    with _configuration("incident categories"):
        return categories_for(settings.incidents.categories_file)


def categories(settings: Settings) -> list[dict[str, Any]]:
    """The incident categories in force, with their time limits."""
    return [c.to_dict() for c in known_categories(settings).values()]


def category_of(settings: Settings, code: str) -> Category:
    """The category `code`; InvalidInput naming it and the known ones."""
    known = known_categories(settings)
    if code not in known:
        raise InvalidInput(
            f"unknown category {code!r}; known: {', '.join(known)}",
            details={"value": code, "accepted": list(known)},
        )
    return known[code]
