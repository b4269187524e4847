"""Batch assignment: a CSV of points (millions of rows) -> the same rows with their grids.

1. The input is read in Arrow batches; coordinates are parsed and converted in numpy and sent
   to PostgreSQL with binary COPY (fixed-width rows built by numpy, no per-row Python).
2. PostGIS indexes the points and finds the facts grid by grid: which grids cover each point,
   in their interior or not, and the nearest grid for points no grid covers.
3. `rules.classify`, the same rules every door uses, decides each point's status.
4. The input is read again batch by batch and written out with the results, in input order.
The per-row results are compact numpy arrays; input and output are streamed. A row whose
coordinates are unusable gets status `invalid`; it never aborts the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Engine

from geo_service.crs import InputCRS
from geo_service.db import bulk
from geo_service.errors import InvalidInput, NotFound
from geo_service.grids import rules, store
from geo_service.grids.locate import to_storage_checked

OUTPUT_COLUMNS = ("id", "lon", "lat", "grid_code", "community_code", "status", "distance_m")
BLOCK_BYTES = 8 << 20  # ~8 MB of CSV per Arrow batch
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


@dataclass
class AssignReport:
    """Counts per status, and where the output went."""

    rows: int
    by_status: dict[str, int]
    output: str


@dataclass
class _Facts:
    """What one worker's PostGIS session found for its share of the batches."""

    masks: dict[int, np.ndarray]  # batch number -> usable-coordinates mask
    hits: np.ndarray  # rows of (i, grid id, in interior 0/1)
    near: np.ndarray  # rows of (i, grid id, distance m) for uncovered points near a grid


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
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> AssignReport:
    """Assign every row of `source` to a grid and write `output` (columns OUTPUT_COLUMNS).

    The batches are shared round-robin between `workers` database sessions (default: one per
    core), each loading, indexing and joining its share at the same time.
    """
    fields = (id_field, lon_field, lat_field)
    encoding = _check_source(source, fields)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    parts = max(1, workers or min(os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(parts) as pool:
        found = list(
            pool.map(
                lambda part: _facts(
                    url, source, encoding, fields, crs, tolerance_m, part, parts, progress
                ),
                range(parts),
            )
        )
    with psycopg.connect(url) as conn:
        grid_codes, community_codes, rank_of_id = _grids(conn)
    masks = {k: m for f in found for k, m in f.masks.items()}
    valid = np.concatenate([masks[k] for k in sorted(masks)]) if masks else np.zeros(0, bool)
    status, rank, distance = _decide(
        valid,
        np.concatenate([f.hits for f in found]),
        np.concatenate([f.near for f in found]),
        rank_of_id,
        len(grid_codes),
    )
    codes = np.append(grid_codes, "")  # rank len(grid_codes) = no grid
    communities = np.append(community_codes, "")
    statuses = rules.STATUSES[status]
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as sink:
        sink.write((",".join(OUTPUT_COLUMNS) + "\n").encode())
        start = 0
        for batch in _batches(source, encoding, fields):
            part = slice(start, start + batch.num_rows)
            start += batch.num_rows
            dist = pa.array(distance[part], mask=np.isnan(distance[part]))
            table = pa.table(
                [
                    *(batch.column(f) for f in fields),
                    pa.array(codes[rank[part]]),
                    pa.array(communities[rank[part]]),
                    pa.array(statuses[part]),
                    pc.cast(pc.round(dist, 2), pa.string()),
                ],
                names=list(OUTPUT_COLUMNS),
            )
            pacsv.write_csv(
                table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed")
            )
    names, counts = np.unique(statuses, return_counts=True)
    return AssignReport(
        len(valid), {str(k): int(v) for k, v in zip(names, counts, strict=True)}, str(output)
    )


def _facts(
    url: str,
    source: Path,
    encoding: str,
    fields: tuple[str, str, str],
    crs: InputCRS,
    tolerance_m: float,
    part: int,
    parts: int,
    progress: Callable[[int], None] | None,
) -> _Facts:
    """One worker: load batches part, part + parts, ... into a temp table, index it, and ask
    PostGIS which grids cover each point and which grid is nearest to the uncovered ones."""
    # temp_buffers must be set before the session's first temp table; parallel plans would
    # turn the grid-by-grid join into a point-by-point one (and cannot read temp tables).
    options = "-c temp_buffers=1GB -c work_mem=256MB -c max_parallel_workers_per_gather=0"
    with psycopg.connect(url, options=options) as conn:
        masks, points = _load(conn, source, encoding, fields, crs, part, parts, progress)
        conn.execute(f"CREATE INDEX ON {TABLE} USING gist (geom)")
        conn.execute(f"ANALYZE {TABLE}")
        hits = _csv_numbers(_text(conn.execute(store.BATCH_HITS.format(table=TABLE))), 3)
        lonely = points[~np.isin(points[:, 0], hits[:, 0])]
        near = np.zeros((0, 3))
        if len(lonely):
            text = _text(
                conn.execute(
                    store.BATCH_NEAREST,
                    {
                        "tol": tolerance_m,
                        "ids": lonely[:, 0].astype(np.int64).tolist(),
                        "xs": lonely[:, 1].tolist(),
                        "ys": lonely[:, 2].tolist(),
                    },
                )
            )
            near = _csv_numbers(text, 3)
    return _Facts(masks, hits.astype(np.int64), near)


def _load(
    conn: psycopg.Connection,
    source: Path,
    encoding: str,
    fields: tuple[str, str, str],
    crs: InputCRS,
    part: int,
    parts: int,
    progress: Callable[[int], None] | None,
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """COPY the usable points of this worker's batches into a temp table; returns the
    usable mask of each of its batches and the (i, x, y) rows loaded."""
    conn.execute(
        f"CREATE TEMP TABLE {TABLE} (i int8, x float8, y float8, geom geometry(Point, 4326) "
        "GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(x, y), 4326)) STORED)"
    )
    masks: dict[int, np.ndarray] = {}
    loaded = []
    total = 0
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY {TABLE} (i, x, y) FROM STDIN (FORMAT binary)") as copy,
    ):
        copy.write(bulk.COPY_HEADER)
        for number, batch in enumerate(_batches(source, encoding, fields)):
            first, total = total + 1, total + batch.num_rows
            if number % parts != part:
                continue
            x, y = _coordinates(batch, crs, fields[1], fields[2])
            ok = ~np.isnan(x)
            i = np.arange(first, total + 1)[ok]
            # Stored in spatial (Morton) order within each batch, so that the points under one
            # grid sit on few heap pages; `i` keeps the input order.
            order = _morton_order(x[ok], y[ok])
            copy.write(_binary_rows(i[order], x[ok][order], y[ok][order]))
            masks[number] = ok
            loaded.append(np.column_stack([i, x[ok], y[ok]]))
            if progress is not None:
                progress(batch.num_rows)
        copy.write(bulk.COPY_TRAILER)
    return masks, np.concatenate(loaded) if loaded else np.zeros((0, 3))


def _grids(conn: psycopg.Connection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid codes and community codes in code order, and the rank of each grid id."""
    rows = conn.execute(store.BATCH_GRIDS).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    rank_of_id = np.full(int(ids.max(initial=0)) + 1, len(rows), dtype=np.int64)
    rank_of_id[ids] = np.arange(len(rows))
    codes = np.array([r[1] for r in rows], dtype=object)
    communities = np.array([r[2] for r in rows], dtype=object)
    return codes, communities, rank_of_id


def _decide(
    valid: np.ndarray, hits: np.ndarray, near: np.ndarray, rank_of_id: np.ndarray, n_grids: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: status index, rank of the chosen grid (n_grids = none), distance in metres.
    The facts are decided by `rules.classify`; the smallest covering code wins."""
    n = len(valid)
    i, gid, interior = hits[:, 0] - 1, hits[:, 1], hits[:, 2]
    n_cover = np.bincount(i, minlength=n)
    n_interior = np.bincount(i, weights=interior, minlength=n)
    rank = np.full(n, n_grids, dtype=np.int64)
    np.minimum.at(rank, i, rank_of_id[gid])
    distance = np.where(n_cover > 0, 0.0, np.nan)
    has_nearest = np.zeros(n, dtype=bool)
    if len(near):
        ni = near[:, 0].astype(np.int64) - 1
        rank[ni] = rank_of_id[near[:, 1].astype(np.int64)]
        distance[ni] = near[:, 2]
        has_nearest[ni] = True
    return rules.classify(n_cover, n_interior, has_nearest, valid), rank, distance


def _text(cursor: psycopg.Cursor) -> str | None:  # type: ignore[type-arg]
    """The single text value a string_agg query returns (None when it aggregated nothing)."""
    row = cursor.fetchone()
    return None if row is None else row[0]


def _csv_numbers(text: str | None, columns: int) -> np.ndarray:
    """Rows of comma-separated numbers (from string_agg) as an (n, columns) float array."""
    if not text:
        return np.zeros((0, columns))
    table = pacsv.read_csv(
        io.BytesIO(text.encode()),
        read_options=pacsv.ReadOptions(column_names=[f"c{k}" for k in range(columns)]),
        convert_options=pacsv.ConvertOptions(
            column_types={f"c{k}": pa.float64() for k in range(columns)}
        ),
    )
    return np.column_stack([table.column(k).to_numpy() for k in range(columns)])


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
    return to_storage_checked(lon, lat, crs)


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
    """Binary COPY rows for (i, x, y), built by numpy in one go."""
    rows = np.empty(len(i), dtype=_ROW)
    rows["n"], rows["li"], rows["lx"], rows["ly"] = 3, 8, 8, 8
    rows["i"], rows["x"], rows["y"] = i, x, y
    return rows.tobytes()
