"""Vector tiles (MVT, several layers in one tile with `a,b`) and TileJSON 3.0."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from geo_service.api.auth import PrincipalDep
from geo_service.api.deps import LayersDep, ReadPoolDep, SettingsDep
from geo_service.errors import BadRequest
from geo_service.layers.catalogue import LAYER_ID_PATTERN
from geo_service.layers.service import gunzip
from geo_service.layers.tiles import etag_matches, parse_tile

router = APIRouter(prefix="/tiles", tags=["tiles"])
MVT = "application/vnd.mapbox-vector-tile"
_ID = re.compile(LAYER_ID_PATTERN)


def _layer_ids(raw: str) -> list[str]:
    ids = raw.split(",")
    for layer_id in ids:
        if not _ID.match(layer_id):
            raise BadRequest(f"{layer_id!r} is not a layer id (in {raw!r})")
    if len(set(ids)) != len(ids):
        raise BadRequest(f"a layer is asked twice in {raw!r}")
    return ids


@router.get("/{layers}/{z}/{x}/{y}.mvt", response_class=Response)
async def tile(
    request: Request,
    service: LayersDep,
    pool: ReadPoolDep,
    settings: SettingsDep,
    who: PrincipalDep,
    layers: str,
    z: str,
    x: str,
    y: str,
) -> Response:
    """One tile of one or more layers (`grids,buildings`), gzip, with ETag/304."""
    made = await service.tile(pool, _layer_ids(layers), parse_tile(z, x, y), who)
    max_age = settings.layers.tile_max_age_s
    gzipped = "gzip" in request.headers.get("accept-encoding", "")
    # A strong ETag names one sequence of bytes: the plain and the gzipped tile are two.
    etag = made.etag if gzipped else made.etag[:-1] + '-identity"'
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={max_age}" if max_age else "no-cache",
        "Vary": "Accept-Encoding",
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Response(made.gz, media_type=MVT, headers=headers)
    return Response(gunzip(made.gz), media_type=MVT, headers=headers)


@router.get("/{layers}.json")
async def tilejson(
    request: Request, service: LayersDep, pool: ReadPoolDep, who: PrincipalDep, layers: str
) -> dict[str, Any]:
    """TileJSON 3.0.0 of one or more layers. Asked with `?access_token=`, the tile URLs carry
    it too: a map library fetches them by URL, with no header to add."""
    url = str(request.base_url).rstrip("/") + f"/tiles/{layers}/{{z}}/{{x}}/{{y}}.mvt"
    token = request.query_params.get("access_token")
    if token:
        url += "?" + urlencode({"access_token": token})
    return await service.tilejson(pool, _layer_ids(layers), url, who)
