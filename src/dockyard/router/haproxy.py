"""HAProxy as the router: a supervised daemon, changed at runtime, never reloaded on a deploy.

A router that reloads its whole configuration on every change (Dockyard's
first one, Caddy, did) closes every app's idle keep-alive connections and
cancels retries in flight: one app's deploy is felt by all. HAProxy is
instead changed through its runtime API, one server at a time, and a change to one app touches
nothing another app uses:

- a map file sends each host name to a backend (``add/set/del map``);
- each app owns one backend of a pool allocated in advance, so that creating
  an app needs no reload; its containers are the backend's server slots,
  pointed at an address (``set server addr``) and put in or out of service
  (``set server state ready|maint``); an app with more containers than slots
  gets more (``add server``). A slot is never deleted (HAProxy 2.6 can crash
  deleting a server that still has streams, haproxy#2298): it is put in
  maintenance, drained and reused;
- when the pool runs out it grows by as many backends again, in one seamless
  reload (the listeners are passed to the new worker through the
  ``expose-fd listeners`` socket; the old worker finishes its requests and
  closes each idle connection only after answering its next request).

Both sockets (the runtime API and the master's CLI) are in ``DATA_DIR/router``,
a directory only the server's user may enter; HAProxy has no admin port.
Every change is written there first, so that an HAProxy restarted by the
watchdog (or adopted by the next server) serves every route from its first
request: ``haproxy.cfg`` holds what the apps share, ``backends/NAME.cfg``
one backend each (a switch rewrites one small file, whatever the number of
apps), the maps their names, ``state.json`` the custom domains.

A backend is named for its slot in the pool, not for an app, and the maps
hold every name of it: ``<app>.<domain>`` and the app's custom domains in
``hosts.map`` (exact names), ``*.shop.example`` in ``wildcards.map`` (looked up
with the host's first label cut off, and only when no exact name matched).
With ``https_listen`` the frontend has a TLS bind too (``haproxy_tls``):
certificates, HTTP-01 answers and force-https redirects are changed at run
time like the rest, never by a reload.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dockyard.router.haproxy_tls import Tls, pem_of, tls_accepted
from dockyard.router.supervision import (
    Daemon,
    DaemonFailed,
    Supervisor,
    stop_recorded,
    write_private,
)

log = logging.getLogger("dockyard.router")
T = TypeVar("T")

POOL = 128  # backends allocated in advance: apps created without a reload
SLOTS = 4  # server slots a backend starts with: a deploy of 2 containers needs 4
NO_APP = "dockyard_no_app"
NOT_FOUND = "No app is served at this address.\n"
UNAVAILABLE = "This app has no container running: it is scaled to 0, or its containers are down.\n"
# Where a free slot points; it is in maintenance and never connected to.
PARKED = "127.0.0.1:1"
# Checks and retries: round robin; a refused connection takes the container
# out at once (checked again every 500 ms, back at the first success), and a
# request it dropped before answering is sent to another. A container that is
# up is checked every 10 s only: 500 apps cost 50 connections a second, not
# 250 (each one a fork of a busybox httpd), and a switch no more than alone.
SERVER_OPTIONS = (
    "check inter 10s fastinter 500ms downinter 500ms fall 2 rise 1"
    " observe layer4 error-limit 1 on-error mark-down"
)


class RouterError(Exception):
    pass


def haproxy_daemon(data_dir: Path, binary: str = "haproxy") -> Daemon:
    """How the router of ``data_dir`` runs: a master (``-W``) that keeps one worker."""
    directory = data_dir / "router"
    config = directory / "haproxy.cfg"
    return Daemon(
        name="haproxy",
        command=[
            binary,
            "-W",
            "-S",
            f"{directory / 'master.sock'},mode,600",
            "-f",
            str(config),
            "-f",
            str(directory / "backends"),
        ],
        env={"HOME": str(directory), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        pidfile=directory / "haproxy.pid",
        log=directory / "haproxy.log",
        marker=str(config),
    )


def stop_router(data_dir: Path) -> int | None:
    """Stop the HAProxy of ``data_dir`` that outlived its server; its pid, or None."""
    return stop_recorded(haproxy_daemon(data_dir))


def stop_caddy_left(data_dir: Path) -> int | None:
    """Stop the Caddy a server of an earlier version left serving ``data_dir``.

    Dockyard's router was Caddy, reloaded on every change; a server upgraded
    over a data directory finds it holding the router's address.
    """
    directory = data_dir / "router"
    caddy = Daemon(
        name="caddy",
        command=["caddy", "run", "--config", str(directory / "caddy.json")],
        env={},
        pidfile=directory / "caddy.pid",
        log=directory / "caddy.log",
        marker=str(directory / "caddy.json"),
    )
    return stop_recorded(caddy)


# The model: what each backend and slot is for. Pure, rendered to files.


@dataclass
class Slot:
    name: str
    upstream: str | None = None  # host:port it points at
    # "active": serving; "retired": out of service, requests may still be in
    # flight (until drained); "free": out of service, reusable.
    status: str = "free"


@dataclass
class Backend:
    name: str
    app: str | None = None
    slots: list[Slot] = field(default_factory=list)

    def serving(self) -> list[str]:
        return sorted(s.upstream for s in self.slots if s.status == "active" and s.upstream)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "app": self.app,
            "slots": [[s.name, s.upstream, s.status] for s in self.slots],
        }

    @classmethod
    def from_json(cls, data: Any) -> Backend:
        return cls(
            str(data["name"]),
            None if data["app"] is None else str(data["app"]),
            [
                Slot(str(name), None if upstream is None else str(upstream), str(status))
                for name, upstream, status in data["slots"]
            ],
        )


@dataclass
class Pool:
    backends: list[Backend] = field(default_factory=list)

    @classmethod
    def allocate(cls, size: int, slots: int = SLOTS) -> Pool:
        pool = cls()
        pool.grow(size, slots)
        return pool

    def of(self, app: str) -> Backend | None:
        return next((b for b in self.backends if b.app == app), None)

    def routes(self) -> dict[str, list[str]]:
        return {b.app: b.serving() for b in self.backends if b.app is not None}

    def grow(self, count: int, slots: int = SLOTS) -> None:
        start = max((int(b.name[3:]) + 1 for b in self.backends), default=0)
        for index in range(start, start + count):
            self.backends.append(
                Backend(f"app{index:04d}", slots=[Slot(f"s{i}") for i in range(slots)])
            )


@dataclass(frozen=True)
class Change:
    """One slot to change: point it at ``upstream`` and serve, or stop serving."""

    slot: Slot
    upstream: str | None
    serve: bool
    new: bool = False  # a slot added to the backend: ``add server``


def plan(backend: Backend, upstreams: Iterable[str]) -> list[Change]:
    """The slot changes that make ``backend`` serve exactly ``upstreams``.

    New servers come first and the old leave last, so the backend is never
    without one. A retired slot still pointing at a wanted upstream is
    brought back rather than a second one taken; a free slot is reused
    before one is added. Applied to the model as it is planned.
    """
    wanted = sorted(set(upstreams))
    changes: list[Change] = []
    have = {s.upstream for s in backend.slots if s.status == "active"}
    for upstream in wanted:
        if upstream in have:
            continue
        slot = next(
            (s for s in backend.slots if s.status == "retired" and s.upstream == upstream),
            None,
        ) or next((s for s in backend.slots if s.status == "free"), None)
        new = slot is None
        if slot is None:
            slot = Slot(f"s{len(backend.slots)}")
            backend.slots.append(slot)
        slot.upstream, slot.status = upstream, "active"
        changes.append(Change(slot, upstream, serve=True, new=new))
    for slot in backend.slots:
        if slot.status == "active" and slot.upstream not in wanted:
            slot.status = "retired"
            changes.append(Change(slot, slot.upstream, serve=False))
    return changes


def host_and_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def render_main(
    *, listen: str, directory: Path, hard_stop_after: str = "1h", tls: Tls | None = None
) -> str:
    """``haproxy.cfg``: what all apps share; each backend is a file of its own."""
    host, port = host_and_port(listen)
    exact, wildcards = directory / "hosts.map", directory / "wildcards.map"
    lines = [
        "# Written by Dockyard at start; its backends are in backends/, one file each.",
        "global",
        f"    stats socket {directory / 'haproxy.sock'} mode 600 level admin expose-fd listeners",
        "    stats timeout 1m",
        # A second HAProxy on our address must fail, not take half the connections.
        "    noreuseport",
        # A worker replaced by a reload finishes its requests, up to this.
        f"    hard-stop-after {hard_stop_after}",
        "",
        "defaults",
        "    mode http",
        "    option forwardfor",
        # After a reload the old worker closes an idle connection only once it
        # answered the next request on it (with Connection: close).
        "    option idle-close-on-response",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 10m",
        "    timeout http-request 30s",
        "    timeout http-keep-alive 60s",
        "    timeout tunnel 1h",
        "    timeout queue 10s",
        "    retries 3",
        "    retry-on conn-failure empty-response 0rtt-rejected",
        "    option redispatch 1",
        f"    default-server {SERVER_OPTIONS}",
        "",
        "frontend dockyard",
        f"    bind {host or '0.0.0.0'}:{port}",
        *([tls.bind(host_and_port(tls.https_listen)[0])] if tls else []),
        "    http-request set-header X-Forwarded-Proto http",
        # A request a container dropped unanswered is sent again only if it
        # is idempotent; one never sent (refused) always is.
        "    http-request disable-l7-retry unless { method GET HEAD OPTIONS }",
        "    http-request set-var(txn.host) req.hdr(host),lower,word(1,:)",
        *(tls.rules(exact, wildcards) if tls else []),
        f"    use_backend %[var(txn.host),map({exact})]"
        f" if {{ var(txn.host),map({exact}) -m found }}",
        # One label, as a certificate's wildcard: *.shop.example is not shop.example.
        f"    use_backend %[var(txn.host),field(2,.,0),map({wildcards})]"
        f" if {{ var(txn.host),field(2,.,0),map({wildcards}) -m found }}",
        f"    default_backend {NO_APP}",
        "",
        f"backend {NO_APP}",
        f"    http-request return status 404 content-type text/plain string {quoted(NOT_FOUND)}",
    ]
    return "\n".join(lines) + "\n"


STATE = "# dockyard: "


def render_backend(backend: Backend) -> str:
    """``backends/NAME.cfg``: one app's backend, written whenever it changes.

    Its first line is the model of the backend, so that the file HAProxy reads
    and the state the next server starts from can never disagree; a switch
    rewrites this one small file, whatever the number of apps.
    """
    lines = [
        STATE + json.dumps(backend.to_json()),
        f"backend {backend.name}",
        "    balance roundrobin",
        # Every 503 of an app says why. (Not an `nbsrv eq 0` test: a worker
        # replaced by a reload counts no server up while it finishes.)
        f"    http-error status 503 content-type text/plain string {quoted(UNAVAILABLE)}",
    ]
    for slot in backend.slots:
        address = server_address(slot.upstream or PARKED)
        lines.append(
            f"    server {slot.name} {address}" + ("" if slot.status == "active" else " disabled")
        )
    return "\n".join(lines) + "\n"


def parse_backend(text: str) -> Backend:
    """The model a backend's file starts with."""
    first = text.partition("\n")[0]
    if not first.startswith(STATE):
        raise ValueError("not a backend written by Dockyard")
    return Backend.from_json(json.loads(first[len(STATE) :]))


def server_address(upstream: str) -> str:
    host, port = host_and_port(upstream)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_maps(pool: Pool, domain: str, names: dict[str, list[str]]) -> tuple[str, str]:
    """``hosts.map`` and ``wildcards.map``: each name of a routed app → its backend."""
    exact: list[str] = []
    wildcards: list[str] = []
    for backend in pool.backends:
        if backend.app is not None:
            for name in hosts_of(backend.app, domain, names):
                wildcard, key = map_key(name)
                (wildcards if wildcard else exact).append(f"{key} {backend.name}\n")
    return "".join(exact), "".join(wildcards)


def hosts_of(app: str, domain: str, names: dict[str, list[str]]) -> list[str]:
    return [host_name(app, domain), *(n.lower() for n in names.get(app, []))]


def map_key(name: str) -> tuple[bool, str]:
    """Whether ``name`` is a wildcard, and its key in its map."""
    return (True, name[2:]) if name.startswith("*.") else (False, name)


def host_name(app: str, domain: str) -> str:
    return f"{app}.{domain}".lower()


def ip_of(upstream: str) -> tuple[str, int]:
    """``set server addr`` takes an address: resolve a host name (``localhost``)."""
    host, port = host_and_port(upstream)
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host, port
    except OSError:
        return str(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]), port


class HAProxyRouter:
    def __init__(
        self,
        *,
        listen: str,
        domain: str,
        data_dir: Path,
        binary: str = "haproxy",
        pool: int = POOL,
        hard_stop_after: str = "1h",
        https_listen: str | None = None,
    ) -> None:
        self.listen = listen
        self.domain = domain
        self.directory = data_dir.absolute() / "router"
        self.socket = self.directory / "haproxy.sock"
        self.master = self.directory / "master.sock"
        self.config = self.directory / "haproxy.cfg"
        self.backends = self.directory / "backends"
        self.maps = {False: self.directory / "hosts.map", True: self.directory / "wildcards.map"}
        self.binary = binary
        self._pool_size = pool
        self._hard_stop_after = hard_stop_after
        self._pool = Pool()
        self._names: dict[str, list[str]] = {}  # custom domains, by app
        self._lock = threading.Lock()
        self._supervisor: Supervisor | None = None
        self.reloads = 0  # pool growths this router made
        self.tls = Tls(self.directory, https_listen) if https_listen else None
        self._default_pem: str | None = None  # the TLS bind's certificate, before start
        self._forced: set[str] = set()  # apps whose plain HTTP is redirected
        self._reloaded = -60.0  # when it last did (time.monotonic())

    # the process

    @property
    def pid(self) -> int | None:
        return self._supervisor.pid if self._supervisor else None

    def start(self) -> None:
        """Adopt the HAProxy a previous server left running, or start one; watch it."""
        path = shutil.which(self.binary)
        if path is None:
            raise RouterError(f"{self.binary} is not installed: run `make install`")
        for sock in (self.socket, self.master):
            if len(os.fsencode(sock)) > 107:  # sun_path holds 108 bytes
                raise RouterError(f"the data directory's path is too long for a socket: {sock}")
        self.directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        daemon = haproxy_daemon(self.directory.parent, path)
        with self._lock:
            saved = self._saved()
            previous = saved.get("listen")
            self._pool = self._saved_pool()
            self._names = self._saved_names(saved)
            self._forced = {str(a) for a in saved.get("forced", []) if isinstance(a, str)}
            if self.tls is not None:
                if self._default_pem is None and not self.tls.default.exists():
                    raise RouterError("the HTTPS listener has no default certificate")
                self.tls.prepare(self._default_pem)
                self._write_forced()
            self._write_all(path)
        self._supervisor = Supervisor(
            daemon, answering=self._answering, prepare=self._prepare, started=self._private
        )
        try:
            adopted = self._supervisor.start()
        except DaemonFailed as exc:
            raise RouterError(self._explain(exc, daemon)) from None
        if not adopted:
            return
        # It may run an older configuration: another --router-listen, a smaller
        # pool, or a change the last server wrote but did not send.
        with self._lock:
            try:
                if previous != self.listen:
                    self._check_free()
            except DaemonFailed as exc:
                raise RouterError(self._explain(exc, daemon)) from None
            moved = previous != self.listen or saved.get("https_listen") != self.https_listen
            if moved or not self._has_every_backend():
                self._reload()
            self._sync()

    def _explain(self, exc: DaemonFailed, daemon: Daemon) -> str:
        if "address already in use" in exc.output or "cannot bind socket" in exc.output:
            where = " or ".join(a for a in (self.listen, self.https_listen) if a)
            return (
                f"the router cannot listen on {where}: the address is in use "
                "(by another Dockyard server's router?)"
            )
        return f"{exc}; see {daemon.log}"

    def _answering(self) -> bool:
        try:
            return "Pid:" in self._ask_one("show info", timeout=1)
        except OSError:
            return False

    def _prepare(self) -> None:
        # The worker of a killed master notices and exits within a few
        # hundred ms: on a restart, wait for it to let go of the address.
        restarting = self._supervisor is not None and self._supervisor.pid is not None
        deadline = time.monotonic() + (2 if restarting else 0)
        while True:
            try:
                self._check_free()
                break
            except DaemonFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        # A killed HAProxy leaves its socket files behind.
        for sock in (self.socket, self.master):
            sock.unlink(missing_ok=True)

    @property
    def https_listen(self) -> str | None:
        return self.tls.https_listen if self.tls else None

    def _check_free(self) -> None:
        """Fail if something listens on our addresses already."""
        self._check_address(self.listen)
        if self.https_listen:
            self._check_address(self.https_listen)

    def _check_address(self, listen: str) -> None:
        host, port = host_and_port(listen)
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DaemonFailed("haproxy", f"{listen}: address already in use") from None
            raise DaemonFailed("haproxy", f"cannot listen on {listen}: {exc}") from None

    def _private(self) -> None:
        for sock in (self.socket, self.master):
            with contextlib.suppress(OSError):  # gone again: the watchdog sees to it
                os.chmod(sock, 0o600)

    def stop(self) -> None:
        """Stop supervising. HAProxy keeps serving the apps until a server adopts it."""
        if self._supervisor is not None:
            self._supervisor.close()

    # routes

    def url(self, app: str) -> str:
        port = self.listen.rpartition(":")[2]
        return f"http://{app}.{self.domain}:{port}/"

    def route(self, app: str, upstreams: list[str]) -> None:
        """Serve the app from ``upstreams``; with none it answers 503, not 404."""
        with self._lock:
            backend = self._pool.of(app)
            fresh = backend is None
            if backend is None:
                backend = self._free_backend()
                backend.app = app
            self._reclaim(backend, len(set(upstreams)))
            changes = plan(backend, upstreams)
            self._write_backend(backend)
            if fresh:
                self._write_maps()
            commands = [c for change in changes for c in self._commands(backend, change)]
            self._send(commands)
            if fresh:
                for host in hosts_of(app, self.domain, self._names):
                    self._map_entry(host, backend.name)
                if self.tls is not None and app in self._forced:
                    self._write_forced()
                    self._map_key(self.tls.forced, backend.name, "1")

    def unroute(self, app: str) -> None:
        """The app's host answers 404; its containers are retired, to be drained."""
        with self._lock:
            backend = self._pool.of(app)
            if backend is None:
                return
            changes = plan(backend, [])
            backend.app = None
            self._write_backend(backend)
            self._write_maps()
            for host in hosts_of(app, self.domain, self._names):
                self._unmap(host)
            if self.tls is not None and app in self._forced:
                self._write_forced()
                self._send([f"del map {self.tls.forced} {backend.name}"], tolerate=True)
            self._send([c for change in changes for c in self._commands(backend, change)])

    def routes(self) -> dict[str, list[str]]:
        with self._lock:
            return self._pool.routes()

    def set_names(self, app: str, names: list[str]) -> None:
        """The app's custom domains: map entries changed at runtime, no reload."""
        with self._lock:
            names = sorted({n.lower() for n in names})
            before = hosts_of(app, self.domain, self._names)
            if names:
                self._names[app] = names
            else:
                self._names.pop(app, None)
            self._write_maps()
            self._write_state()
            backend = self._pool.of(app)
            if backend is None:
                return  # mapped when the app is routed
            after = hosts_of(app, self.domain, self._names)
            for host in after:
                self._map_entry(host, backend.name)
            for host in set(before) - set(after):
                self._unmap(host)

    def names(self) -> dict[str, list[str]]:
        with self._lock:
            return dict(self._names)

    # HTTPS: each change written to its file first, then sent; never a reload

    def serves_https(self) -> bool:
        return self.tls is not None

    def set_default_certificate(self, chain_pem: str, key_pem: str) -> None:
        """The TLS bind's certificate for names with none of their own; before ``start``,
        and again when it is renewed."""
        self._default_pem = pem_of(chain_pem, key_pem)

    def set_certificate(self, name: str, chain_pem: str, key_pem: str) -> None:
        tls = self._tls()
        pem = pem_of(chain_pem, key_pem)
        with self._lock:
            if name == f"*.{self.domain}":  # the bind's default: no crt-list entry
                self._default_pem = pem
                write_private(tls.default, pem)
                self._send_tls(
                    [f"set ssl cert {tls.default} <<\n{pem}", f"commit ssl cert {tls.default}"]
                )
                return
            new = tls.write_certificate(name, pem)
            path = tls.file_of(name)
            commands = [
                f"new ssl cert {path}",
                f"set ssl cert {path} <<\n{pem}",
                f"commit ssl cert {path}",
            ]
            if new or not self._listed(path):
                commands.append(f"add ssl crt-list {tls.crt_list} {path}")
            self._send_tls(commands)

    def remove_certificate(self, name: str) -> None:
        tls = self._tls()
        with self._lock:
            path = tls.forget_certificate(name)
            self._send_tls([f"del ssl crt-list {tls.crt_list} {path}", f"del ssl cert {path}"])

    def set_challenge(self, token: str, key_authorization: str) -> None:
        """Answer the ACME CA's HTTP-01 request for ``token``; kept in memory only."""
        tls = self._tls()
        with self._lock:
            self._map_key(tls.challenges, token, key_authorization)

    def remove_challenge(self, token: str) -> None:
        tls = self._tls()
        with self._lock:
            self._send([f"del map {tls.challenges} {token}"], tolerate=True)

    def set_force_https(self, app: str, on: bool) -> None:
        tls = self._tls()
        with self._lock:
            (self._forced.add if on else self._forced.discard)(app)
            self._write_state()
            self._write_forced()
            backend = self._pool.of(app)
            if backend is None:
                return  # mapped when the app is routed
            if on:
                self._map_key(tls.forced, backend.name, "1")
            else:
                self._send([f"del map {tls.forced} {backend.name}"], tolerate=True)

    def _tls(self) -> Tls:
        if self.tls is None:
            raise RouterError("this router serves no HTTPS (no --router-https-listen)")
        return self.tls

    def _listed(self, path: Path) -> bool:
        """Whether the running HAProxy's crt-list holds ``path``."""
        assert self.tls is not None
        crt_list = self.tls.crt_list
        text = self._through_restarts(lambda: self._ask_one(f"show ssl crt-list {crt_list}"))
        return any(line.split()[:1] == [str(path)] for line in text.splitlines())

    def _write_forced(self) -> None:
        if self.tls is not None:
            self.tls.write_forced(
                [b.name for b in self._pool.backends if b.app is not None and b.app in self._forced]
            )

    def _send_tls(self, commands: list[str]) -> None:
        """Like ``_send``, but an error names the command's first line only: the rest is a key."""
        answers = self._through_restarts(lambda: self._ask(commands))
        for command, answer in zip(commands, answers, strict=True):
            if not tls_accepted(command, answer):
                first = command.split(" <<", 1)[0]
                raise RouterError(f"haproxy refused `{first}`: {answer.strip()[:200]}")

    def drain(self, upstreams: list[str], timeout: float) -> bool:
        """Wait until no request is in flight to ``upstreams``; False on timeout.

        HAProxy counts each server's current sessions (``scur``) and queued
        requests (``qcur``); a request that went out before a switch is still
        counted after it. Then their retired slots are free for reuse.
        """
        deadline = time.monotonic() + timeout
        wanted = set(upstreams)
        time.sleep(0.02)  # a request accepted just before the switch picks its server
        drained = False
        while True:
            try:
                busy = self._busy()
            except (OSError, RouterError):
                return False
            with self._lock:
                slots = {
                    (b.name, s.name)
                    for b in self._pool.backends
                    for s in b.slots
                    if s.upstream in wanted and s.status != "free"
                }
            if not any(busy.get(key, 0) for key in slots):
                drained = True
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        with self._lock:
            for backend in self._pool.backends:
                freed = [s for s in backend.slots if s.status == "retired" and s.upstream in wanted]
                for slot in freed:
                    slot.status = "free"
                if freed:
                    self._write_backend(backend)
        return drained

    # the pool

    def _free_backend(self) -> Backend:
        free = [b for b in self._pool.backends if b.app is None]
        for backend in free:
            if all(s.status == "free" for s in backend.slots):
                return backend
        if free:  # retired slots of unrouted apps with nothing left in flight
            busy = self._busy()
            for backend in free:
                if not any(busy.get((backend.name, s.name), 0) for s in backend.slots):
                    for slot in backend.slots:
                        slot.status = "free"
                    return backend
        self._grow()
        return self._free_backend()

    def _reclaim(self, backend: Backend, needed: int) -> None:
        """Free retired slots with nothing in flight when the free ones are too few."""
        free = sum(s.status == "free" for s in backend.slots)
        if free >= needed or not any(s.status == "retired" for s in backend.slots):
            return
        busy = self._busy()
        for slot in backend.slots:
            if slot.status == "retired" and not busy.get((backend.name, slot.name), 0):
                slot.status = "free"

    def _grow(self) -> None:
        """Double the pool in one seamless reload: creating apps batches into it."""
        added = max(len(self._pool.backends), self._pool_size, 1)
        log.info(
            "the router's pool of %d backends is used up; adding %d (one reload)",
            len(self._pool.backends),
            added,
        )
        self._pool.grow(added)
        for backend in self._pool.backends[-added:]:
            self._write_backend(backend)
        self._reload()
        self.reloads += 1

    def _reload(self) -> None:
        """Have the master start a worker on the written configuration, and wait for it."""
        last = self._pool.backends[-1].name if self._pool.backends else NO_APP
        old = self._worker()
        self._ask_master("reload")
        self._reloaded = time.monotonic()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                # The new worker took over the runtime API's socket.
                if self._worker() != old and f"\n{last}\n" in "\n" + self._ask_one(
                    "show backend", timeout=1
                ):
                    return
            time.sleep(0.02)
        raise RouterError(f"haproxy did not reload: see {self.directory / 'haproxy.log'}")

    def _worker(self) -> str:
        """The pid of the worker behind the runtime API."""
        for line in self._ask_one("show info", timeout=1).splitlines():
            if line.startswith("Pid:"):
                return line.split(":", 1)[1].strip()
        return ""

    def _has_every_backend(self) -> bool:
        try:
            running = set(self._ask_one("show backend").split())
        except OSError:
            return False
        return all(b.name in running for b in self._pool.backends)

    def _sync(self) -> None:
        """Make an adopted HAProxy match the model: every slot and every host."""
        if self.tls is not None:
            # What the files say, as a restarted HAProxy would have it.
            self._write_forced()
            for path in (self.tls.forced, self.tls.challenges):
                self._send([f"clear map {path}"], tolerate=True)
            for backend in self._pool.backends:
                if backend.app is not None and backend.app in self._forced:
                    self._map_key(self.tls.forced, backend.name, "1")
        commands = []
        for backend in self._pool.backends:
            for slot in backend.slots:
                if slot.status == "active" and slot.upstream:
                    commands += self._commands(backend, Change(slot, slot.upstream, serve=True))
                else:
                    commands.append(f"set server {backend.name}/{slot.name} state maint")
        self._send(commands)
        for wildcard, path in self.maps.items():
            current: dict[str, str] = {}
            for line in self._ask_one(f"show map {path}").splitlines():
                parts = line.split()
                if len(parts) == 3:
                    current[parts[1]] = parts[2]
            wanted = {}
            for backend in self._pool.backends:
                for host in hosts_of(backend.app, self.domain, self._names) if backend.app else []:
                    if map_key(host)[0] == wildcard:
                        wanted[map_key(host)[1]] = backend.name
            for key in set(current) - set(wanted):
                self._send([f"del map {path} {key}"], tolerate=True)
            for key, name in wanted.items():
                if current.get(key) != name:
                    self._map_key(path, key, name)

    def _commands(self, backend: Backend, change: Change) -> list[str]:
        server = f"{backend.name}/{change.slot.name}"
        if not change.serve:
            return [f"set server {server} state maint"]
        assert change.upstream is not None
        ip, port = ip_of(change.upstream)
        if change.new:
            return [
                f"add server {server} {server_address(f'{ip}:{port}')} {SERVER_OPTIONS}",
                f"enable health {server}",
                f"set server {server} state ready",
            ]
        return [f"set server {server} addr {ip} port {port}", f"set server {server} state ready"]

    def _map_entry(self, host: str, backend: str) -> None:
        wildcard, key = map_key(host)
        self._map_key(self.maps[wildcard], key, backend)

    def _map_key(self, path: Path, key: str, backend: str) -> None:
        (answer,) = self._send([f"set map {path} {key} {backend}"], tolerate=True)
        if "not found" in answer:
            self._send([f"add map {path} {key} {backend}"])

    def _unmap(self, host: str) -> None:
        wildcard, key = map_key(host)
        self._send([f"del map {self.maps[wildcard]} {key}"], tolerate=True)

    # files

    def _saved(self) -> dict[str, Any]:
        try:
            saved = json.loads((self.directory / "state.json").read_text())
            return saved if isinstance(saved, dict) else {}
        except (OSError, ValueError):
            return {}

    def _saved_names(self, saved: dict[str, Any]) -> dict[str, list[str]]:
        try:
            return {str(a): [str(n) for n in ns] for a, ns in saved.get("names", {}).items()}
        except (TypeError, ValueError, AttributeError):
            return {}

    def _saved_pool(self) -> Pool:
        """The backends as their files describe them, and the pool's size at least."""
        pool = Pool()
        for path in sorted(self.backends.glob("app*.cfg")):
            try:
                backend = parse_backend(path.read_text())
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("%s is damaged: its backend starts empty", path)
                backend = Pool.allocate(1).backends[0]
            backend.name = path.stem  # the file names the backend HAProxy has
            pool.backends.append(backend)
        if len(pool.backends) < self._pool_size:
            pool.grow(self._pool_size - len(pool.backends))
        return pool

    def _main(self) -> str:
        return render_main(
            listen=self.listen,
            directory=self.directory,
            hard_stop_after=self._hard_stop_after,
            tls=self.tls,
        )

    def _write_all(self, binary: str) -> None:
        """Everything, at start; the shared part only once HAProxy accepts it."""
        self.backends.mkdir(mode=0o700, exist_ok=True)
        for backend in self._pool.backends:
            self._write_backend(backend)
        self._write_maps()
        self._write_state()
        trial = self.directory / ".haproxy-check.cfg"
        write_private(trial, self._main())
        try:
            done = subprocess.run(
                [binary, "-c", "-q", "-f", str(trial), "-f", str(self.backends)],
                capture_output=True,
                text=True,
            )
        finally:
            trial.unlink(missing_ok=True)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-500:]
            raise RouterError(f"haproxy refuses its configuration: {output}")
        write_private(self.config, self._main())

    # What a restarted HAProxy (and the next server) starts from: each is
    # written before the runtime API is told.

    def _write_backend(self, backend: Backend) -> None:
        write_private(self.backends / f"{backend.name}.cfg", render_backend(backend))

    def _write_maps(self) -> None:
        exact, wildcards = render_maps(self._pool, self.domain, self._names)
        write_private(self.maps[False], exact)
        write_private(self.maps[True], wildcards)

    def _write_state(self) -> None:
        state = {
            "listen": self.listen,
            "https_listen": self.https_listen,
            "domain": self.domain,
            "names": self._names,
            "forced": sorted(self._forced),
        }
        write_private(self.directory / "state.json", json.dumps(state))

    # the runtime API

    def _busy(self) -> dict[tuple[str, str], int]:
        """Requests in flight (being served or queued) per backend and server.

        Counted in every worker: one a reload replaced is still finishing its
        requests, and they count as much as the new worker's.
        """
        texts = [self._through_restarts(lambda: self._ask_one("show stat -1 4 -1"))]
        for pid in self._old_workers():
            with contextlib.suppress(OSError):
                texts.append(self._ask_master(f"@!{pid} show stat -1 4 -1"))
        busy: dict[tuple[str, str], int] = {}
        for text in texts:
            for row in csv.DictReader(io.StringIO(text.lstrip("# "))):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    key = (row["pxname"], row["svname"])
                    busy[key] = busy.get(key, 0) + int(row["scur"] or 0) + int(row["qcur"] or 0)
        return busy

    def _old_workers(self) -> list[str]:
        """The workers that reloads replaced and that still finish requests."""
        try:
            text = self._ask_master("show proc", timeout=1)
        except OSError:
            return []
        pids, old = [], False
        for line in text.splitlines():
            if line.startswith("#"):
                old = line.strip() == "# old workers"
            elif old and line.split():
                pids.append(line.split()[0])
        return pids

    def _send(self, commands: list[str], *, tolerate: bool = False) -> list[str]:
        """Run commands on the runtime API; through a restart of HAProxy, again.

        Every command is idempotent (a restarted HAProxy may already have read
        the change from the files), so a batch cut short is sent again whole.
        """
        if not commands:
            return []
        while True:
            answers = self._through_restarts(lambda: self._ask(commands))
            refused = [
                (command, answer)
                for command, answer in zip(commands, answers, strict=True)
                if not accepted(command, answer)
            ]
            # Just after a reload the worker it replaces may still take a
            # connection or two, and it knows no new backend.
            if (
                refused
                and time.monotonic() - self._reloaded < 5
                and any("No such" in answer for _, answer in refused)
            ):
                time.sleep(0.02)
                continue
            break
        if refused and not tolerate:
            command, answer = refused[0]
            raise RouterError(f"haproxy refused `{command}`: {answer.strip()[:300]}")
        return answers

    def _through_restarts(self, call: Callable[[], T]) -> T:
        """``call()``, again once the watchdog has HAProxy back if it was down."""
        deadline = time.monotonic() + 10
        while True:
            try:
                return call()
            except OSError:
                if time.monotonic() > deadline:
                    raise RouterError(
                        f"haproxy is not running: see {self.directory / 'haproxy.log'}"
                    ) from None
                time.sleep(0.02)
                if self._supervisor is not None:
                    self._supervisor.wait_up(max(0.0, deadline - time.monotonic()))

    def _ask(self, commands: list[str], timeout: float = 5) -> list[str]:
        """One connection, in interactive mode: each answer ends at the prompt."""
        answers = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(self.socket))
            reader = _Prompted(connection)
            connection.sendall(b"prompt\n")
            reader.answer()
            for command in commands:
                connection.sendall(command.encode() + b"\n")
                answers.append(reader.answer())
        return answers

    def _ask_master(self, command: str, timeout: float = 5) -> str:
        """A command to the master; its CLI is back a moment after a reload's worker."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._ask_one(command, path=self.master, timeout=timeout)
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _ask_one(self, command: str, *, path: Path | None = None, timeout: float = 5) -> str:
        """One command, on a connection that ends with its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(path or self.socket))
            connection.sendall(command.encode() + b"\n")
            connection.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")


class _Prompted:
    """Reads one answer at a time from an interactive runtime API connection."""

    PROMPT = b"\n> "

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self._buffer = b""

    def answer(self) -> str:
        while (end := self._buffer.find(self.PROMPT)) < 0:
            chunk = self._connection.recv(65536)
            if not chunk:
                raise ConnectionResetError("haproxy closed the runtime API connection")
            self._buffer += chunk
        answer, self._buffer = self._buffer[:end], self._buffer[end + len(self.PROMPT) :]
        return answer.decode(errors="replace")


def accepted(command: str, answer: str) -> bool:
    """Whether HAProxy did what ``command`` asked (it answers errors as text)."""
    text = answer.strip()
    if command.startswith("add server"):
        return "New server registered" in text or "Already exists" in text
    if command.startswith("set server") and " addr " in command:
        return "changed" in text or text.startswith("no need to change")
    return text == ""
