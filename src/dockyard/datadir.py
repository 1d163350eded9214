"""The data directory: one server at a time, and private to the server's user.

A server takes an exclusive ``flock`` on ``DATA_DIR/lock`` before it touches
anything else and holds it for its life; the lock file names its pid, so a
second server fails at once saying which process holds the directory. Then
every file and directory in it is made private, whatever a previous version,
another tool or the operator left, and the process's umask keeps new ones so.
Used by the composition root only; imports only the domain.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from dockyard.domain.errors import DockyardError


class DataDirectoryInUse(DockyardError):
    kind = "conflict"

    def __init__(self, directory: Path, holder: str) -> None:
        super().__init__(
            f"data directory {directory} is in use by another Dockyard server (pid {holder})"
        )


class DataDirectoryLock:
    """Held from ``acquire`` until ``release`` or the process's end (even by SIGKILL)."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path) -> DataDirectoryLock:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Not inherited by children (Python's default): a router that outlives
        # the server must not keep its lock.
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirectoryInUse(directory, holder if holder.isdigit() else "unknown") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(directory, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


def make_private(directory: Path) -> None:
    """Directories 0700, files 0600 (0700 if the owner may run them), in ``directory``.

    Symbolic links are left alone and not followed. The walk is once per start.
    """
    _chmod(directory, 0o700)
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(mode):
                continue
            wanted = 0o700 if stat.S_ISDIR(mode) else 0o600 | (mode & stat.S_IXUSR)
            if stat.S_IMODE(mode) != wanted:
                _chmod(Path(path), wanted)


def _chmod(path: Path, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):  # removed meanwhile
        os.chmod(path, mode)
