"""The apps' log lines: each starts with the engine's time, by which they are merged.

A line is ``2026-12-04T19:25:01.123456789Z web.1 | text``: the time the
engine read it (RFC 3339, nanoseconds, trailing zeros trimmed as Docker
writes them), then the container, then what it wrote. Lines of several
containers are put in the order of those times; ``dockyard logs`` shows the
times with ``--timestamps``.
"""

from __future__ import annotations

import re

_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ")


def time_key(line: str) -> str:
    """A key that sorts lines by their time (``""``, first, for a line without one)."""
    found = _STAMP.match(line)
    if found is None:
        return ""
    return f"{found[1]}.{(found[2] or '').ljust(9, '0')}"


def without_time(line: str) -> str:
    """The line without its leading time."""
    found = _STAMP.match(line)
    return line[found.end() :] if found else line


def split_stamp(raw: str) -> tuple[str, str]:
    """``("2026-...Z", "text")`` from what the engine sends with timestamps on."""
    found = _STAMP.match(raw + " " if raw.count(" ") == 0 else raw)
    if found is None:
        return "", raw
    return raw[: found.end() - 1], raw[found.end() :]
