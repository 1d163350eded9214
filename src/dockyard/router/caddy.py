"""Caddy as the router: a supervised daemon, configured as JSON on a UNIX socket.

Every change loads the whole configuration through the admin API's
``POST /load``; Caddy swaps it in gracefully, finishing requests in flight,
so a release switch drops nothing. The admin API listens only on a UNIX
socket in ``DATA_DIR/router`` (a directory only the server's user may
enter): no app, build or other local user can reach it. Each configuration
is also written to ``caddy.json`` there, so that a Caddy restarted by the
watchdog serves every route from its first request, and the routes to
``routes.json``, so that the next server starts from them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from dockyard.router.supervision import (
    Daemon,
    DaemonFailed,
    Supervisor,
    stop_recorded,
    write_private,
)

log = logging.getLogger("dockyard.router")

# The Host the admin API is asked with; Caddy refuses any it does not list.
ADMIN_HOST = "dockyard-router"


class RouterError(Exception):
    pass


def caddy_daemon(data_dir: Path, binary: str = "caddy") -> Daemon:
    """How the router of ``data_dir`` runs."""
    directory = data_dir / "router"
    config = directory / "caddy.json"
    return Daemon(
        name="caddy",
        command=[binary, "run", "--config", str(config)],
        env={
            "HOME": str(directory),
            "XDG_DATA_HOME": str(directory / "data"),
            "XDG_CONFIG_HOME": str(directory / "config"),
        },
        pidfile=directory / "caddy.pid",
        log=directory / "caddy.log",
        marker=str(config),
    )


def stop_router(data_dir: Path) -> int | None:
    """Stop the router of ``data_dir`` that outlived its server; its pid, or None."""
    return stop_recorded(caddy_daemon(data_dir))


class CaddyRouter:
    def __init__(self, *, listen: str, domain: str, data_dir: Path, binary: str = "caddy") -> None:
        self.listen = listen
        self.domain = domain
        self.directory = data_dir.absolute() / "router"
        self.socket = self.directory / "admin.sock"
        self.binary = binary
        self._routes: dict[str, list[str]] = {}
        self._names: dict[str, list[str]] = {}  # custom domains, by app
        # Upstreams an app just stopped routing to, kept in the configuration
        # (behind a host no request carries) so that Caddy keeps counting the
        # requests still in flight to them until they are drained.
        self._draining: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._supervisor: Supervisor | None = None
        self._accepted: dict[str, Any] | None = None  # the last configuration Caddy loaded
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url=f"http://{ADMIN_HOST}",
            timeout=10,
        )

    # the process

    @property
    def pid(self) -> int | None:
        return self._supervisor.pid if self._supervisor else None

    def start(self) -> None:
        """Adopt the router a previous server left running, or start one; watch it."""
        path = shutil.which(self.binary)
        if path is None:
            raise RouterError(f"{self.binary} is not installed: run `make install`")
        if len(os.fsencode(self.socket)) > 107:  # sun_path holds 108 bytes
            raise RouterError(f"the data directory's path is too long for a socket: {self.socket}")
        self.directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        daemon = caddy_daemon(self.directory.parent, path)
        with self._lock:
            previous = self._saved_listen()
            self._routes, self._names = self._saved_routes()
            initial = self._config()
            self._write(initial)
        self._supervisor = Supervisor(
            daemon, answering=self._answering, prepare=self._prepare, started=self._private
        )
        try:
            adopted = self._supervisor.start()
        except DaemonFailed as exc:
            raise RouterError(self._explain(exc, daemon)) from None
        if not adopted:
            self._accepted = initial
            return
        # It may run an older configuration (another --router-listen or
        # --domain); an unchanged one is a no-op for Caddy.
        try:
            if previous != self.listen:
                self._check_free()
        except DaemonFailed as exc:
            raise RouterError(self._explain(exc, daemon)) from None
        with self._lock:
            self._load()

    def _explain(self, exc: DaemonFailed, daemon: Daemon) -> str:
        if "address already in use" in exc.output:
            return (
                f"the router cannot listen on {self.listen}: the address is in use "
                "(by another Dockyard server's router?)"
            )
        return f"{exc}; see {daemon.log}"

    def _answering(self) -> bool:
        try:
            return self._http.get("/config/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def _prepare(self) -> None:
        self._check_free()
        # A killed Caddy leaves its socket file behind; the next could not bind.
        self.socket.unlink(missing_ok=True)

    def _check_free(self) -> None:
        """Fail if something listens on our address already.

        Caddy's listeners set SO_REUSEPORT: a second Caddy on the address
        would not fail, it would take half the connections. A bind without
        it fails while anyone listens there.
        """
        host, _, port = self.listen.rpartition(":")
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DaemonFailed("caddy", f"{self.listen}: address already in use") from None
            raise DaemonFailed("caddy", f"cannot listen on {self.listen}: {exc}") from None

    def _private(self) -> None:
        with contextlib.suppress(OSError):  # gone again: the watchdog sees to it
            os.chmod(self.socket, 0o600)

    def stop(self) -> None:
        """Stop supervising. Caddy keeps serving the apps until a server adopts it."""
        if self._supervisor is not None:
            self._supervisor.close()
        self._http.close()

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

    def set_names(self, app: str, names: list[str]) -> None:
        with self._lock:
            if sorted(names) == self._names.get(app, []):
                return
            if names:
                self._names[app] = sorted(names)
            else:
                self._names.pop(app, None)
            if app in self._routes:
                self._load()
            else:
                self._write(self._config())

    def names(self) -> dict[str, list[str]]:
        with self._lock:
            return dict(self._names)

    # HTTPS is HAProxy's (--router-https-listen is refused with Caddy, which goes away).

    def serves_https(self) -> bool:
        return False

    def set_certificate(self, name: str, chain_pem: str, key_pem: str) -> None:
        raise RouterError("the Caddy router serves no HTTPS: use --router haproxy")

    def remove_certificate(self, name: str) -> None:
        pass  # it never had one

    def set_challenge(self, token: str, key_authorization: str) -> None:
        raise RouterError("the Caddy router answers no ACME challenge: use --router haproxy")

    def remove_challenge(self, token: str) -> None:
        pass

    def set_force_https(self, app: str, on: bool) -> None:
        pass  # nothing is served over HTTPS to redirect to

    def _saved_listen(self) -> str | None:
        try:
            config = json.loads((self.directory / "caddy.json").read_text())
            return str(config["apps"]["http"]["servers"]["dockyard"]["listen"][0])
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def _saved_routes(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        try:
            saved = json.loads((self.directory / "routes.json").read_text())
            routes = {str(app): [str(u) for u in ups] for app, ups in saved["routes"].items()}
            names = {str(app): [str(n) for n in ns] for app, ns in saved.get("names", {}).items()}
            return routes, names
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}, {}

    def _write(self, config: dict[str, Any]) -> None:
        """What a restarted Caddy (and the next server) starts from."""
        write_private(self.directory / "caddy.json", json.dumps(config))
        saved = {"routes": self._routes, "names": self._names}
        write_private(self.directory / "routes.json", json.dumps(saved))

    def _load(self) -> None:
        """Write the configuration, then load it; called with ``_lock`` held."""
        config = self._config()
        self._write(config)
        deadline = time.monotonic() + 10
        while True:
            try:
                response = self._http.post("/load", json=config)
                break
            except httpx.TransportError:
                # Caddy died: the watchdog starts it again, from the file
                # just written. Load it anyway once it answers, in case it
                # started just before the write.
                if time.monotonic() > deadline:
                    raise RouterError(
                        f"caddy is not running: see {self.directory / 'caddy.log'}"
                    ) from None
                time.sleep(0.02)
                if self._supervisor is not None:
                    self._supervisor.wait_up(max(0.0, deadline - time.monotonic()))
        if response.status_code != 200:
            # A restarted Caddy must not start from what this one refused.
            if self._accepted is not None:
                write_private(self.directory / "caddy.json", json.dumps(self._accepted))
            raise RouterError(f"caddy refused the configuration: {response.text[:300]}")
        self._accepted = config

    @staticmethod
    def _proxy(hosts: list[str], upstreams: list[str]) -> dict[str, Any]:
        return {
            "match": [{"host": hosts}],
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

    def _config(self) -> dict[str, Any]:
        routes: list[dict[str, Any]] = []
        # A name an app holds exactly wins over another app's wildcard: every
        # exact name is matched before any wildcard.
        for wildcards in (False, True):
            for app, upstreams in sorted(self._routes.items()):
                hosts = [f"{app}.{self.domain}", *self._names.get(app, [])]
                hosts = [h for h in hosts if h.startswith("*.") == wildcards]
                if upstreams and hosts:
                    routes.append(self._proxy(hosts, upstreams))
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
            "admin": {"listen": f"unix/{self.socket}", "origins": [ADMIN_HOST]},
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
