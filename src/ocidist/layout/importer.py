"""Import an OCI image layout (directory or tar) into the store, all or nothing."""

from __future__ import annotations

import contextlib
import os
import sys
import tarfile
from typing import Any, BinaryIO

from ocidist import jsondata, reference
from ocidist.archive.tarstream import BoundedTarInfo
from ocidist.content import Store, Writer
from ocidist.descriptor import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    is_index,
    is_manifest,
    is_manifest_or_index,
)
from ocidist.digest import Digest
from ocidist.errors import (
    AlreadyExists,
    DigestMismatch,
    DistError,
    InvalidArgument,
    InvalidContent,
    NotFound,
)
from ocidist.images.handlers import child_labels
from ocidist.images.walk import Recorder, index_entries, manifest_children, walk
from ocidist.layout.common import (
    BUFSIZE,
    IMAGE_NAME,
    INDEX_FILE,
    LAYOUT_FILE,
    MAX_OPEN_WRITERS,
    REF_NAME,
    read_small,
)
from ocidist.metadata import Image, Metadata

# -- import -------------------------------------------------------------------

# JSON blobs (manifests, indexes, configs) of a tar are kept in memory until
# the graph is walked, since index.json may come last; this bounds them.
MAX_JSON_CACHE = 256 * 1024 * 1024


def import_layout(
    store: Store,
    metadata: Metadata,
    src: str,
    *,
    name: str | None = None,
    fileobj: BinaryIO | None = None,
) -> list[Image]:
    """Read the layout directory or tar ``src`` (``-``: a tar on stdin) into
    ``store`` and name its images in ``metadata``.

    Names come from each index.json entry: ``name`` (a repository such as
    ``localhost:5000/app``) plus the entry's ``ref.name`` tag; else the entry's
    ``io.containerd.image.name``, or a ``ref.name`` that is a full reference.
    An entry with no way to name it is an error (exit 2). ``fileobj``, when
    given, is the tar itself (``src`` then only names it in messages).
    """
    base = reference.parse(name, default_tag="") if name is not None else None
    reader = _LayoutReader(store, src)
    try:
        if fileobj is not None:
            reader.read_tar(src, fileobj)
        elif src != "-" and os.path.isdir(src):
            reader.read_dir(src)
        else:
            reader.read_tar(src)
        # Names before anything is committed: a bad name leaves no trace.
        named = [(_entry_name(e, base), e) for e in reader.entries]
        if base is not None and (base.tag or base.digest) and len(named) > 1:
            raise InvalidArgument(f"--name {name} has a tag but the layout holds {len(named)}")
        order, labels = reader.walk()
        reader.ingests.commit(order, labels)
    finally:
        reader.ingests.abort()
    return [metadata.put_image(n, desc) for n, desc in named]


def _entry_name(desc: Descriptor, base: reference.Reference | None) -> str:
    ref_name = desc.annotations.get(REF_NAME, "")
    full = desc.annotations.get(IMAGE_NAME, "")
    if base is not None:
        if base.tag is not None or base.digest is not None:
            return base.name  # --name a/b:tag names the one image exactly
        tag = ref_name
        if ref_name and ("/" in ref_name or "@" in ref_name):
            tag = reference.parse(ref_name).tag or ""
        return base.with_tag(tag).name if tag else base.with_digest(desc.digest).name
    if full:
        return reference.parse(full).name
    if ref_name and ("/" in ref_name or "@" in ref_name):
        return reference.parse(ref_name).name  # a full reference, as some tools write
    what = f"tag {ref_name!r}" if ref_name else "no name"
    raise InvalidArgument(
        f"layout entry {desc.digest} has {what} but no image name: give --name REPOSITORY"
    )


class _Held:
    __slots__ = ("key", "size", "writer")

    def __init__(self, key: str, size: int, writer: Writer | None) -> None:
        self.key = key
        self.size = size
        self.writer = writer  # None: verified, closed, re-opened at commit


class _Ingests:
    """Blobs of one import: written and verified, committed only together."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.held: dict[Digest, _Held] = {}
        self._open = 0

    def has(self, dgst: Digest) -> bool:
        return dgst in self.held or self.store.exists(dgst)

    def size(self, dgst: Digest) -> int:
        held = self.held.get(dgst)
        return held.size if held is not None else self.store.info(dgst).size

    def add(self, dgst: Digest, size: int, src: Any, *, keep: bool) -> bytes | None:
        """Ingest ``size`` bytes of ``src``, checking them against ``dgst``.
        Returns the bytes when ``keep`` (for small JSON blobs)."""
        if self.has(dgst):
            return None
        key = f"import-{dgst}"
        try:
            w = self.store.writer(key, total=size, expected=dgst)
        except AlreadyExists:
            return None
        kept = bytearray() if keep else None
        try:
            if w.status().offset:
                w.truncate(0)  # a leftover of an earlier import: we have every byte
            n = 0
            while n < size and (chunk := src.read(min(BUFSIZE, size - n))):
                w.write(chunk)
                n += len(chunk)
                if kept is not None:
                    kept += chunk
            if n != size:
                raise DigestMismatch(f"layout blob {dgst}: size mismatch: {n} of {size} bytes")
            got = w.digest()
            if got != dgst:
                raise DigestMismatch(f"layout blob {dgst}: digest mismatch: got {got}")
        except BaseException:
            w.close()
            with contextlib.suppress(DistError):
                self.store.abort(key)
            raise
        held = _Held(key, size, w)
        if self._open >= MAX_OPEN_WRITERS:
            w.close()
            held.writer = None
        else:
            self._open += 1
        self.held[dgst] = held
        return bytes(kept) if kept is not None else None

    def commit(self, order: list[Digest], labels: dict[Digest, dict[str, str]]) -> None:
        for dgst in order:
            held = self.held.pop(dgst, None)
            if held is None:  # already in the store before this import
                if labels.get(dgst):
                    self.store.update(dgst, labels[dgst])
                continue
            w = held.writer
            if w is None:
                try:
                    w = self.store.writer(held.key, total=held.size, expected=dgst)
                except AlreadyExists:
                    continue
            try:
                with contextlib.suppress(AlreadyExists):
                    w.commit(held.size, dgst, labels.get(dgst))
            finally:
                w.close()

    def abort(self) -> None:
        """Drop every ingest not committed (failure, or unreachable blobs)."""
        for held in self.held.values():
            if held.writer is not None:
                held.writer.close()
            with contextlib.suppress(DistError):
                self.store.abort(held.key)
        self.held.clear()


class _LayoutReader:
    def __init__(self, store: Store, src: str) -> None:
        self.src = src
        self.store = store
        self.ingests = _Ingests(store)
        self.entries: list[Descriptor] = []
        self._json: dict[Digest, bytes] = {}
        self._json_bytes = 0
        self._dir: str | None = None
        self._saw_index = False

    # -- sources --

    def read_dir(self, path: str) -> None:
        self._dir = path
        try:
            with open(os.path.join(path, LAYOUT_FILE), "rb") as f:
                self._layout_file(f.read(4096))
            with open(os.path.join(path, INDEX_FILE), "rb") as f:
                self._index_file(f.read(MAX_MANIFEST_SIZE + 1))
        except FileNotFoundError as e:
            raise InvalidContent(f"{path}: not an OCI layout: no {e.filename}") from None
        # Blobs are ingested as the walk reaches them (only what is reachable).

    def read_tar(self, src: str, fileobj: BinaryIO | None = None) -> None:
        try:
            if fileobj is not None:
                self._tar(fileobj)
            elif src == "-":
                self._tar(sys.stdin.buffer)
            else:
                with open(src, "rb") as f:
                    self._tar(f)
        except FileNotFoundError:
            raise NotFound(f"{src}: not found") from None
        except (tarfile.TarError, EOFError, OSError) as e:
            if isinstance(e, OSError) and e.errno is not None:
                raise
            raise InvalidContent(f"{src}: not a readable tar: {e}") from None
        if not self.entries and not self._saw_index:
            raise InvalidContent(f"{src}: not an OCI layout: no {INDEX_FILE}")

    def _tar(self, f: BinaryIO) -> None:
        saw_layout = False
        with tarfile.open(fileobj=f, mode="r|*", bufsize=BUFSIZE, tarinfo=BoundedTarInfo) as tf:
            for info in tf:
                name = info.name.lstrip("/")
                while name.startswith("./"):
                    name = name[2:]
                if info.isdir() or not name:
                    continue
                parts = name.split("/")
                wanted = name in (LAYOUT_FILE, INDEX_FILE) or (
                    len(parts) == 3 and parts[0] == "blobs"
                )
                if not wanted:
                    continue  # docker save's manifest.json and friends
                if not info.isreg():
                    raise InvalidContent(f"{self.src}: {name} is not a regular file")
                data = tf.extractfile(info)
                assert data is not None  # regular members have data
                if name == LAYOUT_FILE:
                    self._layout_file(data.read(4096))
                    saw_layout = True
                elif name == INDEX_FILE:
                    self._index_file(data.read(MAX_MANIFEST_SIZE + 1))
                else:
                    self._tar_blob(parts[1], parts[2], info.size, data)
        if not saw_layout:
            raise InvalidContent(f"{self.src}: not an OCI layout: no {LAYOUT_FILE}")

    def _tar_blob(self, alg: str, encoded: str, size: int, data: Any) -> None:
        try:
            dgst = Digest.parse(f"{alg}:{encoded}")
        except InvalidArgument as e:
            raise InvalidContent(f"{self.src}: blobs/{alg}/{encoded}: {e}") from None
        keep = size <= MAX_MANIFEST_SIZE and self._json_bytes + size <= MAX_JSON_CACHE
        got = self.ingests.add(dgst, size, data, keep=keep)
        if got is not None and got[:1] == b"{":  # layers are never JSON; configs are small
            self._json[dgst] = got
            self._json_bytes += len(got)

    def _layout_file(self, data: bytes) -> None:
        try:
            version = jsondata.load_object(data, LAYOUT_FILE).get("imageLayoutVersion")
        except InvalidContent:
            version = None
        if not isinstance(version, str) or not version.startswith("1."):
            raise InvalidContent(f"{self.src}: {LAYOUT_FILE}: unsupported layout version")

    def _index_file(self, data: bytes) -> None:
        self.entries = index_entries(data, f"{self.src}: {INDEX_FILE}")
        self._saw_index = True

    # -- graph --

    def _available(self, desc: Descriptor) -> bool:
        """Whether ``desc``'s blob is (now) in hand; a directory's is ingested here."""
        dgst = desc.digest
        if not self.ingests.has(dgst) and self._dir is not None:
            path = os.path.join(self._dir, "blobs", dgst.algorithm, dgst.encoded)
            try:
                f = open(path, "rb", buffering=0)  # noqa: SIM115
            except FileNotFoundError:
                return False
            with f:
                json_like = is_index(desc.media_type) or is_manifest(desc.media_type)
                got = self.ingests.add(dgst, desc.size, f, keep=json_like)
                if f.read(1):
                    raise DigestMismatch(
                        f"layout blob {dgst}: size mismatch: more than {desc.size} bytes"
                    )
            if got is not None:
                self._json[dgst] = got
        if not self.ingests.has(dgst):
            return False
        if self.ingests.size(dgst) != desc.size:
            raise DigestMismatch(
                f"layout blob {dgst}: size mismatch: {self.ingests.size(dgst)} bytes, "
                f"descriptor says {desc.size}"
            )
        return True

    def _bytes(self, desc: Descriptor) -> bytes:
        data = self._json.get(desc.digest)
        if data is not None:
            return data
        if self.store.exists(desc.digest):
            return read_small(self.store, desc)
        raise InvalidContent(f"layout blob {desc.digest}: manifest too large to read")

    def walk(self) -> tuple[list[Digest], dict[Digest, dict[str, str]]]:
        """Children-first order of every reachable blob, and gc labels for
        manifests and indexes; fails on a missing or mis-sized blob."""
        labels: dict[Digest, dict[str, str]] = {}

        def take(desc: Descriptor) -> list[Descriptor]:
            if not self._available(desc):
                raise InvalidContent(f"layout blob {desc.digest} ({desc.media_type}): missing")
            if not is_manifest_or_index(desc.media_type):
                return []
            kids = manifest_children(desc, self._bytes(desc))
            if is_index(desc.media_type):
                # An entry left out on purpose (a one-platform export) is no error.
                kids = [k for k in kids if self._available(k)]
                if not kids:
                    raise InvalidContent(f"layout index {desc.digest}: no manifest present")
            labels[desc.digest] = child_labels(desc, kids)
            return kids

        if not self.entries:
            raise InvalidContent(f"{self.src}: {INDEX_FILE} lists no images")
        recorder = Recorder(take)
        walk(recorder, self.entries)  # one thread: a directory's blobs are ingested as it goes
        return [d.digest for d in recorder.children_first()], labels
