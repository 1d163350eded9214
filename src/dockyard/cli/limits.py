"""``dockyard server --max-...``: the server's limits on what tenants send.

One decorator adds an option per field of ``Limits`` and hands the command a
single ``limits`` argument. Sizes take a unit: ``1048576``, ``512KiB``,
``2MiB``, ``1GiB`` (``K``, ``M``, ``G`` mean the same).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import click

from dockyard.domain.limits import GIB, KIB, MIB, Limits, human

_UNITS = {"": 1, "k": KIB, "kib": KIB, "m": MIB, "mib": MIB, "g": GIB, "gib": GIB}


class Size(click.ParamType):  # type: ignore[type-arg]
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"(\d+)\s*([a-z]*)", str(value).strip().lower())
        if match is None or match[2] not in _UNITS or int(match[1]) < 1:
            self.fail(f"{value!r} is not a size such as 1048576, 512KiB, 2MiB or 1GiB", param, ctx)
        return int(match[1]) * _UNITS[match[2]]


_DEFAULTS = Limits()
# field, option, type, help
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("config_keys", "--max-config-keys", click.IntRange(1), "Configuration keys per app."),
    (
        "config_key_length",
        "--max-config-key-length",
        click.IntRange(1, 255),
        "Characters in a configuration key (the database holds 255).",
    ),
    (
        "config_bytes",
        "--max-config-size",
        Size(),
        "An app's configuration: keys and values, in bytes.",
    ),
    (
        "request_body",
        "--max-request-body",
        Size(),
        "A JSON request body (git pushes and git-deploys have their own limits).",
    ),
    (
        "archive_bytes",
        "--max-archive-size",
        Size(),
        "A git push, or a git-deploy archive, as sent.",
    ),
    (
        "unpacked_bytes",
        "--max-unpacked-size",
        Size(),
        "A git-deploy archive once unpacked (what its files declare).",
    ),
    (
        "archive_entries",
        "--max-archive-entries",
        click.IntRange(1),
        "Files, directories and links in a git-deploy archive.",
    ),
    (
        "queued_operations",
        "--max-queued-operations",
        click.IntRange(1),
        "Operations waiting to run, per app.",
    ),
]


def limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the ``--max-...`` options; the command gets them as ``limits=Limits(...)``."""

    @functools.wraps(command)
    def collapsed(**options: Any) -> None:
        values = {field: options.pop(field) for field, *_ in _OPTIONS}
        command(limits=Limits(**values), **options)

    for field, flag, kind, help in reversed(_OPTIONS):
        default = getattr(_DEFAULTS, field)
        if isinstance(kind, Size):
            default = human(default).replace(" ", "")
        collapsed = click.option(
            flag, field, type=kind, default=default, show_default=True, help=help
        )(collapsed)
    return collapsed
