"""Batch assignment: a CSV of points (millions of rows) -> the same CSV with grids.

Streamed end to end: the input is read in Arrow batches, each batch is parsed and converted
in numpy and bulk-loaded with COPY into a temporary table; PostGIS applies the locate rules
(`store.locate_sql`) to all points at once; the result is streamed back with COPY straight
into the output file, in input order. Memory stays bounded by one batch. A row whose
coordinates are unusable gets status `invalid`; it never aborts the file.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import Engine

from geo_service.crs import InputCRS
from geo_service.errors import InvalidInput, NotFound
from geo_service.grids import store
from geo_service.grids.locate import parse_coordinates

OUTPUT_COLUMNS = ("id", "lon", "lat", "grid_code", "community_code", "status", "distance_m")
BLOCK_BYTES = 16 << 20  # Arrow read block: ~16 MB of CSV per batch


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
    if not source.exists():
        raise NotFound(f"file not found: {source}")
    reader = _open(source, (id_field, lon_field, lat_field))
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    # A connection of its own: temp_buffers must be set before the session's first temp table,
    # and a million-row temp table wants more than the default 8 MB of local buffers.
    with psycopg.connect(url, options="-c temp_buffers=1GB -c work_mem=256MB") as conn:
        conn.execute(
            "CREATE TEMP TABLE assign_points (i int8, id text, lon text, lat text, "
            "x float8, y float8, geom geometry(Point, 4326) "
            "GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(x, y), 4326)) STORED)"
        )
        total = 0
        for batch in reader:
            total += _load_batch(conn, batch, total, crs, (id_field, lon_field, lat_field))
            if progress is not None:
                progress(batch.num_rows)
        conn.execute("CREATE INDEX ON assign_points USING gist (geom)")
        conn.execute("ANALYZE assign_points")
        conn.execute(
            "CREATE TEMP TABLE assign_result AS "
            + store.locate_sql(store.POINTS_FROM_ASSIGN_TABLE, tol="%(tol)s"),
            {"tol": tolerance_m},
        )
        conn.execute("CREATE INDEX ON assign_result (i)")
        by_status = dict(
            conn.execute(
                "SELECT coalesce(r.status, 'invalid'), count(*) FROM assign_points p "
                "LEFT JOIN assign_result r USING (i) GROUP BY 1"
            ).fetchall()
        )
        _write_output(conn, output)
    return AssignReport(total, by_status, str(output))


def _open(source: Path, fields: tuple[str, str, str]) -> pacsv.CSVStreamingReader:
    """A streaming reader that keeps every column as text (ids like 007 stay 007)."""
    head = source.open("rb").read(1 << 16)
    encoding = "utf8"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut by the 64 KB boundary
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
    return pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(encoding=encoding, block_size=BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            include_columns=list(fields),
            strings_can_be_null=False,
        ),
    )


def _load_batch(
    conn: psycopg.Connection,
    batch: pa.RecordBatch,
    offset: int,
    crs: InputCRS,
    fields: tuple[str, str, str],
) -> int:
    """Parse, convert and COPY one batch; returns its row count."""
    id_field, lon_field, lat_field = fields
    lon_text = batch.column(lon_field).to_numpy(zero_copy_only=False)
    lat_text = batch.column(lat_field).to_numpy(zero_copy_only=False)
    x, y, _ = parse_coordinates(lon_text, lat_text, crs)
    n = batch.num_rows
    table = pa.table(
        {
            "i": pa.array(np.arange(offset + 1, offset + n + 1, dtype=np.int64)),
            "id": batch.column(id_field),
            "lon": batch.column(lon_field),
            "lat": batch.column(lat_field),
            "x": pa.array(x, mask=np.isnan(x)),
            "y": pa.array(y, mask=np.isnan(y)),
        }
    )
    buffer = io.BytesIO()
    # Text values quoted, nulls bare: PostgreSQL's CSV reads a bare empty field as NULL.
    pacsv.write_csv(
        table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    )
    with (
        conn.cursor() as cur,
        cur.copy("COPY assign_points (i, id, lon, lat, x, y) FROM STDIN (FORMAT csv)") as copy,
    ):
        copy.write(buffer.getbuffer())
    return n


def _write_output(conn: psycopg.Connection, output: Path) -> None:
    """Stream the result, in input order, straight from PostgreSQL into the file."""
    output.parent.mkdir(parents=True, exist_ok=True)
    query = (
        "COPY (SELECT p.id, p.lon, p.lat, r.grid_code, g.community_code, "
        "coalesce(r.status, 'invalid'), round(r.distance_m::numeric, 2) "
        "FROM assign_points p LEFT JOIN assign_result r USING (i) "
        "LEFT JOIN grids g ON g.code = r.grid_code ORDER BY p.i) "
        "TO STDOUT (FORMAT csv, HEADER false)"
    )
    with output.open("wb") as fh, conn.cursor() as cur, cur.copy(query) as copy:
        fh.write((",".join(OUTPUT_COLUMNS) + "\n").encode())
        for chunk in copy:
            fh.write(chunk)
