"""Compression detection and bad input: every failure is one ArchiveError line
naming the layer (and the entry when there is one)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from pathlib import Path

import pytest
import zstandard

from ocidist.archive import ApplyOptions, Compression, apply_layer, detect
from ocidist.errors import ArchiveError
from tests.archive_helpers import compress, dir_, reg, tar_bytes

BIG = os.urandom(1 << 20)  # incompressible: truncation lands inside file data
RAW = tar_bytes([dir_("d"), reg("d/a", b"a" * 10), reg("d/big", BIG), reg("d/z", b"z")])


def _apply(root: Path, data: bytes, *, threaded: bool = True) -> None:
    opts = ApplyOptions(layer_name="L", threaded=threaded)
    apply_layer(str(root), io.BytesIO(data), options=opts)


def _one_line(e: pytest.ExceptionInfo[ArchiveError]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("layer L: ")
    return msg


def test_detect() -> None:
    assert detect(gzip.compress(RAW)) is Compression.GZIP
    assert detect(compress(RAW, "zstd")) is Compression.ZSTD
    assert detect(RAW[:512]) is Compression.NONE
    assert detect(b"") is Compression.NONE
    assert detect(b"\0" * 1024) is Compression.NONE


@pytest.mark.parametrize(
    ("data", "name"),
    [(bz2.compress(RAW), "bzip2"), (lzma.compress(RAW), "xz"), (b"hello world" * 100, None)],
    # Named: an id made of RAW's random bytes differs in every process, and
    # pytest-xdist's workers must collect the same tests.
    ids=["bzip2", "xz", "not-compressed"],
)
def test_unsupported_compression(tmp_path: Path, data: bytes, name: str | None) -> None:
    with pytest.raises(ArchiveError) as e:
        _apply(tmp_path, data)
    msg = _one_line(e)
    assert "unsupported compression" in msg
    if name:
        assert name in msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["gzip", "zstd"])
@pytest.mark.parametrize("threaded", [True, False])
def test_truncated_compressed_stream(tmp_path: Path, how: str, threaded: bool) -> None:
    data = compress(RAW, how)
    with pytest.raises(ArchiveError) as e:
        _apply(tmp_path, data[: len(data) * 2 // 3], threaded=threaded)
    msg = _one_line(e)
    assert f"truncated {how} stream" in msg or "truncated tar stream" in msg


def test_gzip_missing_trailer_only(tmp_path: Path) -> None:
    # All tar bytes are there; only the CRC/size trailer is cut off.
    data = gzip.compress(RAW)
    with pytest.raises(ArchiveError) as e:
        _apply(tmp_path, data[:-4])
    assert "truncated gzip stream" in _one_line(e)


@pytest.mark.parametrize("how", ["gzip", "zstd"])
def test_corrupt_compressed_stream(tmp_path: Path, how: str) -> None:
    raw = tar_bytes([reg(f"f{i}", b"hello layer %d " % i * 2000) for i in range(20)])
    if how == "zstd":
        # zstd detects corruption only with the frame checksum (which real
        # tools write); otherwise the diff_id check is what catches it.
        data = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(raw))
    else:
        data = bytearray(gzip.compress(raw))
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xA5
    with pytest.raises(ArchiveError) as e:
        _apply(tmp_path, bytes(data))
    assert f"corrupt {how} stream" in _one_line(e)


def test_multi_member_gzip_is_one_stream(tmp_path: Path) -> None:
    half = len(RAW) // 2
    data = gzip.compress(RAW[:half]) + gzip.compress(RAW[half:])
    res = apply_layer(str(tmp_path), io.BytesIO(data))
    assert (tmp_path / "d/big").read_bytes() == BIG
    assert res.size == len(RAW)


def test_truncated_plain_tar_inside_data(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError) as e:
        _apply(tmp_path, RAW[: 3 * 512 + 1000])  # in d/big's data
    msg = _one_line(e)
    assert "entry d/big" in msg and "truncated" in msg


def test_truncated_plain_tar_inside_header(tmp_path: Path) -> None:
    # Headers and data blocks: d, d/a + 1 block, d/big + 1 MiB; then d/z's header.
    cut = 512 + 1024 + 512 + len(BIG) + 100
    assert RAW[cut - 100 : cut - 100 + 3] == b"d/z"
    with pytest.raises(ArchiveError) as e:
        _apply(tmp_path, RAW[:cut])
    assert "truncated" in _one_line(e)


def test_malformed_header_mid_stream(tmp_path: Path) -> None:
    first = tar_bytes([reg("ok", b"fine")])[:1024]  # header + one data block
    with pytest.raises(ArchiveError) as e:
        _apply(tmp_path, first + b"\xff" * 512 + b"\0" * 1024)
    assert "malformed tar header" in _one_line(e)
    assert (tmp_path / "ok").read_bytes() == b"fine"


def test_missing_root_directory(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError) as e:
        _apply(tmp_path / "nope", gzip.compress(RAW))
    assert "no such file or directory" in _one_line(e)
