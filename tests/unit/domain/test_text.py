"""Terminal escapes are stripped from what goes into a log."""

from __future__ import annotations

import pytest

from dockyard.domain.text import plain


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("\x1b[31mERROR\x1b[0m: failed", "ERROR: failed"),
        ("\x1b[1;32m✓\x1b[39;49m done\tin 2 s", "✓ done\tin 2 s"),
        ("50%\x1b[2K\x1b[1G100%", "50%100%"),
        ("\x1b]0;title\x07after", "after"),
        ("\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("bell\x07 and nul\x00", "bell and nul"),
        ("plain <b>html</b> stays", "plain <b>html</b> stays"),
    ],
)
def test_escapes_and_controls_are_stripped(line: str, kept: str) -> None:
    assert plain(line) == kept
