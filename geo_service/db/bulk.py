"""Bulk loads, one mechanism for every domain (imports, batch assignment, coverage results):
the binary COPY framing, and loads into an empty table whose indexes are dropped first and
built once from the loaded rows, far cheaper than maintaining them row by row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, text

# PostgreSQL's binary COPY framing: signature, flags and header extension length (0), then
# rows, then -1 as int16. The rows themselves are laid out by numpy where they are built.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"

_WIRE = {"int4": ">i4", "int8": ">i8", "float8": ">f8"}


def binary_rows(columns: Sequence[tuple[str, np.ndarray, np.ndarray | None]]) -> bytes:
    """The rows of a binary COPY (framing not included), laid out by numpy whatever the
    widths: each column is (type, values, null) with type int4, int8, float8 (numbers) or
    text (UTF-8 bytes, numpy "S"), and `null` marking NULLs (or None: none). Rows whose
    fields have the same widths (NULLs included) are laid out together as one record array:
    COPY takes rows in any order."""
    n = len(columns[0][1]) if columns else 0
    matrices, sizes = [], []
    for kind, values, null in columns:
        if kind == "text":
            data = np.asarray(values, dtype="S")
            size = np.char.str_len(data).astype(np.int64)
        else:
            data = np.ascontiguousarray(np.asarray(values).astype(_WIRE[kind]))
            size = np.full(n, data.dtype.itemsize, dtype=np.int64)
        matrices.append(data.view(np.uint8).reshape(n, data.dtype.itemsize))
        sizes.append(size if null is None else np.where(null, -1, size))
    if n == 0:
        return b""
    layout_of = _layouts(sizes)
    order = np.argsort(layout_of, kind="stable")
    bounds = np.flatnonzero(np.diff(layout_of[order], prepend=-1, append=-1))
    blocks = []
    for k in range(len(bounds) - 1):
        idx = order[bounds[k] : bounds[k + 1]]
        layout = [int(size[idx[0]]) for size in sizes]  # -1: NULL
        fields: list[tuple[str, str]] = [("n", ">i2")]
        for f, width in enumerate(layout):
            fields += [(f"l{f}", ">i4")] + ([(f"v{f}", f"V{width}")] if width > 0 else [])
        rows = np.empty(len(idx), dtype=fields)
        rows["n"] = len(columns)
        for f, width in enumerate(layout):
            rows[f"l{f}"] = width
            if width > 0:
                values = np.ascontiguousarray(matrices[f][idx, :width])
                rows[f"v{f}"] = values.view(f"V{width}")[:, 0]
        blocks.append(rows.tobytes())
    return b"".join(blocks)


def _layouts(sizes: list[np.ndarray]) -> np.ndarray:
    """A number per row, equal where every column has the same width (or is NULL)."""
    key = np.zeros(len(sizes[0]), dtype=np.int64)
    span = 1
    for size in sizes:
        values, index = np.unique(size, return_inverse=True)
        if span * len(values) >= 2**62:  # renumber before the key overflows
            _, key = np.unique(key, return_inverse=True)
            span = int(key.max()) + 1
        key = key * len(values) + index.ravel()
        span *= len(values)
    return key


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
