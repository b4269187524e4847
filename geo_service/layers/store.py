"""All SQL of the map layers: describing sources, GeoJSON pages, MVT tiles, points of hexbins.

Layer SQL comes only from the validated layer files; identifiers in it are validated and
quoted; request values (bbox, filters, paging, tile address) reach PostgreSQL only as bound
parameters. Written for psycopg's asyncio connections (the API's read pool).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from geo_service.layers.catalogue import Layer
from geo_service.layers.tiles import BUFFER, EXTENT, Tile

# GeoJSON coordinates: 7 decimals of a degree is about a centimetre.
_DIGITS = 7


@dataclass(frozen=True)
class Column:
    """A source column: its name and PostgreSQL type name."""

    name: str
    pg_type: str

    @property
    def json_type(self) -> str:
        """The JSON schema type of its values."""
        if self.pg_type in ("int2", "int4", "int8"):
            return "integer"
        if self.pg_type in ("float4", "float8", "numeric"):
            return "number"
        if self.pg_type == "bool":
            return "boolean"
        if self.pg_type.startswith("_"):
            return "array"
        return "string"


class SourceMissing(Exception):
    """A layer whose table or columns are not in the database (yet)."""


async def describe(conn: AsyncConnection[Any], layer: Layer) -> dict[str, Column]:
    """Columns of a layer's source, checked against what the file names."""
    query = sql.SQL("SELECT * FROM ({}) s LIMIT 0").format(sql.SQL(layer.source_sql))  # type: ignore[arg-type]
    try:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(query)
            described = [(d.name, d.type_code) for d in cur.description or []]
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise SourceMissing(str(exc).splitlines()[0]) from exc
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT oid, typname FROM pg_type WHERE oid = ANY(%s)",
            [[oid for _, oid in described]],
        )
        names = dict(await cur.fetchall())
    columns = {name: Column(name, names.get(oid, "unknown")) for name, oid in described}
    geometries = [
        layer.geometry,
        *([layer.tile_geometry] if layer.tile_geometry else []),
        *layer.tile_simplified.values(),
    ]
    needed = list(geometries)
    if layer.hexbin is None:
        needed += [layer.id_field, *layer.fields]
    elif layer.hexbin.weight:
        needed.append(layer.hexbin.weight)
    missing = [name for name in needed if name not in columns]
    if missing:
        raise SourceMissing(f"the source has no column {', '.join(map(repr, missing))}")
    for name in geometries:
        if columns[name].pg_type != "geometry":
            raise SourceMissing(f"column {name!r} is {columns[name].pg_type}")
    if layer.tile_geometry:
        await _check_web_mercator(conn, layer)
    return columns


async def _check_web_mercator(conn: AsyncConnection[Any], layer: Layer) -> None:
    """A `tile_geometry` must be in EPSG:3857, and each `tile_simplified` column that shape
    simplified by its tolerance: tiles draw them as they are (checked on one row, and on the 20
    most detailed shapes; an empty source has nothing to draw wrong)."""
    assert layer.tile_geometry is not None
    query = sql.SQL("SELECT ST_SRID(s.{g}) FROM ({src}) s WHERE s.{g} IS NOT NULL LIMIT 1").format(
        g=sql.Identifier(layer.tile_geometry),
        src=sql.SQL(layer.source_sql),  # type: ignore[arg-type]
    )
    async with conn.cursor() as cur:
        await cur.execute(query)
        row = await cur.fetchone()
    if row is not None and row[0] != 3857:
        raise SourceMissing(f"column {layer.tile_geometry!r} is in SRID {row[0]}, not 3857")
    for tolerance, column in layer.tile_simplified.items():
        # The same shapes, bit for bit, as the tile would have simplified, on the rows with the
        # most vertices (where tolerances differ; simple shapes come out alike at any).
        query = sql.SQL(
            "SELECT bool_and(ST_AsBinary(s.{c}) IS NOT DISTINCT FROM "
            "ST_AsBinary(ST_Simplify(s.{g}, {t}, true)) AND ST_SRID(s.{c}) = 3857) FROM ("
            " SELECT * FROM ({src}) s WHERE s.{g} IS NOT NULL"
            " ORDER BY ST_NPoints(s.{g}) DESC LIMIT 20) s"
        ).format(
            c=sql.Identifier(column),
            g=sql.Identifier(layer.tile_geometry),
            t=sql.Literal(tolerance),
            src=sql.SQL(layer.source_sql),  # type: ignore[arg-type]
        )
        async with conn.cursor() as cur:
            await cur.execute(query)
            row = await cur.fetchone()
        if row is not None and row[0] is False:
            raise SourceMissing(
                f"column {column!r} does not hold {layer.tile_geometry!r} simplified by "
                f"{tolerance:g} m in EPSG:3857"
            )


async def versions(conn: AsyncConnection[Any], kinds: list[str]) -> tuple[int, ...]:
    """The data versions of `kinds`, in that order (0 for a kind never imported)."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT kind, version FROM dataset_versions WHERE kind = ANY(%s)",
            [kinds],
            prepare=True,
        )
        found = dict(await cur.fetchall())
    return tuple(int(found.get(kind, 0)) for kind in kinds)


async def extent(conn: AsyncConnection[Any], layer: Layer) -> list[float] | None:
    """[west, south, east, north] of the layer's data, None when it is empty."""
    query = sql.SQL(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ("
        "SELECT ST_Extent(s.{g}) AS e FROM ({src}) s) x"
    ).format(
        g=sql.Identifier(layer.geometry),
        src=sql.SQL(layer.source_sql),  # type: ignore[arg-type]
    )
    async with conn.cursor() as cur:
        await cur.execute(query)
        row = await cur.fetchone()
    if row is None or row[0] is None:
        return None
    return [float(v) for v in row]


# -- features --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What selects features: a bbox (or two across the antimeridian) and field values."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    equal: tuple[tuple[str, str, Any], ...] = ()  # (field, pg type for the cast, value)


def _where(layer: Layer, filters: Filters, params: dict[str, Any]) -> sql.Composable:
    geom = sql.SQL("s.") + sql.Identifier(layer.geometry)
    clauses: list[sql.Composable] = []
    if filters.boxes:
        ors = []
        for i, box in enumerate(filters.boxes):
            names = [f"b{i}{c}" for c in "wsen"]
            params.update(zip(names, box, strict=True))
            env = sql.SQL(
                "ST_MakeEnvelope(%({})s::float8, %({})s::float8, %({})s::float8, "
                "%({})s::float8, 4326)"
            ).format(*[sql.SQL(n) for n in names])
            ors.append(sql.SQL("({g} && {e} AND ST_Intersects({g}, {e}))").format(g=geom, e=env))
        clauses.append(sql.SQL("(") + sql.SQL(" OR ").join(ors) + sql.SQL(")"))
    for i, (name, pg_type, value) in enumerate(filters.equal):
        params[f"f{i}"] = value
        if pg_type in ("int2", "int4", "int8", "float4", "float8", "numeric", "bool"):
            clauses.append(
                sql.SQL("s.{} = CAST(%({})s AS {})").format(
                    sql.Identifier(name), sql.SQL(f"f{i}"), sql.SQL(pg_type)
                )
            )
        else:
            clauses.append(
                sql.SQL("CAST(s.{} AS text) = %({})s").format(
                    sql.Identifier(name), sql.SQL(f"f{i}")
                )
            )
    if not clauses:
        return sql.SQL("")
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses)


def _feature_json(layer: Layer) -> sql.Composable:
    """A GeoJSON Feature as text: RFC 7946 (lon/lat, exterior rings counter-clockwise)."""
    props = sql.SQL(", ").join(
        sql.SQL("{}, s.{}").format(sql.Literal(name), sql.Identifier(name)) for name in layer.fields
    )
    return sql.SQL(
        '\'{{"type":"Feature","id":\' || to_json(s.{id})::text || '
        "',\"geometry\":' || coalesce(ST_AsGeoJSON(ST_ForcePolygonCCW(s.{g}), {d}), 'null') || "
        "',\"properties\":' || json_build_object({props})::text || '}}'"
    ).format(
        id=sql.Identifier(layer.id_field),
        g=sql.Identifier(layer.geometry),
        d=sql.Literal(_DIGITS),
        props=props,
    )


async def feature_page(
    conn: AsyncConnection[Any],
    layer: Layer,
    filters: Filters,
    limit: int,
    offset: int,
    bound: Mapping[str, Any] | None = None,
) -> tuple[int, int, str]:
    """(numberMatched, numberReturned, features as comma-separated GeoJSON text), by id;
    `bound`: values the source's own placeholders take (a history source's %(as_of)s)."""
    params: dict[str, Any] = {"limit": limit, "offset": offset, **(bound or {})}
    where = _where(layer, filters, params)
    src = sql.SQL(layer.source_sql)  # type: ignore[arg-type]
    query = sql.SQL(
        "SELECT (SELECT count(*) FROM ({src}) s {where}), p.n, p.body FROM ("
        " SELECT count(*) AS n, coalesce(string_agg(q.j, ',' ORDER BY q.k), '') AS body FROM ("
        "  SELECT s.{id} AS k, {feature} AS j FROM ({src}) s {where}"
        "  ORDER BY s.{id} LIMIT %(limit)s OFFSET %(offset)s) q) p"
    ).format(src=src, where=where, id=sql.Identifier(layer.id_field), feature=_feature_json(layer))
    async with conn.cursor() as cur:
        await cur.execute(query, params, prepare=True)
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), str(row[2])


async def feature_one(
    conn: AsyncConnection[Any], layer: Layer, id_type: str, fid: Any
) -> str | None:
    """One feature as GeoJSON text, None when no feature has that id."""
    query = sql.SQL("SELECT {feature} FROM ({src}) s WHERE s.{id} = CAST(%(fid)s AS {t})").format(
        feature=_feature_json(layer),
        src=sql.SQL(layer.source_sql),  # type: ignore[arg-type]
        id=sql.Identifier(layer.id_field),
        t=sql.SQL(id_type),
    )
    async with conn.cursor() as cur:
        await cur.execute(query, {"fid": fid}, prepare=True)
        row = await cur.fetchone()
    return None if row is None else str(row[0])


# -- vector tiles ----------------------------------------------------------------------------


# The tile's square (Web Mercator) as ST_AsMVTGeom takes it: a sub-select, because the
# service's generic plans (plan_cache_mode) would otherwise build it again for every row (5% of
# a z13 buildings tile).
_ENVELOPE = sql.SQL("(SELECT ST_TileEnvelope(%(z)s::int4, %(x)s::int4, %(y)s::int4)::box2d)")
# The square grown by the buffer ST_AsMVTGeom keeps, in WGS-84 like the layers' indexes.
_REACH = sql.SQL(
    "ST_Transform(ST_TileEnvelope(%(z)s::int4, %(x)s::int4, %(y)s::int4, margin => {}), 4326)"
).format(sql.Literal(BUFFER / EXTENT))


def _mvt(name: str, rows: sql.Composable) -> sql.Composable:
    """The MVT layer `name` of `rows` (attributes and `mvt_geom`, from ST_AsMVTGeom) as a
    bytea expression; empty bytes when no row has a geometry.

    No `WHERE mvt_geom IS NOT NULL` around `rows`: PostgreSQL flattens the subquery and then
    computes ST_AsMVTGeom twice per row, for the filter and again for the aggregate (a z13
    buildings tile: 118 ms instead of 80). ST_AsMVT itself skips rows whose geometry is NULL
    (collapsed at this zoom, or outside the buffer) and gives empty bytes when none is left."""
    return sql.SQL(
        "(SELECT coalesce(ST_AsMVT(t, {name}, {extent}, 'mvt_geom', 'mvt_id'), ''::bytea)"
        " FROM ({rows}) t)"
    ).format(name=sql.Literal(name), extent=sql.Literal(EXTENT), rows=rows)


def _mvt_id(value: sql.Composable) -> sql.Composable:
    """The MVT feature id of a feature whose layer id is `value`: the number itself when the
    id is a whole number (grid and community codes are), else a stable 63-bit hash of its
    text. (MVT ids are unsigned integers; clients match them for feature state. The layer's
    own id stays in the attributes.)

    "A whole number" is 1 to 18 ASCII digits, tested by ltrim of the digits and the length, not
    a regular expression: the same answer at a quarter of the cost (9,000 building codes of a
    z13 tile: 1.5 ms instead of 5.5 ms of the backend's CPU)."""
    return sql.SQL(
        "CASE WHEN length({v}::text) BETWEEN 1 AND 18 AND ltrim({v}::text, '0123456789') = ''"
        " THEN {v}::text::int8"
        " ELSE hashtextextended({v}::text, 0) & 9223372036854775807 END AS mvt_id"
    ).format(v=value)


def _mvt_geom(shape: sql.Composable) -> sql.Composable:
    """A Web Mercator shape in tile coordinates, clipped to the tile and its buffer."""
    return sql.SQL("ST_AsMVTGeom({}, {}, {}, {}, true) AS mvt_geom").format(
        shape, _ENVELOPE, sql.Literal(EXTENT), sql.Literal(BUFFER)
    )


# Column types whose MVT value PostgreSQL would write in its own text form
# ("2026-12-02 01:01:29.026209+00"): written as ISO 8601 instead, as in the GeoJSON.
_TEMPORAL = frozenset({"timestamptz", "timestamp", "date"})


def _tile_value(field: str, column: Column | None) -> sql.Composable:
    value = sql.SQL("s.") + sql.Identifier(field)
    if column is not None and column.pg_type in _TEMPORAL:
        return sql.SQL("to_json({}) #>> '{{}}' AS {}").format(value, sql.Identifier(field))
    return value


def _tile_part(layer: Layer, z: int, columns: Mapping[str, Column]) -> sql.Composable:
    """One layer of a tile: its features in the tile (plus buffer), simplified for zoom `z`,
    as an MVT layer named after the layer id (empty bytes when none).

    Rows are found through the index of the layer's geometry, with the tile's square taken to
    WGS-84. A layer with a `tile_geometry` (its shapes stored in Web Mercator) draws that
    column: no ST_Transform of every row (a z12 grids tile: 11.0 ms instead of 15.1)."""
    geom = sql.SQL("s.") + sql.Identifier(layer.geometry)
    merc: sql.Composable = (
        sql.SQL("s.") + sql.Identifier(layer.tile_geometry)
        if layer.tile_geometry is not None
        else sql.SQL("ST_Transform({}, 3857)").format(geom)
    )
    tolerance = layer.simplify_at(z)
    simplified = layer.simplified_at(z)
    if simplified is not None:
        # Simplified once, when written (a z12 grids tile: 3.3 ms of CPU instead of 5.3).
        merc = sql.SQL("s.") + sql.Identifier(simplified)
    elif tolerance > 0:
        # Preserve collapsed geometries: a small building stays a speck, not a hole in the map.
        merc = sql.SQL("ST_Simplify({}, {}, true)").format(merc, sql.Literal(tolerance))
    props = sql.SQL("").join(_tile_value(f, columns.get(f)) + sql.SQL(", ") for f in layer.fields)
    rows = sql.SQL("SELECT {props}{ident}, {shape} FROM ({src}) s WHERE {geom} && {reach}").format(
        props=props,
        ident=_mvt_id(sql.SQL("s.") + sql.Identifier(layer.id_field)),
        shape=_mvt_geom(merc),
        src=sql.SQL(layer.source_sql),  # type: ignore[arg-type]
        geom=geom,
        reach=_REACH,
    )
    return _mvt(layer.id, rows)


async def tile(
    conn: AsyncConnection[Any],
    layers: list[Layer],
    t: Tile,
    columns: Mapping[str, Mapping[str, Column]] | None = None,
) -> bytes:
    """The MVT tile of table layers: one statement, one MVT layer each, in the given order.
    `columns`, by layer id: the source's column types (temporal values are written as ISO)."""
    if not layers:
        return b""
    types = columns or {}
    query = sql.SQL("SELECT ") + sql.SQL(" || ").join(
        _tile_part(layer, t.z, types.get(layer.id, {})) for layer in layers
    )
    return await _bytes(conn, query, {"z": t.z, "x": t.x, "y": t.y})


async def _bytes(conn: AsyncConnection[Any], query: sql.Composed, params: dict[str, Any]) -> bytes:
    """The one bytea a tile statement returns, read in binary (a text bytea is hex, twice as
    long, and decoded in Python)."""
    async with conn.transaction():
        # A tile is one short aggregate: starting parallel workers costs more than it saves
        # (measured: a z13 buildings tile 190 ms with a parallel plan, 145 ms without).
        await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        async with conn.cursor(binary=True) as cur:
            await cur.execute(query, params, prepare=True)
            row = await cur.fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""


# -- hexbins ---------------------------------------------------------------------------------


async def points(
    conn: AsyncConnection[Any],
    layer: Layer,
    box: tuple[float, float, float, float] | None,
) -> tuple[list[float], list[float], list[float]]:
    """Longitudes, latitudes and weights (1 without a weight column) of a hexbin layer's
    points, within `box` when given."""
    assert layer.hexbin is not None
    weight = (
        sql.SQL("s.{}::float8").format(sql.Identifier(layer.hexbin.weight))
        if layer.hexbin.weight
        else sql.SQL("1.0::float8")
    )
    params: dict[str, Any] = {}
    where = _where(layer, Filters(boxes=(box,) if box else ()), params)
    g = sql.Identifier(layer.geometry)
    query = sql.SQL(
        "SELECT coalesce(array_agg(ST_X(p)), '{{}}'), coalesce(array_agg(ST_Y(p)), '{{}}'), "
        "coalesce(array_agg(w), '{{}}') FROM ("
        " SELECT ST_PointOnSurface(s.{g}) AS p, {weight} AS w FROM ({src}) s {where}) q "
        "WHERE NOT ST_IsEmpty(p)"
    ).format(g=g, weight=weight, src=sql.SQL(layer.source_sql), where=where)  # type: ignore[arg-type]
    async with conn.cursor() as cur:
        await cur.execute(query, params, prepare=True)
        row = await cur.fetchone()
    assert row is not None
    return list(row[0]), list(row[1]), [float(w or 0) for w in row[2]]


async def hexbin_tile(
    conn: AsyncConnection[Any],
    layer: Layer,
    t: Tile,
    cells: list[str],
    counts: list[int],
    weights: list[float],
    rings: list[str],
) -> bytes:
    """The MVT layer of hexagons given as WKT polygons with their cell, count and weight."""
    assert layer.hexbin is not None
    weight = (
        sql.SQL(", u.weight AS {}").format(sql.Identifier(layer.hexbin.weight))
        if layer.hexbin.weight
        else sql.SQL("")
    )
    rows = sql.SQL(
        "SELECT u.cell, u.count{weight}, ('x' || lpad(u.cell, 16, '0'))::bit(64)::int8 AS mvt_id,"
        " {geom}"
        " FROM unnest(%(cells)s::text[], %(counts)s::int8[], %(weights)s::float8[],"
        " %(wkts)s::text[]) AS u(cell, count, weight, wkt)"
    ).format(
        weight=weight,
        geom=_mvt_geom(sql.SQL("ST_Transform(ST_GeomFromText(u.wkt, 4326), 3857)")),
    )
    query = sql.SQL("SELECT ") + _mvt(layer.id, rows)
    params = {
        "z": t.z,
        "x": t.x,
        "y": t.y,
        "cells": cells,
        "counts": counts,
        "weights": weights,
        "wkts": rings,
    }
    return await _bytes(conn, query, params)
