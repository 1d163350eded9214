"""The HAProxy router's model: slot planning and the files it renders (no HAProxy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.router.haproxy import (
    NO_APP,
    Pool,
    accepted,
    parse_backend,
    plan,
    quoted,
    render_backend,
    render_main,
    render_maps,
)


def test_a_switch_takes_free_slots_first_and_retires_the_old_last() -> None:
    pool = Pool.allocate(1, slots=4)
    backend = pool.backends[0]
    backend.app = "web"
    first = plan(backend, ["10.0.0.1:80"])
    assert [(c.slot.name, c.upstream, c.serve) for c in first] == [("s0", "10.0.0.1:80", True)]

    switch = plan(backend, ["10.0.0.2:80", "10.0.0.3:80"])
    assert [(c.slot.name, c.upstream, c.serve) for c in switch] == [
        ("s1", "10.0.0.2:80", True),
        ("s2", "10.0.0.3:80", True),
        ("s0", "10.0.0.1:80", False),  # after the new ones serve
    ]
    assert backend.serving() == ["10.0.0.2:80", "10.0.0.3:80"]
    assert [s.status for s in backend.slots] == ["retired", "active", "active", "free"]


def test_a_retired_slot_is_brought_back_and_a_full_backend_gets_a_new_slot() -> None:
    backend = Pool.allocate(1, slots=2).backends[0]
    plan(backend, ["a:1"])
    plan(backend, ["b:1"])  # a retired, b active: no free slot left
    back = plan(backend, ["a:1"])  # switched back before a was drained
    assert [(c.slot.name, c.serve, c.new) for c in back] == [
        ("s0", True, False),
        ("s1", False, False),
    ]
    # b may still have requests in flight: its slot is not reused, one is added.
    more = plan(backend, ["a:1", "c:1"])
    assert [(c.slot.name, c.upstream, c.new) for c in more] == [("s2", "c:1", True)]
    backend.slots[1].status = "free"  # drained
    again = plan(backend, ["a:1", "c:1", "d:1"])
    assert [(c.slot.name, c.upstream, c.new) for c in again] == [("s1", "d:1", False)]
    assert plan(backend, ["a:1", "c:1", "d:1"]) == []  # unchanged: nothing to do


def test_a_backend_file_carries_its_model_and_serves_only_active_slots() -> None:
    backend = Pool.allocate(2, slots=2).backends[1]
    backend.app = "web"
    plan(backend, ["10.0.0.1:8000"])
    text = render_backend(backend)
    assert parse_backend(text) == backend
    servers = [
        [*line.split()[1:3], line.endswith(" disabled")]
        for line in text.splitlines()
        if line.startswith("    server ")
    ]
    assert servers == [["s0", "10.0.0.1:8000", False], ["s1", "127.0.0.1:1", True]]
    assert "\nbackend app0001\n    balance roundrobin\n" in text
    assert "no container running" in text  # its 503 page
    with pytest.raises(ValueError):
        parse_backend("backend app0001\n")


def test_the_shared_configuration(tmp_path: Path) -> None:
    text = render_main(listen="127.0.0.1:8080", directory=tmp_path)
    assert "    bind 127.0.0.1:8080\n" in text
    assert (
        f"stats socket {tmp_path / 'haproxy.sock'} mode 600 level admin expose-fd listeners" in text
    )
    assert f"default_backend {NO_APP}" in text
    assert "No app is served at this address.\\n" in text
    assert "retry-on conn-failure empty-response" in text and "option redispatch 1" in text
    assert "\n    option idle-close-on-response\n" in text
    assert "    default-server check " in text
    assert "disable-l7-retry unless { method GET HEAD OPTIONS }" in text
    assert "    bind ::1:8080\n" in render_main(listen="[::1]:8080", directory=tmp_path)


def test_maps_hold_exact_names_and_wildcards_apart() -> None:
    pool = Pool.allocate(3)
    pool.backends[0].app = "shop"
    pool.backends[2].app = "Blog"
    names = {"shop": ["*.shop.example", "shop.example"], "gone": ["gone.example"]}
    exact, wildcards = render_maps(pool, "dockyard.localhost", names)
    assert exact == (
        "shop.dockyard.localhost app0000\nshop.example app0000\nblog.dockyard.localhost app0002\n"
    )
    assert wildcards == "shop.example app0000\n"


def test_quoting_and_what_counts_as_accepted() -> None:
    assert quoted('say "hi"\n') == '"say \\"hi\\"\\n"'
    assert accepted("set server b/s0 state ready", "")
    assert not accepted("set server b/s0 state ready", "No such backend.")
    assert accepted("set server b/s0 addr 10.0.0.1 port 80", "IP changed from '1' to '2'")
    assert accepted("set server b/s0 addr 10.0.0.1 port 80", "no need to change the addr")
    assert accepted("add server b/s9 10.0.0.1:80", "New server registered.")
    assert not accepted("add server b/s9 10.0.0.1:80", "Invalid")
