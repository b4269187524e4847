"""The layer service: the catalogue resolved against the database, GeoJSON items, MVT tiles
with their cache, TileJSON. The API's routers call these functions and render their answers."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from geo_service.auth.policy import ANONYMOUS, Principal, sees_layer
from geo_service.errors import BadRequest, InvalidInput, NotFound
from geo_service.layers import hexbin, ogc, store
from geo_service.layers.catalogue import Catalogue, Layer, load_catalogue
from geo_service.layers.store import Column
from geo_service.layers.tiles import (
    CachedTile,
    Tile,
    TileCache,
    compress,
    content_etag,
    version_etag,
)
from geo_service.packaged import layers_dir
from geo_service.settings import Settings
from geo_service.times import parse_instant

log = logging.getLogger("geo_service.layers")


@dataclass(frozen=True)
class Resolved:
    """A layer whose source exists, with its columns."""

    layer: Layer
    columns: dict[str, Column]


@dataclass(frozen=True)
class Items:
    """A page of features as a GeoJSON FeatureCollection text."""

    body: str
    matched: int
    returned: int


class LayerService:
    """The layers of one process: resolved once (lazily, on first use), then read-only."""

    def __init__(self, settings: Settings, catalogue: Catalogue) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.cache = TileCache(settings.layers.tile_cache_mb << 20)
        self._resolved: dict[str, Resolved] | None = None
        self._lock = asyncio.Lock()
        self._extents: dict[tuple[str, tuple[int, ...]], list[float] | None] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> LayerService:
        """Read the layers folder (a bad file stops the service with a message naming it)."""
        return cls(settings, load_catalogue(settings.layers.layers_dir or layers_dir()))

    # -- catalogue -------------------------------------------------------------------------

    async def layers(self, pool: AsyncConnectionPool) -> dict[str, Resolved]:
        """Layers whose source exists, in file order; those without are skipped with a warning."""
        if self._resolved is None:
            async with self._lock:
                if self._resolved is None:
                    async with pool.connection() as conn:
                        self._resolved = await self._resolve(conn)
        return self._resolved

    async def _resolve(self, conn: AsyncConnection[Any]) -> dict[str, Resolved]:
        resolved = {}
        for layer in self.catalogue:
            try:
                columns = await store.describe(conn, layer)
            except store.SourceMissing as exc:
                log.warning("layer %r (%s) skipped: %s", layer.id, layer.source_file, exc)
                continue
            resolved[layer.id] = Resolved(layer, columns)
        log.info("map layers: %s", ", ".join(resolved) or "none")
        return resolved

    async def visible(
        self, pool: AsyncConnectionPool, viewer: Principal = ANONYMOUS
    ) -> dict[str, Resolved]:
        """The layers `viewer` may see (those whose `roles` admit them), in file order."""
        return {
            layer_id: r
            for layer_id, r in (await self.layers(pool)).items()
            if sees_layer(viewer, r.layer.roles)
        }

    async def layer(
        self, pool: AsyncConnectionPool, layer_id: str, viewer: Principal = ANONYMOUS
    ) -> Resolved:
        """One layer by id (or alias), when `viewer` may see it; 404 naming it (a hidden layer
        is answered as an unknown one)."""
        found = (await self.layers(pool)).get(self.catalogue.canonical(layer_id))
        if found is None or not sees_layer(viewer, found.layer.roles):
            raise NotFound(f"no layer {layer_id!r}; see /ogc/collections for the layers")
        return found

    async def extent(self, conn: AsyncConnection[Any], layer: Layer) -> list[float] | None:
        """The layer's bbox, cached per data version (live layers: computed every time)."""
        if layer.live:
            return await store.extent(conn, layer)
        key = (layer.id, await store.versions(conn, layer.versions))
        if key not in self._extents:
            self._extents[key] = await store.extent(conn, layer)
        return self._extents[key]

    # -- features --------------------------------------------------------------------------

    async def collections(
        self, pool: AsyncConnectionPool, base: str, tiles: str, viewer: Principal = ANONYMOUS
    ) -> dict[str, Any]:
        """The collections document (of the layers `viewer` may see)."""
        resolved = await self.visible(pool, viewer)
        async with pool.connection() as conn:
            docs = [
                ogc.collection(base, tiles, r.layer, r.columns, await self.extent(conn, r.layer))
                for r in resolved.values()
            ]
        return {
            "links": [ogc.link(f"{base}/collections", "self", title="collections")],
            "collections": docs,
        }

    async def queryables(
        self, pool: AsyncConnectionPool, layer_id: str, base: str, viewer: Principal = ANONYMOUS
    ) -> dict[str, Any]:
        """What `items` of a layer filters on, as a JSON Schema (404 naming an unknown one)."""
        r = await self.layer(pool, layer_id, viewer)
        return ogc.queryables(base, r.layer, r.columns)

    async def collection(
        self,
        pool: AsyncConnectionPool,
        layer_id: str,
        base: str,
        tiles: str,
        viewer: Principal = ANONYMOUS,
    ) -> dict[str, Any]:
        """One collection document."""
        r = await self.layer(pool, layer_id, viewer)
        async with pool.connection() as conn:
            bbox = await self.extent(conn, r.layer)
        return ogc.collection(base, tiles, r.layer, r.columns, bbox)

    async def items(
        self,
        pool: AsyncConnectionPool,
        layer_id: str,
        params: Mapping[str, str],
        url: str,
        viewer: Principal = ANONYMOUS,
    ) -> Items:
        """A page of features; `url` is the items URL the paging links are built on."""
        r = await self.layer(pool, layer_id, viewer)
        query = ogc.parse_items_query(
            params,
            r.layer,
            r.columns,
            self.settings.layers.features_default_limit,
            self.settings.layers.features_max_limit,
        )
        async with pool.connection() as conn:
            if r.layer.hexbin is not None:
                matched, returned, features = await self._hexbin_page(
                    conn, r.layer, query, self._finest(viewer)
                )
            elif query.as_of is not None:
                then = self._as_of(r.layer, query.as_of)
                matched, returned, features = await store.feature_page(
                    conn, then[0], query.filters, query.limit, query.offset, then[1]
                )
            else:
                matched, returned, features = await store.feature_page(
                    conn, r.layer, query.filters, query.limit, query.offset
                )
        links = ogc.page_links(url, params, query.offset, query.limit, returned, matched)
        # The features arrive as GeoJSON text from PostgreSQL: spliced, never parsed again.
        body = (
            f'{{"type":"FeatureCollection","numberMatched":{matched},'
            f'"numberReturned":{returned},"links":{json.dumps(links, ensure_ascii=False)},'
            f'"features":[{features}]}}'
        )
        return Items(body, matched, returned)

    def _as_of(self, layer: Layer, text: str) -> tuple[Layer, dict[str, Any]]:
        """The layer reading its history table at the moment `text` names (OGC: 400 when
        the moment is unusable)."""
        try:
            at = parse_instant("as_of", text, ZoneInfo(self.settings.incidents.timezone))
        except InvalidInput as exc:
            raise BadRequest(exc.message) from None
        if at is None:
            raise BadRequest("as_of is empty: give an ISO 8601 moment")
        return layer.model_copy(update={"table": None, "sql": layer.history_sql}), {"as_of": at}

    def _finest(self, viewer: Principal) -> int:
        """The finest hexbin resolution `viewer` may see: capped for anonymous callers, so
        that aggregates of reports and households never point at one door."""
        return self.settings.layers.public_hexbin_max_res if viewer is ANONYMOUS else 15

    async def _hexbin_page(
        self, conn: AsyncConnection[Any], layer: Layer, query: ogc.ItemsQuery, finest: int
    ) -> tuple[int, int, str]:
        assert layer.hexbin is not None
        resolution = min(
            finest,
            query.resolution if query.resolution is not None else layer.hexbin.default_resolution,
        )
        boxes = query.filters.boxes
        hexagons: dict[str, hexbin.Hexagon] = {}
        for box in boxes or (None,):
            grown = hexbin.reach(box, resolution) if box else None
            lons, lats, weights = await store.points(conn, layer, grown)
            found = hexbin.aggregate(lons, lats, weights, resolution)
            hexagons.update({h.cell: h for h in (hexbin.touching(found, box) if box else found)})
        ordered = [hexagons[c] for c in sorted(hexagons)]
        page = ordered[query.offset : query.offset + query.limit]
        return len(ordered), len(page), ",".join(_hexagon_feature(layer, h) for h in page)

    async def item(
        self, pool: AsyncConnectionPool, layer_id: str, fid: str, viewer: Principal = ANONYMOUS
    ) -> str:
        """One feature as GeoJSON text; 404 naming the id."""
        r = await self.layer(pool, layer_id, viewer)
        missing = NotFound(f"no feature {fid!r} in collection {layer_id!r}")
        if r.layer.hexbin is not None:
            return await self._hexbin_item(pool, r.layer, fid, missing, self._finest(viewer))
        id_column = r.columns[r.layer.id_field]
        value: Any = fid
        if id_column.json_type == "integer":
            if not fid.lstrip("-").isdigit():
                raise missing
            value = int(fid)
        elif id_column.json_type != "string":
            raise missing
        async with pool.connection() as conn:
            found = await store.feature_one(conn, r.layer, id_column.pg_type, value)
        if found is None:
            raise missing
        return found

    async def _hexbin_item(
        self, pool: AsyncConnectionPool, layer: Layer, fid: str, missing: NotFound, finest: int
    ) -> str:
        import h3

        if not h3.is_valid_cell(fid) or h3.get_resolution(fid) > finest:
            raise missing
        resolution = h3.get_resolution(fid)
        async with pool.connection() as conn:
            box = hexbin.Hexagon(fid, 0, 0).bounds()
            lons, lats, weights = await store.points(conn, layer, hexbin.reach(box, resolution))
        for found in hexbin.aggregate(lons, lats, weights, resolution):
            if found.cell == fid:
                return _hexagon_feature(layer, found)
        raise missing

    # -- tiles -----------------------------------------------------------------------------

    async def tile(
        self,
        pool: AsyncConnectionPool,
        layer_ids: list[str],
        t: Tile,
        viewer: Principal = ANONYMOUS,
    ) -> CachedTile:
        """The tile of the layers (in the order asked), from the cache when the data versions
        of every layer are those it was made with; live layers are made on every request."""
        resolved = [await self.layer(pool, layer_id, viewer) for layer_id in layer_ids]
        layers = [_as_asked(r.layer, name) for r, name in zip(resolved, layer_ids, strict=True)]
        columns = {name: r.columns for r, name in zip(resolved, layer_ids, strict=True)}
        shown = [layer for layer in layers if layer.minzoom <= t.z <= layer.maxzoom]
        live = any(layer.live for layer in shown)
        kinds = sorted({kind for layer in shown for kind in layer.versions})
        finest = self._finest(viewer)
        async with pool.connection() as conn:
            key: tuple[object, ...] | None = None
            if not live:
                versions = await store.versions(conn, kinds) if kinds else ()
                key = (tuple(layer_ids), t.z, t.x, t.y, versions, finest)
                cached = self.cache.get(key)
                if cached is not None:
                    return cached
            data = await self._make(conn, shown, t, finest, columns)
        if key is None:
            return CachedTile(compress(data), content_etag(data), not data)
        made = CachedTile(compress(data), version_etag(self.catalogue.fingerprint, *key), not data)
        self.cache.put(key, made)
        return made

    async def _make(
        self,
        conn: AsyncConnection[Any],
        layers: list[Layer],
        t: Tile,
        finest: int,
        columns: Mapping[str, Mapping[str, store.Column]],
    ) -> bytes:
        # Table layers go in one statement; hexbin layers need Python between two queries.
        # MVT layers concatenate: a tile is a sequence of layer messages.
        parts: list[bytes] = []
        batch: list[Layer] = []
        for layer in layers:
            if layer.hexbin is None:
                batch.append(layer)
                continue
            if batch:
                parts.append(await store.tile(conn, batch, t, columns))
                batch = []
            parts.append(await self._hexbin_tile(conn, layer, t, finest))
        if batch:
            parts.append(await store.tile(conn, batch, t, columns))
        return b"".join(parts)

    async def _hexbin_tile(
        self, conn: AsyncConnection[Any], layer: Layer, t: Tile, finest: int
    ) -> bytes:
        resolution = min(finest, layer.resolution_at(t.z))
        box = t.lonlat_bounds()
        lons, lats, weights = await store.points(conn, layer, hexbin.reach(box, resolution))
        found = hexbin.touching(hexbin.aggregate(lons, lats, weights, resolution), box)
        if not found:
            return b""
        return await store.hexbin_tile(
            conn,
            layer,
            t,
            [h.cell for h in found],
            [h.count for h in found],
            [h.weight for h in found],
            [h.wkt() for h in found],
        )

    async def tilejson(
        self,
        pool: AsyncConnectionPool,
        layer_ids: list[str],
        tiles_url: str,
        viewer: Principal = ANONYMOUS,
    ) -> dict[str, Any]:
        """TileJSON 3.0 of the layers; bounds cover the data of all of them."""
        resolved = [await self.layer(pool, layer_id, viewer) for layer_id in layer_ids]
        boxes = []
        async with pool.connection() as conn:
            for r in resolved:
                bbox = await self.extent(conn, r.layer)
                if bbox is not None:
                    boxes.append(bbox)
        union = (
            [
                min(b[0] for b in boxes),
                min(b[1] for b in boxes),
                max(b[2] for b in boxes),
                max(b[3] for b in boxes),
            ]
            if boxes
            else None
        )
        named = [_as_asked(r.layer, name) for r, name in zip(resolved, layer_ids, strict=True)]
        return ogc.tilejson(tiles_url, named, union, [r.columns for r in resolved])


def _as_asked(layer: Layer, name: str) -> Layer:
    """The layer under the name a tile request gave (its id or an alias): a tile asked by an
    alias holds an MVT layer of that name, which is what a map style written for it reads."""
    return layer if layer.id == name else layer.model_copy(update={"id": name})


def _hexagon_feature(layer: Layer, h: hexbin.Hexagon) -> str:
    assert layer.hexbin is not None
    props: dict[str, Any] = {"cell": h.cell, "count": h.count}
    if layer.hexbin.weight:
        props[layer.hexbin.weight] = h.weight
    return json.dumps(
        {
            "type": "Feature",
            "id": h.cell,
            "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in h.ring()]]},
            "properties": props,
        },
        ensure_ascii=False,
    )


def gunzip(data: bytes) -> bytes:
    """The raw tile of a gzipped one (for the rare client that does not accept gzip)."""
    return gzip.decompress(data) if data else data
