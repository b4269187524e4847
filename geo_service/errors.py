"""One exception hierarchy for every domain; api/ and cli.py map it to statuses and exit codes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class GeoServiceError(Exception):
    """Base of every error the service raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(GeoServiceError):
    """The caller sent something we cannot use: the message names the bad value."""

    code = "invalid_input"


class BadRequest(InvalidInput):
    """A malformed request to a standard protocol that prescribes 400 (OGC API, tiles)."""

    code = "bad_request"


class NotFound(GeoServiceError):
    """A code, id or file that does not exist."""

    code = "not_found"


class Unauthorized(GeoServiceError):
    """No usable credentials: a missing, unknown, expired or revoked token (401)."""

    code = "unauthorized"


class Forbidden(GeoServiceError):
    """A known caller whose role may not do this (403)."""

    code = "forbidden"


class Conflict(GeoServiceError):
    """The request clashes with the current state (duplicate, illegal transition, FK in use)."""

    code = "conflict"


class PayloadTooLarge(InvalidInput):
    """A body or batch larger than the configured limit."""

    code = "payload_too_large"


class TooManyRequests(GeoServiceError):
    """A client asked more often than a public door allows (429, with the seconds to wait)."""

    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retry_after_s": retry_after})
        self.retry_after = retry_after


class Unavailable(GeoServiceError):
    """A dependency (the database, a system package) is not there."""

    code = "unavailable"


def describe_problems(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line naming each bad field and value, from pydantic's errors (of a request body or
    parameters: a body's fields are named without the `body.` prefix)."""
    problems = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        if loc[:1] == ["body"] and len(loc) > 1:
            loc = loc[1:]
        where = ".".join(loc) or "body"
        if error["type"] == "missing":
            problems.append(f"{where} is required")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown field {where!r}")
        elif "input" in error:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message} (got {error['input']!r:.80})")
        else:
            problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
