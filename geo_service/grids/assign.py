"""Batch assignment: a CSV of points (millions of rows) -> the same rows with their grids.

Streamed end to end with bounded memory:
1. the input is read in Arrow batches; coordinates are parsed and converted in numpy and sent
   to PostgreSQL with binary COPY (fixed-width rows built by numpy, no per-row Python);
2. PostGIS indexes the points and applies the locate rules (`store.locate_sql`) to all of
   them at once, grid by grid;
3. the input is read again batch by batch, each batch is joined with the next rows of the
   result (streamed by COPY in input order), and written out.
A row whose coordinates are unusable gets status `invalid`; it never aborts the file.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Engine

from geo_service.crs import InputCRS, check_lonlat, to_storage
from geo_service.errors import InvalidInput, NotFound
from geo_service.grids import store

OUTPUT_COLUMNS = ("id", "lon", "lat", "grid_code", "community_code", "status", "distance_m")
RESULT_COLUMNS = OUTPUT_COLUMNS[3:]
BLOCK_BYTES = 8 << 20  # ~8 MB of CSV per Arrow batch
RESULT_BLOCK = 65_536  # result rows per message from the database
TABLE = "assign_points"
# Binary COPY row of (i int8, x float8, y float8): field count, then length + value each.
_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("li", ">i4"),
        ("i", ">i8"),
        ("lx", ">i4"),
        ("x", ">f8"),
        ("ly", ">i4"),
        ("y", ">f8"),
    ]
)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_NULL_ROW = np.dtype([("n", ">i2"), ("li", ">i4"), ("i", ">i8"), ("lx", ">i4"), ("ly", ">i4")])


# One text block of CSV lines per 65,536 points: a few dozen large messages instead of a
# million small ones, parsed by Arrow on our side.
RESULT_QUERY = (
    "SELECT string_agg(coalesce(r.grid_code, '') || ',' || coalesce(g.community_code, '')"
    " || ',' || r.status || ',' || coalesce(round(r.distance_m::numeric, 2)::text, ''),"
    " E'\\n' ORDER BY r.i) "
    f"FROM ({store.locate_sql(TABLE, store.HITS_GRID_BY_GRID, '%(tol)s', candidates=False)}) r "
    "LEFT JOIN grids g ON g.code = r.grid_code "
    f"GROUP BY (r.i - 1) / {RESULT_BLOCK} ORDER BY (r.i - 1) / {RESULT_BLOCK}"
)


@dataclass
class AssignReport:
    """Counts per status, and where the output went."""

    rows: int
    by_status: dict[str, int]
    output: str


def assign_csv(
    engine: Engine,
    source: Path,
    output: Path,
    crs: InputCRS,
    tolerance_m: float,
    *,
    id_field: str = "id",
    lon_field: str = "lon",
    lat_field: str = "lat",
    progress: Callable[[int], None] | None = None,
) -> AssignReport:
    """Assign every row of `source` to a grid and write `output` (columns OUTPUT_COLUMNS)."""
    fields = (id_field, lon_field, lat_field)
    encoding = _check_source(source, fields)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    # A connection of its own: temp_buffers must be set before the session's first temp
    # table, and parallel plans would turn the grid-by-grid join back into a point-by-point
    # one (PostgreSQL cannot scan a temp table in parallel anyway).
    # Planner estimates on CTEs are poor; hash joins are right at this scale.
    options = (
        "-c temp_buffers=1GB -c work_mem=512MB -c max_parallel_workers_per_gather=0 "
        "-c enable_mergejoin=off"
    )
    with psycopg.connect(url, options=options) as conn:
        conn.execute(
            f"CREATE TEMP TABLE {TABLE} (i int8, x float8, y float8, geom geometry(Point, 4326) "
            "GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(x, y), 4326)) STORED)"
        )
        total = 0
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {TABLE} (i, x, y) FROM STDIN (FORMAT binary)") as copy,
        ):
            copy.write(_COPY_HEADER)
            for batch in _batches(source, encoding, fields):
                x, y = _coordinates(batch, crs, lon_field, lat_field)
                # Stored in spatial (Morton) order within each batch, so that the points under
                # one grid sit on few heap pages; `i` keeps the input order.
                order = _morton_order(x, y)
                i = np.arange(total + 1, total + batch.num_rows + 1)
                copy.write(_binary_rows(i[order], x[order], y[order]))
                total += batch.num_rows
                if progress is not None:
                    progress(batch.num_rows)
            copy.write(_COPY_TRAILER)
        conn.execute(f"CREATE INDEX ON {TABLE} USING gist (geom)")
        conn.execute(f"ANALYZE {TABLE}")
        counts: Counter[str] = Counter()
        output.parent.mkdir(parents=True, exist_ok=True)
        with conn.cursor(name="assign_result") as cur, output.open("wb") as sink:
            cur.itersize = 1
            cur.execute(RESULT_QUERY, {"tol": tolerance_m})
            blocks = (_parse(row[0].encode()) for row in cur)
            sink.write((",".join(OUTPUT_COLUMNS) + "\n").encode())
            pending = pa.table({c: pa.array([], pa.string()) for c in RESULT_COLUMNS})
            for batch in _batches(source, encoding, fields):
                while pending.num_rows < batch.num_rows:
                    pending = pa.concat_tables([pending, next(blocks)])
                result, pending = pending.slice(0, batch.num_rows), pending.slice(batch.num_rows)
                for item in pc.value_counts(result.column("status")).to_pylist():
                    counts[item["values"]] += item["counts"]
                _write(sink, batch, result, fields)
    return AssignReport(total, {str(k): int(v) for k, v in counts.items()}, str(output))


# -- input ------------------------------------------------------------------------------------
def _check_source(source: Path, fields: tuple[str, str, str]) -> str:
    """The file's encoding, after checking it is a CSV with the needed columns."""
    if not source.exists():
        raise NotFound(f"file not found: {source}")
    with source.open("rb") as fh:
        head = fh.read(1 << 16)
    encoding = "utf8"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 64 KB boundary
            encoding = "gb18030"
    try:
        names = pacsv.open_csv(
            source, read_options=pacsv.ReadOptions(encoding=encoding, block_size=1 << 16)
        ).schema.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {source.name} as CSV: {exc}") from exc
    missing = [f for f in fields if f not in names]
    if missing:
        raise InvalidInput(
            f"{source.name} has no column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(names)}); name them with --id-field/--lon-field/--lat-field"
        )
    return encoding


def _batches(source: Path, encoding: str, fields: tuple[str, str, str]) -> Iterator[pa.RecordBatch]:
    """The three columns as text (ids like 007 stay 007), batch by batch; the same batches
    every time the file is read."""
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(encoding=encoding, block_size=BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in fields},
            include_columns=list(fields),
            strings_can_be_null=False,
        ),
    )
    try:
        yield from reader
    except pa.ArrowInvalid as exc:
        raise InvalidInput(f"cannot read {source.name} as CSV: {exc}") from exc


def _coordinates(
    batch: pa.RecordBatch, crs: InputCRS, lon_field: str, lat_field: str
) -> tuple[np.ndarray, np.ndarray]:
    """WGS-84 coordinates of a batch; NaN where unusable."""
    lon, lat = _floats(batch.column(lon_field)), _floats(batch.column(lat_field))
    numeric = np.isfinite(lon) & np.isfinite(lat)
    x, y = to_storage(np.where(numeric, lon, 0.0), np.where(numeric, lat, 0.0), crs)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    bad = ~(numeric & check_lonlat(x, y))
    x[bad], y[bad] = np.nan, np.nan
    return x, y


def _floats(column: pa.Array) -> np.ndarray:
    """Parse text to float in Arrow; only when some value is not a number, fall back to
    parsing value by value (junk becomes NaN)."""
    try:
        return pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        import pandas as pd

        text = column.to_numpy(zero_copy_only=False)
        return pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").to_numpy(float)


def _morton_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices that sort points along a Z-order curve (NaN coordinates last)."""
    ok = ~np.isnan(x)
    if not ok.any():
        return np.arange(len(x))
    cells = []
    for v in (x, y):
        lo, hi = np.nanmin(v), np.nanmax(v)
        scaled = np.where(ok, (v - lo) / ((hi - lo) or 1.0) * 65535, 65535)
        u = scaled.astype(np.uint64)
        for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
            u = (u | (u << np.uint64(shift))) & np.uint64(mask)
        cells.append(u)
    return np.argsort(cells[0] | (cells[1] << np.uint64(1)), kind="stable")


def _binary_rows(i: np.ndarray, x: np.ndarray, y: np.ndarray) -> bytes:
    """Binary COPY rows for (i, x, y), NULL coordinates where x is NaN."""
    ok = ~np.isnan(x)
    if ok.all():
        rows = np.empty(len(i), dtype=_ROW)
        rows["n"], rows["li"], rows["lx"], rows["ly"] = 3, 8, 8, 8
        rows["i"], rows["x"], rows["y"] = i, x, y
        return rows.tobytes()
    # Rare: a batch with unusable rows is written row group by row group, keeping order.
    parts = []
    for start, stop, good in _runs(ok):
        parts.append(
            _binary_rows(i[start:stop], x[start:stop], y[start:stop])
            if good
            else _null_rows(i[start:stop])
        )
    return b"".join(parts)


def _null_rows(i: np.ndarray) -> bytes:
    rows = np.empty(len(i), dtype=_NULL_ROW)
    rows["n"], rows["li"], rows["i"], rows["lx"], rows["ly"] = 3, 8, i, -1, -1
    return rows.tobytes()


def _runs(mask: np.ndarray) -> Iterator[tuple[int, int, bool]]:
    """(start, stop, value) of each run of equal values in a boolean array."""
    edges = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [len(mask)]])
    for start, stop in itertools.pairwise(bounds):
        yield int(start), int(stop), bool(mask[start])


# -- output -----------------------------------------------------------------------------------
def _parse(data: bytes) -> pa.Table:
    """Result lines (grid_code,community_code,status,distance_m) as a table of text."""
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=list(RESULT_COLUMNS)),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in RESULT_COLUMNS},
            strings_can_be_null=False,
        ),
    )


def _write(
    sink: io.BufferedWriter, batch: pa.RecordBatch, result: pa.Table, fields: tuple[str, str, str]
) -> None:
    table = pa.table(
        [batch.column(f) for f in fields] + [result.column(c) for c in RESULT_COLUMNS],
        names=list(OUTPUT_COLUMNS),
    )
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
