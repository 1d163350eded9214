"""The data directory's lock and permissions (a temporary directory; no server)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.datadir import DataDirectoryInUse, DataDirectoryLock, make_private


def test_a_second_lock_fails_naming_the_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    held = DataDirectoryLock.acquire(data)
    try:
        assert (data / "lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataDirectoryInUse) as refused:
            DataDirectoryLock.acquire(data)
        assert refused.value.message == (
            f"data directory {data} is in use by another Dockyard server (pid {os.getpid()})"
        )
    finally:
        held.release()
    DataDirectoryLock.acquire(data).release()  # released: free again


def test_everything_becomes_private_and_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("not ours\n")
    outside.chmod(0o644)
    data = tmp_path / "data"
    (data / "git" / "a.git").mkdir(parents=True)
    for directory in (data, data / "git", data / "git" / "a.git"):
        directory.chmod(0o755)
    (data / "dockyard.db").write_bytes(b"")
    (data / "dockyard.db").chmod(0o644)
    (data / "git" / "a.git" / "pre-receive").write_text("#!/bin/sh\n")
    (data / "git" / "a.git" / "pre-receive").chmod(0o755)
    (data / "link").symlink_to(outside)

    make_private(data)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(data) == mode(data / "git") == mode(data / "git" / "a.git") == 0o700
    assert mode(data / "dockyard.db") == 0o600
    assert mode(data / "git" / "a.git" / "pre-receive") == 0o700
    assert mode(outside) == 0o644
