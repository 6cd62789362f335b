"""Write images from the store as a `docker save` archive (what `docker load` reads).

The layout is the one ``docker save`` wrote before Docker 25 and skopeo's
``docker-archive:`` writes today::

    <id>/VERSION  <id>/json  <id>/layer.tar     one directory per layer
    <config hex>.json                           the image config, as stored
    manifest.json                               [{"Config", "RepoTags", "Layers"}]
    repositories                                {"repo": {"tag": "<top layer id>"}}

Layers are written as plain tars, as ``docker save`` does: each is
decompressed on the way, and its uncompressed digest must equal the
config's diff_id (the compressed bytes are checked against the layer
digest as they are read from the store). A layer's size is known only once
it is decompressed, so its tar header is written first with a zero size and
rewritten in place afterwards; the archive is therefore written to a
seekable file (a temporary one for ``-``, then copied to stdout).

Layer directory names follow skopeo: the layer's chain ID (diff_ids folded
with their parents), so a diff_id that appears twice in an image still gets
two directories, and ``parent`` links cannot loop. Docker computes its own
IDs on load; ``manifest.json`` is what it reads.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from typing import IO, Any, cast

from ocidist import jsondata
from ocidist.content import Provider
from ocidist.digest import Digest, VerifyingReader
from ocidist.errors import DigestMismatch, InvalidContent
from ocidist.images.unpack import MAX_CONFIG_SIZE, ImageParts
from ocidist.stream import Readable, copy_stream
from ocidist.value import Value

BLOCK = 512
# Fields of the image config the legacy top-layer json repeats (as skopeo does).
_LEGACY_FIELDS = (
    "architecture",
    "config",
    "container",
    "container_config",
    "created",
    "docker_version",
    "os",
)


class SavedImage(Value):
    """One image to save: its parts (manifest, config, layers, diff_ids) and tags."""

    __slots__ = ("parts", "repo_tags")
    parts: ImageParts
    repo_tags: tuple[str, ...]  # Docker's short form: "redis:7", "host:5000/a:1"

    def __init__(self, parts: ImageParts, repo_tags: Sequence[str]) -> None:
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "repo_tags", tuple(repo_tags))


def chain_ids(diff_ids: Sequence[Digest]) -> list[str]:
    """Each layer's chain ID (hex): diff_ids folded with their parents'."""
    out: list[str] = []
    chain: Digest | None = None
    for d in diff_ids:
        chain = d if chain is None else Digest.from_bytes(f"{chain} {d}".encode())
        out.append(chain.encoded)
    return out


def write_docker_archive(store: Provider, images: Sequence[SavedImage], dest: str) -> int:
    """Write ``images`` to ``dest`` (a path, or ``-`` for stdout); returns the archive's size."""
    if dest == "-":
        from ocidist.paths import big_temp_dir

        with tempfile.TemporaryFile(prefix="ocidist-save-", dir=big_temp_dir()) as tmp:
            size = _write(store, images, tmp)
            tmp.seek(0)
            copy_stream(tmp, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        return size
    from ocidist.content.fsutil import atomic_file

    with atomic_file(os.path.abspath(dest)) as out:
        return _write(store, images, out)


def _write(store: Provider, images: Sequence[SavedImage], out: IO[bytes]) -> int:
    tar = _TarWriter(out)
    entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    for image in images:
        parts = image.parts
        config = _read_config(store, parts)
        ids = chain_ids(parts.diff_ids)
        layer_paths = []
        parent = ""
        for i, (layer_id, layer, diff_id) in enumerate(
            zip(ids, parts.layers, parts.diff_ids, strict=True)
        ):
            path = f"{layer_id}/layer.tar"
            layer_paths.append(path)
            if layer_id not in written:
                written.add(layer_id)
                top = i == len(ids) - 1
                tar.add_dir(layer_id)
                tar.add_bytes(f"{layer_id}/VERSION", b"1.0")
                tar.add_bytes(f"{layer_id}/json", _legacy_json(layer_id, parent, config, top))
                with store.reader(layer.digest) as f:
                    verified = VerifyingReader(
                        cast(Readable, f), layer.digest, layer.size, what=f"content {layer.digest}"
                    )
                    tar.add_stream(path, _plain_layer(verified, diff_id, layer.digest))
            parent = layer_id
        config_name = f"{parts.config.digest.encoded}.json"
        if config_name not in written:
            written.add(config_name)
            tar.add_bytes(config_name, config)
        entries.append({"Config": config_name, "RepoTags": image.repo_tags, "Layers": layer_paths})
        for tag in image.repo_tags:
            repo, _, name = tag.rpartition(":")
            if ids:
                repositories.setdefault(repo, {})[name] = ids[-1]
    tar.add_bytes("manifest.json", json.dumps(entries, separators=(",", ":")).encode() + b"\n")
    tar.add_bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode() + b"\n")
    return tar.close()


def _read_config(store: Provider, parts: ImageParts) -> bytes:
    desc = parts.config
    if desc.size > MAX_CONFIG_SIZE:
        raise InvalidContent(f"config {desc.digest}: {desc.size} bytes is too large")
    with store.reader(desc.digest) as f:
        data = f.read(desc.size + 1)
    if len(data) != desc.size or Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
        raise DigestMismatch(f"content {desc.digest}: digest mismatch in the store")
    return data


def _legacy_json(layer_id: str, parent: str, config: bytes, top: bool) -> bytes:
    obj: dict[str, Any] = {"id": layer_id}
    if parent:
        obj["parent"] = parent
    if top:
        try:
            full = jsondata.loads(config, "config")
        except InvalidContent:  # the image's own config: export what we can
            full = {}
        if isinstance(full, dict):
            obj.update({k: full[k] for k in _LEGACY_FIELDS if k in full})
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _plain_layer(src: VerifyingReader, diff_id: Digest, dgst: Digest) -> Iterable[bytes]:
    """The layer's uncompressed bytes; the last chunk is held back until they
    hash to ``diff_id`` (a reader never gets a complete-looking bad layer)."""
    from ocidist.archive.compression import decompressed_chunks
    from ocidist.errors import CompressionError

    h = diff_id.hasher()
    try:
        _, chunks = decompressed_chunks(src)  # type: ignore[arg-type]
        held = b""
        for chunk in chunks:
            if held:
                yield held
            h.update(chunk)
            held = chunk
    except CompressionError as e:
        raise InvalidContent(f"layer {dgst}: {e}") from None
    if h.hexdigest() != diff_id.encoded:
        raise DigestMismatch(
            f"layer {dgst}: uncompressed digest mismatch: got {diff_id.algorithm}:{h.hexdigest()}, "
            f"the config says {diff_id}"
        )
    if held:
        yield held


class _TarWriter:
    """A tar written by hand (tarfile cannot write a member of unknown size):
    GNU headers of one block each, mtime 0, root-owned, so the same images
    always save to the same bytes."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.pos = 0

    def _header(self, name: str, size: int, *, directory: bool = False) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = 0 if directory else size
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.mode = 0o755 if directory else 0o644
        info.mtime = 0
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")

    def _write(self, data: bytes | memoryview) -> None:
        self.out.write(data)
        self.pos += len(data)

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._write(b"\0" * (BLOCK - size % BLOCK))

    def add_dir(self, name: str) -> None:
        self._write(self._header(name + "/", 0, directory=True))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._write(self._header(name, len(data)))
        self._write(data)
        self._pad(len(data))

    def add_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        start = self.pos
        placeholder = self._header(name, 0)
        if len(placeholder) != BLOCK:
            raise InvalidContent(f"{name}: name too long for a one-block tar header")
        self._write(placeholder)
        size = 0
        for chunk in chunks:
            self._write(chunk)
            size += len(chunk)
        self._pad(size)
        header = self._header(name, size)
        if len(header) != BLOCK:
            raise InvalidContent(f"{name}: header grew with its size")
        end = self.pos
        self.out.seek(start)
        self.out.write(header)
        self.out.seek(end)

    def close(self) -> int:
        self._write(b"\0" * (2 * BLOCK))
        return self.pos
