"""Large, realistic, compressible layers streamed to disk (for the bench).

Content is text-like (words from a seeded vocabulary) so gzip gets a ratio
close to real filesystems (~3x) instead of the 1x of random bytes or the
1000x of zeros. Producing it word by word in Python is too slow for hundreds
of MB, so one 1 MiB base block is made once and each later block is a
cheap transformation of it (a letter permutation and a rotation): different
bytes within any compressor's match window, made at memory speed.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import tarfile
from pathlib import Path

from tests.harness.blobs import Blob, CompressingWriter, Compression
from tests.harness.images import BuiltImage, Format, Layer, build_image, layer_media_type
from tests.harness.tarspec import EPOCH

BLOCK = 1 << 20
_LETTERS = b"abcdefghijklmnopqrstuvwxyz"


class TextSource:
    """An endless deterministic stream of text-like bytes."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        words = [bytes(self._rng.choices(_LETTERS, k=self._rng.randint(2, 10)))
                 for _ in range(4096)]  # fmt: skip
        # Zipf-like word frequencies, as in natural text and source code.
        cum = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(words))))
        lines = []
        size = 0
        while size < BLOCK:
            picked = self._rng.choices(words, cum_weights=cum, k=self._rng.randint(4, 14))
            line = b" ".join(picked) + b"\n"
            lines.append(line)
            size += len(line)
        self._base = b"".join(lines)[:BLOCK]

    def block(self) -> bytes:
        perm = list(_LETTERS)
        self._rng.shuffle(perm)
        table = bytes.maketrans(_LETTERS, bytes(perm))
        cut = self._rng.randrange(BLOCK)
        b = self._base.translate(table)
        return b[cut:] + b[:cut]


def large_layer(
    dest_dir: Path,
    compressed_size: int,
    *,
    seed: int = 0,
    fmt: Format = "oci",
    compression: Compression = "gzip",
    level: int = 1,
    file_size: int = 8 * BLOCK,
) -> Layer:
    """A layer of ``file_size`` files whose *compressed* size just exceeds
    ``compressed_size``; the blob is written to ``dest_dir`` and reused from
    there by a later call with the same arguments (generation costs seconds)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    key = f"large-{seed}-{compressed_size}-{fmt}-{compression}-{level}-{file_size}"
    meta_path = dest_dir / f"{key}.json"
    media_type = layer_media_type(fmt, compression)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        path = dest_dir / meta["digest"].replace(":", "-")
        if path.exists() and path.stat().st_size == meta["size"]:
            blob = Blob(media_type, meta["digest"], meta["size"], path=path)
            return Layer(blob, meta["diff_id"])
    tmp = dest_dir / f"{key}.tmp"
    src = TextSource(seed)
    with tmp.open("wb") as f:
        w = CompressingWriter(f, compression, level)
        _write_tar(w, src, file_size, compressed_size)
        w.close()
    digest = "sha256:" + w.blob_hasher.hexdigest()
    path = dest_dir / digest.replace(":", "-")
    os.replace(tmp, path)
    diff_id = "sha256:" + w.diff_hasher.hexdigest()
    meta = {"digest": digest, "size": w.compressed_size, "diff_id": diff_id}
    meta_path.write_text(json.dumps(meta))
    return Layer(Blob(media_type, digest, w.compressed_size, path=path), meta["diff_id"])


def _write_tar(w: CompressingWriter, src: TextSource, file_size: int, target: int) -> None:
    """Write tar members by hand: tarfile copies file data in 16 KiB pieces,
    which made generation several times slower than compression."""
    written = 0
    i = 0
    while w.compressed_size < target:
        info = tarfile.TarInfo(f"data/part{i:05d}.txt")
        info.size = file_size
        info.mtime = EPOCH
        info.mode = 0o644
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        w.write(header)
        left = file_size
        while left:
            block = src.block()[:left]
            w.write(block)
            left -= len(block)
        pad = -file_size % tarfile.BLOCKSIZE
        w.write(b"\0" * pad)
        written += len(header) + file_size + pad
        i += 1
    # End-of-archive: two zero blocks, then pad to a whole record like tar(1).
    end = 2 * tarfile.BLOCKSIZE
    end += -(written + end) % tarfile.RECORDSIZE
    w.write(b"\0" * end)


def large_image(
    dest_dir: Path,
    total_compressed: int = 150 * 1000 * 1000,
    layers: int = 4,
    *,
    seed: int = 0,
    fmt: Format = "oci",
    compression: Compression = "gzip",
) -> BuiltImage:
    """An image of ``layers`` large layers totalling about ``total_compressed``
    bytes compressed; blobs live on disk under ``dest_dir``."""
    per = total_compressed // layers
    built = [large_layer(dest_dir, per, seed=seed * 1000 + i, fmt=fmt, compression=compression)
             for i in range(layers)]  # fmt: skip
    return build_image(built, fmt=fmt, compression=compression)
