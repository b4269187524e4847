"""Bulk loads, one mechanism for every domain (imports, batch assignment, coverage results):
the binary COPY framing, and loads into an empty table whose indexes are dropped first and
built once from the loaded rows, far cheaper than maintaining them row by row."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from sqlalchemy import Connection, text

# PostgreSQL's binary COPY framing: signature, flags and header extension length (0), then
# rows, then -1 as int16. The rows themselves are laid out by numpy where they are built.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"

_WIRE = {"int4": ">i4", "int8": ">i8", "float8": ">f8"}
_EWKB_SRID = 0x20000000  # EWKB type flag: an SRID follows


@dataclass(frozen=True)
class Lines:
    """LineStrings as their vertices: `xy` (n, 2) and the number of vertices of each line,
    in order. What bulk reads and writes pass around instead of 100k shapely objects."""

    xy: np.ndarray
    count: np.ndarray

    @property
    def owner(self) -> np.ndarray:
        """The line of each vertex."""
        return np.repeat(np.arange(len(self.count)), self.count)

    def take(self, idx: np.ndarray) -> Lines:
        """The lines at `idx`, in that order."""
        start = np.cumsum(self.count) - self.count
        count = self.count[idx]
        first = np.cumsum(count) - count
        vertex = np.repeat(start[idx] - first, count) + np.arange(int(count.sum()))
        return Lines(self.xy[vertex], count)

    @staticmethod
    def concat(parts: Sequence[Lines]) -> Lines:
        """The lines of each part, one part after the other."""
        return Lines(
            np.concatenate([p.xy for p in parts]).reshape(-1, 2),
            np.concatenate([p.count for p in parts]).astype(np.int64),
        )


# One column's values: the width of each row's value (-1: NULL), and the values of some
# rows that all have one width, as an array of that many raw bytes each.
_Column = tuple[np.ndarray, Callable[[np.ndarray, int], np.ndarray]]


def binary_rows(
    columns: Sequence[tuple[str, np.ndarray | Lines, np.ndarray | None]],
) -> bytes:
    """The rows of a binary COPY (framing not included), laid out by numpy whatever the
    widths. Each column is (type, values, null), `null` marking NULLs (or None: none):
    - int4, int8, float8: numbers;
    - text: UTF-8 bytes (numpy "S");
    - geometry: lon/lat Points or LineStrings (shapely, one kind), `Lines`, or points as an
      (n, 2) array of lon/lat, sent as EWKB with SRID 4326.

    Rows whose fields have the same widths (NULLs included; for geometries, as many
    vertices) are laid out together as one record array: COPY takes rows in any order. 5x
    faster than shapely's EWKB joined row by row."""
    n = _rows(columns[0][1]) if columns else 0
    if n == 0:
        return b""
    prepared = [_column(kind, values, n) for kind, values, _ in columns]
    sizes = [
        size if null is None else np.where(null, -1, size)
        for (size, _), (_, _, null) in zip(prepared, columns, strict=True)
    ]
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
                rows[f"v{f}"] = prepared[f][1](idx, width)
        blocks.append(rows.tobytes())
    return b"".join(blocks)


def blob_rows(numbers: Sequence[tuple[str, np.ndarray]], blobs: Sequence[Sequence[bytes]]) -> bytes:
    """The rows of a binary COPY (framing not included) of numeric columns (type, values;
    int4, int8, float8) followed by columns of raw values of any length (UTF-8 text, EWKB),
    none NULL. The numbers are laid out by numpy; the raw values are joined row by row: for
    a few thousand large shapes, which `binary_rows` would lay out one row per layout."""
    n = len(blobs[0])
    fields = [("n", ">i2")]
    for f, (kind, _) in enumerate(numbers):
        fields += [(f"l{f}", ">i4"), (f"v{f}", _WIRE[kind])]
    rows = np.zeros(n, dtype=np.dtype(fields))
    rows["n"] = len(numbers) + len(blobs)
    for f, (kind, values) in enumerate(numbers):
        rows[f"l{f}"] = np.dtype(_WIRE[kind]).itemsize
        rows[f"v{f}"] = values
    raw = memoryview(rows.tobytes())
    width = rows.dtype.itemsize
    parts: list[bytes | memoryview] = []
    for i in range(n):
        parts.append(raw[i * width : (i + 1) * width])
        for blob in blobs:
            parts += (len(blob[i]).to_bytes(4, "big"), blob[i])
    return b"".join(parts)


def _rows(values: np.ndarray | Lines) -> int:
    return len(values.count) if isinstance(values, Lines) else len(values)


def _column(kind: str, values: np.ndarray | Lines, n: int) -> _Column:
    """The widths and the value maker of one column (see `binary_rows`)."""
    if kind == "geometry":
        return _ewkb_column(values)
    if kind == "text":
        data = np.asarray(values, dtype="S")
        size = np.char.str_len(data).astype(np.int64)
    else:
        data = np.ascontiguousarray(np.asarray(values).astype(_WIRE[kind]))
        size = np.full(n, data.dtype.itemsize, dtype=np.int64)
    matrix = data.view(np.uint8).reshape(n, data.dtype.itemsize)

    def values_of(idx: np.ndarray, width: int) -> np.ndarray:
        return np.ascontiguousarray(matrix[idx, :width]).view(f"V{width}")[:, 0]

    return size, values_of


def _ewkb_column(geoms: np.ndarray | Lines) -> _Column:
    """EWKB (little-endian, SRID 4326) of lon/lat Points or LineStrings, laid out by numpy."""
    if isinstance(geoms, Lines):
        line, coords, count = True, geoms.xy, geoms.count
    elif geoms.dtype.kind == "f":  # points as an (n, 2) array
        line, coords, count = False, geoms, np.ones(len(geoms), dtype=np.int64)
    else:
        kind = shapely.get_type_id(geoms)
        if not (np.all(kind == 0) or np.all(kind == 1)):
            raise ValueError("a geometry column takes Points or LineStrings, one kind")
        line = bool(kind[0] == 1)
        coords, owner = shapely.get_coordinates(geoms, return_index=True)
        count = np.bincount(owner, minlength=len(geoms))
    start = np.cumsum(count) - count
    header = 13 if line else 9  # byte order, type, SRID (and number of points)

    def values_of(idx: np.ndarray, width: int) -> np.ndarray:
        k = (width - header) // 16
        value = np.empty(
            len(idx),
            dtype=[
                ("order", "u1"),
                ("type", "<u4"),
                ("srid", "<u4"),
                *([("points", "<u4")] if line else []),
                ("xy", "<f8", (k, 2)),
            ],
        )
        value["order"] = 1  # little-endian
        value["type"] = _EWKB_SRID | (2 if line else 1)
        value["srid"] = 4326
        if line:
            value["points"] = k
        value["xy"] = coords[start[idx][:, None] + np.arange(k)]
        return value.view(f"V{width}")

    return header + 16 * count, values_of


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


def array_values(data: bytes | None, dtype: str) -> np.ndarray:
    """The elements of a one-dimensional array of fixed-width values without NULLs, as
    PostgreSQL's `array_send` lays it out (`dtype` big-endian, e.g. ">i4", ">f8", "?"), in
    native byte order. `array_agg` over no rows gives NULL: an empty array. One query's
    aggregates hand over a whole column at once, where a row-per-message COPY costs Python
    ~1.7 µs a row (holding the GIL)."""
    wire = np.dtype(dtype)
    native = wire.newbyteorder("=")
    if data is None:
        return np.zeros(0, dtype=native)
    ndim, has_null, _ = struct.unpack_from(">iiI", data)
    if ndim == 0:
        return np.zeros(0, dtype=native)
    count, _ = struct.unpack_from(">ii", data, 12)
    if ndim != 1 or has_null:
        raise ValueError(f"expected a one-dimensional array without NULLs, got {ndim} dims")
    cells = np.frombuffer(data, dtype=[("size", ">i4"), ("value", wire)], count=count, offset=20)
    if count and (cells["size"] != wire.itemsize).any():
        raise ValueError(f"array elements are not {wire.itemsize} bytes wide")
    return cells["value"].astype(native)


def packed_rows(data: bytes | None, fields: Sequence[tuple[str, str]]) -> np.ndarray:
    """Rows of fixed-width values sent back to back, as `string_agg` of `int4send(a) ||
    float8send(b) || ...` lays them out (`fields`: name and big-endian dtype, e.g. ">i4",
    ">f8", in order), as a structured array in native byte order; NULL (no rows) is none.
    One aggregate of whole rows costs PostgreSQL a third less than an `array_agg` per
    column (100k edges: 32 ms against 61)."""
    wire = np.dtype(list(fields))
    raw = data or b""
    if len(raw) % wire.itemsize:
        raise ValueError(f"{len(raw)} bytes do not hold rows of {wire.itemsize} bytes")
    native = np.dtype([(name, np.dtype(kind).newbyteorder("=")) for name, kind in fields])
    return np.frombuffer(raw, dtype=wire).astype(native)


def linestrings_wkb(data: bytes | None, count: np.ndarray) -> Lines:
    """The vertices of LineStrings sent as WKB (`ST_AsBinary(geom, 'NDR')`) one after the
    other, each with `count` vertices (`ST_NPoints`): numpy strips the 9-byte headers."""
    count = np.asarray(count, dtype=np.int64)
    raw = np.frombuffer(data or b"", dtype=np.uint8)
    size = 9 + 16 * count
    if len(raw) != int(size.sum()):
        raise ValueError(f"{len(raw)} bytes of WKB do not hold {len(count)} LineStrings")
    start = np.cumsum(size) - size
    header = raw[start[:, None] + np.arange(9)]
    kind = header[:, 1:5].copy().view("<u4")[:, 0]
    points = header[:, 5:9].copy().view("<u4")[:, 0]
    if len(count) and ((header[:, 0] != 1) | (kind != 2) | (points != count)).any():
        raise ValueError("expected little-endian 2D LineStrings of the given sizes")
    body = np.ones(len(raw), bool)
    body[(start[:, None] + np.arange(9)).ravel()] = False
    return Lines(raw[body].view("<f8").reshape(-1, 2), count)


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
