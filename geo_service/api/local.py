"""The API inside this process, without a socket: for CLI commands that read it as a client
does (the static map export), when no server is running.

Requests go through the whole ASGI app (routers, error mapping, middleware). No port is
opened, so the app runs as on a trusted network (a request without a token acts as admin).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI
from sqlalchemy import Engine

from geo_service.api.errors import error_of_answer
from geo_service.settings import Settings


async def _get(app: FastAPI, path: str) -> tuple[int, bytes]:
    """One GET through the ASGI app: status and body."""
    url = urlsplit(path)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": url.path,
        "raw_path": url.path.encode(),
        "root_path": "",
        "query_string": url.query.encode(),
        "headers": [(b"host", b"localhost"), (b"accept", b"application/json")],
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 0),
    }
    status = 500
    chunks: list[bytes] = []
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


@contextmanager
def local_fetch(settings: Settings, engine: Engine) -> Iterator[Callable[[str], Any]]:
    """A function GETting API paths from an app in this process (JSON answers)."""
    from geo_service.api.app import create_app

    app = create_app(settings.updated(auth={"required": False}), engine=engine)
    failed: BaseException | None = None
    # The app shuts down normally (its pools closed) even when the caller fails: an exception
    # thrown into the lifespan would leave the pool's tasks running, and the portal waiting
    # for them forever.
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        try:
            yield _fetcher(portal, app)
        except BaseException as exc:
            failed = exc
    if failed is not None:
        raise failed


def _fetcher(portal: Any, app: FastAPI) -> Callable[[str], Any]:
    """GET `path` through the app in the portal's event loop; errors by status."""

    def fetch(path: str) -> Any:
        status, body = portal.call(_get, app, path)
        if status == 200:
            return json.loads(body)
        raise error_of_answer(status, path, body)

    return fetch
