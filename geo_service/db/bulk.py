"""Bulk loads, one mechanism for every domain (imports, batch assignment, coverage results):
the binary COPY framing, and loads into an empty table whose indexes are dropped first and
built once from the loaded rows, far cheaper than maintaining them row by row."""

from __future__ import annotations

from sqlalchemy import Connection, text

# PostgreSQL's binary COPY framing: signature, flags and header extension length (0), then
# rows, then -1 as int16. The rows themselves are laid out by numpy where they are built.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"


def drop_indexes(
    conn: Connection, table: str, *, only_gist: bool = False, keys: bool = False
) -> list[str]:
    """Drop the indexes of `table` (only its GiST ones with `only_gist`; with `keys`, its
    primary key and unique constraints too); return the statements that build them again
    (`rebuild`). Dropping locks the table until commit."""
    restore: list[str] = []
    if keys:
        constraints = conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u')"
            ),
            {"t": table},
        ).all()
        if constraints:
            drops = ", ".join(f'DROP CONSTRAINT "{name}"' for name, _ in constraints)
            conn.execute(text(f"ALTER TABLE {table} {drops}"))
            adds = ", ".join(f'ADD CONSTRAINT "{name}" {d}' for name, d in constraints)
            restore.append(f"ALTER TABLE {table} {adds}")
    # Indexes behind constraints go (or stay) with their constraint.
    indexes = conn.execute(
        text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = "
            "current_schema() AND i.tablename = :t AND NOT EXISTS (SELECT 1 FROM "
            "pg_constraint c WHERE c.conindid = CAST(quote_ident(i.indexname) AS regclass))"
            + (" AND i.indexdef LIKE '%USING gist%'" if only_gist else "")
        ),
        {"t": table},
    ).all()
    for name, definition in indexes:
        conn.execute(text(f'DROP INDEX "{name}"'))
        restore.append(definition)
    return restore


def rebuild(conn: Connection, statements: list[str]) -> None:
    """Build again what `drop_indexes` dropped."""
    for statement in statements:
        conn.execute(text(statement))
