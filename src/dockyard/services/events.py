"""In-process wake-ups: a queued operation, a change to one operation.

Within one server process these make the worker and log followers react at
once; across processes they poll the store, so nothing depends on them for
correctness, only for latency. Each wake-up reaches only who needs it: one
worker per queued operation, the followers of the operation that changed.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict


class Events:
    def __init__(self) -> None:
        self._work = threading.Condition()
        self._pending = 0
        self._lock = threading.Lock()
        self._followers: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = (
            defaultdict(set)
        )

    def operation_queued(self) -> None:
        """Wake one worker: there may be an operation to claim."""
        with self._work:
            self._pending += 1
            self._work.notify()

    def wait_for_work(self, timeout: float) -> None:
        with self._work:
            if not self._pending:
                self._work.wait(timeout)
            self._pending = max(0, self._pending - 1)

    def wake_all_workers(self) -> None:
        with self._work:
            self._pending += 1_000
            self._work.notify_all()

    def operation_changed(self, operation_id: int) -> None:
        """A log line was written or the operation's status changed."""
        with self._lock:
            followers = list(self._followers.get(operation_id, ()))
        for loop, event in followers:
            loop.call_soon_threadsafe(event.set)

    def listen(self, operation_id: int) -> asyncio.Event:
        """An event set at the operation's next change; call from an event loop."""
        event = asyncio.Event()
        with self._lock:
            self._followers[operation_id].add((asyncio.get_running_loop(), event))
        return event

    def forget(self, operation_id: int, event: asyncio.Event) -> None:
        with self._lock:
            followers = self._followers.get(operation_id)
            if followers is not None:
                followers.difference_update({f for f in followers if f[1] is event})
                if not followers:
                    del self._followers[operation_id]
