"""Checks of a tar archive a tenant sends (plain or gzip): format, entries, unpacked size.

The archive is walked header by header here rather than through ``tarfile``'s
reader, which reads a pax or GNU long-name header's whole declared size into
memory. Every byte is counted as it is decompressed and every declared size
is added up before its data is read, so a decompression bomb stops at the
first header or byte beyond a limit instead of being unpacked.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.domain.errors import InvalidInput
from dockyard.domain.limits import MIB, Limits, TooLarge, human

BLOCK = 512
# Headers that describe the next member (pax, GNU long names): bounded, and
# at most a few in a row.
_META_TYPES = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
_META_BYTES = 1 * MIB
_META_IN_A_ROW = 8
# Tools pad an archive to a whole record after its end (10 KiB for git archive
# and GNU tar); more than this after the end is not padding.
_TRAILER_BYTES = 1 * MIB
_CHUNK = 256 * 1024


class NotAnArchive(InvalidInput):
    kind = "invalid_archive"


@dataclass(frozen=True)
class ArchiveSummary:
    entries: int
    unpacked_bytes: int
    compressed: bool


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


class _Source:
    """The archive's tar stream (decompressed if gzip), counted against a cap."""

    def __init__(self, raw: BinaryIO, cap: int, what: str, unpacked_limit: int) -> None:
        self._raw = raw
        self._cap = cap
        self._what = what
        self._unpacked_limit = unpacked_limit
        self.total = 0
        start = raw.tell() if raw.seekable() else None
        head = raw.read(2)
        self.compressed = head == b"\x1f\x8b"
        if start is not None and not self.compressed:
            raw.seek(start)
            head = b""
        self._head = head
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.compressed else None
        self._input = head if self.compressed else b""

    def _count(self, data: bytes) -> bytes:
        self._add(len(data))
        return data

    def _add(self, size: int) -> None:
        self.total += size
        if self.total > self._cap:
            raise TooLarge(
                f"{self._what} unpacks to more than the limit of {human(self._unpacked_limit)}"
            )

    def _next(self, want: int) -> bytes:
        """Up to ``want`` more bytes of the tar stream; ``b""`` at its end."""
        if self._z is None:
            if self._head:
                data, self._head = self._head[:want], self._head[want:]
                return self._count(data)
            return self._count(self._raw.read(want))
        try:
            while True:
                if self._z.eof:
                    # Concatenated gzip members are one stream (as gzip -d reads them).
                    data = self._z.unused_data or self._raw.read(_CHUNK)
                    if not data:
                        return b""
                    while len(data) < 2 and (more := self._raw.read(_CHUNK)):
                        data += more
                    if not data.startswith(b"\x1f\x8b"):
                        raise self._bad("it has data after its gzip stream")
                    self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                elif self._z.unconsumed_tail:
                    data = self._z.unconsumed_tail
                else:
                    data = self._input or self._raw.read(_CHUNK)
                    self._input = b""
                    if not data:
                        # Output held back by ``want`` comes without more input.
                        out = self._z.decompress(b"", want)
                        if out:
                            return self._count(out)
                        if self._z.eof:
                            continue
                        raise self._bad("its gzip stream is truncated")
                out = self._z.decompress(data, want)
                if out:
                    return self._count(out)
        except zlib.error:
            raise self._bad("it is not valid gzip") from None

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, fewer only at the end of the stream."""
        parts, left = [], size
        while left > 0:
            data = self._next(min(left, _CHUNK))
            if not data:
                break
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def skip(self, size: int) -> int:
        """Pass over ``size`` bytes (seeking when uncompressed); how many there were."""
        if self._z is None and not self._head and self._raw.seekable():
            here = self._raw.tell()
            end = self._raw.seek(0, io.SEEK_END)
            passed = max(0, min(size, end - here))
            self._raw.seek(here + passed)
            self._add(passed)
            return passed
        passed = 0
        while passed < size:
            data = self._next(min(size - passed, _CHUNK))
            if not data:
                break
            passed += len(data)
        return passed

    def _bad(self, why: str) -> NotAnArchive:
        return NotAnArchive(f"{self._what} is not a tar archive: {why}")


def _pax_size(data: bytes, bad: NotAnArchive) -> tuple[int | None, bool]:
    """The ``size`` a pax header sets (if any), and whether it marks a sparse file."""
    size, sparse, pos = None, False, 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding after the last record
            break
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise bad
        length = int(data[pos:space])
        record = data[space + 1 : pos + length]
        if length <= space - pos or not record.endswith(b"\n") or b"=" not in record:
            raise bad
        key, _, value = record[:-1].partition(b"=")
        if key == b"size":
            if not value.isdigit():
                raise bad
            size = int(value)
        elif key.startswith(b"GNU.sparse"):
            sparse = True
        pos += length
    return size, sparse


def check_archive(
    raw: BinaryIO, limits: Limits, what: str = "the git-deploy body"
) -> ArchiveSummary:
    """Read the archive's headers; raise at the first limit it exceeds or flaw it has."""
    not_tar = NotAnArchive(f"{what} is not a tar archive")
    # Headers and padding come on top of what the members declare.
    cap = limits.unpacked_bytes + 10 * BLOCK * (limits.archive_entries + 1) + _TRAILER_BYTES
    source = _Source(raw, cap, what, limits.unpacked_bytes)
    entries = unpacked = meta = 0
    size_override: int | None = None
    while True:
        block = source.read(BLOCK)
        if not block:
            if entries == 0:
                raise not_tar
            break  # no end-of-archive blocks: tolerated, as tar and Docker do
        if len(block) < BLOCK:
            if entries == meta == 0:
                raise not_tar
            raise NotAnArchive(f"{what} is not a tar archive: it is truncated")
        if block.count(0) == BLOCK:
            if entries == 0:
                raise NotAnArchive(f"{what} is an empty tar archive: it has no files")
            if source.skip(_TRAILER_BYTES + 1) > _TRAILER_BYTES:
                raise NotAnArchive(
                    f"{what} is not a tar archive: it has more than "
                    f"{human(_TRAILER_BYTES)} of data after its end"
                )
            break
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError:
            raise not_tar from None
        if info.size < 0:
            raise not_tar
        if info.type in _META_TYPES:
            meta += 1
            if meta > _META_IN_A_ROW or info.size > _META_BYTES:
                raise NotAnArchive(f"{what} is not a tar archive: it has oversized headers")
            unpacked += info.size
            if unpacked > limits.unpacked_bytes:
                raise TooLarge(
                    f"{what} unpacks to more than the limit of {human(limits.unpacked_bytes)}"
                )
            data = source.read(_padded(info.size))
            if len(data) < _padded(info.size):
                raise NotAnArchive(f"{what} is not a tar archive: it is truncated")
            if info.type == tarfile.XHDTYPE:
                size_override, sparse = _pax_size(data[: info.size], not_tar)
                if sparse:
                    raise NotAnArchive(f"{what} has a sparse file: sparse files are not accepted")
            continue
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise NotAnArchive(f"{what} has a sparse file: sparse files are not accepted")
        size = info.size if size_override is None else size_override
        meta, size_override = 0, None
        entries += 1
        if entries > limits.archive_entries:
            raise TooLarge(f"{what} has more entries than the limit of {limits.archive_entries}")
        has_data = info.isreg() or info.type not in tarfile.SUPPORTED_TYPES
        if not has_data:
            continue
        unpacked += size
        if unpacked > limits.unpacked_bytes:
            raise TooLarge(
                f"{what} unpacks to more than the limit of {human(limits.unpacked_bytes)}"
            )
        if source.skip(_padded(size)) < _padded(size):
            raise NotAnArchive(f"{what} is not a tar archive: it is truncated")
    return ArchiveSummary(entries=entries, unpacked_bytes=unpacked, compressed=source.compressed)
