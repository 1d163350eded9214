from __future__ import annotations

import pytest

from dockyard.domain.errors import InvalidHandle, InvalidUserName
from dockyard.domain.names import validate_handle, validate_user_name


@pytest.mark.parametrize("handle", ["a", "web", "my-app-2", "a" * 63, "x1"])
def test_valid_handles(handle: str) -> None:
    assert validate_handle(handle) == handle


@pytest.mark.parametrize(
    "handle", ["", "1a", "-a", "a-", "A", "a_b", "a.b", "a" * 64, "ä", "a b", "a\n"]
)
def test_invalid_handles(handle: str) -> None:
    with pytest.raises(InvalidHandle, match="invalid app handle"):
        validate_handle(handle)


def test_user_names() -> None:
    assert validate_user_name("alice.smith-2") == "alice.smith-2"
    for bad in ("", "Alice", "2alice", "al ice"):
        with pytest.raises(InvalidUserName):
            validate_user_name(bad)
