"""Blob values and the compressors the image builder uses.

Digests here are plain ``sha256:<hex>`` strings and descriptors are plain
OCI JSON dicts: the harness stays independent of the product's value types so
that a bug there cannot hide itself in the tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

Compression = Literal["gzip", "zstd", "none"]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class Blob:
    """Content-addressed bytes, held in memory (``data``) or on disk (``path``)."""

    media_type: str
    digest: str
    size: int
    data: bytes | None = field(default=None, repr=False)
    path: Path | None = None
    annotations: dict[str, str] | None = None

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Blob:
        return cls(media_type, sha256(data), len(data), data=data)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path.open("rb")

    def copy_to(self, dest: Path) -> None:
        """Write the blob to ``dest``, hard-linking big on-disk blobs when possible."""
        if self.data is not None:
            dest.write_bytes(self.data)
            return
        assert self.path is not None
        try:
            dest.hardlink_to(self.path)
        except OSError:
            shutil.copyfile(self.path, dest)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        """The OCI descriptor JSON object for this blob (plus ``extra`` fields)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        out.update(extra)
        return out


def compress(data: bytes, compression: Compression, level: int | None = None) -> bytes:
    """Deterministic compression: gzip with mtime 0 and no file name."""
    if compression == "none":
        return data
    if compression == "gzip":
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=level or 6) as gz:
            gz.write(data)
        return buf.getvalue()
    if compression == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor(level=level or 3).compress(data))
    raise ValueError(f"unknown compression {compression!r}")


class CompressingWriter:
    """Streams bytes through a compressor into a file, hashing both sides.

    Used for layers too big to hold in memory; ``compressed_size`` lets a
    caller stop once the output reaches a target size.
    """

    def __init__(self, out: BinaryIO, compression: Compression, level: int | None = None):
        self._out = out
        self.diff_hasher = hashlib.sha256()
        self.blob_hasher = hashlib.sha256()
        self.compressed_size = 0
        self.uncompressed_size = 0
        self._zstd: Any = None
        self._gzip: gzip.GzipFile | None = None
        if compression == "gzip":
            self._gzip = gzip.GzipFile(fileobj=self._Sink(self), mode="wb", mtime=0,
                                       compresslevel=level or 6)  # fmt: skip
        elif compression == "zstd":
            import zstandard

            cctx = zstandard.ZstdCompressor(level=level or 3)
            sink = cast(BinaryIO, self._Sink(self))
            self._zstd = cctx.stream_writer(sink, closefd=False)
        elif compression != "none":
            raise ValueError(f"unknown compression {compression!r}")

    class _Sink(io.RawIOBase):
        def __init__(self, owner: CompressingWriter) -> None:
            self._owner = owner

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self._owner._emit(bytes(b))
            return len(b)

    def _emit(self, data: bytes) -> None:
        self.blob_hasher.update(data)
        self.compressed_size += len(data)
        self._out.write(data)

    def write(self, data: bytes) -> int:
        self.diff_hasher.update(data)
        self.uncompressed_size += len(data)
        if self._gzip is not None:
            self._gzip.write(data)
        elif self._zstd is not None:
            self._zstd.write(data)
        else:
            self._emit(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()
            self._gzip = None
        if self._zstd is not None:
            import zstandard

            self._zstd.flush(zstandard.FLUSH_FRAME)
            self._zstd = None
