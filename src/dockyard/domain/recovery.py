"""Container recovery: an app's container died on its own and is started again.

The engine restarts an app's containers when they exit (their restart policy);
the app's operations say so, as Aptible's activity does: ``container recovery:
web.2 exited with 137 (out of memory)``, at most once every two minutes per
container, so that a crash loop is one line every two minutes, not hundreds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOW_SECONDS = 120.0


@dataclass(frozen=True)
class Exit:
    """One of an app's containers exited without anyone stopping it."""

    app: str
    release: int  # the release's id, as its containers are labelled
    service: str
    index: int  # from 0; shown from 1
    exit_code: int
    out_of_memory: bool = False


def recovery_line(exit: Exit) -> str:
    """``container recovery: web.2 exited with 137 (out of memory)``."""
    if exit.out_of_memory:
        why = " (out of memory)"
    else:
        why = {137: " (killed)", 139: " (segmentation fault)", 143: " (terminated)"}.get(
            exit.exit_code, ""
        )
    name = f"{exit.service}.{exit.index + 1}"
    return f"container recovery: {name} exited with {exit.exit_code}{why}; it is started again"


@dataclass
class Throttle:
    """Say it at most once per ``window`` seconds for each key."""

    window: float = WINDOW_SECONDS
    _last: dict[tuple[str, str, int], float] = field(default_factory=dict)

    def allow(self, exit: Exit, now: float) -> bool:
        key = (exit.app, exit.service, exit.index)
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            return False
        self._last[key] = now
        return True
