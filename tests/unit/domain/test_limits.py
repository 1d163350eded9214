"""The configuration limits, as pure checks."""

from __future__ import annotations

import pytest

from dockyard.domain.configuration import ConfigChange
from dockyard.domain.limits import LimitExceeded, Limits, TooManyQueued, human

LIMITS = Limits(config_keys=3, config_key_length=8, config_bytes=20)


def test_a_change_within_the_limits_gives_the_new_configuration() -> None:
    change = ConfigChange(set={"B": "2"}, unset=frozenset({"A"}))
    assert LIMITS.check_change({"A": "1", "C": "3"}, change) == {"C": "3", "B": "2"}


@pytest.mark.parametrize(
    ("current", "change", "message"),
    [
        (
            {"A": "1", "B": "2"},
            ConfigChange(set={"C": "3", "D": "4"}),
            "configuration would have 4 keys; the limit is 3 per app",
        ),
        (
            {},
            ConfigChange(set={"ABCDEFGHI": "1"}),
            "the configuration key ABCDEFGHI... is 9 characters long; the limit is 8",
        ),
        (
            {"A": "x" * 10},
            ConfigChange(set={"B": "y" * 9}),
            "configuration would be 21 bytes (keys and values); the limit is 20 bytes per app",
        ),
        (
            {},
            ConfigChange(unset=frozenset({"A", "B", "C", "D"})),
            "the change unsets 4 keys; the limit is 3 per app",
        ),
    ],
)
def test_each_limit_names_itself(
    current: dict[str, str], change: ConfigChange, message: str
) -> None:
    with pytest.raises(LimitExceeded) as raised:
        LIMITS.check_change(current, change)
    assert raised.value.message == message


def test_replacing_keys_at_the_limit_is_allowed() -> None:
    full = {"A": "1", "B": "2", "C": "3"}
    assert LIMITS.check_change(full, ConfigChange(set={"A": "9"}))["A"] == "9"


def test_messages() -> None:
    assert TooManyQueued("web", 100, 100).message.startswith(
        "app web has 100 operations queued; the limit is 100"
    )
    assert [human(n) for n in (1024**3, 2 * 1024**2, 1024, 1000)] == [
        "1 GiB",
        "2 MiB",
        "1 KiB",
        "1000 bytes",
    ]
