"""Log lines are ordered by the engine's time, which may be shown or not."""

from __future__ import annotations

from dockyard.domain.logs import split_stamp, time_key, without_time


def test_times_sort_whatever_zeros_were_trimmed() -> None:
    lines = [
        "2026-12-04T19:25:01.12Z web.1 | second",
        "2026-12-04T19:25:01.1Z web.2 | first",
        "2026-12-04T19:25:01.120000001Z web.1 | third",
        "2026-12-04T19:25:02Z worker.1 | fourth",
    ]
    assert [without_time(x) for x in sorted(lines, key=time_key)] == [
        "web.2 | first",
        "web.1 | second",
        "web.1 | third",
        "worker.1 | fourth",
    ]


def test_a_line_without_a_time_is_kept_as_it_is() -> None:
    assert time_key("web.1 | no time") == ""
    assert without_time("web.1 | no time") == "web.1 | no time"


def test_the_engines_stamp_is_split_off() -> None:
    assert split_stamp("2026-12-04T19:25:01.5Z hello world") == (
        "2026-12-04T19:25:01.5Z",
        "hello world",
    )
    assert split_stamp("2026-12-04T19:25:01.5Z") == ("2026-12-04T19:25:01.5Z", "")
    assert split_stamp("no stamp here") == ("", "no stamp here")
