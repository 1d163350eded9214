"""Release commands: .dockyard.yml as users write it, the Procfile's release: line."""

from __future__ import annotations

import pytest

from dockyard.domain.release_phase import (
    InvalidReleaseConfig,
    ReleaseCommand,
    failed_message,
)
from dockyard.domain.releases import Service, parse_procfile, procfile_release
from dockyard.services.release_phase import commands_from, parse_config


def test_before_release_list_in_order() -> None:
    text = "before_release:\n  - bundle exec rake db:migrate\n  - 'echo done: ok'\n"
    assert parse_config(".dockyard.yml", text) == [
        ReleaseCommand("bundle exec rake db:migrate", ".dockyard.yml"),
        ReleaseCommand("echo done: ok", ".dockyard.yml"),
    ]


@pytest.mark.parametrize("text", ["", "# nothing\n", "other: 1\n", "before_release:\n"])
def test_no_commands(text: str) -> None:
    assert parse_config(".aptible.yml", text) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("before_release: [unclosed\n", "it is not YAML"),
        ("before_release:\n- a\n b: [\n", "it is not YAML"),
        ("- migrate\n", "a mapping such as 'before_release: [COMMAND, ...]', not a list"),
        ("before_release: migrate\n", "before_release must be a list of commands, not str"),
        ("before_release:\n  - echo a: b\n", "before_release item 1 is a mapping"),
        ("before_release:\n  - migrate\n  - 3\n", "before_release item 2 is int 3, not a command"),
        ("before_release:\n  - ''\n", "before_release item 1 is str '', not a command"),
    ],
)
def test_malformed_files_are_refused_naming_file_and_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidReleaseConfig) as raised:
        parse_config("/.dockyard.yml", text)
    assert raised.value.message.startswith("/.dockyard.yml is not valid: ")
    assert problem in raised.value.message
    assert raised.value.message.endswith("fix it and deploy again")


def test_yaml_error_says_where() -> None:
    with pytest.raises(InvalidReleaseConfig, match="not allowed here at line 2, column 11"):
        parse_config(".dockyard.yml", "before_release: []\nmigrate: a: b\n")


def test_huge_file_is_refused() -> None:
    with pytest.raises(InvalidReleaseConfig, match="larger than 64 KiB"):
        parse_config(".dockyard.yml", "before_release: []\n" + "#" * 70_000)


def test_procfile_release_line_is_a_command_not_a_service() -> None:
    text = "web: httpd -f\nrelease: ./migrate --all\nworker: sleep 1\n"
    assert parse_procfile(text) == [Service("web", "httpd -f"), Service("worker", "sleep 1")]
    assert procfile_release(text) == "./migrate --all"
    assert procfile_release("web: httpd\n") is None


def test_procfile_with_only_a_release_line_runs_the_images_cmd() -> None:
    assert parse_procfile("release: migrate\n") == [Service("cmd", None)]


def test_before_release_runs_before_the_procfile_release_line() -> None:
    commands = commands_from(
        (".aptible.yml", "before_release:\n  - one\n"),
        ("/.dockyard/Procfile", "web: x\nrelease: two\n"),
    )
    assert commands == [
        ReleaseCommand("one", ".aptible.yml"),
        ReleaseCommand("two", "/.dockyard/Procfile (release:)"),
    ]
    assert commands_from(None, None) == []
    assert commands_from(None, ("Procfile", "web: x\n")) == []


def test_failure_messages() -> None:
    command = ReleaseCommand("./migrate", ".dockyard.yml")
    assert failed_message(command, 3, 1800) == (
        "release command './migrate' (from .dockyard.yml) exited with status 3: no new "
        "container was started and the previous release keeps serving"
    )
    assert "did not finish within 5 s (the server's --release-timeout) and was killed" in (
        failed_message(command, None, 5)
    )
