"""Batch assignment: a CSV of points (millions of rows) -> the same rows with their grids.

1. The input is read once in Arrow batches; coordinates are parsed and converted in numpy, and
   each batch, in spatial order, is cut between a few database sessions and sent by binary
   COPY (rows laid out by numpy, no per-row Python) while the next batch is read.
2. Each session indexes its points and asks PostGIS, grid by grid, which grids cover them and
   whether in their interior, then the nearest grid of the points no grid covers
   (`assign_store`: the locate door's rules, laid out for a million points).
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

A file is read as well-formed, by Arrow alone. Only when Arrow finds a row it cannot read is
the loading abandoned (the sessions' temp tables go with them) and the file read once, row by
row, by the `csv` module into a well-formed copy (`_tolerant_copy`: id, lon, lat and the
reason of each malformed row), which then takes the same Arrow path (~1 s more a million
rows). Arrow's own handler for malformed rows is not used: the reader keeps the Python
function, and may release it from one of Arrow's threads while the process exits, which
aborts the CLI ("terminate called without an active exception", about 1 run in 100 under
load; apache/arrow#34314 is the same kind of crash).

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
import queue
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
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
from geo_service.grids import assign_store, rules

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
    """What one session found for its points, as arrays of one row per fact."""

    hit_i: np.ndarray  # row number of a point covered by a grid
    hit_grid: np.ndarray  # that grid's id
    hit_interior: np.ndarray  # whether in the grid's interior
    near_i: np.ndarray  # row number of an uncovered point with a grid within the tolerance
    near_grid: np.ndarray  # the nearest such grid's id
    near_m: np.ndarray  # its distance in metres, to 2 decimals


class _Malformed(Exception):
    """Arrow cannot read the file whole: it is read again through its tolerant copy."""


class _Aborted(Exception):
    """The reading stopped: a session drops what it loaded."""


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

    Each batch is shared between `workers` database sessions (default: one per core), each
    loading, indexing and joining its share at the same time. Rows are numbered
    1.. in input order (`i`). A file Arrow cannot read whole is read again through its
    tolerant copy; `progress` counts each row once all the same.
    """
    src = _check_source(source, (id_field, lon_field, lat_field))
    counted = _Counted(progress)
    try:
        return _assign(engine, src, output, crs, tolerance_m, workers, counted)
    except _Malformed:
        counted.restart()
    with tempfile.TemporaryDirectory(prefix="geo-assign-") as folder:
        copy = _tolerant_copy(src, Path(folder) / "rows.csv")
        return _assign(engine, copy, output, crs, tolerance_m, workers, counted)


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


def _assign(
    engine: Engine,
    src: _Source,
    output: Path,
    crs: InputCRS,
    tolerance_m: float,
    workers: int | None,
    progress: Callable[[int], None],
) -> AssignReport:
    """`assign_csv` on `src`: read once to load and locate the points, once to write."""
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    parts = max(1, workers or min(os.cpu_count() or 1, 4))
    valid, reasons, found = _located(url, src, crs, tolerance_m, parts, progress)
    with psycopg.connect(url) as conn:
        grid_codes, community_codes, rank_of_id = _grids(conn)
    status, rank, distance = _decide(valid, found, rank_of_id, len(grid_codes))
    _write(output, src, (grid_codes, community_codes), status, rank, distance, _Reasons(reasons))
    counts = np.bincount(status, minlength=len(rules.STATUSES))
    by_status = {str(rules.STATUSES[k]): int(n) for k, n in enumerate(counts) if n}
    return AssignReport(len(valid), by_status, str(output))


def _located(
    url: str,
    src: _Source,
    crs: InputCRS,
    tolerance_m: float,
    parts: int,
    progress: Callable[[int], None],
) -> tuple[np.ndarray, dict[int, str], list[_Facts]]:
    """Read the file once, sending each batch's usable points to the sessions (a part each)
    while they load the batches before it; then each session finds its points' facts. Returns
    the usable-coordinates mask of every row, why each unusable row is unusable (by row
    number), and each session's facts."""
    feeds: list[_Feed] = [queue.Queue(_QUEUED) for _ in range(parts)]
    masks: list[np.ndarray] = []
    reasons: dict[int, str] = {}
    with ThreadPoolExecutor(parts) as pool:
        sessions = [pool.submit(_facts, url, feed, tolerance_m) for feed in feeds]
        try:
            total = 0
            for batch in _batches(src, first_read=True):
                first, total = total + 1, total + batch.num_rows
                x, y, why = _coordinates(batch, crs, src)
                ok = ~np.isnan(x)
                reasons.update({first + k: r for k, r in why.items()})
                masks.append(ok)
                i, x, y = np.arange(first, total + 1)[ok], x[ok], y[ok]
                # In spatial (Morton) order, cut in `parts` runs, one per session: the sessions
                # get as many points each, and the points under one grid sit together, in one
                # session and on few of its heap pages; `i` keeps the input order.
                for k, run in enumerate(np.array_split(_morton_order(x, y), parts)):
                    if len(run):
                        _send(feeds[k], _Batch(i[run], x[run], y[run]), sessions[k])
                progress(batch.num_rows)
            for feed, session in zip(feeds, sessions, strict=True):
                _send(feed, None, session)
        except BaseException:
            for feed, session in zip(feeds, sessions, strict=True):
                if not session.done():
                    feed.put(_ABORT)  # a session takes from its feed until it stops
            wait(sessions)
            raise
        found = [session.result() for session in sessions]
    valid = np.concatenate(masks) if masks else np.zeros(0, bool)
    return valid, reasons, found


@dataclass(frozen=True)
class _Batch:
    """One batch's usable points: row numbers and WGS-84 coordinates."""

    i: np.ndarray
    x: np.ndarray
    y: np.ndarray


_Feed = queue.Queue[_Batch | None]
_QUEUED = 2  # batches waiting per session: enough to keep it busy, few enough to stay flat
_ABORT = _Batch(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))  # the reading failed


def _send(feed: _Feed, batch: _Batch | None, session: Future[_Facts]) -> None:
    """Queue a batch (or the end, None) for a session; a session that failed raises its error
    here rather than leave the reader waiting on its full queue."""
    while True:
        if session.done():
            session.result()  # raises what stopped it
            raise RuntimeError("an assign session stopped before the end of the file")
        try:
            feed.put(batch, timeout=0.2)
            return
        except queue.Full:
            continue


# temp_buffers must be set before the session's first temp table; parallel plans would turn
# the grid-by-grid join into a point-by-point one (and cannot read temp tables).
_SESSION = "-c temp_buffers=1GB -c work_mem=256MB -c max_parallel_workers_per_gather=0"


def _facts(url: str, feed: _Feed, tolerance_m: float) -> _Facts:
    """One session: COPY the batches queued for it into a temp table, index it, and ask
    PostGIS which grids cover each point and which grid is nearest to the uncovered ones."""
    with psycopg.connect(url, options=_SESSION) as conn:
        conn.execute(assign_store.CREATE_POINTS)
        loaded: list[_Batch] = []
        with conn.cursor() as cur, cur.copy(assign_store.COPY_POINTS) as copy:
            copy.write(bulk.COPY_HEADER)
            while (batch := feed.get()) is not None:
                if batch is _ABORT:
                    raise _Aborted
                copy.write(_point_rows(batch.i, batch.x, batch.y, np.arange(len(batch.i))))
                loaded.append(batch)
            copy.write(bulk.COPY_TRAILER)
        near: tuple[np.ndarray, ...] = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0))
        if not loaded:  # fewer batches than sessions
            return _Facts(near[0], near[1], np.zeros(0, bool), *near)
        conn.execute(assign_store.INDEX_POINTS)
        hit_i, hit_grid, hit_interior = _arrays(conn, assign_store.HITS, (">i8", ">i4", "?"))
        i, x, y = (np.concatenate([getattr(b, k) for b in loaded]) for k in "ixy")
        # Not np.setdiff1d: numpy 2's hashing np.unique takes 0.6 s on 500,000 ids, isin 7 ms.
        lonely = np.flatnonzero(~np.isin(i, hit_i))
        if len(lonely):
            conn.execute(assign_store.CREATE_LONELY)
            with conn.cursor() as cur, cur.copy(assign_store.COPY_LONELY) as copy:
                copy.write(bulk.COPY_HEADER + _point_rows(i, x, y, lonely) + bulk.COPY_TRAILER)
            for statement in assign_store.PREPARE_NEAREST:
                conn.execute(statement)
            near = _arrays(conn, assign_store.NEAREST, (">i8", ">i4", ">f8"), {"tol": tolerance_m})
    return _Facts(hit_i, hit_grid, hit_interior, *near)


def _arrays(
    conn: psycopg.Connection,  # type: ignore[type-arg]
    sql: str,
    dtypes: tuple[str, ...],
    params: dict[str, float] | None = None,
) -> tuple[np.ndarray, ...]:
    """The columns a query hands over as `array_send(array_agg(...))`, one per dtype."""
    row = conn.execute(sql, params).fetchone()
    return tuple(
        bulk.array_values(None if row is None else row[k], dtype) for k, dtype in enumerate(dtypes)
    )


def _point_rows(i: np.ndarray, x: np.ndarray, y: np.ndarray, which: np.ndarray) -> bytes:
    """Binary COPY rows (i, x, y) of the points `which` (indices, in the order given)."""
    return bulk.binary_rows(
        [("int8", i[which], None), ("float8", x[which], None), ("float8", y[which], None)]
    )


def _grids(conn: psycopg.Connection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """Grid codes and community codes in code order, and the rank of each grid id."""
    rows = conn.execute(assign_store.GRIDS).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    rank_of_id = np.full(int(ids.max(initial=0)) + 1, len(rows), dtype=np.int64)
    rank_of_id[ids] = np.arange(len(rows))
    codes = np.array([r[1] for r in rows], dtype=object)
    communities = np.array([r[2] for r in rows], dtype=object)
    return codes, communities, rank_of_id


def _decide(
    valid: np.ndarray, found: list[_Facts], rank_of_id: np.ndarray, n_grids: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: status index, rank of the chosen grid (n_grids = none), distance in metres.
    The facts are decided by `rules.classify`; the smallest covering code wins."""
    n = len(valid)
    i = np.concatenate([f.hit_i for f in found]) - 1
    gid = np.concatenate([f.hit_grid for f in found])
    interior = np.concatenate([f.hit_interior for f in found])
    n_cover = np.bincount(i, minlength=n)
    n_interior = np.bincount(i, weights=interior, minlength=n)
    rank = np.full(n, n_grids, dtype=np.int64)
    # The smallest code of each point's grids: set directly where there is one (nearly every
    # point), np.minimum.at (slow per element) only where there are several.
    one = n_cover[i] == 1
    rank[i[one]] = rank_of_id[gid[one]]
    np.minimum.at(rank, i[~one], rank_of_id[gid[~one]])
    distance = np.where(n_cover > 0, 0.0, np.nan)
    has_nearest = np.zeros(n, dtype=bool)
    ni = np.concatenate([f.near_i for f in found]) - 1
    rank[ni] = rank_of_id[np.concatenate([f.near_grid for f in found])]
    distance[ni] = np.concatenate([f.near_m for f in found])
    has_nearest[ni] = True
    return rules.classify(n_cover, n_interior, has_nearest, valid), rank, distance


# -- output -----------------------------------------------------------------------------------
def _write(
    output: Path,
    src: _Source,
    codes: tuple[np.ndarray, np.ndarray],
    status: np.ndarray,
    rank: np.ndarray,
    distance: np.ndarray,
    reasons: _Reasons,
) -> None:
    """Write the output: the input read again batch by batch, each row with its results."""
    grid_codes, community_codes = codes
    # Quoted once here, not per row: codes and statuses come from a small set of values.
    grids = _quoted(pa.array([*grid_codes, ""], pa.string()))
    communities = _quoted(pa.array([*community_codes, ""], pa.string()))
    statuses = pa.array(rules.STATUSES.tolist(), pa.string())
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as sink:
        sink.write((",".join(OUTPUT_COLUMNS) + "\n").encode())
        start = 0
        for batch in _batches(src, first_read=False):
            stop = start + batch.num_rows
            cells = [
                *(_quoted(batch.column(f)) for f in src.fields),
                grids.take(rank[start:stop]),
                communities.take(rank[start:stop]),
                statuses.take(status[start:stop]),
                _distances(distance[start:stop]),
                reasons.column(start, stop),
            ]
            sink.write(_csv_lines(cells))
            start = stop


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


def _batches(src: _Source, *, first_read: bool) -> Iterator[pa.RecordBatch]:
    """The columns of the file batch by batch; the same batches every time it is read. A row
    Arrow cannot read raises `_Malformed` on the first read (the file is then read through its
    tolerant copy), InvalidInput on a later one (the file changed since)."""
    try:
        yield from _reader(src, src.columns)
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
