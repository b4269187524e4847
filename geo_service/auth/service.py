"""Token operations shared by the CLI and the API: issue, list, revoke, authenticate.

A token is 32 random bytes (URL-safe base64 behind a `gs_` prefix) shown once when issued;
only its SHA-256 is stored. A salt or a slow hash adds nothing for a secret of 256 random
bits (nobody can guess it), and a fast hash keeps a request's check to one index lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine

from geo_service.auth import store
from geo_service.auth.policy import TOKEN_ROLES, Principal, Role
from geo_service.errors import InvalidInput, NotFound, Unauthorized
from geo_service.settings import Settings

PREFIX: Final = "gs_"
_SHOWN: Final = 8  # characters of a token kept in clear to tell tokens apart in listings
_MIN_LENGTH: Final = 16
_MAX_LENGTH: Final = 512
_NAME = re.compile(r"^[\w.@-]{1,100}$")


@dataclass(frozen=True)
class Issued:
    """A new token (shown once) and its stored record."""

    token: str
    record: dict[str, Any]


def new_token() -> str:
    """A fresh random token."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored for a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def add_user(
    engine: Engine,
    settings: Settings,
    name: str,
    role: str,
    grids: Sequence[str] = (),
    expires_days: float | None = None,
    *,
    token: str | None = None,
    now: datetime | None = None,
) -> Issued:
    """Issue a token for `name` with a role (workers: one or more grids); returns the token,
    which is never shown again. `expires_days` 0 means never; None takes the setting."""
    if not _NAME.match(name):
        raise InvalidInput(f"user name {name!r} must be 1-100 letters, digits or . _ @ -")
    if role not in TOKEN_ROLES:
        raise InvalidInput(f"unknown role {role!r}; roles: {', '.join(TOKEN_ROLES)}")
    codes = sorted(set(grids))
    if role == "worker" and not codes:
        raise InvalidInput("a worker token needs at least one --grid")
    if role != "worker" and codes:
        raise InvalidInput(f"--grid applies to workers only, not to {role!r}")
    days = settings.auth.token_days if expires_days is None else expires_days
    if days < 0:
        raise InvalidInput(f"expiry of {days} days is negative")
    token = token or new_token()
    if not (_MIN_LENGTH <= len(token) <= _MAX_LENGTH and token.isascii() and token.isprintable()):
        raise InvalidInput(f"a token is {_MIN_LENGTH}-{_MAX_LENGTH} printable ASCII characters")
    now = now or _now()
    with engine.begin() as conn:
        missing = store.unknown_grids(conn, codes) if codes else []
        if missing:
            raise NotFound(f"no grid {', '.join(map(repr, missing))}")
        record = store.insert_token(
            conn,
            {
                "name": name,
                "role": role,
                "grids": codes,
                "token_hash": hash_token(token),
                "token_prefix": token[:_SHOWN],
                "created_at": now,
                "expires_at": now + timedelta(days=days) if days else None,
            },
        )
    record.pop("token_hash")
    return Issued(token, record)


def list_users(engine: Engine, *, include_revoked: bool = False) -> list[dict[str, Any]]:
    """The token records (never the tokens nor their hashes)."""
    with engine.connect() as conn:
        return store.tokens(conn, include_revoked=include_revoked)


def revoke_user(
    engine: Engine, name: str, prefix: str | None = None, *, now: datetime | None = None
) -> int:
    """Revoke every live token of `name` (or the one starting with `prefix`); NotFound when
    there is none. Servers stop accepting it within `auth_cache_s` seconds."""
    with engine.begin() as conn:
        count = store.revoke(conn, name, prefix, now or _now())
    if not count:
        which = f" starting with {prefix!r}" if prefix else ""
        raise NotFound(f"no live token of {name!r}{which}")
    return count


def principal_of(record: dict[str, Any] | None, now: datetime) -> Principal:
    """The caller a token record stands for; Unauthorized when unknown, revoked or expired."""
    if record is None:
        raise Unauthorized("the token is not valid")
    if record["revoked_at"] is not None:
        raise Unauthorized("the token was revoked")
    if record["expires_at"] is not None and record["expires_at"] <= now:
        raise Unauthorized("the token has expired")
    return _caller(record)


def _caller(record: dict[str, Any]) -> Principal:
    role: Role = record["role"]
    return Principal(record["name"], role, frozenset(record["grids"] or ()))


def authenticate(engine: Engine, token: str, *, now: datetime | None = None) -> Principal:
    """The caller of a token (a blocking lookup, for the CLI and the Open311 door)."""
    _check_shape(token)
    with engine.connect() as conn:
        record = store.by_hash(conn, hash_token(token))
    return principal_of(record, now or _now())


def _check_shape(token: str) -> None:
    if not (0 < len(token) <= _MAX_LENGTH):
        raise Unauthorized("the token is not valid")


class TokenCache:
    """Tokens checked recently, so a request costs a lookup only every `ttl` seconds per
    token. Revocation and expiry take effect within `ttl` (0: checked on every request);
    an expiry time passes on time, cached or not."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        # token hash -> (looked up until, record, its caller while neither revoked nor expired)
        self._entries: dict[str, tuple[float, dict[str, Any] | None, Principal | None]] = {}

    async def authenticate(self, pool: AsyncConnectionPool, token: str) -> Principal:
        """The caller of a token, looked up on the API's asyncio pool."""
        _check_shape(token)
        digest = hash_token(token)
        clock = time.monotonic()
        hit = self._entries.get(digest)
        if hit is None or hit[0] <= clock:
            async with pool.connection() as conn:
                record = await store.by_hash_async(conn, digest)
            live = record is not None and record["revoked_at"] is None
            hit = (
                clock + self.ttl,
                record,
                _caller(record) if record is not None and live else None,
            )
            if self.ttl > 0:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[digest] = hit
        _, record, principal = hit
        expires = record["expires_at"] if record is not None else None
        if principal is not None and (expires is None or expires > _now()):
            return principal  # the one Principal built at lookup (no dataclass per request)
        return principal_of(record, _now())  # Unauthorized, saying why
