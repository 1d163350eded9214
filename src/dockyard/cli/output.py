"""Printing: tables and ``KEY=VALUE`` lines for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click

from dockyard.cli.environment import Environment

F = TypeVar("F", bound=Callable[..., Any])

output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Print for people (text) or for scripts (json).",
)


def echo(env: Environment, text: str = "", *, err: bool = False, **style: Any) -> None:
    stream = env.stderr if err else env.stdout
    if style and env.color:
        text = click.style(text, **style)
    stream.write(text + "\n")
    stream.flush()


def print_json(env: Environment, data: Any) -> None:
    env.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    env.stdout.flush()


def short_time(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def table(env: Environment, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    echo(env, line([h.upper() for h in headers]), bold=True)
    for row in cells:
        echo(env, line(row))
