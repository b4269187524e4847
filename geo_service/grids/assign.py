"""Batch assignment: a CSV of points (millions of rows) -> the same rows with their grids.

The file is streamed in chunks of about `chunk_bytes` of CSV (Arrow batches): each chunk is
read, assigned and written before the next is read, so memory stays flat whatever the file's
size (the grids in memory, one chunk's columns and results).

1. The grids are read from the database once into memory (`assign_index.GridIndex`).
2. Each chunk's coordinates are parsed and converted in numpy; the grids in memory decide
   which cover each point and whether in their interior (numpy and GEOS, no per-row Python),
   except for the few points within about a centimetre of a grid's boundary, which PostGIS
   decides (`assign_store.UNSURE`: the locate door's `ST_Covers`/`ST_Contains`).
3. The uncovered points within reach of a grid are sent by binary COPY to the session, which
   finds their nearest grid on the spheroid (`assign_store.NEAREST`, the locate door's rule).
4. `rules.classify`, the same rules every door uses, decides each point's status, and the
   chunk is written out with its results, in input order.

Bad rows never abort the file: every data row of the input gets one output row, in the same
order (output row N answers input row N), and a row that cannot be located gets status
`invalid` and a `reason` quoting what is wrong with it:

- a row with fewer or more values than the header (a value missing, an unquoted comma inside
  a value), or one the csv module cannot read (a value over 128 KB: a quote never closed);
- coordinates that are not numbers or out of range for the CRS (`coords.unusable_reason`),
  bytes that are not text in the file's encoding included;
- an empty line: it is a row (kept, not skipped, so that the rows line up), with no id and
  no coordinates; trailing blank lines are rows too.

A file is read as well-formed, by Arrow alone. Only when Arrow finds a row it cannot read is
the output begun so far abandoned and the file read once, row by row, by the `csv` module into
a well-formed copy (`_tolerant_copy`: id, lon, lat and the reason of each malformed row),
which then takes the same Arrow path (~1 s more a million rows), the output written again.
Arrow's own handler for malformed rows is not used: the reader keeps the Python function, and
may release it from one of Arrow's threads while the process exits, which aborts the CLI
("terminate called without an active exception", about 1 run in 100 under load;
apache/arrow#34314 is the same kind of crash).

Coordinates are read like every door reads them (`coords.numbers`): full-width digits, minus
and point (１１７．８１) are normalised; a UTF-8 byte order mark at the start is dropped.
Values may span lines inside quotes; a "row" is a CSV record, as a spreadsheet shows it.
The output is `csv.QUOTE_MINIMAL` CSV: only a value holding a comma, quote or line break is
quoted, so numbers and codes come out bare.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
from geo_service.grids import assign_store, rules
from geo_service.grids.assign_index import Facts, GridIndex

OUTPUT_COLUMNS = (
    "id", "lon", "lat", "grid_code", "community_code", "status", "distance_m", "reason",
)  # fmt: skip
BLOCK_BYTES = 8 << 20  # ~8 MB of CSV per chunk (Arrow batch) by default
MIN_CHUNK_BYTES = 16 << 10  # Arrow reads whole rows: a chunk must hold the header and a row


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


class _Malformed(Exception):
    """Arrow cannot read the file whole: it is read again through its tolerant copy."""


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
    chunk_bytes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> AssignReport:
    """Assign every row of `source` to a grid and write `output` (columns OUTPUT_COLUMNS),
    `chunk_bytes` of CSV at a time (default BLOCK_BYTES): each chunk is read, assigned and
    written before the next is read, so memory does not grow with the file. A file Arrow
    cannot read whole is read again through its tolerant copy; `progress` counts each row
    once all the same.
    """
    if chunk_bytes is not None and chunk_bytes < MIN_CHUNK_BYTES:
        raise InvalidInput(f"chunk_bytes={chunk_bytes} is too small: at least {MIN_CHUNK_BYTES}")
    src = _check_source(source, (id_field, lon_field, lat_field))
    counted = _Counted(progress)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, options=_SESSION) as conn:
        run = _Run(conn, GridIndex.load(conn, tolerance_m), crs, tolerance_m)
        block = chunk_bytes or BLOCK_BYTES
        try:
            return run.write(src, output, block, counted)
        except _Malformed:
            counted.restart()
        with tempfile.TemporaryDirectory(prefix="geo-assign-") as folder:
            copy = _tolerant_copy(src, Path(folder) / "rows.csv")
            return run.write(copy, output, block, counted)


class _Counted:
    """Progress in rows read, each row counted once when the file is read a second time."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.progress, self.reported, self.seen = progress, 0, 0

    def __call__(self, rows: int) -> None:
        self.seen += rows
        if self.progress is not None and self.seen > self.reported:
            self.progress(self.seen - self.reported)
            self.reported = self.seen

    def restart(self) -> None:
        """The file is read again from its first row."""
        self.seen = 0


# Parallel plans cannot read temp tables, and would turn the piece-by-piece nearest join
# into a point-by-point one.
_SESSION = "-c work_mem=256MB -c max_parallel_workers_per_gather=0"


class _Run:
    """One assignment: the grids in memory and the session that decides what they leave to
    PostGIS (points within a centimetre of a boundary, the nearest grid of uncovered ones)."""

    def __init__(
        self,
        conn: psycopg.Connection,  # type: ignore[type-arg]
        grids: GridIndex,
        crs: InputCRS,
        tolerance_m: float,
    ) -> None:
        self.conn, self.grids, self.crs, self.tolerance_m = conn, grids, crs, tolerance_m
        self.rank_of_id = np.full(int(grids.ids.max(initial=0)) + 1, len(grids), np.int64)
        self.rank_of_id[grids.ids] = np.arange(len(grids))
        self.pieces = False  # whether the session has cut the grids into pieces yet
        # Quoted once here, not per row: codes and statuses come from a small set of values.
        self.grid_cells = _quoted(pa.array([*grids.codes, ""], pa.string()))
        self.community_cells = _quoted(pa.array([*grids.communities, ""], pa.string()))
        self.status_cells = pa.array(rules.STATUSES.tolist(), pa.string())

    def write(
        self, src: _Source, output: Path, block: int, progress: Callable[[int], None]
    ) -> AssignReport:
        """Read `src` chunk by chunk, writing each chunk's rows with their results. While the
        session settles a chunk (`_settle`: PostGIS's part), the next one is read and its
        points tested against the grids in memory; at most two chunks are held."""
        counts = np.zeros(len(rules.STATUSES), np.int64)
        rows = 0
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("wb") as sink, ThreadPoolExecutor(1) as session:
            sink.write((",".join(OUTPUT_COLUMNS) + "\n").encode())
            pending: _Chunk | None = None
            try:
                for batch in _chunks(src, block, first_read=src.reason_field is None):
                    x, y, why = _coordinates(batch, self.crs, src)
                    settled = session.submit(self._settle, self.grids.facts(x, y), x, y)
                    if pending is not None:
                        counts += self._write_chunk(sink, src, pending)
                    pending = _Chunk(batch, why, settled)
                    rows += batch.num_rows
                    progress(batch.num_rows)
                if pending is not None:
                    counts += self._write_chunk(sink, src, pending)
            except BaseException:
                if pending is not None:
                    pending.settled.cancel()
                raise
        by_status = {str(rules.STATUSES[k]): int(n) for k, n in enumerate(counts) if n}
        return AssignReport(rows, by_status, str(output))

    def _write_chunk(self, sink: BinaryIO, src: _Source, chunk: _Chunk) -> np.ndarray:
        """Write a chunk's rows with their results, once settled; its count per status."""
        status, rank, distance = chunk.settled.result()
        cells = [
            *(_quoted(chunk.batch.column(f)) for f in src.fields),
            self.grid_cells.take(rank),
            self.community_cells.take(rank),
            self.status_cells.take(status),
            _distances(distance),
            _reasons(chunk.why, chunk.batch.num_rows),
        ]
        sink.write(_csv_lines(cells))
        return np.bincount(status, minlength=len(rules.STATUSES))

    def _settle(
        self, facts: Facts, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per point of a chunk: status index, rank of the chosen grid (len(grids) = none),
        distance in metres (NaN: none), from what the grids in memory found and what the
        session adds (the points they leave to PostGIS, the nearest grid of uncovered ones).
        The facts are decided by `rules.classify`; the smallest covering code wins, else the
        nearest grid."""
        n_cover, n_interior, rank = facts.n_cover, facts.n_interior, facts.rank
        if len(facts.unsure):
            i, grid, interior = self._unsure(facts.unsure, x, y)
            np.add.at(n_cover, i, 1)
            np.add.at(n_interior, i, interior)
            np.minimum.at(rank, i, self.rank_of_id[grid])
        distance = np.where(n_cover > 0, 0.0, np.nan)
        has_nearest = np.zeros(len(x), dtype=bool)
        lonely = np.flatnonzero(facts.near & (n_cover == 0))
        if len(lonely):
            i, grid, metres = self._nearest(lonely, x, y)
            rank[i] = self.rank_of_id[grid]
            distance[i] = metres
            has_nearest[i] = True
        valid = ~np.isnan(x)
        return rules.classify(n_cover, n_interior, has_nearest, valid), rank, distance

    def _unsure(
        self, which: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """PostGIS's facts of the points `which`: (point, grid id, interior) per covering."""
        rows = self.conn.execute(
            assign_store.UNSURE,
            {"i": which.tolist(), "x": x[which].tolist(), "y": y[which].tolist()},
        ).fetchall()
        i = np.array([r[0] for r in rows], dtype=np.int64)
        grid = np.array([r[1] for r in rows], dtype=np.int64)
        return i, grid, np.array([r[2] for r in rows], dtype=bool)

    def _nearest(
        self, which: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest grid within the tolerance of the points `which`, none covers them:
        (point, grid id, metres) of those that have one."""
        if not self.pieces:
            self.conn.execute(assign_store.CREATE_PIECES)
            self.pieces = True
        for statement in assign_store.CREATE_LONELY:
            self.conn.execute(statement)
        rows = bulk.binary_rows(
            [("int8", which, None), ("float8", x[which], None), ("float8", y[which], None)]
        )
        with self.conn.cursor() as cur, cur.copy(assign_store.COPY_LONELY) as copy:
            copy.write(bulk.COPY_HEADER + rows + bulk.COPY_TRAILER)
        self.conn.execute(assign_store.INDEX_LONELY)
        row = self.conn.execute(assign_store.NEAREST, {"tol": self.tolerance_m}).fetchone()
        return tuple(  # type: ignore[return-value]
            bulk.array_values(None if row is None else row[k], dtype)
            for k, dtype in enumerate((">i8", ">i4", ">f8"))
        )


@dataclass(frozen=True)
class _Chunk:
    """A chunk read and tested in memory, waiting for the session to settle it."""

    batch: pa.RecordBatch
    why: dict[int, str]  # why each unusable row is, by its index in the chunk
    settled: Future[tuple[np.ndarray, np.ndarray, np.ndarray]]


# -- output -----------------------------------------------------------------------------------
_NEEDS_QUOTES = r'[",\r\n]'


def _quoted(column: pa.Array) -> pa.Array:
    """Text cells as csv.QUOTE_MINIMAL writes them: a value holding a comma, quote or line
    break in quotes (quotes doubled), every other value bare; null as empty."""
    if column.null_count:
        column = pc.fill_null(column, "")
    if _plain(column):
        return column
    needs = pc.match_substring_regex(column, _NEEDS_QUOTES)
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, column)


def _plain(column: pa.Array) -> bool:
    """Whether no value of a text column holds a character that needs quotes: one search of
    its bytes per character, ten times cheaper than the regular expression on every value (the
    buffer may hold bytes of values outside the column's slice: then it says no, the safe
    side)."""
    data = column.buffers()[2]
    text = b"" if data is None else data.to_pybytes()
    return not any(char in text for char in (b'"', b",", b"\r", b"\n"))


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


def _reasons(why: dict[int, str], n: int) -> pa.Array:
    """The reason cells of a chunk's `n` rows: why each unusable row is (by its index in the
    chunk), empty for a located row."""
    if not why:
        return pa.repeat(pa.scalar("", pa.string()), n)
    cells = np.full(n, "", dtype=object)
    cells[list(why)] = list(why.values())
    return _quoted(pa.array(cells, pa.string()))


# -- input ------------------------------------------------------------------------------------
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


def _reader(src: _Source, columns: list[str], block: int) -> pacsv.CSVStreamingReader:
    """Arrow's reader of `columns` as text (ids like 007 stay 007). Empty lines are rows, so
    that output row N answers input row N; quoted values may span lines."""
    return pacsv.open_csv(
        src.path,
        read_options=pacsv.ReadOptions(encoding=src.encoding, block_size=block, use_threads=False),
        parse_options=pacsv.ParseOptions(ignore_empty_lines=False, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in columns},
            include_columns=columns,
            strings_can_be_null=False,
        ),
    )


# Arrow's reader reads up to 32 of its blocks ahead of the parsing (320 MB of a large file at
# 10 MB blocks, whatever the chunk): it reads small blocks, joined into chunks.
_READ_BYTES = 1 << 20


def _chunks(src: _Source, block: int, *, first_read: bool) -> Iterator[pa.RecordBatch]:
    """The columns of the file chunk by chunk, some `block` bytes of Arrow data each (about
    as much CSV), each read in blocks of at most _READ_BYTES."""
    held: list[pa.RecordBatch] = []
    size = 0
    for batch in _batches(src, min(block, _READ_BYTES), first_read=first_read):
        held.append(batch)
        size += batch.nbytes
        if size >= block:
            yield _joined(held)
            held, size = [], 0
    if held:
        yield _joined(held)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """Record batches as one (their columns' values copied together)."""
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _batches(src: _Source, block: int, *, first_read: bool) -> Iterator[pa.RecordBatch]:
    """The columns of the file batch by batch, about `block` bytes each. A row Arrow cannot
    read raises `_Malformed` on the first read (the file is then read through its tolerant
    copy), InvalidInput on the tolerant copy (which is written well-formed)."""
    try:
        yield from _reader(src, src.columns, block)
    except pa.ArrowInvalid as exc:  # a row with another count of values than the header, ...
        if first_read:
            raise _Malformed from exc
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
    read, junk becomes NaN). Values are trimmed of spaces only when some value has them (the
    trim copies the column and doubles the cost)."""
    for trim in (False, True):
        try:
            text = pc.utf8_trim_whitespace(column) if trim else column
            return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            continue
    return numbers(column.to_numpy(zero_copy_only=False))
