"""Container recovery lines and their throttle."""

from __future__ import annotations

import pytest

from dockyard.domain.recovery import Exit, Throttle, recovery_line


@pytest.mark.parametrize(
    ("exit", "line"),
    [
        (Exit("shop", 4, "web", 1, 137, out_of_memory=True),
         "container recovery: web.2 exited with 137 (out of memory); it is started again"),
        (Exit("shop", 4, "web", 0, 137),
         "container recovery: web.1 exited with 137 (killed); it is started again"),
        (Exit("shop", 4, "worker", 2, 3),
         "container recovery: worker.3 exited with 3; it is started again"),
    ],
)  # fmt: skip
def test_the_line_says_which_container_and_why(exit: Exit, line: str) -> None:
    assert recovery_line(exit) == line


def test_once_every_two_minutes_per_container() -> None:
    throttle = Throttle()
    web1, web2 = Exit("shop", 4, "web", 0, 1), Exit("shop", 4, "web", 1, 1)
    assert throttle.allow(web1, 1000.0)
    assert not throttle.allow(web1, 1100.0)  # a crash loop: quiet
    assert throttle.allow(web2, 1100.0)  # another container
    assert throttle.allow(Exit("other", 9, "web", 0, 1), 1100.0)  # another app
    assert throttle.allow(web1, 1120.0)  # two minutes on
