"""OGC API Features Part 1 (core + GeoJSON) and TileJSON 3.0 documents, and the parsing of
items query parameters (pure: strings in, values or a 400 naming the bad value out)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from geo_service.errors import BadRequest
from geo_service.layers.catalogue import Layer
from geo_service.layers.store import Column, Filters

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
]
GEOJSON = "application/geo+json"
JSON = "application/json"
_KNOWN = {"limit", "offset", "bbox", "bbox-crs", "f"}
_FORMATS = {"json", "geojson"}


@dataclass(frozen=True)
class ItemsQuery:
    """Validated items parameters."""

    limit: int
    offset: int
    filters: Filters
    resolution: int | None = None
    as_of: str | None = None  # as given: the service reads it in the city's time zone


def parse_items_query(
    params: Mapping[str, str],
    layer: Layer,
    columns: Mapping[str, Column],
    default_limit: int,
    max_limit: int,
) -> ItemsQuery:
    """Parse `limit`, `offset`, `bbox` and property filters; 400 for anything else."""
    known = set(_KNOWN)
    if layer.hexbin is not None:
        known.add("resolution")
    else:
        known.update(layer.fields)
    if layer.history_table is not None:
        known.add("as_of")
    unknown = sorted(set(params) - known)
    if unknown:
        allowed = ", ".join(sorted(known))
        raise BadRequest(f"unknown query parameter {unknown[0]!r}; this collection takes {allowed}")
    fmt = params.get("f")
    if fmt is not None and fmt not in _FORMATS:
        raise BadRequest(f"f={fmt!r} is not offered; use f=json (GeoJSON)")
    limit = _integer(params, "limit", default_limit)
    if limit < 1:
        raise BadRequest(f"limit {limit} must be at least 1")
    if limit > max_limit:
        raise BadRequest(f"limit {limit} is above the largest page of {max_limit}")
    offset = _integer(params, "offset", 0)
    if not 0 <= offset <= MAX_OFFSET:
        raise BadRequest(f"offset {offset} is outside 0..{MAX_OFFSET}")
    crs = params.get("bbox-crs")
    if crs is not None and crs != CRS84:
        raise BadRequest(f"bbox-crs {crs!r} is not supported; give the bbox in {CRS84}")
    boxes = parse_bbox(params["bbox"]) if "bbox" in params else ()
    equal = []
    for name in (f for f in layer.fields if f in params):
        column = columns[name]
        equal.append((name, column.pg_type, _typed(name, params[name], column)))
    resolution = None
    if "resolution" in params:
        resolution = _integer(params, "resolution", 0)
        if not 0 <= resolution <= 15:
            raise BadRequest(f"resolution {resolution} is outside the H3 resolutions 0..15")
    return ItemsQuery(limit, offset, Filters(boxes, tuple(equal)), resolution, params.get("as_of"))


# Rows to skip: far beyond any table here, inside PostgreSQL's bigint.
MAX_OFFSET = 1_000_000_000


def _integer(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None


def _typed(name: str, raw: str, column: Column) -> Any:
    kind = column.json_type
    try:
        if kind == "integer":
            whole = int(raw)
            if not -(2**63) <= whole < 2**63:  # PostgreSQL's widest integer
                raise BadRequest(f"{name}={raw!r} is out of range for an integer")
            return whole
        if kind == "number":
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
    except ValueError:
        raise BadRequest(f"{name}={raw!r} is not a valid {kind}") from None
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise BadRequest(f"{name}={raw!r} is not a boolean (true or false)")
        return raw.lower() == "true"
    return raw


def parse_bbox(raw: str) -> tuple[tuple[float, float, float, float], ...]:
    """One box, or two when it crosses the antimeridian (west > east); 400 naming the value."""
    parts = raw.split(",")
    if len(parts) not in (4, 6):
        raise BadRequest(f"bbox {raw!r} must be 4 numbers: west,south,east,north")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise BadRequest(f"bbox {raw!r} must be 4 numbers: west,south,east,north") from None
    if len(values) == 6:  # west,south,min-z,east,north,max-z: heights are ignored
        values = [values[0], values[1], values[3], values[4]]
    west, south, east, north = values
    if not all(math.isfinite(v) for v in values):
        raise BadRequest(f"bbox {raw!r} holds a value that is not a finite number")
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise BadRequest(f"bbox {raw!r}: longitudes must lie within -180..180")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise BadRequest(f"bbox {raw!r}: latitudes must lie within -90..90")
    if south > north:
        raise BadRequest(f"bbox {raw!r}: south {south} is above north {north}")
    if west > east:
        return ((west, south, 180.0, north), (-180.0, south, east, north))
    return ((west, south, east, north),)


# -- documents -------------------------------------------------------------------------------


def link(href: str, rel: str, type_: str = JSON, title: str | None = None) -> dict[str, str]:
    """A link object."""
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def landing(base: str, title: str) -> dict[str, Any]:
    """The landing page: where the API definition, conformance and collections are."""
    return {
        "title": title,
        "description": "Map layers of geo-service: OGC API - Features (Part 1, core + GeoJSON)",
        "links": [
            link(f"{base}/", "self", title="this document"),
            link(f"{base}/api", "service-desc", "application/vnd.oai.openapi+json;version=3.0"),
            link(f"{base}/conformance", "conformance", title="conformance classes"),
            link(f"{base}/collections", "data", title="collections"),
        ],
    }


def conformance() -> dict[str, Any]:
    """The conformance classes implemented."""
    return {"conformsTo": CONFORMANCE}


def collection(
    base: str,
    tiles_base: str,
    layer: Layer,
    columns: Mapping[str, Column],
    bbox: list[float] | None,
) -> dict[str, Any]:
    """One collection's metadata, with the layer's style, roles and fields for map clients."""
    url = f"{base}/collections/{layer.id}"
    out: dict[str, Any] = {
        "id": layer.id,
        "title": layer.title.zh,
        "description": layer.description.zh if layer.description else layer.title.en,
        "itemType": "feature",
        "crs": [CRS84],
        "links": [
            link(url, "self", title=layer.title.en),
            link(f"{url}/items", "items", GEOJSON, title="items (GeoJSON)"),
            link(f"{tiles_base}/{layer.id}.json", "describedby", title="TileJSON (vector tiles)"),
            link(f"{url}/queryables", QUERYABLES_REL, SCHEMA_JSON, title="queryables"),
        ],
        "titles": layer.title.model_dump(),
        "geometryType": layer.geometry_type if layer.hexbin is None else "Polygon",
        "minzoom": layer.minzoom,
        "maxzoom": layer.maxzoom,
        "roles": list(layer.roles),
        "style": layer.style.model_dump(exclude_none=True),
        "properties": field_schema(layer, columns),
    }
    if bbox is not None:
        out["extent"] = {"spatial": {"bbox": [bbox], "crs": CRS84}}
    return out


def field_schema(layer: Layer, columns: Mapping[str, Column]) -> dict[str, dict[str, Any]]:
    """Each attribute: its JSON type and bilingual title."""
    out: dict[str, dict[str, Any]] = {}
    if layer.hexbin is not None:
        out["cell"] = {"type": "string", "title": {"zh": "H3 单元", "en": "H3 cell"}}
        out["count"] = {"type": "integer", "title": {"zh": "数量", "en": "count"}}
        if layer.hexbin.weight:
            out[layer.hexbin.weight] = {"type": "number"}
        return out
    for name in layer.fields:
        entry: dict[str, Any] = {"type": columns[name].json_type}
        title = layer.field_title(name)
        if title is not None:
            entry["title"] = title.model_dump()
        out[name] = entry
    return out


QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
SCHEMA_JSON = "application/schema+json"
_TEMPORAL_FORMATS = {"timestamptz": "date-time", "timestamp": "date-time", "date": "date"}


def queryables(base: str, layer: Layer, columns: Mapping[str, Column]) -> dict[str, Any]:
    """OGC API Features Part 3 queryables: the properties `items` filters on (`field=value`),
    as a JSON Schema; hexbin layers filter on nothing but the bbox."""
    url = f"{base}/collections/{layer.id}/queryables"
    properties: dict[str, Any] = {
        "geometry": {
            "$ref": "https://geojson.org/schema/Geometry.json",
            "x-ogc-role": "primary-geometry",
        }
    }
    if layer.hexbin is None:
        for name in layer.fields:
            entry: dict[str, Any] = {"type": columns[name].json_type}
            if columns[name].pg_type in _TEMPORAL_FORMATS:
                entry["format"] = _TEMPORAL_FORMATS[columns[name].pg_type]
            title = layer.field_title(name)
            if title is not None:
                entry["title"] = title.en
                entry["description"] = title.zh
            properties[name] = entry
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url,
        "type": "object",
        "title": layer.title.en,
        "properties": properties,
        "additionalProperties": False,
    }


def page_links(
    url: str, params: Mapping[str, str], offset: int, limit: int, returned: int, matched: int
) -> list[dict[str, str]]:
    """self, next (while features remain) and prev (after the first page)."""

    def at(new_offset: int) -> str:
        query = {k: v for k, v in params.items() if k != "offset"}
        query["limit"] = str(limit)
        if new_offset:
            query["offset"] = str(new_offset)
        return f"{url}?{urlencode(query)}"

    links = [link(at(offset), "self", GEOJSON, "this page")]
    if offset + returned < matched:
        links.append(link(at(offset + returned), "next", GEOJSON, "next page"))
    if offset > 0:
        links.append(link(at(max(offset - limit, 0)), "prev", GEOJSON, "previous page"))
    collection_url = url.rsplit("/items", 1)[0]
    links.append(link(collection_url, "collection", JSON, "the collection"))
    return links


def tilejson(
    tiles_url: str,
    layers: list[Layer],
    bbox: list[float] | None,
    columns: list[Mapping[str, Column]],
) -> dict[str, Any]:
    """TileJSON 3.0.0 of one or several layers served together."""
    minzoom = min(layer.minzoom for layer in layers)
    maxzoom = max(layer.maxzoom for layer in layers)
    bounds = bbox or [-180.0, -85.0511287798066, 180.0, 85.0511287798066]
    center_zoom = max(minzoom, min(maxzoom, 14))
    out: dict[str, Any] = {
        "tilejson": "3.0.0",
        "name": ",".join(layer.id for layer in layers),
        "description": "; ".join(f"{layer.title.zh} / {layer.title.en}" for layer in layers),
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": bounds,
        "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, center_zoom],
        "vector_layers": [
            {
                "id": layer.id,
                "description": layer.title.en,
                "minzoom": layer.minzoom,
                "maxzoom": layer.maxzoom,
                "fields": {
                    name: _field_description(layer, name, entry)
                    for name, entry in field_schema(layer, cols).items()
                },
            }
            for layer, cols in zip(layers, columns, strict=True)
        ],
    }
    attributions = sorted({layer.attribution for layer in layers if layer.attribution})
    if attributions:
        out["attribution"] = "; ".join(attributions)
    return out


def _field_description(layer: Layer, name: str, entry: dict[str, Any]) -> str:
    title = entry.get("title")
    kind = {"integer": "Number", "number": "Number", "boolean": "Boolean"}.get(
        entry["type"], "String"
    )
    return f"{kind}: {title['en']} / {title['zh']}" if title else kind
