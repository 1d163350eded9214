"""Keeps one daemon (the router) running, through the server's own restarts.

The daemon runs in a session of its own and outlives the server on purpose:
apps keep answering while the server is down or restarting. Its pid is kept
in a pidfile. A starting server adopts the process the pidfile names when it
is alive, its own (its command line names ``marker``) and answering;
otherwise it starts a new one. A watchdog thread notices at once when the
daemon exits (a pidfd becomes readable; polling where there is none) and
starts it again. Nothing here knows which daemon it runs.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("dockyard.router")


class DaemonFailed(Exception):
    """The daemon exited, or never answered, when it was started."""

    def __init__(self, name: str, output: str) -> None:
        last = output.strip().splitlines()[-1:] or ["no output"]
        super().__init__(f"{name} exited at start: {last[0][:500]}")
        self.output = output


@dataclass(frozen=True)
class Daemon:
    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    pidfile: Path
    log: Path
    # A string the command line of this daemon, and of no other, contains.
    marker: str


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` at once (a reader sees the old or the new), owner-only."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def command_line(pid: int) -> list[str]:
    """The process's arguments; empty when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def recorded(daemon: Daemon) -> int | None:
    """The pid in the pidfile, if that process is alive and is this daemon."""
    try:
        pid = int(daemon.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    arguments = command_line(pid)
    name = Path(daemon.command[0]).name
    if arguments and Path(arguments[0]).name == name and daemon.marker in arguments:
        return pid
    return None


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while command_line(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def stop_recorded(daemon: Daemon, timeout: float = 10.0) -> int | None:
    """Stop the daemon the pidfile names (SIGTERM, then SIGKILL); its pid, or None."""
    pid = recorded(daemon)
    if pid is None:
        return None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        if _wait_gone(pid, timeout):
            break
    daemon.pidfile.unlink(missing_ok=True)
    return pid


class Supervisor:
    """Starts or adopts the daemon, then starts it again whenever it exits."""

    def __init__(
        self,
        daemon: Daemon,
        *,
        answering: Callable[[], bool],
        prepare: Callable[[], None] = lambda: None,
        started: Callable[[], None] = lambda: None,
        start_timeout: float = 15.0,
    ) -> None:
        self.daemon = daemon
        self._answering = answering
        self._prepare = prepare  # before each start: e.g. remove a dead one's socket
        self._started = started  # after each start, once it answers
        self._start_timeout = start_timeout
        self._pid: int | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._up = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._pid

    def start(self) -> bool:
        """Adopt the recorded daemon or start one; True if adopted. Then watch it."""
        adopted = self._adopt()
        if not adopted:
            self._spawn()
        self._up.set()
        self._thread = threading.Thread(
            target=self._watch, name=f"{self.daemon.name}-watchdog", daemon=True
        )
        self._thread.start()
        return adopted

    def wait_up(self, timeout: float) -> bool:
        """Wait until the daemon runs and answers (the watchdog may be starting it)."""
        return self._up.wait(timeout)

    def close(self) -> None:
        """Stop watching; the daemon keeps running, for the next server to adopt."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # start-up

    def _adopt(self) -> bool:
        pid = recorded(self.daemon)
        if pid is None:
            return False
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if self._answering():
                log.info("adopted the running %s (pid %d)", self.daemon.name, pid)
                self._pid, self._child = pid, None
                self._started()
                return True
            if not command_line(pid):
                return False
            time.sleep(0.05)
        log.warning("%s (pid %d) does not answer; replacing it", self.daemon.name, pid)
        stop_recorded(self.daemon, timeout=2)
        return False

    def _spawn(self) -> None:
        self._prepare()
        try:
            offset = self.daemon.log.stat().st_size
        except OSError:
            offset = 0
        with self.daemon.log.open("ab") as output:
            child = subprocess.Popen(
                list(self.daemon.command),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(self.daemon.env),
                # Not in the server's session or process group: a terminal's
                # ^C or the server's death leaves it serving.
                start_new_session=True,
            )
        write_private(self.daemon.pidfile, f"{child.pid}\n")
        deadline = time.monotonic() + self._start_timeout
        while not self._answering():
            if child.poll() is not None or time.monotonic() > deadline:
                if child.poll() is None:
                    child.kill()
                child.wait()
                self.daemon.pidfile.unlink(missing_ok=True)
                raise DaemonFailed(self.daemon.name, self._output(offset))
            time.sleep(0.01)
        self._pid, self._child = child.pid, child
        self._started()

    def _output(self, offset: int) -> str:
        try:
            with self.daemon.log.open("rb") as handle:
                handle.seek(offset)
                return handle.read(64 * 1024).decode(errors="replace")
        except OSError:
            return ""

    # the watchdog

    def _watch(self) -> None:
        while not self._stopping.is_set():
            assert self._pid is not None
            if not self._wait_exit(self._pid):
                return  # stopping
            self._up.clear()
            status = "unknown status"
            if self._child is not None:
                status = f"status {self._child.wait()}"
            log.warning(
                "%s (pid %d) exited (%s); starting it again", self.daemon.name, self._pid, status
            )
            backoff = 0.1
            while not self._stopping.is_set():
                try:
                    self._spawn()
                except (DaemonFailed, OSError) as exc:
                    log.error("%s; trying again in %.1f s", exc, backoff)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                self.restarts += 1
                log.info("%s is back (pid %d)", self.daemon.name, self._pid)
                self._up.set()
                break

    def _wait_exit(self, pid: int) -> bool:
        """Block until ``pid`` exits (True) or supervision stops (False)."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True
        except (OSError, AttributeError):
            pidfd = None
        try:
            if pidfd is not None:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
            while not self._stopping.is_set():
                if pidfd is not None:
                    if poller.poll(200):
                        return True
                elif self._child is not None:
                    if self._child.poll() is not None:
                        return True
                    self._stopping.wait(0.1)
                else:
                    if not command_line(pid):
                        return True
                    self._stopping.wait(0.1)
            return False
        finally:
            if pidfd is not None:
                os.close(pidfd)
