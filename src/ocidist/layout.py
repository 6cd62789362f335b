"""OCI image layout (image-spec ``image-layout.md``): export from the store, import into it.

A layout is ``oci-layout`` (``{"imageLayoutVersion":"1.0.0"}``), ``index.json``
naming the top-level objects, and ``blobs/<alg>/<hex>``; as a directory or as
a tar of one. Each exported ``index.json`` entry carries the tag in
``org.opencontainers.image.ref.name`` (what skopeo's ``oci:DIR:tag`` and
umoci's ``--image DIR:tag`` look up) and the full name in
``io.containerd.image.name`` (what ``ctr import`` reads back).

Export writes only what the image reaches and the store holds: the index of
an image pulled for one platform is written whole, with only that platform's
manifest below it — as ``ctr export`` does; a reader asking for another
platform finds it missing.

Import is all or nothing: every blob is written to an ingest and checked
against its digest (its file name) while it streams in, and nothing is
committed — no blob, no name — until every reachable blob verified and the
names are known.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from ocidist import manifest, reference
from ocidist.content import Store, Writer
from ocidist.descriptor import MAX_MANIFEST_SIZE, OCI_INDEX, Descriptor, is_index, is_manifest
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
from ocidist.images.platforms import MatchComparer, select
from ocidist.metadata import Image, MetadataStore

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
BUFSIZE = 1 << 20
# Writers held open during an import (two fds each); past this, verified
# ingests are closed and re-opened (one more hash pass) at commit.
MAX_OPEN_WRITERS = 128


def is_tar_path(path: str) -> bool:
    """Export writes a tar to ``-`` (stdout) or a path ending in ``.tar``."""
    return path == "-" or path.lower().endswith(".tar")


# -- export -------------------------------------------------------------------


@dataclass
class ExportResult:
    name: str
    target: Descriptor
    dest: str
    blobs: list[Descriptor] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(d.size for d in self.blobs)


def export_image(
    store: Store,
    metadata: MetadataStore,
    name: str,
    dest: str,
    *,
    platforms: MatchComparer | None = None,
    tag: str | None = None,
) -> ExportResult:
    """Write image ``name`` as an OCI layout to the directory or tar ``dest``.

    ``platforms`` keeps only matching manifests of an index; ``tag`` overrides
    the ``ref.name`` (default: the name's tag). An existing layout directory
    gets the image added, replacing an entry with the same ``ref.name``.
    """
    image = _lookup(metadata, name)
    blobs = _closure(store, image.target, platforms)
    entry = _index_entry(image, tag)
    if is_tar_path(dest):
        _write_tar(store, blobs, entry, dest)
    else:
        _write_dir(store, blobs, entry, dest)
    return ExportResult(image.name, image.target, dest, blobs)


def _lookup(metadata: MetadataStore, name: str) -> Image:
    try:
        return metadata.get_image(name)
    except NotFound:
        try:
            canonical = reference.parse(name).name
        except InvalidArgument:
            raise NotFound(f"image {name}: not found") from None
        return metadata.get_image(canonical)


def _closure(store: Store, target: Descriptor, matcher: MatchComparer | None) -> list[Descriptor]:
    """Everything ``target`` reaches that an export must carry, parents first."""
    out: dict[Digest, Descriptor] = {}

    def visit(desc: Descriptor, required: bool, depth: int) -> bool:
        if desc.digest in out:
            return True
        if not store.exists(desc.digest):
            if required:
                raise NotFound(f"content {desc.digest} ({desc.media_type}): not in the store")
            return False  # an index entry that was never pulled
        out[desc.digest] = desc
        if depth > 8:
            raise InvalidContent(f"{desc.digest}: indexes nested too deep")
        if is_index(desc.media_type) or is_manifest(desc.media_type):
            data = _read_small(store, desc)
            kids = manifest.children(desc, data)
            if is_index(desc.media_type):
                if matcher is not None:
                    kids = select(kids, matcher)
                found = [visit(k, False, depth + 1) for k in kids]
                if kids and not any(found):
                    raise NotFound(f"{desc.digest}: none of its manifests is in the store")
            else:
                for k in kids:
                    visit(k, True, depth + 1)
        return True

    visit(target, True, 0)
    return list(out.values())


def _read_small(store: Store, desc: Descriptor) -> bytes:
    if desc.size > MAX_MANIFEST_SIZE:
        raise InvalidContent(f"{desc.digest}: manifest of {desc.size} bytes is too large")
    with store.reader(desc.digest) as f:
        data = f.read(MAX_MANIFEST_SIZE + 1)
    if Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
        raise DigestMismatch(f"content {desc.digest}: digest mismatch in the store")
    return data


def _index_entry(image: Image, tag: str | None) -> dict[str, Any]:
    entry = Descriptor(image.target.media_type, image.target.digest, image.target.size)
    annotations = {IMAGE_NAME: image.name}
    if tag is None:
        try:
            tag = reference.parse(image.name, default_tag="").tag
        except InvalidArgument:
            tag = None
    if tag:
        annotations[REF_NAME] = tag
    return {**entry.to_json(), "annotations": annotations}


class _HashingReader:
    """Reads a store blob and checks it: a corrupt store never leaks out."""

    def __init__(self, f: BinaryIO, desc: Descriptor) -> None:
        self._f, self._desc = f, desc
        self._hasher = desc.digest.hasher()
        self._n = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._hasher.update(data)
        self._n += len(data)
        if (not data or self._n == self._desc.size) and not self._ok():
            raise DigestMismatch(f"content {self._desc.digest}: digest mismatch in the store")
        return data

    def _ok(self) -> bool:
        return self._n == self._desc.size and self._hasher.hexdigest() == self._desc.digest.encoded


def _write_dir(store: Store, blobs: list[Descriptor], entry: dict[str, Any], dest: str) -> None:
    index = _existing_index(dest)
    for desc in blobs:
        directory = os.path.join(dest, "blobs", desc.digest.algorithm)
        path = os.path.join(directory, desc.digest.encoded)
        with contextlib.suppress(FileNotFoundError):
            if os.path.getsize(path) == desc.size:
                continue  # content-addressed: the same name holds the same bytes
        os.makedirs(directory, exist_ok=True)
        with _atomic(path) as out, store.reader(desc.digest) as f:
            src = _HashingReader(f, desc)
            while chunk := src.read(BUFSIZE):
                out.write(chunk)
    ref = entry["annotations"].get(REF_NAME)
    keep = [m for m in index["manifests"] if ref is None or _ref_name(m) != ref]
    index["manifests"] = [*keep, entry]
    with _atomic(os.path.join(dest, LAYOUT_FILE)) as out:
        out.write(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
    with _atomic(os.path.join(dest, INDEX_FILE)) as out:
        out.write(json.dumps(index, indent=2).encode() + b"\n")


def _ref_name(entry: Any) -> Any:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None


def _existing_index(dest: str) -> dict[str, Any]:
    """index.json of the layout at ``dest``; a fresh one for an absent or empty directory."""
    fresh: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if not os.path.exists(dest):
        os.makedirs(dest)
        return fresh
    if not os.path.isdir(dest):
        raise InvalidArgument(f"{dest}: not a directory (a tar must end in .tar)")
    if not os.path.exists(os.path.join(dest, LAYOUT_FILE)):
        if os.listdir(dest):
            raise InvalidArgument(f"{dest}: not empty and not an OCI layout")
        return fresh
    try:
        with open(os.path.join(dest, INDEX_FILE), "rb") as f:
            index = json.loads(f.read(MAX_MANIFEST_SIZE + 1))
    except FileNotFoundError:
        return fresh
    except ValueError as e:
        raise InvalidContent(f"{dest}/{INDEX_FILE}: not valid JSON: {e}") from None
    if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
        raise InvalidContent(f"{dest}/{INDEX_FILE}: not an image index")
    index.setdefault("manifests", [])
    return index


@contextlib.contextmanager
def _atomic(path: str) -> Iterator[IO[bytes]]:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _tar_info(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    # Fixed metadata: the same image always exports to the same bytes.
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    return info


def _write_tar(store: Store, blobs: list[Descriptor], entry: dict[str, Any], dest: str) -> None:
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
    index_bytes = json.dumps(index, indent=2).encode() + b"\n"
    layout = json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()

    def write(out: IO[bytes]) -> None:
        # Stream mode ("w|"): one pass, nothing staged on disk.
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            # tarfile copies 16 KiB at a time by default (attribute missing in typeshed).
            tf.copybufsize = BUFSIZE  # type: ignore[attr-defined]
            tf.addfile(_tar_info(LAYOUT_FILE, len(layout)), io.BytesIO(layout))
            tf.addfile(_tar_info("blobs", 0, directory=True))
            for alg in sorted({d.digest.algorithm for d in blobs}):
                tf.addfile(_tar_info(f"blobs/{alg}", 0, directory=True))
            for desc in blobs:
                info = _tar_info(f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}", desc.size)
                with store.reader(desc.digest) as f:
                    tf.addfile(info, _HashingReader(f, desc))
            tf.addfile(_tar_info(INDEX_FILE, len(index_bytes)), io.BytesIO(index_bytes))

    if dest == "-":
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with _atomic(os.path.abspath(dest)) as out:
        write(out)


# -- import -------------------------------------------------------------------

# JSON blobs (manifests, indexes, configs) of a tar are kept in memory until
# the graph is walked, since index.json may come last; this bounds them.
MAX_JSON_CACHE = 256 * 1024 * 1024


def import_layout(
    store: Store, metadata: MetadataStore, src: str, *, name: str | None = None
) -> list[Image]:
    """Read the layout directory or tar ``src`` (``-``: a tar on stdin) into
    ``store`` and name its images in ``metadata``.

    Names come from each index.json entry: ``name`` (a repository such as
    ``localhost:5000/app``) plus the entry's ``ref.name`` tag; else the entry's
    ``io.containerd.image.name``, or a ``ref.name`` that is a full reference.
    An entry with no way to name it is an error (exit 2).
    """
    base = reference.parse(name, default_tag="") if name is not None else None
    reader = _LayoutReader(store, src)
    try:
        if src != "-" and os.path.isdir(src):
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


@dataclass
class _Held:
    key: str
    size: int
    writer: Writer | None  # None: verified, closed, re-opened at commit


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

    def read_tar(self, src: str) -> None:
        try:
            if src == "-":
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
        with tarfile.open(fileobj=f, mode="r|*", bufsize=BUFSIZE) as tf:
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
            version = json.loads(data).get("imageLayoutVersion")
        except (ValueError, AttributeError):
            version = None
        if not isinstance(version, str) or not version.startswith("1."):
            raise InvalidContent(f"{self.src}: {LAYOUT_FILE}: unsupported layout version")

    def _index_file(self, data: bytes) -> None:
        decoded = manifest.decode(data, OCI_INDEX)
        if not isinstance(decoded, manifest.Index):
            raise InvalidContent(f"{self.src}: {INDEX_FILE} is not an image index")
        self.entries = list(decoded.manifests)
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
            return _read_small(self.store, desc)
        raise InvalidContent(f"layout blob {desc.digest}: manifest too large to read")

    def walk(self) -> tuple[list[Digest], dict[Digest, dict[str, str]]]:
        """Children-first order of every reachable blob, and gc labels for
        manifests and indexes; fails on a missing or mis-sized blob."""
        order: list[Digest] = []
        labels: dict[Digest, dict[str, str]] = {}
        seen: set[Digest] = set()

        def visit(desc: Descriptor, required: bool, depth: int) -> bool:
            if desc.digest in seen:
                return True
            if not self._available(desc):
                if required:
                    raise InvalidContent(f"layout blob {desc.digest} ({desc.media_type}): missing")
                return False  # an index entry left out on purpose (one-platform export)
            seen.add(desc.digest)
            if depth > 8:
                raise InvalidContent(f"layout blob {desc.digest}: indexes nested too deep")
            if is_index(desc.media_type) or is_manifest(desc.media_type):
                kids = manifest.children(desc, self._bytes(desc))
                if is_index(desc.media_type):
                    kids = [k for k in kids if visit(k, False, depth + 1)]
                    if not kids:
                        raise InvalidContent(f"layout index {desc.digest}: no manifest present")
                else:
                    for k in kids:
                        visit(k, True, depth + 1)
                labels[desc.digest] = child_labels(desc, kids)
            order.append(desc.digest)
            return True

        if not self.entries:
            raise InvalidContent(f"{self.src}: {INDEX_FILE} lists no images")
        for entry in self.entries:
            visit(entry, True, 0)
        return order, labels
