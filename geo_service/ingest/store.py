"""All SQL of imports: stage rows with COPY, check references, upsert by code, record the run.

Everything runs on the caller's connection inside its transaction, so an import is all rows
or none. Table and column names come from the fixed `_TARGETS` table below, never from input;
values travel only as bound parameters or COPY data.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from geo_service.db import bulk, versions
from geo_service.errors import Conflict
from geo_service.ingest.kinds import KindSpec

_GEOM = "ST_GeomFromWKB(s.{col}, 4326)"
_BULK_ROWS = 10_000  # below this, index maintenance is cheaper than an index rebuild


@dataclass(frozen=True)
class _Target:
    """How staged columns become table columns."""

    table: str
    stage: tuple[tuple[str, str], ...]  # (stage column, postgres type) after `row int4`
    columns: tuple[tuple[str, str], ...]  # (table column, expression over stage alias s)
    compared: tuple[str, ...]  # attribute columns whose change counts as an update
    geometries: tuple[str, ...]  # geometry columns compared with geo_same()
    direct: bool = False  # staged columns equal table columns: an empty table can take COPY


_TARGETS: dict[str, _Target] = {
    "communities": _Target(
        "communities",
        (("code", "text"), ("name", "text"), ("geom", "bytea")),
        (
            ("code", "s.code"),
            ("name", "s.name"),
            ("area_m2", f"ST_Area({_GEOM.format(col='geom')}::geography)"),
            ("geom", f"ST_Multi({_GEOM.format(col='geom')})"),
        ),
        ("name",),
        ("geom",),
    ),
    "grids": _Target(
        "grids",
        (("code", "text"), ("name", "text"), ("community", "text"), ("geom", "bytea")),
        (
            ("code", "s.code"),
            ("name", "s.name"),
            ("community_code", "s.community"),
            ("area_m2", f"ST_Area({_GEOM.format(col='geom')}::geography)"),
            ("geom", f"ST_Multi({_GEOM.format(col='geom')})"),
        ),
        ("name", "community_code"),
        ("geom",),
    ),
    "workers": _Target(
        "workers",
        (("code", "text"), ("name", "text"), ("phone", "text"), ("grid", "text")),
        (("code", "s.code"), ("name", "s.name"), ("phone", "s.phone"), ("grid_code", "s.grid")),
        ("name", "phone", "grid_code"),
        (),
    ),
    "buildings": _Target(
        "buildings",
        (
            ("code", "text"),
            ("address", "text"),
            ("name", "text"),
            ("households", "int4"),
            ("geom", "bytea"),
            ("footprint", "bytea"),
        ),
        (
            ("code", "s.code"),
            ("address", "s.address"),
            ("name", "s.name"),
            ("households", "s.households"),
            ("geom", _GEOM.format(col="geom")),
            ("footprint", f"ST_Multi({_GEOM.format(col='footprint')})"),
        ),
        ("address", "name", "households"),
        ("geom", "footprint"),
        direct=True,
    ),
    "centers": _Target(
        "centers",
        (("code", "text"), ("name", "text"), ("kind", "text"), ("geom", "bytea")),
        (
            ("code", "s.code"),
            ("name", "s.name"),
            ("kind", "s.kind"),
            ("geom", _GEOM.format(col="geom")),
        ),
        ("name", "kind"),
        ("geom",),
        direct=True,
    ),
    "pois": _Target(
        "places",
        (("code", "text"), ("name", "text"), ("kind", "text"), ("geom", "bytea")),
        (
            ("code", "s.code"),
            ("name", "s.name"),
            ("kind", "s.kind"),
            ("geom", _GEOM.format(col="geom")),
        ),
        ("name", "kind"),
        ("geom",),
        direct=True,
    ),
    "roads": _Target(
        "street_edges",
        (("code", "text"), ("name", "text"), ("geom", "bytea")),
        (
            ("code", "s.code"),
            ("name", "s.name"),
            ("length_m", f"ST_Length({_GEOM.format(col='geom')}::geography)"),
            ("geom", _GEOM.format(col="geom")),
        ),
        ("name",),
        ("geom",),
    ),
}


@dataclass
class Counts:
    """What an upsert did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0


def lock_kind(conn: Connection, kind: str) -> None:
    """Serialise imports of one kind: two concurrent imports would race on the upsert."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('geo-import:' || :k))"), {"k": kind})


def stage(
    conn: Connection,
    spec: KindSpec,
    rows: pd.DataFrame,
    progress: Callable[[int], None] | None = None,
) -> None:
    """COPY the validated rows into a temporary table `stage` (dropped at commit)."""
    target = _TARGETS[spec.name]
    cols = ", ".join(f"{name} {typ}" for name, typ in target.stage)
    conn.execute(text(f"CREATE TEMP TABLE stage (row int4, {cols}) ON COMMIT DROP"))
    _copy(conn, "stage", [("row", "int4"), *target.stage], rows, progress)
    conn.execute(text("ANALYZE stage"))


def load_into_empty(
    conn: Connection,
    spec: KindSpec,
    rows: pd.DataFrame,
    progress: Callable[[int], None] | None = None,
) -> bool:
    """The bulk-load path: when the table is empty and the rows need no derived columns, COPY
    them straight into it and build its GiST index afterwards. Returns False (nothing done)
    when that does not apply; the caller then stages and upserts."""
    target = _TARGETS[spec.name]
    if not target.direct or len(rows) < _BULK_ROWS:
        return False
    if conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {target.table})")).scalar_one():
        return False
    # Dropping the indexes locks the table until commit; it is empty, so nobody loses anything.
    # Every GiST index goes (layers add their own); keys stay: other tables refer to them.
    restore = bulk.drop_indexes(conn, target.table, only_gist=True)
    _copy(conn, target.table, list(target.stage), rows, progress, geometry=True)
    bulk.rebuild(conn, restore)
    return True


def _copy(
    conn: Connection,
    table: str,
    columns: list[tuple[str, str]],
    rows: pd.DataFrame,
    progress: Callable[[int], None] | None,
    *,
    geometry: bool = False,
) -> None:
    """Binary COPY of `rows` (the index is `row`). Geometries travel as WKB for a bytea
    column, or with `geometry` as EWKB (SRID 4326) that PostGIS reads straight into a
    geometry column, polygons made MultiPolygons as the typed columns demand."""
    data: list[list[object]] = []
    for name, typ in columns:
        if name == "row":
            data.append(rows.index.astype(int).tolist())
            continue
        values = rows[name].to_numpy() if name in rows else np.full(len(rows), None)
        if typ == "bytea":
            data.append(_wkb(values, ewkb=geometry))
        else:
            series = pd.Series(values, dtype="Int64" if typ == "int4" else object)
            data.append(series.astype(object).where(series.notna(), None).tolist())
    raw = conn.connection.driver_connection
    assert raw is not None
    names = ", ".join(name for name, _ in columns)
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types([typ for _, typ in columns])
        for n, record in enumerate(zip(*data, strict=True), 1):
            copy.write_row(record)
            if progress is not None and n % 10_000 == 0:
                progress(10_000)
    if progress is not None:
        progress(len(rows) % 10_000)


def _wkb(values: np.ndarray, *, ewkb: bool) -> list[object]:
    """WKB of each geometry (None stays None); with `ewkb`, the SRID and Multi wrapping that
    a typed geometry column wants, spliced into the bytes rather than by rebuilding (and
    copying) every geometry, which costs twice as much."""
    present = ~shapely.is_missing(values)
    out = np.full(len(values), None, dtype=object)
    geoms = values[present]
    wkb = shapely.to_wkb(geoms, byte_order=1)  # little-endian, 2D
    if ewkb:
        # One constant header per geometry type (a column holds one or two types), so the
        # splice is a plain concatenation per row.
        kinds = shapely.get_type_id(geoms)
        spliced = np.empty(len(wkb), dtype=object)
        for kind in np.unique(kinds):
            rows = np.flatnonzero(kinds == kind)
            header = _ewkb_header(_WKB_TYPE[int(kind)])
            spliced[rows] = [header + b[5:] for b in wkb[rows]]
        wkb = spliced
    out[present] = wkb
    return out.tolist()


# shapely's type ids -> WKB type codes (a LinearRing is written as a LineString)
_WKB_TYPE = {0: 1, 1: 2, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7}


def _ewkb_header(wkb_type: int) -> bytes:
    """What replaces the 5-byte WKB header (byte order + type) of a geometry of this WKB type
    code: the type with the SRID flag and 4326, a Polygon wrapped as a one-part MultiPolygon."""
    if wkb_type == _POLYGON:
        return _MULTI_HEADER + b"\x01" + struct.pack("<I", _POLYGON)
    return b"\x01" + struct.pack("<I", wkb_type | _SRID_FLAG) + _SRID


_SRID = struct.pack("<I", 4326)
_SRID_FLAG = 0x20000000
_POLYGON, _MULTIPOLYGON = 3, 6
_MULTI_HEADER = b"\x01" + struct.pack("<I", _MULTIPOLYGON | _SRID_FLAG) + _SRID + b"\x01\0\0\0"


def unknown_references(conn: Connection, spec: KindSpec) -> list[tuple[int, str, str]]:
    """Staged rows naming a community/grid that does not exist: (row, code, reason)."""
    found: list[tuple[int, str, str]] = []
    for ref in spec.references:
        rows = conn.execute(
            text(
                f"SELECT s.row, s.code, s.{ref.field} FROM stage s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {ref.table} t WHERE t.code = s.{ref.field}) "
                "ORDER BY s.row"
            )
        ).all()
        found += [
            (row, code, f"{ref.field} {value!r} is unknown (import {ref.kind} first)")
            for row, code, value in rows
        ]
    return found


def drop_staged(conn: Connection, rows: list[int]) -> None:
    """Remove staged rows (rejected by a database check) before the upsert."""
    if rows:
        conn.execute(text("DELETE FROM stage WHERE row = ANY(:rows)"), {"rows": rows})


def upsert(conn: Connection, spec: KindSpec, *, replace: bool, tolerance_deg: float) -> Counts:
    """Insert new codes, update changed ones, leave equal ones alone; with `replace`, delete
    the codes that are not in the file."""
    target = _TARGETS[spec.name]
    names = ", ".join(col for col, _ in target.columns)
    exprs = ", ".join(f"{expr} AS {col}" for col, expr in target.columns)
    sets = ", ".join(f"{col} = EXCLUDED.{col}" for col, _ in target.columns if col != "code")
    changed = " OR ".join(
        [f"t.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in target.compared]
        + [f"NOT geo_same(t.{g}, EXCLUDED.{g}, :tol)" for g in target.geometries]
    )
    counts = Counts()
    total = conn.execute(text("SELECT count(*) FROM stage")).scalar_one()
    rebuild = _bulk_load(conn, target.table, total)
    try:
        if replace:
            counts.deleted = conn.execute(
                text(
                    f"DELETE FROM {target.table} t "
                    "WHERE NOT EXISTS (SELECT 1 FROM stage s WHERE s.code = t.code)"
                )
            ).rowcount
        inserted, updated = conn.execute(
            text(
                f"WITH up AS (INSERT INTO {target.table} AS t ({names}) "
                f"SELECT {exprs} FROM stage s ORDER BY s.row "
                f"ON CONFLICT (code) DO UPDATE SET {sets}, updated_at = now() WHERE {changed} "
                "RETURNING (xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
                "FROM up"
            ),
            {"tol": tolerance_deg},
        ).one()
        bulk.rebuild(conn, rebuild)
    except IntegrityError as exc:
        if isinstance(exc.orig, pg_errors.ForeignKeyViolation):
            detail = exc.orig.diag.message_detail or str(exc.orig)
            raise Conflict(
                f"cannot remove {spec.name} missing from the file: other data still refers to "
                f"them ({detail}); import or remove that data first"
            ) from exc
        raise
    counts.inserted, counts.updated = inserted, updated
    counts.unchanged = total - inserted - updated
    return counts


def _bulk_load(conn: Connection, table: str, staged: int) -> list[str]:
    """For a load larger than the table, drop its GiST indexes and build them afterwards
    (returns their definitions; empty when they stay).

    Building a GiST index once (sorted build) costs far less than inserting rows into it one
    by one. Dropping the index locks the table until commit, which is acceptable only when
    the table is (nearly) empty anyway, so this is reserved for loads that at least double
    the table.
    """
    if staged < _BULK_ROWS:
        return []
    existing = conn.execute(
        text(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT :n) t"), {"n": staged}
    ).scalar_one()
    if existing >= staged:
        return []
    return bulk.drop_indexes(conn, table, only_gist=True)


def record_run(
    conn: Connection, spec: KindSpec, source: str, counts: Counts, repaired: int, rejected: int
) -> None:
    """Log the run and, when anything changed, bump the kind's data version."""
    conn.execute(
        text(
            "INSERT INTO import_runs (kind, source, inserted, updated, unchanged, deleted, "
            "repaired, rejected) VALUES (:kind, :source, :ins, :upd, :unc, :del, :rep, :rej)"
        ),
        {
            "kind": spec.name,
            "source": source,
            "ins": counts.inserted,
            "upd": counts.updated,
            "unc": counts.unchanged,
            "del": counts.deleted,
            "rep": repaired,
            "rej": rejected,
        },
    )
    if counts.inserted or counts.updated or counts.deleted:
        # Fresh statistics now, not when autovacuum gets round to it: the planner's choice
        # of join order for a million-point assignment depends on them.
        conn.execute(text(f"ANALYZE {_TARGETS[spec.name].table}"))
        versions.bump(conn, spec.name)
