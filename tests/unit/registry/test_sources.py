"""Fetching sources: the helper protocol and the cache, with a clock the test moves."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.registries import Source, SourceFailed, SourceKind
from dockyard.registry import credential_helpers
from dockyard.registry.credential_helpers import HelperFailed, parse_answer
from dockyard.registry.sources import Sources

HOST = "r.example.com"


def test_helper_answer_gives_username_and_secret() -> None:
    answer = '{"ServerURL": "r.example.com", "Username": "bob", "Secret": "pw"}'
    assert parse_answer(HOST, 0, answer, "") == RegistryCredentials(HOST, "bob", "pw")


def test_identity_token_keeps_the_token_user() -> None:
    answer = '{"ServerURL": "r.example.com", "Username": "<token>", "Secret": "idtok"}'
    assert parse_answer(HOST, 0, answer, "") == RegistryCredentials(HOST, "<token>", "idtok")


@pytest.mark.parametrize(
    ("code", "out", "err"),
    [(1, "credentials not found in native keychain\n", ""), (1, "", "Credentials not found")],
)
def test_not_found_means_none(code: int, out: str, err: str) -> None:
    assert parse_answer(HOST, code, out, err) is None


def test_error_exit_carries_the_helpers_message() -> None:
    with pytest.raises(HelperFailed, match="exited with status 3: vault sealed"):
        parse_answer(HOST, 3, "", "vault sealed\nmore\n")


@pytest.mark.parametrize("out", ['{"Username": "bob", "Secret": "pw"', "[1]", '{"Username": 1}'])
def test_bad_json_is_refused_without_quoting_it(out: str) -> None:
    with pytest.raises(HelperFailed) as raised:
        parse_answer(HOST, 0, out, "")
    assert "pw" not in str(raised.value)


def _helper(directory: Path, name: str, script: str) -> dict[str, str]:
    path = directory / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{directory}:{os.environ.get('PATH', '')}"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 12, 3, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_helper_answers_are_cached_cache_seconds(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    environ = _helper(
        tmp_path,
        "count",
        f'echo x >> {counter}\nread host\nprintf \'{{"Username":"u","Secret":"%s"}}\' "$host"\n',
    )
    clock = Clock()
    sources = Sources(clock=clock, environ=environ)
    source = Source(
        HOST,
        SourceKind.CREDENTIAL_HELPER,
        settings={"helper": "count", "cache_seconds": "60"},
        id=1,
    )
    first, fresh = sources.fetch(source)
    assert fresh and first.credentials == RegistryCredentials(HOST, "u", HOST)
    assert sources.fetch(source) == (first, False)
    clock.now += timedelta(seconds=61)
    assert sources.fetch(source)[1] is True
    assert sources.fetch(source, force=True)[1] is True
    assert len(counter.read_text().splitlines()) == 3


def test_hanging_and_unknown_helpers_fail_clearly(tmp_path: Path) -> None:
    environ = _helper(tmp_path, "hang", "sleep 30\n")
    sources = Sources(environ=environ, helper_timeout=0.3)
    hang = Source(HOST, SourceKind.CREDENTIAL_HELPER, settings={"helper": "hang"})
    with pytest.raises(SourceFailed, match=r"did not answer within 0\.3 s"):
        sources.fetch(hang)
    unknown = Source(HOST, SourceKind.CREDENTIAL_HELPER, settings={"helper": "nope"})
    with pytest.raises(SourceFailed, match="unknown credential helper 'nope'"):
        sources.fetch(unknown)


def test_program_looks_on_the_given_path(tmp_path: Path) -> None:
    environ = _helper(tmp_path, "here", "exit 0\n")
    assert credential_helpers.program("here", environ) == str(tmp_path / "docker-credential-here")
    assert credential_helpers.program("here", {"PATH": "/nonexistent"}) is None
