"""Checking a tenant's tar archive: format, entry count, unpacked size, bombs."""

from __future__ import annotations

import gzip
import io
import tarfile
import time

import pytest

from dockyard.domain.archives import NotAnArchive, check_archive
from dockyard.domain.limits import MIB, Limits, TooLarge

LIMITS = Limits(unpacked_bytes=8 * MIB, archive_entries=50)


def tar(files: dict[str, bytes], *, format: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def gzip_zeros(mebibytes: int) -> bytes:
    """``mebibytes`` MiB of zeros as a gzip stream (concatenated members, as gzip reads them)."""
    return gzip.compress(bytes(MIB)) * mebibytes


def check(data: bytes, limits: Limits = LIMITS) -> object:
    return check_archive(io.BytesIO(data), limits)


class Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_plain_and_gzip_archives_pass() -> None:
    files = {"Dockerfile": b"FROM busybox\n", "www/index.html": b"hi" * 1000}
    summary = check(tar(files))
    assert (summary.entries, summary.unpacked_bytes, summary.compressed) == (2, 2013, False)
    summary = check(gzip.compress(tar(files)))
    assert (summary.entries, summary.unpacked_bytes, summary.compressed) == (2, 2013, True)
    # A stream that cannot seek is read through instead.
    stream = io.BufferedReader(Unseekable(tar(files)))
    assert check_archive(stream, LIMITS).entries == 2  # type: ignore[arg-type]


def test_pax_and_long_names_pass() -> None:
    long = "d/" + "x" * 300
    for format in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        assert check(tar({long: b"abc", "Dockerfile": b"FROM x\n"}, format=format)).entries == 2


@pytest.mark.parametrize(
    "body",
    [b"", b"not a tar file at all", b"x" * 4096, gzip.compress(b"hello, not a tar" * 100)],
    ids=["empty", "text", "block-of-text", "gzip-of-text"],
)
def test_a_body_that_is_not_a_tar_is_refused(body: bytes) -> None:
    with pytest.raises(NotAnArchive) as raised:
        check(body)
    assert raised.value.message == "the git-deploy body is not a tar archive"


def test_broken_gzip_and_truncated_tar_are_refused() -> None:
    with pytest.raises(NotAnArchive, match="not a tar archive: it is not valid gzip"):
        check(b"\x1f\x8b" + b"garbage" * 100)
    with pytest.raises(NotAnArchive, match="not a tar archive: its gzip stream is truncated"):
        check(gzip.compress(tar({"a": b"1"}))[:-30])
    with pytest.raises(NotAnArchive, match="not a tar archive: it is truncated"):
        check(tar({"a": b"1" * 5000})[:2048])


def test_zero_filled_bodies_fail_at_once() -> None:
    with pytest.raises(NotAnArchive, match=r"^the git-deploy body is an empty tar archive"):
        check(bytes(10 * MIB))
    # 1 GiB of zeros, gzip-compressed (about 1 MiB): refused after its first block.
    bomb = gzip_zeros(1024)
    started = time.monotonic()
    with pytest.raises(NotAnArchive, match="empty tar archive"):
        check(bomb, Limits())
    assert time.monotonic() - started < 0.5


def test_a_member_declaring_a_huge_size_fails_at_its_header() -> None:
    header = tarfile.TarInfo("big")
    header.size = 100 * 1024**3
    body = header.tobuf(tarfile.GNU_FORMAT) + bytes(1024)
    with pytest.raises(TooLarge) as raised:
        check(gzip.compress(body))
    assert raised.value.message == "the git-deploy body unpacks to more than the limit of 8 MiB"


def test_unpacked_size_counts_every_member() -> None:
    files = {f"f{i}": bytes(MIB) for i in range(9)}
    with pytest.raises(TooLarge, match="unpacks to more than the limit of 8 MiB"):
        check(gzip.compress(tar(files)))
    assert check(tar(dict(list(files.items())[:7]))).unpacked_bytes == 7 * MIB


def test_entry_count_is_limited() -> None:
    files = {f"f{i}": b"" for i in range(51)}
    with pytest.raises(TooLarge) as raised:
        check(tar(files))
    assert raised.value.message == "the git-deploy body has more entries than the limit of 50"
    assert check(tar(dict(list(files.items())[:50]))).entries == 50


def test_a_pax_size_counts_and_pax_headers_are_bounded() -> None:
    info = tarfile.TarInfo("big")
    info.size = 0
    info.pax_headers = {"size": str(100 * 1024**3)}
    body = info.tobuf(tarfile.PAX_FORMAT) + bytes(1024)
    with pytest.raises(TooLarge, match="unpacks to more than the limit"):
        check(body)
    # A pax header that claims gigabytes is not read into memory.
    bloated = tarfile.TarInfo("././@PaxHeader")
    bloated.type = tarfile.XHDTYPE
    bloated.size = 3 * 1024**3
    with pytest.raises(NotAnArchive, match="oversized headers"):
        check(bloated.tobuf(tarfile.USTAR_FORMAT) + bytes(4096))


def test_data_after_the_end_is_bounded() -> None:
    body = gzip.compress(tar({"Dockerfile": b"FROM x\n"})) + gzip_zeros(64 * 1024)
    started = time.monotonic()
    with pytest.raises(NotAnArchive, match="more than 1 MiB of data after its end"):
        check(body, Limits())
    assert time.monotonic() - started < 0.5
    with pytest.raises(NotAnArchive, match="data after its gzip stream"):
        check(gzip.compress(tar({"a": b"1"})) + b"junk")


def test_sparse_files_are_refused() -> None:
    info = tarfile.TarInfo("sparse")
    info.type = tarfile.GNUTYPE_SPARSE
    with pytest.raises(NotAnArchive, match="sparse files are not accepted"):
        check(info.tobuf(tarfile.GNU_FORMAT) + bytes(1024))


def test_another_name_appears_in_messages() -> None:
    with pytest.raises(NotAnArchive) as raised:
        check_archive(io.BytesIO(b"nope"), LIMITS, what="the push")
    assert raised.value.message == "the push is not a tar archive"
