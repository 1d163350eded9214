"""The test registry (CNCF distribution with htpasswd) and the images the tests deploy.

Images are built on the test engine from the local busybox base image; the
registry is the only place they come from during a test.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

WEB = """\
FROM {base}
ARG CONTENT
RUN mkdir -p /www/cgi-bin && echo "$CONTENT" > /www/index.html && \\
    echo ok > /www/healthcheck && \\
    printf '#!/bin/sh\\necho "Content-Type: text/plain"\\necho\\nenv\\n' > /www/cgi-bin/env && \\
    printf '#!/bin/sh\\nsleep 2\\necho "Content-Type: text/plain"\\necho\\necho slow\\n' \\
      > /www/cgi-bin/slow && \\
    chmod +x /www/cgi-bin/env /www/cgi-bin/slow
CMD ["sh", "-c", "echo starting on $PORT; exec httpd -f -p $PORT -h /www"]
"""

IMAGES = {
    "web:v1": WEB.replace("ARG CONTENT", "ARG CONTENT=hello-v1"),
    "web:v2": WEB.replace("ARG CONTENT", "ARG CONTENT=hello-v2"),
    "nohealth:v1": WEB.replace("ARG CONTENT", "ARG CONTENT=no-health").replace(
        "echo ok > /www/healthcheck && \\\n", ""
    ),
    "ticker:v1": "FROM {base}\nRUN mkdir -p /www && echo tick > /www/index.html\n"
    'CMD ["sh", "-c", "httpd -p $PORT -h /www; i=0; '
    'while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"]\n',
    "crash:v1": 'FROM {base}\nCMD ["sh", "-c", "echo boom: cannot start; exit 3"]\n',
    # An image the engine refuses to start: it has no command at all. (One
    # whose command is missing starts: docker-init, its PID 1, exits 127.)
    "nocmd:v1": "FROM {base}\nCMD []\n",
    "silent:v1": 'FROM {base}\nCMD ["sh", "-c", "echo never listening; exec sleep 3600"]\n',
    "procfile:v1": WEB.replace("ARG CONTENT", "ARG CONTENT=procfile")
    + "RUN mkdir -p /.dockyard && printf 'web: exec httpd -f -p $PORT -h /www\\n"
    "worker: exec sleep 3600\\n' > /.dockyard/Procfile\n",
    # Release phase (test_release_phase): before_release in /.dockyard.yml, a
    # Procfile release: line, one that fails, one that never ends, a bad file.
    "release:v1": WEB.replace("ARG CONTENT", "ARG CONTENT=released")
    + "RUN mkdir -p /.dockyard && printf 'web: exec httpd -f -p $PORT -h /www\\n"
    "release: echo procfile release for $GREETING\\n' > /.dockyard/Procfile && "
    "printf 'before_release:\\n  - \"echo migrating $GREETING with $DB_PASSWORD; "
    "echo registry vars: $(env | grep -c PRIVATE_REGISTRY); "
    "nc -w 1 127.0.0.1 $API_PORT </dev/null 2>/dev/null && echo API reached "
    "|| echo API unreachable\"\\n'"
    " > /.dockyard.yml\n",
    "release-fail:v1": WEB.replace("ARG CONTENT", "ARG CONTENT=never-served")
    + "RUN printf 'before_release:\\n  - \"echo migration failed: no database; exit 4\"\\n'"
    " > /.aptible.yml\n",
    "release-slow:v1": WEB
    + "RUN printf 'before_release: [\"echo waiting; exec sleep 600\"]\\n' > /.dockyard.yml\n",
    "release-bad:v1": WEB + "RUN printf 'before_release: migrate\\n' > /.dockyard.yml\n",
    # Answers its health check, then exits after a few seconds, again and again.
    "flaky:v1": WEB.replace("ARG CONTENT", "ARG CONTENT=flaky").replace(
        'exec httpd -f -p $PORT -h /www"]', 'httpd -p $PORT -h /www; sleep 4; exit 1"]'
    ),
}


WEBSOCKETD = "/usr/bin/websocketd"  # Debian's package, with the libraries it loads
WS = """\
FROM {base}
COPY files/ /
RUN mkdir -p /www && echo ws > /www/index.html && echo ok > /www/healthcheck
CMD ["sh", "-c", "exec websocketd --port=$PORT --staticdir=/www /bin/cat"]
"""


def _websocketd_files() -> dict[str, Path]:
    """websocketd and the shared libraries ``ldd`` says it needs, at their paths."""
    found = {WEBSOCKETD: Path(WEBSOCKETD)}
    listed = subprocess.run(["ldd", WEBSOCKETD], capture_output=True, text=True, check=True)
    for line in listed.stdout.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            found[path] = Path(path).resolve()
    return found


def _need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the tests with `make test`")
    return value


@dataclass
class Registry:
    host: str
    user: str
    password: str
    htpasswd: str
    base_image: str

    def image(self, name: str) -> str:
        return f"{self.host}/dockyard-test/{name}"

    def docker_config_with_login(self, where: Path) -> str:
        """A DOCKER_CONFIG directory holding a login to this registry, as `docker login` makes."""
        config = where / "docker-config"
        config.mkdir()
        login = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {self.host: {"auth": login}}}))
        return str(config)

    @contextmanager
    def temporary_user(self) -> Iterator[tuple[str, str]]:
        """A user of its own, removed afterwards: rotate its password freely."""
        user = "ecr-" + uuid.uuid4().hex[:8]
        password = uuid.uuid4().hex
        self.set_password(user, password)
        try:
            yield user, password
        finally:
            subprocess.run(["htpasswd", "-D", self.htpasswd, user], check=True, capture_output=True)

    def set_password(self, user: str, password: str) -> None:
        # The registry re-reads the file when it changes: a faithful expiry.
        subprocess.run(
            ["htpasswd", "-B", "-b", self.htpasswd, user, password],
            check=True,
            capture_output=True,
        )


def registry_from_environment() -> Registry:
    return Registry(
        host=_need("DOCKYARD_TEST_REGISTRY"),
        user=_need("DOCKYARD_TEST_REGISTRY_USER"),
        password=_need("DOCKYARD_TEST_REGISTRY_PASSWORD"),
        htpasswd=_need("DOCKYARD_TEST_REGISTRY_HTPASSWD"),
        base_image=_need("DOCKYARD_TEST_BASE_IMAGE"),
    )


def build_and_push(registry: Registry) -> None:
    """Build every test image and push it to the private registry."""
    client = docker.DockerClient(base_url=_need("DOCKER_HOST"), version="auto")
    auth = {"username": registry.user, "password": registry.password}
    client.login(registry=registry.host, **auth)  # kept in memory, not in a file
    try:
        images: dict[str, tuple[str, dict[str, Path]]] = {
            name: (dockerfile, {}) for name, dockerfile in IMAGES.items()
        }
        images["ws:v1"] = (WS, _websocketd_files())
        for name, (dockerfile, files) in images.items():
            tag = registry.image(name)
            context = io.BytesIO()
            with tarfile.open(fileobj=context, mode="w") as archive:
                data = dockerfile.format(base=registry.base_image).encode()
                info = tarfile.TarInfo("Dockerfile")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                for inside, outside in files.items():
                    archive.add(outside, arcname="files" + inside)
            context.seek(0)
            client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
            repository, _, version = tag.rpartition(":")
            for line in client.images.push(
                repository, tag=version, auth_config=auth, stream=True, decode=True
            ):
                if "error" in line:
                    raise RuntimeError(f"pushing {tag}: {line['error']}")
            # Another test session may have removed it meanwhile (the same tags).
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(tag, force=True)
    finally:
        client.close()


def docker_client() -> docker.DockerClient:
    return docker.DockerClient(base_url=_need("DOCKER_HOST"), version="auto")


def remove_app_containers(installations: set[str]) -> None:
    """Remove the app containers and networks of these installations (the servers a session ran)."""
    if not os.environ.get("DOCKER_HOST"):
        return
    client = docker_client()
    try:
        for container in client.containers.list(all=True, filters={"label": "dockyard.app"}):
            if container.labels.get("dockyard.installation") in installations:
                container.remove(force=True)
        remove_app_networks(client, installations)
    finally:
        client.close()


def remove_app_networks(client: docker.DockerClient, installations: set[str] | None) -> None:
    """Remove the app networks of these installations (of all, given None)."""
    for network in client.api.networks(filters={"label": "dockyard.app"}):
        labels = network.get("Labels") or {}
        if installations is None or labels.get("dockyard.installation") in installations:
            # One still in use by a container being removed: the next run takes it.
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_network(network["Id"])


def remove_swarm_services(installations: set[str]) -> None:
    """Remove these installations' services from the test swarm, and make its nodes active again.

    Another test session may be using the swarm: its services stay.
    """
    with engine_client("swarm") as client:
        for service in client.services.list(filters={"label": "dockyard.app"}):
            labels = service.attrs["Spec"].get("Labels", {})
            if labels.get("dockyard.installation") in installations:
                service.remove()
        remove_app_networks(client, installations)  # the builds' networks
        for node in client.nodes.list():
            if node.attrs["Spec"]["Availability"] != "active":
                node.update({**node.attrs["Spec"], "Availability": "active"})


@dataclass(frozen=True)
class AppObject:
    """What runs an app on the engine: a container, or on Swarm a service."""

    id: str
    labels: dict[str, str]
    attrs: str  # everything the engine reports of it, as JSON

    def remove(self, backend: str) -> None:
        with engine_client(backend) as client:
            if backend == "swarm":
                client.services.get(self.id).remove()
            else:
                client.containers.get(self.id).remove(force=True)


@contextmanager
def engine_client(backend: str) -> Iterator[docker.DockerClient]:
    """The engine a server of this backend runs apps on."""
    url = os.environ["DOCKYARD_SWARM_MANAGER"] if backend == "swarm" else _need("DOCKER_HOST")
    client = docker.DockerClient(base_url=url, version="auto")
    try:
        yield client
    finally:
        client.close()


def app_objects(backend: str, app: str, *, running: bool = False) -> list[AppObject]:
    """The containers (or Swarm services) labelled with this app."""
    selector = {"label": f"dockyard.app={app}"}
    with engine_client(backend) as client:
        if backend == "swarm":
            return [
                AppObject(s.id, s.attrs["Spec"].get("Labels", {}), json.dumps(s.attrs))
                for s in client.services.list(filters=selector)
            ]
        return [
            AppObject(c.id, c.labels, json.dumps(c.attrs))
            for c in client.containers.list(all=not running, filters=selector)
        ]
