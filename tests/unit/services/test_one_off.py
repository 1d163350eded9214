"""A run's output: the init's own refusal is held back; everything else passes as it came."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.services.one_off import Run


class Container:
    id = "c1"

    def __init__(self, chunks: list[tuple[int, bytes]]) -> None:
        self.chunks = chunks

    def output(self) -> Iterator[tuple[int, bytes]]:
        yield from self.chunks


def shown(chunks: list[tuple[int, bytes]]) -> tuple[list[tuple[int, bytes]], str]:
    run = Run(platform=Any, operation=Any, container=Container(chunks))  # type: ignore[arg-type]
    return list(run.output()), run.error


def test_the_inits_refusal_in_pieces_is_held_back_and_told() -> None:
    out, error = shown([(2, b"[FATAL tini (7)] "), (2, b"exec nope failed: No such file or dir")])
    assert out == [] and error == "command not found in the image: 'nope' (not in its PATH)"
    out, error = shown([(2, b"[FATAL"), (2, b" tini (7)] exec nope failed: No such file\n")])
    assert out == [] and "'nope'" in error


@pytest.mark.parametrize(
    "chunks",
    [
        [(1, b"hello\n"), (2, b"err\n")],
        [(1, b"[FA"), (1, b"ST food\n")],
        [(2, b"[FATAL tini (7)] something else\n"), (1, b"after\n")],
        [(1, b"[")],
    ],
)
def test_other_output_passes_unchanged(chunks: list[tuple[int, bytes]]) -> None:
    out, error = shown(chunks)
    assert out == chunks and error == ""
