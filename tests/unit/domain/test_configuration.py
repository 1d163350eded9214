from __future__ import annotations

import pytest

from dockyard.domain.configuration import (
    MASK,
    ConfigChange,
    is_secret,
    masked,
    process_environment,
)
from dockyard.domain.errors import InvalidConfigArgument


def test_arguments_set_and_unset() -> None:
    change = ConfigChange.from_arguments(["A=1", "B=", "C=x=y"])
    assert dict(change.set) == {"A": "1", "C": "x=y"}
    assert change.unset == {"B"}
    assert change.apply({"B": "old", "D": "d"}) == {"A": "1", "C": "x=y", "D": "d"}


@pytest.mark.parametrize("arguments", [["A=1", "A=2"], ["A=1", "A="], ["A=", "A=1"], ["A=", "A="]])
def test_a_key_given_twice_is_refused(arguments: list[str]) -> None:
    with pytest.raises(InvalidConfigArgument) as raised:
        ConfigChange.from_arguments(["B=1", *arguments])
    assert raised.value.message == "A is given more than once: give each key once"


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("NOT VALID", "invalid argument 'NOT VALID': expected KEY=VALUE"),
        ("=x", "invalid argument '=x': '' is not a valid key"),
        ("1A=b", "invalid argument '1A=b': '1A' is not a valid key"),
        ("A B=c", "invalid argument 'A B=c': 'A B' is not a valid key"),
    ],
)
def test_malformed_arguments(argument: str, message: str) -> None:
    with pytest.raises(InvalidConfigArgument) as raised:
        ConfigChange.from_arguments([argument])
    assert raised.value.message.startswith(message)


def test_errors_never_echo_secret_values() -> None:
    with pytest.raises(InvalidConfigArgument) as raised:
        ConfigChange.from_arguments(["DB_PASSWORD hunter2"])
    assert "hunter2" not in raised.value.message
    with pytest.raises(InvalidConfigArgument) as raised:
        ConfigChange.from_arguments(["BAD-TOKEN=hunter2"])
    assert "hunter2" not in raised.value.message


def test_value_limit_is_in_utf8_bytes() -> None:
    ConfigChange(set={"A": "x" * 65536})
    with pytest.raises(InvalidConfigArgument, match="65538 bytes; the limit is 65536"):
        ConfigChange(set={"A": "é" * 32769})


def test_set_and_unset_same_key_is_refused() -> None:
    with pytest.raises(InvalidConfigArgument, match="both set and unset"):
        ConfigChange(set={"A": "1"}, unset=frozenset({"A"}))


def test_summary_names_keys_only() -> None:
    change = ConfigChange.from_arguments(["DB_PASSWORD=hunter2", "OLD="])
    assert change.summary() == "setting DB_PASSWORD; unsetting OLD"
    assert ConfigChange().summary() == "no changes"


@pytest.mark.parametrize(
    "key",
    [
        "DB_PASSWORD",
        "api_token",
        "AWS_SECRET_ACCESS_KEY",
        "SSH_KEY",
        "DOCKYARD_PRIVATE_REGISTRY_PASSWORD",
        "APTIBLE_PRIVATE_REGISTRY_PASSWORD",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret(key)


def test_plain_keys_and_masking() -> None:
    assert not is_secret("DATABASE_URL")
    assert masked({"DATABASE_URL": "u", "DB_PASSWORD": "p"}) == {
        "DATABASE_URL": "u",
        "DB_PASSWORD": MASK,
    }


def test_registry_credentials_never_reach_processes() -> None:
    env = process_environment(
        {
            "DOCKYARD_PRIVATE_REGISTRY_USERNAME": "u",
            "DOCKYARD_PRIVATE_REGISTRY_PASSWORD": "p",
            "APTIBLE_PRIVATE_REGISTRY_USERNAME": "u",
            "APTIBLE_PRIVATE_REGISTRY_PASSWORD": "p",
            "DOCKYARD_PRIVATE_REGISTRY_HOST": "h",
            "PORT_OVERRIDE": "1",
        }
    )
    assert env == {"PORT_OVERRIDE": "1"}
