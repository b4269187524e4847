"""All SQL of roles and tokens (SQLAlchemy Core for the CLI, psycopg for the API's pool)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert

from geo_service.db.models import auth_tokens, grids


def insert_token(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    """Store a token record (its hash, never the token); returns the stored row."""
    row = conn.execute(insert(auth_tokens).values(**values).returning(*auth_tokens.c)).one()
    return dict(row._mapping)


def unknown_grids(conn: Connection, codes: list[str]) -> list[str]:
    """The codes among `codes` that are not grids."""
    known = set(conn.execute(select(grids.c.code).where(grids.c.code.in_(codes))).scalars())
    return [code for code in codes if code not in known]


def tokens(conn: Connection, *, include_revoked: bool = False) -> list[dict[str, Any]]:
    """Token records (no hashes), by name then creation."""
    columns = [c for c in auth_tokens.c if c.name != "token_hash"]
    statement = select(*columns).order_by(auth_tokens.c.name, auth_tokens.c.id)
    if not include_revoked:
        statement = statement.where(auth_tokens.c.revoked_at.is_(None))
    return [dict(r._mapping) for r in conn.execute(statement)]


def revoke(conn: Connection, name: str, prefix: str | None, now: datetime) -> int:
    """Revoke the live tokens of `name` (only the one starting with `prefix` when given)."""
    statement = (
        update(auth_tokens)
        .where(auth_tokens.c.name == name, auth_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if prefix is not None:
        statement = statement.where(auth_tokens.c.token_prefix == prefix)
    return conn.execute(statement).rowcount


def by_hash(conn: Connection, token_hash: str) -> dict[str, Any] | None:
    """The record of a token hash (revoked and expired ones included), or None."""
    row = conn.execute(
        select(
            auth_tokens.c.name,
            auth_tokens.c.role,
            auth_tokens.c.grids,
            auth_tokens.c.expires_at,
            auth_tokens.c.revoked_at,
        ).where(auth_tokens.c.token_hash == token_hash)
    ).first()
    return dict(row._mapping) if row else None


_BY_HASH = "SELECT name, role, grids, expires_at, revoked_at FROM auth_tokens WHERE token_hash = %s"


async def by_hash_async(conn: AsyncConnection[Any], token_hash: str) -> dict[str, Any] | None:
    """`by_hash` on the API's asyncio pool."""
    async with conn.cursor() as cur:
        await cur.execute(_BY_HASH, [token_hash], prepare=True)
        row = await cur.fetchone()
    if row is None:
        return None
    name, role, grid_codes, expires_at, revoked_at = row
    return {
        "name": name,
        "role": role,
        "grids": grid_codes,
        "expires_at": expires_at,
        "revoked_at": revoked_at,
    }
