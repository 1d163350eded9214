"""In-process wake-ups: a queued operation or a new log line.

Within one server process these make the worker and log followers react at
once; across processes they poll the store, so nothing depends on them for
correctness, only for latency.
"""

from __future__ import annotations

import asyncio
import threading


class Events:
    def __init__(self) -> None:
        self._work = threading.Event()
        self._lock = threading.Lock()
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def operation_queued(self) -> None:
        self._work.set()

    def wait_for_work(self, timeout: float) -> None:
        self._work.wait(timeout)
        self._work.clear()

    def operation_changed(self) -> None:
        """A log line was written or an operation changed status."""
        with self._lock:
            listeners = list(self._listeners)
        for loop, event in listeners:
            loop.call_soon_threadsafe(event.set)

    def listen(self) -> asyncio.Event:
        """An event set at the next change; call from a running event loop."""
        event = asyncio.Event()
        with self._lock:
            self._listeners.add((asyncio.get_running_loop(), event))
        return event

    def forget(self, event: asyncio.Event) -> None:
        with self._lock:
            self._listeners = {item for item in self._listeners if item[1] is not event}
