"""``dockyard server``: parses the server's options and hands them to a starter.

The starter is injected by ``dockyard.entry`` so this package never imports
the server's libraries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from dockyard.cli.limits import limit_options
from dockyard.domain.limits import Limits

StartServer = Callable[..., None]


def _listen(value: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--listen")
    return host.strip("[]"), int(port)


def server_command(start: StartServer) -> click.Command:
    @click.command("server")
    @click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(".dockyard"),
        show_default=True,
        help="Where the database, master key and admin token live.",
    )
    @click.option("--listen", default="127.0.0.1:8800", show_default=True, help="HOST:PORT")
    @click.option(
        "--database-url",
        envvar="DOCKYARD_DATABASE_URL",
        help="postgresql+psycopg://... (default: SQLite in the data directory).",
    )
    @click.option("--public-url", help="The URL clients use, if not http://LISTEN.")
    @click.option(
        "--workers",
        type=click.IntRange(0, 64),
        default=4,
        show_default=True,
        help="Operations run in parallel (0: this process runs none).",
    )
    @click.option(
        "--router-listen",
        default="127.0.0.1:8080",
        show_default=True,
        help="HOST:PORT where the router serves the apps.",
    )
    @click.option(
        "--stop-router",
        is_flag=True,
        help="Stop the router a stopped server left serving the apps, and exit.",
    )
    @click.option(
        "--domain",
        default="dockyard.localhost",
        show_default=True,
        help="Apps are served at http://APP.DOMAIN:ROUTER-PORT/.",
    )
    @click.option(
        "--docker-host",
        envvar="DOCKER_HOST",
        help="The Docker engine, e.g. unix:///run/docker.sock (default: DOCKER_HOST).",
    )
    @click.option(
        "--build-timeout",
        type=click.IntRange(10, 24 * 3600),
        default=1800,
        show_default=True,
        help="Seconds a Dockerfile build may take.",
    )
    @click.option(
        "--release-timeout",
        type=click.IntRange(1, 24 * 3600),
        default=1800,
        show_default=True,
        help="Seconds a release command (before_release, Procfile release:) may run.",
    )
    @click.option(
        "--runtime",
        type=click.Choice(["docker", "swarm"]),
        default="docker",
        show_default=True,
        help="Run apps on one Docker engine, or as Swarm services (on a manager).",
    )
    @click.option(
        "--image-registry",
        help="HOST/PREFIX where Swarm builds are pushed so that every node can pull them.",
    )
    @click.option("--image-registry-username", envvar="DOCKYARD_IMAGE_REGISTRY_USERNAME")
    @click.option(
        "--image-registry-password",
        envvar="DOCKYARD_IMAGE_REGISTRY_PASSWORD",
        help="Better given in DOCKYARD_IMAGE_REGISTRY_PASSWORD than on the command line.",
    )
    @click.option(
        "--router-https-listen",
        help="HOST:PORT where the router serves the apps over HTTPS.",
    )
    @click.option(
        "--acme-ca",
        default="https://acme-v02.api.letsencrypt.org/directory",
        show_default=True,
        help="The ACME CA's directory URL, where certificates are ordered.",
    )
    @click.option("--acme-email", help="The contact address of the ACME account.")
    @click.option(
        "--acme-ca-root",
        type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
        help="A PEM file trusted for the ACME CA's own TLS (a private CA).",
    )
    @click.option(
        "--acme-default-domain",
        is_flag=True,
        help="Order <app>.<domain> certificates from the ACME CA too, not the local CA.",
    )
    @limit_options
    def server(
        router_https_listen: str | None,
        acme_ca: str,
        acme_email: str | None,
        acme_ca_root: Path | None,
        acme_default_domain: bool,
        image_registry: str | None,
        image_registry_username: str | None,
        image_registry_password: str | None,
        runtime: str,
        build_timeout: int,
        release_timeout: int,
        data_dir: Path,
        listen: str,
        database_url: str | None,
        public_url: str | None,
        workers: int,
        router_listen: str,
        stop_router: bool,
        domain: str,
        docker_host: str | None,
        limits: Limits,
    ) -> None:
        """Run the Dockyard server in the foreground."""
        host, port = _listen(listen)
        _listen(router_listen)
        if router_https_listen is not None:
            _listen(router_https_listen)
        start(
            data_dir=data_dir.resolve(),
            host=host,
            port=port,
            database_url=database_url,
            public_url=public_url,
            workers=workers,
            router_listen=router_listen,
            stop_router=stop_router,
            domain=domain,
            docker_host=docker_host,
            build_timeout=float(build_timeout),
            release_timeout=float(release_timeout),
            runtime=runtime,
            image_registry=image_registry,
            image_registry_username=image_registry_username,
            image_registry_password=image_registry_password,
            limits=limits,
            router_https_listen=router_https_listen,
            acme_ca=acme_ca,
            acme_email=acme_email,
            acme_ca_root=str(acme_ca_root.resolve()) if acme_ca_root else None,
            acme_default_domain=acme_default_domain,
        )

    return server
