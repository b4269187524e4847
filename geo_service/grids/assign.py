"""Batch assignment: a CSV of points (millions of rows) -> the same rows with their grids.

1. The input is read in Arrow batches; coordinates are parsed and converted in numpy and sent
   to PostgreSQL with binary COPY (fixed-width rows built by numpy, no per-row Python).
2. PostGIS indexes the points and finds the facts grid by grid: which grids cover each point,
   in their interior or not, and the nearest grid for points no grid covers.
3. `rules.classify`, the same rules every door uses, decides each point's status.
4. The input is read again batch by batch and written out with the results, in input order.
The per-row results are compact numpy arrays; input and output are streamed.

Bad rows never abort the file: every data row of the input gets one output row, in the same
order (output row N answers input row N), and a row that cannot be located gets status
`invalid` and a `reason` quoting what is wrong with it:

- a row with fewer or more values than the header (a value missing, an unquoted comma inside
  a value), or one the csv module cannot read (a value over 128 KB: a quote never closed);
- coordinates that are not numbers or out of range for the CRS (`coords.unusable_reason`),
  bytes that are not text in the file's encoding included;
- an empty line: it is a row (kept, not skipped, so that the rows line up), with no id and
  no coordinates; trailing blank lines are rows too.

A well-formed file is read by Arrow alone (a quick pass checks that it is). Only a file Arrow
cannot read whole is read once, row by row, by the `csv` module into a well-formed copy
(`_tolerant_copy`: id, lon, lat and the reason of each malformed row), and the copy then
takes the same Arrow path: a well-formed million rows cost ~0.1 s more (the check), a file
with malformed rows ~1 s more (the copy). Arrow's own handler for malformed rows is not used:
the reader keeps the Python function, and may release it from one of Arrow's threads while
the process exits, which aborts the CLI ("terminate called without an active exception",
about 1 run in 100 under load; apache/arrow#34314 is the same kind of crash).

Coordinates are read like every door reads them (`coords.numbers`): full-width digits, minus
and point (１１７．８１) are normalised; a UTF-8 byte order mark at the start is dropped.
Values may span lines inside quotes; a "row" is a CSV record, as a spreadsheet shows it.
The output is `csv.QUOTE_MINIMAL` CSV: only a value holding a comma, quote or line break is
quoted, so numbers and codes come out bare.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Engine

from geo_service.coords import numbers, to_storage_checked, unusable_reason
from geo_service.crs import InputCRS
from geo_service.db import bulk
from geo_service.errors import InvalidInput, NotFound
from geo_service.grids import rules, store

OUTPUT_COLUMNS = (
    "id", "lon", "lat", "grid_code", "community_code", "status", "distance_m", "reason",
)  # fmt: skip
BLOCK_BYTES = 8 << 20  # ~8 MB of CSV per Arrow batch


@dataclass
class AssignReport:
    """Counts per status, and where the output went."""

    rows: int
    by_status: dict[str, int]
    output: str


@dataclass(frozen=True)
class _Source:
    """The file as the readers need it: its encoding, the three columns used, and the column
    holding the reason of each malformed row (only in a tolerant copy)."""

    path: Path
    encoding: str
    fields: tuple[str, str, str]
    reason_field: str | None = None

    @property
    def columns(self) -> list[str]:
        """The columns read from the file."""
        return [*self.fields, *([self.reason_field] if self.reason_field else [])]


@dataclass
class _Facts:
    """What one worker's PostGIS session found for its share of the batches."""

    masks: dict[int, np.ndarray]  # batch number -> usable-coordinates mask
    hits: np.ndarray  # rows of (i, grid id, in interior 0/1)
    near: np.ndarray  # rows of (i, grid id, distance m) for uncovered points near a grid
    reasons: dict[int, str]  # i -> why that row is invalid


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
    core), each loading, indexing and joining its share at the same time. Rows are numbered
    1.. in input order (`i`).
    """
    with _readable(source, (id_field, lon_field, lat_field)) as src:
        return _assign(engine, src, output, crs, tolerance_m, workers, progress)


def _assign(
    engine: Engine,
    src: _Source,
    output: Path,
    crs: InputCRS,
    tolerance_m: float,
    workers: int | None,
    progress: Callable[[int], None] | None,
) -> AssignReport:
    """`assign_csv` on a file Arrow reads whole (the input or its tolerant copy)."""
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    parts = max(1, workers or min(os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(parts) as pool:
        found = list(
            pool.map(
                lambda part: _facts(url, src, crs, tolerance_m, part, parts, progress),
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
    reasons = _Reasons({i: r for f in found for i, r in f.reasons.items()})
    # Quoted once here, not per row: codes and statuses come from a small set of values.
    codes = _quoted(pa.array([*grid_codes, ""], pa.string()))
    communities = _quoted(pa.array([*community_codes, ""], pa.string()))
    statuses = pa.array(rules.STATUSES.tolist(), pa.string())
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as sink:
        sink.write((",".join(OUTPUT_COLUMNS) + "\n").encode())
        start = 0
        for batch in _batches(src):
            stop = start + batch.num_rows
            cells = [
                *(_quoted(batch.column(f)) for f in src.fields),
                codes.take(rank[start:stop]),
                communities.take(rank[start:stop]),
                statuses.take(status[start:stop]),
                _distances(distance[start:stop]),
                reasons.column(start, stop),
            ]
            sink.write(_csv_lines(cells))
            start = stop
    counts = np.bincount(status, minlength=len(rules.STATUSES))
    by_status = {str(rules.STATUSES[k]): int(n) for k, n in enumerate(counts) if n}
    return AssignReport(len(valid), by_status, str(output))


def _facts(
    url: str,
    src: _Source,
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
        masks, points, reasons = _load(conn, src, crs, part, parts, progress)
        for statement in store.BATCH_INDEX:
            conn.execute(statement)
        hits = _csv_numbers(_text(conn.execute(store.BATCH_HITS)), 3)
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
    return _Facts(masks, hits.astype(np.int64), near, reasons)


def _load(
    conn: psycopg.Connection,
    src: _Source,
    crs: InputCRS,
    part: int,
    parts: int,
    progress: Callable[[int], None] | None,
) -> tuple[dict[int, np.ndarray], np.ndarray, dict[int, str]]:
    """COPY the usable points of this worker's batches into a temp table; returns the
    usable mask of each of its batches, the (i, x, y) rows loaded, and why each unusable
    row of its batches is unusable."""
    conn.execute(store.BATCH_CREATE)
    masks: dict[int, np.ndarray] = {}
    reasons: dict[int, str] = {}
    loaded = []
    total = 0
    with (
        conn.cursor() as cur,
        cur.copy(store.BATCH_COPY) as copy,
    ):
        copy.write(bulk.COPY_HEADER)
        for number, batch in enumerate(_batches(src)):
            first, total = total + 1, total + batch.num_rows
            if number % parts != part:
                continue
            x, y, why = _coordinates(batch, crs, src)
            ok = ~np.isnan(x)
            reasons.update({first + k: r for k, r in why.items()})
            i = np.arange(first, total + 1)[ok]
            # Stored in spatial (Morton) order within each batch, so that the points under one
            # grid sit on few heap pages; `i` keeps the input order.
            order = _morton_order(x[ok], y[ok])
            copy.write(
                bulk.binary_rows(
                    [
                        ("int8", i[order], None),
                        ("float8", x[ok][order], None),
                        ("float8", y[ok][order], None),
                    ]
                )
            )
            masks[number] = ok
            loaded.append(np.column_stack([i, x[ok], y[ok]]))
            if progress is not None:
                progress(batch.num_rows)
        copy.write(bulk.COPY_TRAILER)
    return masks, np.concatenate(loaded) if loaded else np.zeros((0, 3)), reasons


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


# -- output -----------------------------------------------------------------------------------
_NEEDS_QUOTES = r'[",\r\n]'


def _quoted(column: pa.Array) -> pa.Array:
    """Text cells as csv.QUOTE_MINIMAL writes them: a value holding a comma, quote or line
    break in quotes (quotes doubled), every other value bare; null as empty."""
    column = pc.fill_null(column, "")
    needs = pc.match_substring_regex(column, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return column
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, column)


def _distances(distance: np.ndarray) -> pa.Array:
    """Metres to two decimals as text; empty where there is no distance (NaN)."""
    dist = pa.array(distance, mask=np.isnan(distance))
    return pc.fill_null(pc.cast(pc.round(dist, 2), pa.string()), "")


def _csv_lines(cells: list[pa.Array]) -> bytes:
    """Rows of already quoted cells as CSV text, built by Arrow (no per-row Python)."""
    if not len(cells[0]):
        return b""
    lines = pc.binary_join_element_wise(*cells, ",")
    whole = pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines)
    return pc.binary_join(whole, "\n")[0].as_buffer().to_pybytes() + b"\n"


class _Reasons:
    """Why each unusable well-formed row is unusable, by row number `i` (1-based)."""

    def __init__(self, by_row: dict[int, str]) -> None:
        self.rows = np.array(sorted(by_row), dtype=np.int64)
        self.texts = np.array([by_row[i] for i in self.rows.tolist()], dtype=object)

    def column(self, start: int, stop: int) -> pa.Array:
        """The reason cells of rows start+1 .. stop (empty for a located row)."""
        lo, hi = np.searchsorted(self.rows, [start + 1, stop + 1])
        if lo == hi:
            return pa.repeat(pa.scalar("", pa.string()), stop - start)
        cells = np.full(stop - start, "", dtype=object)
        cells[self.rows[lo:hi] - start - 1] = self.texts[lo:hi]
        return _quoted(pa.array(cells, pa.string()))


# -- input ------------------------------------------------------------------------------------
@contextmanager
def _readable(source: Path, fields: tuple[str, str, str]) -> Iterator[_Source]:
    """The input as Arrow reads it whole: the file itself when it is well-formed (the usual
    case, checked by one quick Arrow pass), else its tolerant copy, removed afterwards."""
    src = _check_source(source, fields)
    if _well_formed(src):
        yield src
        return
    with tempfile.TemporaryDirectory(prefix="geo-assign-") as folder:
        yield _tolerant_copy(src, Path(folder) / "rows.csv")


def _check_source(source: Path, fields: tuple[str, str, str]) -> _Source:
    """The file as the readers need it, after checking it is a CSV with the needed columns."""
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
    # Read by the csv module: Arrow refuses to name the columns of a file whose first block
    # holds a malformed row.
    names = next(csv.reader(io.StringIO(_decoded(head, encoding), newline="")), None)
    if not names:
        raise InvalidInput(f"cannot read {source.name} as CSV: it has no header line")
    missing = [f for f in fields if f not in names]
    if missing:
        raise InvalidInput(
            f"{source.name} has no column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(names)}); name them with --id-field/--lon-field/--lat-field"
        )
    return _Source(source, encoding, fields)


def _decoded(data: bytes, encoding: str) -> str:
    """Text of the file's bytes as Arrow reads them (`_python_encoding`); bytes that are not
    text in the encoding become U+FFFD, so the value holding them is junk."""
    return data.decode(_python_encoding(encoding), errors="replace")


def _python_encoding(encoding: str) -> str:
    """Python's name of the file's encoding; a UTF-8 byte order mark is dropped, as Arrow
    drops it."""
    return "utf-8-sig" if encoding == "utf8" else encoding


def _reader(src: _Source, columns: list[str]) -> pacsv.CSVStreamingReader:
    """Arrow's reader of `columns` as text (ids like 007 stay 007). Empty lines are rows, so
    that output row N answers input row N; quoted values may span lines."""
    return pacsv.open_csv(
        src.path,
        read_options=pacsv.ReadOptions(encoding=src.encoding, block_size=BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(ignore_empty_lines=False, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in columns},
            include_columns=columns,
            strings_can_be_null=False,
        ),
    )


def _well_formed(src: _Source) -> bool:
    """Whether Arrow reads every row of the file (~0.1 s a million rows)."""
    try:
        for _ in _reader(src, list(src.fields)):
            pass
    except pa.ArrowInvalid:  # a row with another count of values than the header, ...
        return False
    return True


def _batches(src: _Source) -> Iterator[pa.RecordBatch]:
    """The columns of a well-formed file batch by batch; the same batches every time the file
    is read."""
    try:
        yield from _reader(src, src.columns)
    except pa.ArrowInvalid as exc:  # the file changed since _readable looked at it
        raise InvalidInput(f"cannot read {src.path.name} as CSV: {exc}") from exc


_COPY_FIELDS = ("id", "lon", "lat")  # the tolerant copy's columns, and "reason"


def _tolerant_copy(src: _Source, path: Path) -> _Source:
    """Read a file Arrow cannot read whole row by row with the csv module, and write to `path`
    what the Arrow path needs of each row: id, lon, lat and, for a row whose count of values is
    not the header's, its id (the value at the id column's place, if it has one) and reason
    instead of coordinates. One output row per row, in order; an empty line stays a row."""
    with (
        src.path.open(encoding=_python_encoding(src.encoding), errors="replace", newline="") as fh,
        path.open("w", encoding="utf-8", newline="") as out,
    ):
        rows = csv.reader(fh)
        header = next(rows)
        width = len(header)
        i_id, i_lon, i_lat = (header.index(f) for f in src.fields)
        writer = csv.writer(out)
        writer.writerow((*_COPY_FIELDS, "reason"))
        for row in _records(rows):
            if isinstance(row, str):  # the csv module's own complaint
                writer.writerow(("", "", "", row))
            elif len(row) == width:
                writer.writerow((row[i_id], row[i_lon], row[i_lat], ""))
            elif not row:  # an empty line
                writer.writerow(("", "", "", ""))
            else:
                row_id = row[i_id] if i_id < len(row) else ""
                writer.writerow((row_id, "", "", _malformed(row, width)))
    return _Source(path, "utf8", _COPY_FIELDS, "reason")


def _records(rows: Iterator[list[str]]) -> Iterator[list[str] | str]:
    """The rows of a csv reader; a row it cannot read (a value over its 128 KB limit: a quote
    never closed) as the reason, and the reading goes on with the next one."""
    while True:
        try:
            yield next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            yield f"unreadable row: {exc}"


def _malformed(row: list[str], width: int) -> str:
    """Why a row with another count of values than the header's is not read, quoting it."""
    hint = "a value holding a comma must be quoted" if len(row) > width else "a value is missing"
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(row)  # the row as the file spells it
    text = line.getvalue()
    text = text if len(text) <= 120 else text[:120] + "..."
    return f"{len(row)} values where the header has {width} ({hint}): {text!r}"


def _coordinates(
    batch: pa.RecordBatch, crs: InputCRS, src: _Source
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """WGS-84 coordinates of a batch, NaN where unusable, and why each unusable row is (by
    its index in the batch)."""
    _, lon_field, lat_field = src.fields
    lon, lat = _floats(batch.column(lon_field)), _floats(batch.column(lat_field))
    x, y = to_storage_checked(lon, lat, crs)
    numeric = np.isfinite(lon) & np.isfinite(lat)
    why: dict[int, str] = {}
    for k in np.flatnonzero(np.isnan(x)).tolist():
        row_id, lon_text, lat_text = (batch.column(f)[k].as_py() for f in src.fields)
        malformed = batch.column(src.reason_field)[k].as_py() if src.reason_field else ""
        if malformed:
            why[k] = malformed
        elif not (row_id.strip() or lon_text.strip() or lat_text.strip()):
            why[k] = "an empty row: no id, lon or lat"
        else:
            why[k] = unusable_reason(lon_text, lat_text, bool(numeric[k]), crs)
    return x, y, why


def _floats(column: pa.Array) -> np.ndarray:
    """Parse text to float in Arrow; only when some value is not a plain number, fall back
    to reading value by value as every door does (`coords.numbers`: full-width digits are
    read, junk becomes NaN)."""
    try:
        return pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return numbers(column.to_numpy(zero_copy_only=False))


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
