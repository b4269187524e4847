"""Pauses of Python's cyclic garbage collector around the coverage's bulk work.

A compute or a model load makes hundreds of thousands of shapely objects (streets, points,
pieces of isochrones) and numpy arrays, none of them garbage in a reference cycle; every
700 of them set off a collection that holds the GIL and, now and then, walks every object
of the process. Measured on the city: 20% of a compute's wall time and 30% of a model
load were spent collecting, for nothing. Reference counting still frees everything as
usual while paused; only the search for cycles waits until the last pause ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


class _Pauses:
    """Pauses held by any thread: the collector is off while one is held, and back on (if it
    was on before the first) when the last ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = 0
        self._was_enabled = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The collector off until this pause and every other one have ended."""
        with self._lock:
            if self._held == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1
                if self._held == 0 and self._was_enabled:
                    gc.enable()


_PAUSES = _Pauses()


def paused() -> AbstractContextManager[None]:
    """No cyclic garbage collection while the block runs (see the module's docstring)."""
    return _PAUSES.paused()


def settle() -> None:
    """Collect, then freeze every object there is out of the collector's reach: for a server
    process that has just loaded a model it keeps for long (a province's is 1.2 million
    objects, whose walk by each full collection was a 115 ms pause of every request in
    flight). Reference counting frees them as usual when they go."""
    gc.collect()
    gc.freeze()
