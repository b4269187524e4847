"""Observability: request ids, one JSON log line per request, Prometheus metrics.

Every request gets an id (a sane incoming `X-Request-ID`, else a new one), echoed in the
response and attached to every log record written while it is served. The request log names
the route template (`/api/v1/incidents/{ref}`), never the query string or a body: those can
carry residents' addresses, names and phones, and tokens (`access_token=`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Latency buckets (seconds): a locate is ~1 ms, a cold tile ~100 ms, a coverage run seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
log = logging.getLogger("geo_service.access")


class Metrics:
    """The app's own registry (one per app, so several apps in one process never clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "geo_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "geo_http_request_duration_seconds",
            "Time to the response's last byte, by method and route template",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )

        # The labelled series by (method, route, status): prometheus_client's `labels` takes a
        # lock and checks its arguments on every call. Routes are templates and "unmatched",
        # so the keys are bounded as the series are.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its time."""
        series = self._series.get((method, route, status))
        if series is None:
            series = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._series[(method, route, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def watch_pools(self, state: Any) -> None:
        """Report the database pools of the app state at every scrape."""
        self.registry.register(_PoolCollector(state))


class _PoolCollector(Collector):
    """The SQLAlchemy pool (request threads), the asyncio read pool and the standbys' state,
    read at scrape time."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Gauges of both pools (nothing before the app has started)."""
        engine = getattr(self.state, "engine", None)
        if engine is not None:
            pool = engine.pool
            for name, value, text in (
                ("size", pool.size(), "configured connections"),
                ("checked_out", pool.checkedout(), "connections in use"),
                ("idle", pool.checkedin(), "idle connections"),
                ("overflow", pool.overflow(), "connections beyond the configured size"),
            ):
                yield GaugeMetricFamily(f"geo_db_pool_{name}", f"SQLAlchemy pool: {text}", value)
        read_pool = getattr(self.state, "read_pool", None)
        if read_pool is not None:
            stats = read_pool.get_stats()
            for key, text in (
                ("pool_size", "connections open"),
                ("pool_available", "idle connections"),
                ("requests_waiting", "requests waiting for a connection"),
            ):
                yield GaugeMetricFamily(
                    f"geo_db_read_pool_{key}", f"asyncio read pool: {text}", stats.get(key, 0)
                )
        reads = getattr(self.state, "reads", None)
        states = reads.states() if reads is not None else None
        if states:  # GEO_DATABASE_READ_URLS
            reading = GaugeMetricFamily(
                "geo_db_standby_reading", "1 while the standby serves reads", labels=["server"]
            )
            lag = GaugeMetricFamily(
                "geo_db_standby_lag_seconds",
                "Replay lag of the standby at its last look (absent: not known)",
                labels=["server"],
            )
            for standby in states:
                reading.add_metric([standby["server"]], 1 if standby["reading"] else 0)
                if standby["lag_s"] is not None:
                    lag.add_metric([standby["server"]], standby["lag_s"])
            yield reading
            yield lag


class Observe:
    """Pure ASGI middleware: request id, request log line, request metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, timing it and tagging it with its id."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # 32 random hex digits, as uuid4().hex, at a fifth of its cost.
        request_id = incoming if _SANE_ID.match(incoming) else os.urandom(16).hex()
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, tagged_send)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_label(scope, status)
            method = scope["method"]
            self.metrics.observe(method, route, status, elapsed)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %s",
                    method,
                    route,
                    status,
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "route": route,
                        "status": status,
                        "ms": elapsed * 1000,
                    },
                )
            REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and the extras
    the request log adds (method, route, status, ms)."""

    _EXTRAS = ("method", "route", "status", "ms")

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key in self._EXTRAS:
            if hasattr(record, key):
                value = getattr(record, key)
                entry[key] = round(value, 2) if key == "ms" else value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _stamp_request_id(record: logging.LogRecord) -> bool:
    """Tag a record with the id of the request being served when it was written."""
    if getattr(record, "request_id", None) is None:
        record.request_id = REQUEST_ID.get()
    return True


def configure_logging(json_lines: bool, level: str) -> None:
    """Route the service's and uvicorn's logs to stderr, as JSON lines or plain text.
    uvicorn's access log is off: the request log above replaces it (it would print query
    strings, which may hold addresses and tokens)."""
    handler = logging.StreamHandler()
    handler.addFilter(_stamp_request_id)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def _route_label(scope: Scope, status: int) -> str:
    """The route template of a request, as metrics and the request log name it.

    FastAPI's routes put themselves in the scope; Starlette's plain routes (/openapi.json) and
    mounts (static files) only set their endpoint: those are labelled with their path unless
    the answer is a 404, so that made-up paths never grow the metrics without bound.
    """
    route = getattr(scope.get("route"), "path", None)
    if route:
        return route
    if scope.get("endpoint") is not None and status != 404:
        return str(scope["path"])
    return "unmatched"
