"""Claim, run, finish: the loop every worker thread runs."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from dockyard.domain.errors import DockyardError
from dockyard.domain.operations import (
    INTERRUPTED_MESSAGE,
    OperationCancelled,
    OperationStatus,
)
from dockyard.services.context import Platform
from dockyard.services.handlers import execute
from dockyard.services.running import OperationRun

log = logging.getLogger("dockyard.worker")

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 3.0


def _process_gone(hostname: str, pid: int) -> bool:
    if hostname != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Worker:
    """Runs operations with ``concurrency`` threads; one app's run in order."""

    def __init__(self, platform: Platform, concurrency: int = 4) -> None:
        self.platform = platform
        self.concurrency = concurrency
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        store = self.platform.store
        store.register_worker(self.id)
        # SQLite serves one server process: whatever ran before this start was
        # interrupted. PostgreSQL may be shared, so only dead workers count.
        failed = store.fail_interrupted(
            self.id,
            INTERRUPTED_MESSAGE,
            only_local_dead=_process_gone,
            everyone_else=store.dialect == "sqlite",
        )
        for operation_id in failed:
            log.warning("operation %s was interrupted and is marked failed", operation_id)
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._loop, name=f"worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat, name="worker-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)

    def stop(self) -> None:
        self._stopping.set()
        self.platform.events.wake_all_workers()
        for thread in self._threads:
            thread.join(timeout=10)
        self.platform.store.unregister_worker(self.id)

    def _heartbeat(self) -> None:
        store = self.platform.store
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            try:
                store.heartbeat(self.id)
                for operation_id in store.fail_interrupted(
                    self.id, INTERRUPTED_MESSAGE, only_local_dead=_process_gone
                ):
                    self.platform.events.operation_changed(operation_id)
                    self.platform.events.operation_queued()
            except Exception:
                log.exception("worker heartbeat failed")

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                operation = self.platform.store.claim_next(self.id)
            except Exception:
                log.exception("claiming an operation failed")
                self._stopping.wait(POLL_SECONDS)
                continue
            if operation is None:
                self.platform.events.wait_for_work(POLL_SECONDS)
                continue
            self.platform.events.operation_changed(operation.id)
            self._run(OperationRun(self.platform, operation))
            # The app's next operation, if any, is runnable now.
            self.platform.events.operation_queued()

    def _run(self, run: OperationRun) -> None:
        operation = run.operation
        store = self.platform.store
        try:
            with self.platform.app_lock(operation.app_handle):
                result = execute(run)
        except OperationCancelled:
            run.log("Cancelled")
            store.finish(operation.id, OperationStatus.CANCELLED, "cancelled while running")
        except DockyardError as exc:
            run.log(f"ERROR: {exc.message}")
            store.finish(operation.id, OperationStatus.FAILED, exc.message)
        except Exception:
            # The traceback goes to the server log only; it may name internals.
            log.exception("operation %s (%s) crashed", operation.id, operation.type)
            message = "internal error: see the server log"
            run.log(f"ERROR: {message}")
            store.finish(operation.id, OperationStatus.FAILED, message)
        else:
            store.finish(operation.id, OperationStatus.SUCCEEDED, result)
        self.platform.events.operation_changed(operation.id)
