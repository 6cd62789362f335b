"""Tar headers that make tarfile read without bound: a PAX header or GNU long
name claiming gigabytes (tarfile reads it whole into memory: a 9 MB gzip took
4.9 GB here before the cap), and GNU sparse maps that go on block after block.
Every tar reader of ours — the layer applier, the archive index behind
docker-archive/oci-archive sources, the layout importer — refuses them with
one line, as Go's archive/tar does (1 MiB for special headers)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from ocidist.archive import ApplyOptions, apply_layer
from ocidist.archive.tarstream import MAX_SPARSE_MAP, MAX_SPECIAL_SIZE
from ocidist.errors import ArchiveError, InvalidContent
from ocidist.tarindex import TarIndex
from tests.dist_cli import one_error_line
from tests.test_layout import dist


def _checksummed(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def big_pax_header() -> bytes:
    """A valid tar whose one member has a 2 MiB PAX record (a comment)."""
    info = tarfile.TarInfo("a")
    info.pax_headers = {"comment": "x" * (MAX_SPECIAL_SIZE + (1 << 20))}
    return _one(info, b"a")


def _one(info: tarfile.TarInfo, data: bytes) -> bytes:
    buf = io.BytesIO()
    info.size = len(data)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def long_gnu_name() -> bytes:
    info = tarfile.TarInfo("d/" * (MAX_SPECIAL_SIZE // 2 + 10) + "f")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info.size = 1
        tf.addfile(info, io.BytesIO(b"f"))
    return buf.getvalue()


def gnu_sparse(extension_blocks: int, *, cut: bool = False) -> bytes:
    """An old-GNU sparse member whose map goes on for ``extension_blocks``
    blocks (each 21 segments); ``cut``: the stream ends inside the map."""
    header = bytearray(tarfile.TarInfo("s").tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[124:136] = b"%011o\0" % 0  # no data stored
    header[482] = 1  # extended
    header[483:495] = b"%011o\0" % (1 << 30)
    out = [_checksummed(header)]
    for i in range(extension_blocks):
        block = bytearray(512)
        for j in range(21):
            pos = j * 24
            block[pos : pos + 12] = b"%011o\0" % (1 + (i * 21 + j) * 2)
            block[pos + 12 : pos + 24] = b"%011o\0" % 1
        block[504] = 1 if i < extension_blocks - 1 else 0
        out.append(bytes(block))
    data = b"".join(out)
    return data[: len(data) - 300] if cut else data + b"\0" * 1024


def sparse_10_map(numbers: int) -> bytes:
    """A PAX GNU sparse 1.0 member whose map claims ``numbers`` segments."""
    info = tarfile.TarInfo("GNUSparseFile.0/s")
    info.pax_headers = {
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0",
        "GNU.sparse.name": "s", "GNU.sparse.realsize": "1",
    }  # fmt: skip
    body = b"%d\n" % numbers + b"1\n" * (2 * numbers)
    return _one(info, body)


CASES = {
    "pax-2MiB": big_pax_header,
    "gnu-long-name": long_gnu_name,
    "sparse-map-9MiB": lambda: gnu_sparse(MAX_SPARSE_MAP // 512 + 100),
    "sparse-map-cut": lambda: gnu_sparse(3, cut=True),
    "sparse-1.0-map": lambda: sparse_10_map(MAX_SPARSE_MAP // 4 + 10),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_applier_refuses(tmp_path: Path, case: str) -> None:
    data = gzip.compress(CASES[case](), compresslevel=1)
    with pytest.raises(ArchiveError) as e:
        apply_layer(str(tmp_path), io.BytesIO(data), options=ApplyOptions(layer_name="L"))
    assert "\n" not in str(e.value) and str(e.value).startswith("layer L")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_archive_index_refuses(tmp_path: Path, case: str) -> None:
    path = tmp_path / "a.tar.gz"
    path.write_bytes(gzip.compress(CASES[case](), compresslevel=1))
    with pytest.raises(InvalidContent) as e:
        TarIndex(str(path)).close()
    assert "not a readable tar" in str(e.value)


@pytest.mark.parametrize("case", ["pax-2MiB", "sparse-map-cut"])
def test_dist_import_says_one_line(tmp_path: Path, case: str) -> None:
    path = tmp_path / "image.tar"
    path.write_bytes(CASES[case]())
    proc = dist(tmp_path / "root", "import", str(path), "--name", "x.io/a")
    assert proc.returncode in (1, 2), proc.stderr
    assert "not a readable tar" in one_error_line(proc)


def test_headers_at_the_limit_are_read(tmp_path: Path) -> None:
    info = tarfile.TarInfo("a")
    info.pax_headers = {"comment": "x" * (MAX_SPECIAL_SIZE - 4096)}
    apply_layer(str(tmp_path), io.BytesIO(_one(info, b"ok")))
    assert (tmp_path / "a").read_bytes() == b"ok"
