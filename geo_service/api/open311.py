"""Open311 GeoReport v2 routes under /open311/v2 (each resource as .json or .xml).

Errors here follow the Open311 format (a list of {code, description}, or <errors> in XML)
rather than the service's {"error", "message"}: the route class below catches domain errors
of these routes only.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from geo_service.api.auth import PrincipalDep, principal_of_token, require
from geo_service.api.deps import EngineDep, SettingsDep
from geo_service.errors import Forbidden, GeoServiceError, NotFound, Unauthorized, Unavailable
from geo_service.incidents import georeport, open311

XML_TYPE = "text/xml; charset=utf-8"


def _status(exc: GeoServiceError) -> int:
    """Open311 statuses: 404 unknown, 403 bad key, 503 outage, 400 for everything else."""
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Unavailable):
        return 503
    return 400


def _error(request: Request, status: int, message: str) -> Response:
    body = open311.errors(status, message)
    if request.url.path.endswith(".xml"):
        return Response(open311.to_xml("errors", "error", body), status, media_type=XML_TYPE)
    return JSONResponse(body, status)


class Open311Route(APIRoute):
    """A route that answers errors in the Open311 format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so domain and validation errors become Open311 errors."""
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except GeoServiceError as exc:
                return _error(request, _status(exc), exc.message)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                return _error(request, 400, problems)

        return guarded


async def _api_key(
    request: Request,
    api_key: Annotated[
        str | None,
        Query(
            description="a token of this service, as Open311 clients pass it (same as "
            "`Authorization: Bearer`); on POST it is a form field"
        ),
    ] = None,
) -> None:
    """GeoReport v2 clients send their key as `api_key`: on a GET it authenticates the caller
    exactly like a bearer token (an Authorization header, when given, wins)."""
    if api_key and request.method in ("GET", "HEAD") and "authorization" not in request.headers:
        try:
            request.state.principal = await principal_of_token(request, api_key)
        except Unauthorized:
            raise Forbidden("api_key is not valid") from None  # as on POST


router = APIRouter(
    prefix="/open311/v2",
    tags=["open311"],
    route_class=Open311Route,
    dependencies=[Depends(_api_key)],  # before each route's `require`: it sets the caller
)


def _render(
    fmt: str,
    data: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    root: str,
    item: str,
    status: int = 200,
) -> Response:
    if open311.output_format(fmt) == "xml":
        return Response(open311.to_xml(root, item, data), status, media_type=XML_TYPE)
    return JSONResponse(data, status)


@router.get("/services.{fmt}", dependencies=[require("open311.read")])
def services(settings: SettingsDep, fmt: str) -> Response:
    """The service list: one realtime service per incident category."""
    return _render(fmt, georeport.open311_services(settings), "services", "service")


@router.get("/services/{code}.{fmt}", dependencies=[require("open311.read")])
def service_definition(settings: SettingsDep, code: str, fmt: str) -> Response:
    """A service definition (categories have no attributes); 404 for an unknown code."""
    return _render(fmt, georeport.open311_service(settings, code), "service_definition", "")


@router.post("/requests.{fmt}", status_code=201)
async def post_request(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    fmt: str,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    """Submit a request (form-encoded: api_key, service_code, lat+long or address_string or
    address_id, description, ...): 201 with [{service_request_id, service_notice}]."""
    open311.output_format(fmt)  # an unknown format is refused before anything is stored
    body = await request.body()
    receipt = await run_in_threadpool(
        georeport.open311_submit,
        engine,
        settings,
        body,
        request.headers.get("content-type"),
        idempotency_key,
    )
    return _render(fmt, receipt, "service_requests", "request", status=201)


@router.get("/requests.{fmt}", dependencies=[require("open311.read")])
def get_requests(
    engine: EngineDep,
    settings: SettingsDep,
    who: PrincipalDep,
    fmt: str,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
) -> Response:
    """Requests by ids, or by service_code, status and date range (default: last 90 days)."""
    params = {
        "service_request_id": service_request_id,
        "service_code": service_code,
        "start_date": start_date,
        "end_date": end_date,
        "status": status,
    }
    found = georeport.open311_requests(engine, settings, params, viewer=who)
    return _render(fmt, found, "service_requests", "request")


@router.get("/requests/{request_id}.{fmt}", dependencies=[require("open311.read")])
def get_request(
    engine: EngineDep, settings: SettingsDep, who: PrincipalDep, request_id: str, fmt: str
) -> Response:
    """One request (as a list of one); 404 for an unknown id."""
    found = georeport.open311_request(engine, settings, request_id, viewer=who)
    return _render(fmt, found, "service_requests", "request")
