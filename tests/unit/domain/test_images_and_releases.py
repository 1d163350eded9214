from __future__ import annotations

import pytest

from dockyard.domain.errors import InvalidInput
from dockyard.domain.images import ImageReference, InvalidImageReference
from dockyard.domain.releases import HealthCheck, InvalidProcfile, parse_procfile

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("reference", "host", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/team/web:v1", "127.0.0.1:5000", "team/web", "v1", None),
        ("registry.example.com/web", "registry.example.com", "web", "latest", None),
        ("localhost/web:2", "localhost", "web", "2", None),
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("team/web:v1", "docker.io", "team/web", "v1", None),
        (f"reg.io/a/b@{DIGEST}", "reg.io", "a/b", None, DIGEST),
    ],
)
def test_parse(
    reference: str, host: str, repository: str, tag: str | None, digest: str | None
) -> None:
    parsed = ImageReference.parse(reference)
    assert (parsed.host, parsed.repository, parsed.tag, parsed.digest) == (
        host,
        repository,
        tag,
        digest,
    )


def test_pinned_keeps_host_and_repository() -> None:
    pinned = ImageReference.parse("reg.io/a/b:v1").pinned(DIGEST)
    assert str(pinned) == f"reg.io/a/b@{DIGEST}"


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ("", "expected HOST/REPOSITORY"),
        ("bad image", "expected HOST/REPOSITORY"),
        (" web", "expected HOST/REPOSITORY"),
        ("UPPER/case:v1", "is not a valid repository"),
        ("reg.io/web:", "is not a valid tag"),
        ("reg.io/web@sha256:12", "a digest is sha256: and 64 hex digits"),
    ],
)
def test_malformed(reference: str, why: str) -> None:
    with pytest.raises(InvalidImageReference, match=why):
        ImageReference.parse(reference)


def test_procfile() -> None:
    services = parse_procfile("# services\nweb: exec httpd -p $PORT\n\nworker:  run-jobs --fast\n")
    assert [(s.name, s.command, s.routed) for s in services] == [
        ("web", "exec httpd -p $PORT", True),
        ("worker", "run-jobs --fast", False),
    ]


@pytest.mark.parametrize("text", ["", "# nothing\n", "web exec httpd\n", "Web: x\n", "web:\n"])
def test_bad_procfile(text: str) -> None:
    with pytest.raises(InvalidProcfile):
        parse_procfile(text)


def test_health_check_settings() -> None:
    default = HealthCheck.from_configuration({})
    assert (default.timeout, default.strict, default.path) == (180.0, False, "/")
    strict = HealthCheck.from_configuration(
        {"RELEASE_HEALTHCHECK_TIMEOUT": "0", "STRICT_HEALTH_CHECKS": "true"}
    )
    assert (strict.timeout, strict.path) == (0.0, "/healthcheck")
    for bad in ("901", "-1", "1.5", "soon"):
        with pytest.raises(InvalidInput, match="from 0 to 900"):
            HealthCheck.from_configuration({"RELEASE_HEALTHCHECK_TIMEOUT": bad})
