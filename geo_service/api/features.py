"""OGC API - Features (Part 1: core + GeoJSON) over the layer catalogue, mounted at /ogc.

Under /ogc rather than at the root (as tipg does): the service's root belongs to its own API
and the web map, and an OGC client (QGIS, GDAL, OpenLayers) needs only the landing URL.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from geo_service.api.auth import PrincipalDep
from geo_service.api.deps import LayersDep, ReadPoolDep
from geo_service.layers import ogc

PREFIX = "/ogc"
router = APIRouter(prefix=PREFIX, tags=["ogc-features"])


def _bases(request: Request) -> tuple[str, str]:
    root = str(request.base_url).rstrip("/")
    return root + PREFIX, root + "/tiles"


@router.get("")
@router.get("/")
async def landing(request: Request) -> dict[str, Any]:
    """Landing page: links to the API definition, conformance classes and collections."""
    base, _ = _bases(request)
    doc = ogc.landing(base, request.app.title)
    doc["links"][1]["href"] = str(request.base_url).rstrip("/") + request.app.openapi_url
    doc["links"][1]["type"] = "application/vnd.oai.openapi+json;version=3.1"
    return doc


@router.get("/conformance")
async def conformance() -> dict[str, Any]:
    """The conformance classes this API implements."""
    return ogc.conformance()


@router.get("/collections")
async def collections(
    request: Request, layers: LayersDep, pool: ReadPoolDep, who: PrincipalDep
) -> dict[str, Any]:
    """Every layer the caller may see whose data exists, with extent, fields, style, roles."""
    base, tiles = _bases(request)
    return await layers.collections(pool, base, tiles, who)


@router.get("/collections/{collection_id}")
async def collection(
    request: Request, layers: LayersDep, pool: ReadPoolDep, who: PrincipalDep, collection_id: str
) -> dict[str, Any]:
    """One layer's metadata; 404 for an unknown one."""
    base, tiles = _bases(request)
    return await layers.collection(pool, collection_id, base, tiles, who)


@router.get(
    "/collections/{collection_id}/queryables",
    response_class=JSONResponse,
    responses={
        200: {
            "description": "a JSON Schema of the queryable properties",
            "content": {ogc.SCHEMA_JSON: {"schema": {"type": "object"}}},
        }
    },
)
async def queryables(
    request: Request, layers: LayersDep, pool: ReadPoolDep, who: PrincipalDep, collection_id: str
) -> JSONResponse:
    """The properties `items` filters on, as a JSON Schema (OGC API Features Part 3)."""
    base, _ = _bases(request)
    doc = await layers.queryables(pool, collection_id, base, who)
    return JSONResponse(doc, media_type=ogc.SCHEMA_JSON)


@router.get("/collections/{collection_id}/items", response_class=Response)
async def items(
    request: Request, layers: LayersDep, pool: ReadPoolDep, who: PrincipalDep, collection_id: str
) -> Response:
    """A page of features (GeoJSON): bbox, limit, offset and `field=value` filters; next/prev
    links to page through; 400 naming any bad or unknown parameter."""
    url = str(request.url).split("?", 1)[0]
    params = {k: v for k, v in request.query_params.items() if k != "access_token"}
    page = await layers.items(pool, collection_id, params, url, who)
    return Response(page.body, media_type=ogc.GEOJSON)


@router.get("/collections/{collection_id}/items/{fid}", response_class=Response)
async def item(
    request: Request,
    layers: LayersDep,
    pool: ReadPoolDep,
    who: PrincipalDep,
    collection_id: str,
    fid: str,
) -> Response:
    """One feature (GeoJSON); 404 naming an unknown id."""
    feature = await layers.item(pool, collection_id, fid, who)
    url = str(request.url).split("?", 1)[0]
    collection_url = url.rsplit("/items/", 1)[0]
    links = (
        f'[{{"href":"{url}","rel":"self","type":"{ogc.GEOJSON}"}},'
        f'{{"href":"{collection_url}","rel":"collection","type":"{ogc.JSON}"}}]'
    )
    return Response(feature[:-1] + ',"links":' + links + "}", media_type=ogc.GEOJSON)
