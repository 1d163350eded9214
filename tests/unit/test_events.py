from __future__ import annotations

import asyncio
import threading
import time

from dockyard.services.events import Events


def test_one_queued_operation_wakes_one_worker() -> None:
    events = Events()
    woken: list[float] = []

    def worker() -> None:
        start = time.monotonic()
        events.wait_for_work(1.0)
        woken.append(time.monotonic() - start)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    events.operation_queued()
    for thread in threads:
        thread.join()
    assert len([w for w in woken if w < 0.5]) == 1  # the other waited for its timeout


def test_followers_hear_only_their_operation() -> None:
    async def scenario() -> tuple[bool, bool]:
        events = Events()
        mine, other = events.listen(1), events.listen(2)
        await asyncio.to_thread(events.operation_changed, 1)
        await asyncio.sleep(0)
        heard = (mine.is_set(), other.is_set())
        events.forget(1, mine)
        events.forget(2, other)
        return heard

    assert asyncio.run(scenario()) == (True, False)
