"""All SQL of the coverage domain.

Bulk reads travel as one row of whole-column aggregates (or WKB) read by numpy, bulk writes
as binary COPY laid out by numpy: never a Python object per row. Everything else is
SQLAlchemy Core text with bound parameters. Geometry is stored in EPSG:4326; lengths are
geodesic, areas are measured by the caller (topology.areas_m2).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import psycopg
import shapely
from sqlalchemy import Connection, text

from geo_service.db import bulk, models

KINDS = ("roads", "buildings", "centers")  # the imports coverage depends on

Row = dict[str, Any]


def _raw(conn: Connection) -> psycopg.Connection:  # type: ignore[type-arg]
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw  # type: ignore[no-any-return]


def lock(conn: Connection) -> None:
    """One compute at a time (a second waits, then recomputes on fresh data)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('geo-coverage'))"))


def versions(conn: Connection) -> dict[str, int]:
    """Current data version of each kind coverage depends on (0 when never imported)."""
    rows = conn.execute(
        text("SELECT kind, version FROM dataset_versions WHERE kind = ANY(:k)"), {"k": list(KINDS)}
    )
    found = {kind: int(version) for kind, version in rows}
    return {kind: found.get(kind, 0) for kind in KINDS}


# -- inputs -------------------------------------------------------------------------------------
def walkable_streets(
    conn: Connection, osm_prefix: str
) -> tuple[np.ndarray, bulk.Lines, np.ndarray]:
    """Ids and lon/lat vertices of the walkable street edges in id order, and whether each
    came from an OpenStreetMap extract (its code starts with `osm_prefix`)."""
    ids, lines, osm = _lines(
        conn, "street_edges", "walkable", ("starts_with(code, %s)", "?", osm_prefix)
    )
    return ids, lines, osm


def _lines(
    conn: Connection, table: str, where: str, more: tuple[str, str, Any] | None = None
) -> tuple[np.ndarray, bulk.Lines, np.ndarray]:
    """Ids and lon/lat vertices of the LineStrings of `table` (`where`) in id order, and
    the values of one more column (`more`: its expression with one parameter, its
    `array_send` dtype, the parameter; none when not given). One row of aggregates read by
    numpy: no shapely object per line (0.2 s and the GIL, for 100k)."""
    expression, dtype, param = more or ("", "?", None)
    extra_sql = f"array_send(array_agg({expression}))" if more else "NULL"
    with _raw(conn).cursor(binary=True) as cur:
        # the aggregates of one query take the rows in one order, whatever it is
        cur.execute(
            f"SELECT array_send(array_agg(id)), {extra_sql}, "
            "array_send(array_agg(ST_NPoints(geom))), "
            f"string_agg(ST_AsBinary(geom, 'NDR'), ''::bytea) FROM {table} WHERE {where}",
            () if more is None else (param,),
        )
        ids, extra, points, wkb = cur.fetchone()  # type: ignore[misc]
    ids = bulk.array_values(ids, ">i8")
    lines = bulk.linestrings_wkb(wkb, bulk.array_values(points, ">i4"))
    order = np.argsort(ids, kind="stable")
    values = bulk.array_values(extra, dtype) if more else np.zeros(len(ids), dtype)
    return ids[order], lines.take(order), values[order]


def buildings(conn: Connection) -> dict[str, np.ndarray]:
    """id, code (UTF-8 bytes), lon, lat and households of every building, in id order: each
    column one aggregate of one query, read by numpy (Python spends ~0.02 s on 120k rows,
    against 0.4 s iterating a COPY's rows, holding the GIL)."""
    with _raw(conn).cursor(binary=True) as cur:
        # the aggregates of one query take the rows in one order, whatever it is
        cur.execute(
            "SELECT count(*), array_send(array_agg(id)), array_send(array_agg(ST_X(geom))), "
            "array_send(array_agg(ST_Y(geom))), array_send(array_agg(households)), "
            "convert_to(string_agg(code, E'\\n'), 'UTF8') FROM buildings"
        )
        n, ids, lon, lat, households, codes = cur.fetchone()  # type: ignore[misc]
        numbers = {
            "id": bulk.array_values(ids, ">i4"),
            "lon": bulk.array_values(lon, ">f8"),
            "lat": bulk.array_values(lat, ">f8"),
            "households": bulk.array_values(households, ">i4"),
        }
        order = np.argsort(numbers["id"], kind="stable")
        out = {name: values[order] for name, values in numbers.items()}
        code = np.array(codes.split(b"\n") if n else [], dtype="S")
        if len(code) == n:
            out["code"] = code[order]
        else:  # a code holds a line break: take them as a list
            cur.execute("SELECT array_agg(code ORDER BY id) FROM buildings")
            out["code"] = np.array([c.encode() for c in cur.fetchone()[0]], dtype="S")  # type: ignore[index]
    return out


def centers(conn: Connection) -> dict[str, np.ndarray]:
    """id, code, lon and lat of every centre, in id order."""
    rows = conn.execute(
        text("SELECT id, code, ST_X(geom), ST_Y(geom) FROM centers ORDER BY id")
    ).all()
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return {
        "id": np.asarray(cols[0], dtype=np.int64),
        "code": np.asarray(cols[1], dtype=object),
        "lon": np.asarray(cols[2], dtype=float),
        "lat": np.asarray(cols[3], dtype=float),
    }


def areas(conn: Connection, table: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes, community codes (a community's own) and lon/lat polygons of `table` (grids or
    communities), in code order; codes as UTF-8 bytes."""
    community = {"grids": "community_code", "communities": "code"}[table]
    with _raw(conn).cursor(binary=True) as cur:
        cur.execute(f"SELECT code, {community}, ST_AsBinary(geom) FROM {table} ORDER BY code")
        rows = cur.fetchall()
    codes = np.array([r[0].encode() for r in rows], dtype="S")
    communities = np.array([(r[1] or "").encode() for r in rows], dtype="S")
    return codes, communities, shapely.from_wkb([r[2] for r in rows])


def center_codes(conn: Connection) -> set[str]:
    """Codes of every centre."""
    return set(conn.execute(text("SELECT code FROM centers")).scalars())


# -- outputs ------------------------------------------------------------------------------------
def _copy(
    conn: Connection,
    table: str,
    columns: Sequence[tuple[str, str, np.ndarray]],
    blobs: Sequence[tuple[str, Sequence[bytes]]],
) -> None:
    """Binary COPY of numeric columns (name, int4|int8|float8, array), then columns of raw
    values of any length (name, UTF-8 text or EWKB); see `bulk.blob_rows`."""
    body = bulk.blob_rows([(t, v) for _, t, v in columns], [b for _, b in blobs])
    _send(conn, table, [name for name, _, _ in columns] + [name for name, _ in blobs], body)


def _copy_rows(
    conn: Connection,
    table: str,
    columns: list[tuple[str, str, np.ndarray | bulk.Lines, np.ndarray | None]],
) -> None:
    """Binary COPY of columns of any width: (name, type, values, NULL mask), the types those
    of `bulk.binary_rows`."""
    body = bulk.binary_rows([(kind, values, null) for _, kind, values, null in columns])
    _send(conn, table, [name for name, _, _, _ in columns], body)


def _send(conn: Connection, table: str, names: list[str], body: bytes) -> None:
    """One binary COPY of laid-out rows into `table` (`names`, in order)."""
    with (
        _raw(conn).cursor() as cur,
        cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.write(bulk.COPY_HEADER + body + bulk.COPY_TRAILER)


def _ewkb(geoms: np.ndarray) -> list[bytes]:
    """EWKB (SRID 4326) of each geometry: what a binary COPY into a geometry column reads."""
    return list(shapely.to_wkb(shapely.set_srid(geoms, 4326), include_srid=True, byte_order=1))


def clear(conn: Connection) -> None:
    """Empty every derived coverage table (inside the caller's transaction)."""
    conn.execute(
        text(
            "TRUNCATE coverage_nodes, coverage_edges, coverage_centers, coverage_buildings, "
            "coverage_isochrones, coverage_tiers, coverage_gaps RESTART IDENTITY"
        )
    )


@contextmanager
def _bare(conn: Connection, table: str) -> Iterator[None]:
    """Load `table` (just emptied) with no index: every index and the key and unique
    constraints behind them are dropped, then built once from the loaded rows, 3x cheaper
    than maintaining them row by row (measured: coverage_buildings 0.96 s -> 0.35 s). The
    table is locked by the TRUNCATE before, so no reader sees it without its indexes."""
    restore = bulk.drop_indexes(conn, table, keys=True)
    yield
    bulk.rebuild(conn, restore)


def write_network(
    conn: Connection,
    node_lonlat: np.ndarray,
    node_component: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    street_ids: np.ndarray,
    length_m: np.ndarray,
    component: np.ndarray,
    lines_lonlat: bulk.Lines,
) -> None:
    """Nodes (id = index + 1) and edges (id = index + 1, source/target = node ids)."""
    n, m = len(node_lonlat), len(source)
    with _bare(conn, "coverage_nodes"):
        _copy_rows(
            conn,
            "coverage_nodes",
            [
                ("id", "int8", np.arange(1, n + 1), None),
                ("component", "int4", node_component, None),
                ("geom", "geometry", np.asarray(node_lonlat, dtype=float), None),
            ],
        )
    with _bare(conn, "coverage_edges"):
        _copy_rows(
            conn,
            "coverage_edges",
            [
                ("id", "int8", np.arange(1, m + 1), None),
                ("source", "int8", source + 1, None),
                ("target", "int8", target + 1, None),
                ("street_edge_id", "int8", street_ids, None),
                ("length_m", "float8", length_m, None),
                ("component", "int4", component, None),
                ("geom", "geometry", lines_lonlat, None),
            ],
        )


def write_centers(
    conn: Connection, codes: np.ndarray, edge: np.ndarray, frac: np.ndarray, access: np.ndarray
) -> None:
    """Entry point of each centre (codes as UTF-8 bytes; edge NULL when no street is within
    reach)."""
    off_street = edge < 0
    _copy_rows(
        conn,
        "coverage_centers",
        [
            ("center_code", "text", codes, None),
            ("edge_id", "int8", edge + 1, off_street),
            ("edge_frac", "float8", frac, off_street),
            ("access_m", "float8", np.where(off_street, 0, access), off_street),
        ],
    )


def write_buildings(conn: Connection, columns: dict[str, np.ndarray]) -> None:
    """Per-building results, with the codes of the building, its grid, its community and
    its nearest centre (UTF-8 bytes, empty for none), in one binary COPY laid out by numpy
    (0.16 s in PostgreSQL for 120k buildings, where staging ids and joining the codes in
    took 0.5 s)."""
    walk = columns["walk_m"]
    unreached = ~np.isfinite(walk)
    off_street = columns["edge"] < 0
    with _bare(conn, "coverage_buildings"):
        _copy_rows(
            conn,
            "coverage_buildings",
            [
                ("building_id", "int4", columns["id"], None),
                ("building_code", "text", columns["code"], None),
                ("grid_code", "text", columns["grid_code"], columns["grid_code"] == b""),
                (
                    "community_code",
                    "text",
                    columns["community_code"],
                    columns["community_code"] == b"",
                ),
                ("households", "int4", columns["households"], None),
                ("center_code", "text", columns["center_code"], columns["center_code"] == b""),
                ("walk_m", "float8", np.where(unreached, 0, walk), unreached),
                ("minutes", "float8", np.where(unreached, 0, columns["minutes"]), unreached),
                ("tier_min", "int4", columns["tier"], columns["tier"] == 0),
                ("access_m", "float8", np.where(off_street, 0, columns["access"]), off_street),
                ("edge_id", "int8", columns["edge"] + 1, off_street),
                ("edge_frac", "float8", columns["frac"], off_street),
            ],
        )


def write_isochrones(conn: Connection, isochrones: list[tuple[str, int, Any, float]]) -> None:
    """Isochrones: (centre code, tier, lon/lat geometry, area m²), in one binary COPY."""
    if not isochrones:
        return
    _copy(
        conn,
        "coverage_isochrones",
        [
            ("tier_min", "int4", np.array([t for _, t, _, _ in isochrones])),
            ("area_m2", "float8", np.array([a for *_, a in isochrones])),
        ],
        [
            ("center_code", [c.encode() for c, _, _, _ in isochrones]),
            ("geom", _ewkb(_multi([g for _, _, g, _ in isochrones]))),
        ],
    )


def write_areas(
    conn: Connection,
    tiers: list[tuple[int, Any, float]],
    gaps: list[tuple[Any, int, int, float]],
) -> None:
    """Merged tiers (tier, lon/lat geometry, area m²) and gap areas (geometry, buildings,
    households, area m²), each in one binary COPY."""
    if tiers:
        _copy(
            conn,
            "coverage_tiers",
            [
                ("tier_min", "int4", np.array([t for t, _, _ in tiers])),
                ("area_m2", "float8", np.array([a for *_, a in tiers])),
            ],
            [("geom", _ewkb(_multi([g for _, g, _ in tiers])))],
        )
    if gaps:
        _copy(
            conn,
            "coverage_gaps",
            [
                ("area_m2", "float8", np.array([a for *_, a in gaps])),
                ("buildings", "int4", np.array([b for _, b, _, _ in gaps])),
                ("households", "int4", np.array([h for _, _, h, _ in gaps])),
            ],
            [("geom", _ewkb(np.asarray([g for g, *_ in gaps], dtype=object)))],
        )


def _multi(geoms: list[Any]) -> np.ndarray:
    """Each geometry as a MultiPolygon of its polygon parts (empty when it has none)."""
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        parts = [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and not p.is_empty]
        out[i] = shapely.MultiPolygon(parts)
    return out


def insert_run(conn: Connection, run: Row) -> int:
    """Record a finished compute (its columns by name: the parameters' own among them, so a new
    parameter needs no change here); returns its id."""
    runs = models.coverage_runs
    return int(conn.execute(runs.insert().values(**run).returning(runs.c.id)).scalar_one())


def regrid_buildings(conn: Connection, moves: dict[str, str | None]) -> None:
    """Buildings that a grid edit moved to another grid (code -> grid code): the per-grid
    figures follow at once, with no recompute (walks do not depend on grids)."""
    if moves:
        conn.execute(
            text(
                "UPDATE coverage_buildings cb SET grid_code = m.grid "
                "FROM unnest(CAST(:b AS text[]), CAST(:g AS text[])) AS m(building, grid) "
                "WHERE cb.building_code = m.building"
            ),
            {"b": list(moves), "g": list(moves.values())},
        )


def analyze(conn: Connection) -> None:
    """Fresh planner statistics for the rewritten tables."""
    # the columns the API filters by: statistics of the others (sampled all the same) would
    # double the time and change no plan
    conn.execute(text("ANALYZE coverage_buildings (community_code, grid_code, tier_min)"))


# -- reads --------------------------------------------------------------------------------------
def database_identity(conn: Connection) -> tuple[int, str]:
    """Which database this is, the same on a primary and its standbys (the cluster's system
    identifier, which a base backup keeps, and the database's name)."""
    row = conn.execute(
        text("SELECT system_identifier, current_database() FROM pg_control_system()")
    ).one()
    return int(row[0]), str(row[1])


def latest_run(conn: Connection) -> Row | None:
    """The last compute, or None."""
    row = conn.execute(text("SELECT * FROM coverage_runs ORDER BY id DESC LIMIT 1")).first()
    return dict(row._mapping) if row else None


def _counts(conn: Connection, group: str, where: str = "", params: Row | None = None) -> list[Row]:
    """Buildings and households per group and tier (NULL tier: uncovered), with those that
    have no walk at all (unreachable)."""
    sql = f"""
        SELECT {group} AS code, cb.tier_min, count(*) AS buildings,
               coalesce(sum(cb.households), 0) AS households,
               count(*) FILTER (WHERE cb.walk_m IS NULL) AS unreachable_buildings,
               coalesce(sum(cb.households) FILTER (WHERE cb.walk_m IS NULL), 0)
                   AS unreachable_households
        FROM coverage_buildings cb {where}
        GROUP BY 1, 2
    """
    return [dict(r._mapping) for r in conn.execute(text(sql), params or {})]


def city_counts(conn: Connection) -> list[Row]:
    """Counts per tier, city-wide."""
    return _counts(conn, "'city'")


def community_counts(conn: Connection) -> tuple[list[Row], dict[str, str]]:
    """Counts per community and tier, and the communities' names."""
    names = {code: name for code, name in conn.execute(text("SELECT code, name FROM communities"))}
    return _counts(conn, "cb.community_code"), names


def grid_counts(conn: Connection, community: str | None) -> tuple[list[Row], dict[str, Row]]:
    """Counts per grid and tier (of one community when given), and the grids' names."""
    rows = _counts(
        conn,
        "cb.grid_code",
        "WHERE CAST(:community AS text) IS NULL OR cb.community_code = :community",
        {"community": community},
    )
    grids = {
        r.code: {"name": r.name, "community_code": r.community_code}
        for r in conn.execute(text("SELECT code, name, community_code FROM grids"))
    }
    return rows, grids


def community_exists(conn: Connection, code: str) -> bool:
    """Whether a community code exists."""
    return bool(
        conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM communities WHERE code = :c)"), {"c": code}
        ).scalar_one()
    )


_BUILDING_COLUMNS = """
    cb.building_code AS code, b.address, cb.grid_code, cb.community_code, cb.households,
    cb.center_code, round(cb.walk_m::numeric, 1)::float8 AS walk_m,
    round(cb.minutes::numeric, 2)::float8 AS minutes, cb.tier_min,
    round(cb.access_m::numeric, 1)::float8 AS access_m,
    ST_X(b.geom) AS lon, ST_Y(b.geom) AS lat
"""


@dataclass(frozen=True)
class BuildingQuery:
    """Which per-building results a caller asks for, and the page: one value from the router
    to the SQL."""

    uncovered: bool = False  # only the ones outside every tier, farthest walk first
    tier: int | None = None
    community: str | None = None
    grid: str | None = None
    limit: int = 100
    offset: int = 0


def building_page(conn: Connection, query: BuildingQuery) -> tuple[int, list[Row]]:
    """A page of per-building results, farthest walk first when `uncovered`, else by code."""
    where = """
        WHERE (NOT :uncovered OR cb.tier_min IS NULL)
          AND (CAST(:tier AS int) IS NULL OR cb.tier_min = :tier)
          AND (CAST(:community AS text) IS NULL OR cb.community_code = :community)
          AND (CAST(:grid AS text) IS NULL OR cb.grid_code = :grid)
    """
    params = asdict(query)
    uncovered = query.uncovered
    total = conn.execute(text(f"SELECT count(*) FROM coverage_buildings cb {where}"), params)
    order = "cb.walk_m DESC NULLS FIRST, cb.building_code" if uncovered else "cb.building_code"
    rows = conn.execute(
        text(
            f"SELECT {_BUILDING_COLUMNS} FROM coverage_buildings cb "
            f"JOIN buildings b ON b.id = cb.building_id {where} "
            f"ORDER BY {order} LIMIT :limit OFFSET :offset"
        ),
        params,
    )
    return int(total.scalar_one()), [dict(r._mapping) for r in rows]


def export_rows(conn: Connection) -> Iterator[tuple[Any, ...]]:
    """building code, centre code, walk_m, minutes, tier of every building, by code."""
    with _raw(conn).cursor(name="coverage_export") as cur:
        cur.itersize = 20_000
        cur.execute(
            "SELECT building_code, center_code, walk_m, minutes, tier_min "
            "FROM coverage_buildings ORDER BY building_code"
        )
        yield from cur


def building_coverage(conn: Connection, code: str) -> Row | None:
    """Coverage of one building, or None when it has not been computed."""
    row = conn.execute(
        text(
            "SELECT cb.center_code, c.name AS center_name, "
            "round(cb.walk_m::numeric, 1)::float8 AS walk_m, "
            "round(cb.minutes::numeric, 2)::float8 AS minutes, cb.tier_min "
            "FROM coverage_buildings cb LEFT JOIN centers c ON c.code = cb.center_code "
            "WHERE cb.building_code = :code"
        ),
        {"code": code},
    ).first()
    return dict(row._mapping) if row else None


def components(conn: Connection) -> list[Row]:
    """Connected pieces of the walking network: edges, length, a point on each, routable."""
    rows = conn.execute(
        text(
            """
            SELECT component, count(*) AS edges, round(sum(length_m)::numeric, 1)::float8
                   AS length_m, component = 0 AS routable,
                   ST_X(ST_PointOnSurface(ST_Collect(geom))) AS lon,
                   ST_Y(ST_PointOnSurface(ST_Collect(geom))) AS lat,
                   (array_agg(street_edge_id ORDER BY street_edge_id))[1:20] AS street_edge_ids
            FROM coverage_edges GROUP BY component ORDER BY component
            """
        )
    )
    return [dict(r._mapping) for r in rows]


# -- the in-memory model behind what-if and suggest ---------------------------------------------
def model_arrays(conn: Connection) -> dict[str, Any]:
    """What the what-if and siting model needs, as arrays: the network (`network_arrays`),
    each building's entry point, households and community (an index into the community
    codes, sorted), each centre's entry point (`center_entries`), the communities' names.
    Rows travel packed, one aggregate per community read by numpy (`bulk.packed_rows`;
    0.33 s for a city when it was a Python row per edge and per building); the streets'
    shapes are `edge_lines`', read only by what needs them."""
    with _raw(conn).cursor(binary=True) as cur:
        # by community: a few dozen rows, where a code per building cost PostgreSQL 0.1 s
        cur.execute(
            "SELECT coalesce(community_code, ''), string_agg(int4send(building_id) || "
            "int4send(households) || int8send(coalesce(edge_id - 1, -1)) || "
            "float8send(coalesce(edge_frac, 0)) || "
            "float8send(coalesce(access_m, 'Infinity'::float8)), ''::bytea) "
            "FROM coverage_buildings GROUP BY 1"
        )
        groups = sorted(cur.fetchall(), key=lambda row: row[0])
        cur.execute("SELECT code, name FROM communities ORDER BY code")
        names: dict[str, str] = dict(cur.fetchall())
    parts = [bulk.packed_rows(g[1], _BUILDING_ENTRY) for g in groups]
    community = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    rows = np.concatenate(parts) if parts else bulk.packed_rows(None, _BUILDING_ENTRY)
    order = np.argsort(rows["id"], kind="stable")
    rows, community = rows[order], community[order]
    return {
        **network_arrays(conn),
        "building_id": rows["id"].astype(np.int64),
        "households": rows["households"].astype(np.int64),
        "community": community,
        "community_codes": np.asarray([g[0] for g in groups], dtype=str),
        "b_edge": np.ascontiguousarray(rows["edge"]),
        "b_frac": np.ascontiguousarray(rows["frac"]),
        "b_access": np.ascontiguousarray(rows["access"]),
        **center_entries(conn),
        "community_names": names,
    }


_BUILDING_ENTRY = (
    ("id", ">i4"),
    ("households", ">i4"),
    ("edge", ">i8"),
    ("frac", ">f8"),
    ("access", ">f8"),
)
_EDGE = (
    ("id", ">i8"),
    ("source", ">i8"),
    ("target", ">i8"),
    ("length", ">f8"),
    ("component", ">i4"),
)


def network_arrays(conn: Connection) -> dict[str, Any]:
    """The stored network: its number of nodes, and each edge's source and target nodes
    (index = id - 1), length and component, as arrays."""
    with _raw(conn).cursor(binary=True) as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM coverage_nodes), string_agg(int8send(id) || "
            "int8send(source - 1) || int8send(target - 1) || float8send(length_m) || "
            "int4send(component), ''::bytea) FROM coverage_edges"
        )
        n_nodes, data = cur.fetchone()  # type: ignore[misc]
    edges = bulk.packed_rows(data, _EDGE)
    edges = edges[np.argsort(edges["id"], kind="stable")]
    return {
        "n_nodes": int(n_nodes),
        "source": np.ascontiguousarray(edges["source"]),
        "target": np.ascontiguousarray(edges["target"]),
        "length": np.ascontiguousarray(edges["length"]),
        "component": edges["component"].astype(np.int64),
    }


def center_entries(conn: Connection) -> dict[str, np.ndarray]:
    """Each centre's code and entry point (edge index -1 when it has no street), by code."""
    rows = conn.execute(
        text(
            "SELECT center_code, coalesce(edge_id - 1, -1), coalesce(edge_frac, 0), "
            "coalesce(access_m, 'Infinity'::float8) FROM coverage_centers ORDER BY center_code"
        )
    ).all()
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return {
        "center_code": np.asarray(cols[0], dtype=object),
        "c_edge": np.asarray(cols[1], dtype=np.int64),
        "c_frac": np.asarray(cols[2], dtype=float),
        "c_access": np.asarray(cols[3], dtype=float),
    }


def edge_lines(conn: Connection) -> bulk.Lines:
    """The lon/lat vertices of every network edge, in id order (index = id - 1): what
    finding places' entry points needs, and only that."""
    _, lines, _ = _lines(conn, "coverage_edges", "true")
    return lines
