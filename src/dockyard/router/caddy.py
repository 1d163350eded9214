"""Caddy as the router: started and supervised by the server, configured as JSON.

Every change loads the whole configuration through the admin API's
``POST /load``; Caddy swaps it in gracefully, finishing requests in flight,
so a release switch drops nothing.
"""

from __future__ import annotations

import ctypes
import json
import logging
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("dockyard.router")


class RouterError(Exception):
    pass


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the server dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


class CaddyRouter:
    def __init__(
        self, *, listen: str, domain: str, admin: str, data_dir: Path, binary: str = "caddy"
    ) -> None:
        self.listen = listen
        self.domain = domain
        self.admin = admin
        self.data_dir = data_dir
        self.binary = binary
        self._routes: dict[str, list[str]] = {}
        # Upstreams an app just stopped routing to, kept in the configuration
        # (behind a host no request carries) so that Caddy keeps counting the
        # requests still in flight to them until they are drained.
        self._draining: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=f"http://{admin}", timeout=10)

    # the process

    def start(self) -> None:
        path = shutil.which(self.binary)
        if path is None:
            raise RouterError(f"{self.binary} is not installed: run `make install`")
        self._stop_stray()
        config = self.data_dir / "caddy.json"
        config.write_text(json.dumps(self._config()))
        log_file = (self.data_dir / "caddy.log").open("ab")
        with log_file:
            self._process = subprocess.Popen(
                [path, "run", "--config", str(config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={"HOME": str(self.data_dir), "XDG_DATA_HOME": str(self.data_dir / "caddy")},
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RouterError(
                    f"caddy exited at start: see {self.data_dir / 'caddy.log'} "
                    f"(is {self.listen} or {self.admin} in use?)"
                )
            try:
                self._http.get("/config/")
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RouterError("caddy's admin API did not answer within 15 s")

    def _stop_stray(self) -> None:
        """Stop a Caddy still answering on our admin address (a crashed server's)."""
        try:
            self._http.post("/stop")
        except httpx.TransportError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                self._http.get("/config/")
            except httpx.TransportError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._http.close()

    def ensure_running(self) -> None:
        """Restart Caddy if it died, with every route it had."""
        if self._process is not None and self._process.poll() is not None:
            log.warning("caddy exited (%s); restarting it", self._process.returncode)
            self.start()

    # routes

    def url(self, app: str) -> str:
        port = self.listen.rpartition(":")[2]
        return f"http://{app}.{self.domain}:{port}/"

    def route(self, app: str, upstreams: list[str]) -> None:
        with self._lock:
            self._retire(app, set(self._routes.get(app, [])) - set(upstreams))
            self._routes[app] = sorted(upstreams)
            self._load()

    def unroute(self, app: str) -> None:
        with self._lock:
            previous = self._routes.pop(app, None)
            if previous is not None:
                self._retire(app, set(previous))
                self._load()

    def _retire(self, app: str, upstreams: set[str]) -> None:
        if upstreams:
            self._draining.setdefault(app, set()).update(upstreams)

    def drain(self, upstreams: list[str], timeout: float) -> bool:
        """Wait until no request is in flight to ``upstreams``; False on timeout.

        Caddy counts the requests each upstream is serving, across configs: a
        request that went out before a switch is still counted after it.
        """
        deadline = time.monotonic() + timeout
        time.sleep(0.05)  # a request accepted just before the switch picks its upstream
        while True:
            try:
                counts = {
                    u["address"]: int(u.get("num_requests", 0))
                    for u in self._http.get("/reverse_proxy/upstreams").json()
                }
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                return False
            if not any(counts.get(upstream, 0) for upstream in upstreams):
                self._forget(upstreams)
                return True
            if time.monotonic() > deadline:
                self._forget(upstreams)
                return False
            time.sleep(0.05)

    def _forget(self, upstreams: list[str]) -> None:
        """Drained: they leave the configuration at its next load."""
        with self._lock:
            for app in list(self._draining):
                self._draining[app] -= set(upstreams)
                if not self._draining[app]:
                    del self._draining[app]

    def routes(self) -> dict[str, list[str]]:
        with self._lock:
            return dict(self._routes)

    def _load(self) -> None:
        self.ensure_running()
        response = self._http.post("/load", json=self._config())
        if response.status_code != 200:
            raise RouterError(f"caddy refused the configuration: {response.text[:300]}")

    def _config(self) -> dict[str, Any]:
        routes: list[dict[str, Any]] = []
        for app, upstreams in sorted(self._routes.items()):
            if not upstreams:
                continue
            routes.append(
                {
                    "match": [{"host": [f"{app}.{self.domain}"]}],
                    "handle": [
                        {
                            "handler": "reverse_proxy",
                            "upstreams": [{"dial": upstream} for upstream in upstreams],
                            "load_balancing": {
                                "selection_policy": {"policy": "round_robin"},
                                # A container that just stopped is skipped, not reported;
                                # an idempotent request it dropped is sent to another.
                                "try_duration": "5s",
                                "try_interval": "5ms",
                                "retry_match": [{"method": ["GET", "HEAD", "OPTIONS"]}],
                            },
                            # One refused connection takes an upstream out for a
                            # moment, so a moved task (Swarm drain) stops getting
                            # requests before the next route reload.
                            "health_checks": {"passive": {"fail_duration": "2s", "max_fails": 1}},
                        }
                    ],
                    "terminal": True,
                }
            )
        for app, retired in sorted(self._draining.items()):
            routes.append(
                {
                    "match": [{"host": [f"{app}.draining.invalid"]}],
                    "handle": [
                        {
                            "handler": "reverse_proxy",
                            "upstreams": [{"dial": upstream} for upstream in sorted(retired)],
                        }
                    ],
                    "terminal": True,
                }
            )
        routes.append(
            {
                "handle": [
                    {
                        "handler": "static_response",
                        "status_code": 404,
                        "body": "No app is served at this address.\n",
                    }
                ]
            }
        )
        return {
            "admin": {"listen": self.admin},
            "logging": {"logs": {"default": {"level": "WARN"}}},
            "apps": {
                "http": {
                    "servers": {
                        "dockyard": {
                            "listen": [self.listen],
                            "automatic_https": {"disable": True},
                            "routes": routes,
                        }
                    }
                }
            },
        }
