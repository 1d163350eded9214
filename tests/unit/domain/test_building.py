from __future__ import annotations

import pytest

from dockyard.domain.building import (
    SeveralRegistries,
    build_credentials,
    from_images,
    validate_commitish,
)
from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.errors import InvalidInput

PRIVATE = {
    "DOCKYARD_PRIVATE_REGISTRY_USERNAME": "u",
    "DOCKYARD_PRIVATE_REGISTRY_PASSWORD": "p",
}


def test_from_images_skips_stages_and_flags() -> None:
    dockerfile = """
    FROM --platform=linux/amd64 reg.example.com/base/go:1 AS build
    RUN make
    FROM build AS test
    from scratch
    FROM 127.0.0.1:5000/team/run:2 \\
      AS final
    """
    assert [str(i) for i in from_images(dockerfile)] == [
        "reg.example.com/base/go:1",
        "127.0.0.1:5000/team/run:2",
    ]


def test_credentials_go_to_the_only_from_host() -> None:
    creds = build_credentials("FROM reg.io/a/b:1\n", PRIVATE, {})
    assert creds == {"reg.io": RegistryCredentials("reg.io", "u", "p")}


def test_aptible_spellings_are_honoured() -> None:
    values = {
        "APTIBLE_PRIVATE_REGISTRY_USERNAME": "au",
        "APTIBLE_PRIVATE_REGISTRY_PASSWORD": "ap",
    }
    creds = build_credentials("FROM reg.io/a/b:1\n", values, {})
    assert creds["reg.io"].username == "au"


def test_several_hosts_need_a_host_setting() -> None:
    dockerfile = "FROM reg.io/a:1 AS one\nFROM other.io/b:1\n"
    with pytest.raises(SeveralRegistries, match=r"other\.io, reg\.io"):
        build_credentials(dockerfile, PRIVATE, {})
    chosen = build_credentials(
        dockerfile, {**PRIVATE, "DOCKYARD_PRIVATE_REGISTRY_HOST": "other.io"}, {}
    )
    assert list(chosen) == ["other.io"]


def test_credentials_never_offered_to_unnamed_hosts() -> None:
    stored = {"elsewhere.io": RegistryCredentials("elsewhere.io", "s", "t")}
    creds = build_credentials(
        "FROM reg.io/a:1\n", {**PRIVATE, "DOCKYARD_PRIVATE_REGISTRY_HOST": "nope.io"}, stored
    )
    assert creds == {}


def test_stored_credentials_serve_their_own_host() -> None:
    stored = {"reg.io": RegistryCredentials("reg.io", "s", "t")}
    assert build_credentials("FROM reg.io/a:1\nFROM busybox\n", {}, stored) == stored


def test_commitish() -> None:
    assert validate_commitish("deploy-123") == "deploy-123"
    for bad in ("", "-x", "a..b", "a b", "$(rm)"):
        with pytest.raises(InvalidInput):
            validate_commitish(bad)
