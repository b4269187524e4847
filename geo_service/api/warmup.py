"""What a starting server readies in the background, so that its first requests answer as
fast as the next ones (the coverage model is the coverage domain's: `Models.warm`)."""

from __future__ import annotations

import contextlib
import threading

from fastapi import FastAPI
from starlette.routing import NoMatchFound


def build_routes(app: FastAPI) -> threading.Thread:
    """Build every route's request handling now, in the background. FastAPI builds a router's
    routes (the validators of their parameters and bodies) on the first request that
    reaches the router, and a request reaches every router before its own: 0.1-0.25 s of
    the first what-if of a fresh server, whose router comes after a dozen others."""

    def build() -> None:
        # looking a name up walks every route of every router, building each; none is
        # named "", so all of them are looked at
        with contextlib.suppress(NoMatchFound):
            app.url_path_for("")

    thread = threading.Thread(target=build, name="routes", daemon=True)
    thread.start()
    return thread
