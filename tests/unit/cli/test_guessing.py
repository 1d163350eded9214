"""The CLI's guesses: URLs without a scheme, the app from git remotes, close names."""

from __future__ import annotations

import pytest

from dockyard.cli.environment import normalized_url
from dockyard.cli.guessing import apps_of_remotes, did_you_mean


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("127.0.0.1:8800", "http://127.0.0.1:8800"),
        ("http://127.0.0.1:8800/", "http://127.0.0.1:8800"),
        ("https://dockyard.example", "https://dockyard.example"),
        (" localhost:8800 ", "http://localhost:8800"),
    ],
)
def test_a_url_without_a_scheme_is_http(given: str, url: str) -> None:
    assert normalized_url(given) == url


def test_the_apps_of_the_remotes_that_point_at_this_server() -> None:
    remotes = [
        "http://127.0.0.1:8800/git/web.git",
        "http://git:s3cret@127.0.0.1:8800/git/web.git",  # the same app, with a token
        "http://127.0.0.1:8800/git/api.git",
        "http://127.0.0.1:9999/git/other-server.git",
        "https://github.com/acme/web.git",
        "git@github.com:acme/web.git",
    ]
    assert apps_of_remotes(remotes, "127.0.0.1:8800") == ["web", "api"]
    assert apps_of_remotes(remotes, "http://127.0.0.1:9999/") == ["other-server"]
    assert apps_of_remotes(remotes, "http://10.0.0.1:8800") == []


def test_did_you_mean() -> None:
    assert did_you_mean("wbe", ["web", "api"]) == "; did you mean 'web'?"
    assert did_you_mean("zzz", ["web", "api"]) == ""
    assert did_you_mean("confg", ["config", "config:set"]) == "; did you mean 'config'?"
