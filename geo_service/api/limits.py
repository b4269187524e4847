"""Request limits: a body larger than the setting is refused with 413 before it is read, a
query string longer than its setting with 414, and a NUL character anywhere (path, query,
form or JSON body) with 422 naming where it is, before any route sees it."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geo_service.errors import TooManyRequests
from geo_service.incidents import open311


def client_of(request: Request) -> str:
    """The client's address as the server saw it (a proxy's own headers are trusted only
    when the server is told to: uvicorn's --proxy-headers)."""
    return request.client.host if request.client else "unknown"


class RateLimiter:
    """At most `per_minute` requests from one client address in any 60 s (a sliding
    window, per server process); beyond it TooManyRequests with the seconds to wait."""

    MAX_CLIENTS = 100_000  # addresses remembered; the quietest are forgotten beyond it

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> None:
        """Count one request of `client`, or refuse it."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(client, deque())
            while hits and hits[0] <= now - 60:
                hits.popleft()
            if len(hits) >= self.per_minute:
                wait = max(1, math.ceil(60 - (now - hits[0])))
                raise TooManyRequests(
                    f"more than {self.per_minute} requests a minute from {client}: try again "
                    f"in {wait} s",
                    retry_after=wait,
                )
            hits.append(now)
            if len(self._hits) > self.MAX_CLIENTS:
                for stale in [c for c, q in self._hits.items() if not q or q[-1] <= now - 60]:
                    del self._hits[stale]


class BodyLimit:
    """Pure ASGI middleware: checks Content-Length, and counts chunked bodies as they stream."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_query_bytes: int = 8192) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_query_bytes = max_query_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 413."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = len(scope.get("query_string", b""))
        if query > self.max_query_bytes:
            await self._refuse(
                send,
                414,
                "uri_too_long",
                f"query string of {query} bytes exceeds the limit of {self.max_query_bytes}",
            )
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: nothing to count
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send, int(declared))
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(seen)
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except _TooLarge as exc:
            if not tracked.started:
                await self._too_large(send, exc.size)

    async def _too_large(self, send: Send, size: int) -> None:
        message = f"request body of {size} bytes exceeds the limit of {self.max_bytes}"
        await self._refuse(send, 413, "payload_too_large", message)

    async def _refuse(self, send: Send, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": code, "message": message}).encode()
        await answer(send, status, body, b"application/json")


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


NUL = "\x00"


class NulGuard:
    """Pure ASGI middleware refusing a NUL character wherever a request carries text.

    PostgreSQL text cannot hold NUL (it would fail deep inside a query, as a 500), and no
    address, name or description a person types contains one. Every other control character
    is kept as given (what leaves as XML is escaped there). Runs inside BodyLimit, so a body
    it buffers is already bounded.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 422 naming the place of the NUL."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = _nul_in_url(scope)
        if where is None and _has_body(scope):
            body, receive = await _buffered(receive)
            where = _nul_in_body(body, _content_type(scope))
        if where is None:
            await self.app(scope, receive, send)
            return
        message = f"{where} holds a NUL character (\\x00), which text here cannot hold"
        path = scope["path"]
        if path.startswith("/open311/"):  # that API's own error format and status
            errors = open311.errors(400, message)
            if path.endswith(".xml"):
                xml = open311.to_xml("errors", "error", errors)
                await answer(send, 400, xml, b"text/xml; charset=utf-8")
            else:
                await answer(send, 400, json.dumps(errors).encode(), b"application/json")
            return
        body = json.dumps({"error": "invalid_input", "message": message}).encode()
        await answer(send, 422, body, b"application/json")


class TrackedSend:
    """A `send` that remembers whether the answer has started (after which middleware can no
    longer answer in its place)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        """Pass the message on, noting the start of the answer."""
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


async def answer(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    """Send a whole answer from ASGI middleware (which has no Response objects to hand)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _nul_in_url(scope: Scope) -> str | None:
    if NUL in scope["path"]:
        return f"the path {scope['path'].replace(NUL, '%00')!r}"
    raw = scope.get("query_string", b"")
    if b"%00" not in raw and b"\x00" not in raw:
        return None
    for name, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        if NUL in name:
            return f"the query parameter name {name.replace(NUL, '%00')!r}"
        if NUL in value:
            return f"query parameter {name!r}"  # (the value: only NULs and what the user typed)
    return None


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    return headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers


def _content_type(scope: Scope) -> str:
    return dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").lower()


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a receive that hands it on as one message."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", receive  # the client went away: let the app see that
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


def _nul_in_body(body: bytes, content_type: str) -> str | None:
    if content_type.startswith("application/x-www-form-urlencoded"):
        if b"%00" in body or b"\x00" in body:
            for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                if NUL in name + value:
                    return f"form field {name.replace(NUL, '%00')!r}"
        return None
    textual = "json" in content_type or content_type.startswith(("text/", "application/xml"))
    if textual and b"\x00" in body:
        return "the request body"  # (binary uploads, should a route take them, may hold NUL)
    if "json" in content_type and b"\\u0000" in body.lower():
        try:
            document = json.loads(body)
        except ValueError:
            return None  # the route's parser names what is wrong with it
        for path in _nul_paths(document, ()):
            return "body field " + (".".join(str(p) for p in path) or "(the body)")
    return None


def _nul_paths(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """Where in a JSON document a string (a key or a value) holds NUL."""
    if isinstance(value, str):
        if NUL in value:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                yield (*path, key.replace(NUL, "\\u0000"))
            yield from _nul_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, (*path, index))
