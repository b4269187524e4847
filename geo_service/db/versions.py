"""Data versions: one number per kind of data, bumped by whatever changes it (an import, a
grid edit), so derived results (tiles, layers, coverage, the address index) know when they
are stale."""

from __future__ import annotations

from sqlalchemy import Connection, text


def bump(conn: Connection, *kinds: str) -> None:
    """Count a change of each kind (in the caller's transaction)."""
    for kind in kinds:
        conn.execute(
            text(
                "INSERT INTO dataset_versions (kind, version) VALUES (:kind, 1) "
                "ON CONFLICT (kind) DO UPDATE SET version = dataset_versions.version + 1, "
                "updated_at = now()"
            ),
            {"kind": kind},
        )
