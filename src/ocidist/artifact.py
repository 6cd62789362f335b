"""Artifacts (OCI image-spec 1.1): files pushed as one manifest, and pulled back.

An artifact manifest is an ordinary OCI image manifest with ``artifactType``
set, the *empty* config (``application/vnd.oci.empty.v1+json``, the bytes
``{}``) unless a config is given, and one layer per file annotated with
``org.opencontainers.image.title`` — what oras writes and reads. A directory
is packed the way oras packs one: a gzip'd tar whose entries start with the
directory's name, mtimes and owners zeroed, with ``io.deis.oras.content.
unpack: "true"`` and the tar's own digest in ``io.deis.oras.content.digest``.

Files go through the same upload path as image blobs (monolithic or chunked,
a dropped chunk resumed from the registry's offset); pulling writes each
titled layer under DIR by its title, verified before it takes its name
(``.dist-partial-<hex>`` until then, and a later pull resumes from it).
Titles are data from the registry: absolute paths, ``..``, control
characters and anything reached through a symlink are refused. A layer
annotated for unpacking is extracted by ``archive.files``: literally (it is
files, not a container layer) and confined to its titled directory, as
oras-go's file store does; any other layer is saved as it is (oras-py marks
directories by media type alone; the oras CLI, like us, saves those as the
tar.gz they are).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from ocidist import reference
from ocidist.descriptor import (
    MAX_MANIFEST_SIZE,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    is_index,
)
from ocidist.digest import Digest, new_hasher
from ocidist.errors import DigestMismatch, DistError, InvalidArgument, InvalidContent
from ocidist.referrers import EMPTY_DESCRIPTOR, EMPTY_JSON
from ocidist.stream import BUF
from ocidist.text import quote
from ocidist.value import Value

if TYPE_CHECKING:
    from ocidist.images.walk import Children
    from ocidist.progress import Progress
    from ocidist.push import PushResult
    from ocidist.remotes import Fetcher, Resolver

TITLE = "org.opencontainers.image.title"
UNPACK = "io.deis.oras.content.unpack"
CONTENT_DIGEST = "io.deis.oras.content.digest"
DEFAULT_ARTIFACT_TYPE = "application/vnd.unknown.artifact.v1"
PARTIAL_PREFIX = ".dist-partial-"


def parse_file_arg(text: str) -> tuple[str, str | None]:
    """``FILE[:MEDIATYPE]`` (as oras): the type is what follows the last colon
    when it looks like a media type (``type/subtype``)."""
    path, sep, media_type = text.rpartition(":")
    if sep and path and "/" in media_type and " " not in media_type:
        return path, media_type
    return text, None


class Prepared(Value):
    """A file ready to upload: its descriptor, and where its bytes are."""

    __slots__ = ("desc", "path", "temporary")
    desc: Descriptor
    path: str
    temporary: bool  # a packed directory: removed after the push

    def __init__(self, desc: Descriptor, path: str, temporary: bool) -> None:
        object.__setattr__(self, "desc", desc)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "temporary", temporary)


def prepare(path: str, media_type: str | None, *, workdir: str | None = None) -> Prepared:
    """Hash a file, or pack a directory into a temporary tar+gzip."""
    title = os.path.basename(os.path.normpath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file or directory") from None
    if stat.S_ISDIR(st.st_mode):
        from ocidist.paths import big_temp_dir

        fd, packed = tempfile.mkstemp(
            prefix="ocidist-dir-", suffix=".tar.gz", dir=workdir or big_temp_dir()
        )
        try:
            with os.fdopen(fd, "wb") as out:
                tar_digest = pack_directory(path, title, out)
            dgst, size = hash_file(packed)
        except BaseException:
            os.unlink(packed)
            raise
        annotations = {TITLE: title, UNPACK: "true", CONTENT_DIGEST: str(tar_digest)}
        return Prepared(
            Descriptor(media_type or OCI_LAYER_GZIP, dgst, size, annotations), packed, True
        )
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgument(f"{path}: not a regular file or directory")
    dgst, size = hash_file(path)
    return Prepared(Descriptor(media_type or OCI_LAYER, dgst, size, {TITLE: title}), path, False)


def hash_file(path: str) -> tuple[Digest, int]:
    h = new_hasher("sha256")
    size = 0
    buf = bytearray(BUF)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            h.update(view[:n])
            size += n
    return Digest("sha256", h.hexdigest()), size


class _HashingWriter:
    """Hashes the tar stream on its way into gzip (the uncompressed digest)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hasher = new_hasher("sha256")

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def pack_directory(path: str, prefix: str, out: IO[bytes]) -> Digest:
    """Write ``path`` as a gzip'd tar with entries under ``prefix/`` the way
    oras does (owners and times zeroed, links kept as links); returns the
    digest of the uncompressed tar."""

    def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        hashing = _HashingWriter(gz)  # type: ignore[arg-type]
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            for rel, full in _walk(path):
                tf.add(
                    full,
                    arcname=f"{prefix}/{rel}" if rel else prefix,
                    recursive=False,
                    filter=reset,
                )
    return Digest("sha256", hashing.hasher.hexdigest())


def _walk(root: str) -> Iterator[tuple[str, str]]:
    """Every entry under ``root`` in a fixed order (links not followed)."""
    yield "", root
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted([*dirnames, *filenames]):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            yield rel, os.path.join(dirpath, name)


def build_manifest(
    config: Descriptor,
    layers: Sequence[Descriptor],
    *,
    artifact_type: str = "",
    annotations: Mapping[str, str] | None = None,
    subject: Descriptor | None = None,
) -> bytes:
    """An OCI 1.1 artifact manifest (compact JSON)."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config.to_json()
    # image-spec: an artifact without files still lists one layer, the empty one.
    doc["layers"] = [layer.to_json() for layer in layers] or [EMPTY_DESCRIPTOR.to_json()]
    if subject is not None:
        doc["subject"] = Descriptor(subject.media_type, subject.digest, subject.size).to_json()
    if annotations:
        doc["annotations"] = dict(annotations)
    return json.dumps(doc, separators=(",", ":")).encode()


class ArtifactPush:
    def __init__(self, result: PushResult, desc: Descriptor, referrers_tag: str | None) -> None:
        self.result = result
        self.desc = desc
        self.referrers_tag = referrers_tag  # set when the tag schema had to be updated


def push_artifact(
    resolver: Resolver,
    ref: str,
    files: Sequence[tuple[str, str | None]],
    *,
    artifact_type: str = "",
    annotations: Mapping[str, str] | None = None,
    subject: Descriptor | None = None,
    config: tuple[str, str] | None = None,
    progress: Progress | None = None,
    concurrency: int = 0,
) -> ArtifactPush:
    """Push ``files`` (path, media type or None) as one artifact manifest to
    ``ref`` (tagged when it has a tag, else by digest alone). How blobs go
    (chunk sizes, what is asked first) is the resolver's push options."""
    from ocidist.images.scheduler import CancellingProgress, Scheduler
    from ocidist.progress import NullProgress
    from ocidist.pull import default_concurrency
    from ocidist.push import PushResult, upload_blob

    r = reference.parse(ref, default_tag="")
    prog = progress or NullProgress()
    prepared: list[Prepared] = []
    try:
        titles: set[str] = set()
        for path, media_type in files:
            item = prepare(path, media_type)
            title = item.desc.annotations[TITLE]
            if title in titles:
                raise InvalidArgument(f"two files are titled '{quote(title, 100)}': rename one")
            titles.add(title)
            prepared.append(item)
        if config is not None:
            cfg_path, cfg_type = config
            dgst, size = hash_file(cfg_path)
            config_item = Prepared(Descriptor(cfg_type, dgst, size), cfg_path, False)
        else:
            config_item = None
        config_desc = config_item.desc if config_item else EMPTY_DESCRIPTOR
        layers = [p.desc for p in prepared]
        art_type = artifact_type or DEFAULT_ARTIFACT_TYPE
        data = build_manifest(
            config_desc, layers, artifact_type=art_type, annotations=annotations, subject=subject
        )
        if len(data) > MAX_MANIFEST_SIZE:
            raise InvalidArgument(f"the manifest would be {len(data)} bytes: too many files")
        desc = Descriptor(OCI_MANIFEST, Digest.from_bytes(data), len(data))
        # The tag travels in the pusher's ref (a digest in ``ref`` names no manifest of ours).
        pusher = resolver.pusher(f"{r.repository}:{r.tag}" if r.tag else r.repository)
        result = PushResult(r.name if r.tag else f"{r.repository}@{desc.digest}", desc)
        uploads = [*prepared, config_item] if config_item else list(prepared)
        blobs: dict[Digest, tuple[Descriptor, str | None]] = {}
        for item in uploads:
            blobs.setdefault(item.desc.digest, (item.desc, item.path))
        if not layers or config_item is None:
            blobs.setdefault(EMPTY_DESCRIPTOR.digest, (EMPTY_DESCRIPTOR, None))

        sched = Scheduler(concurrency or default_concurrency(), name="push")
        # A failed push returns while uploads may still run: they stop at
        # their next chunk, not send on and commit.
        cancelling = CancellingProgress(prog, sched, "transfer stopped: the push failed")

        def upload(blob: Descriptor, path: str | None) -> None:
            status = upload_blob(pusher, blob, _opener(path), progress=cancelling)
            result.record(blob, status)

        for d, p in blobs.values():
            sched.add(str(d.digest), partial(upload, d, p), (), (0, -d.size))
        sched.run()
    finally:
        for item in prepared:
            if item.temporary:
                with contextlib.suppress(OSError):
                    os.unlink(item.path)
    subject_header = pusher.put_manifest(desc, data)
    result.record(desc, "pushed")
    prog.done(desc, "pushed")
    tag = None
    if subject is not None and (subject_header or "").strip() != str(subject.digest):
        from ocidist.referrers import entry_for, record

        tag = record(resolver, r.repository, subject.digest, entry_for(desc, data))
    return ArtifactPush(result, desc, tag)


def _opener(path: str | None) -> Any:
    def open_at(offset: int) -> BinaryIO:
        if path is None:
            import io

            return io.BytesIO(EMPTY_JSON[offset:])
        f = open(path, "rb")  # noqa: SIM115 - copy_from closes what it opens
        if offset:
            f.seek(offset)
        return f

    return open_at


# -- pull ------------------------------------------------------------------------------


class Pulled(Value):
    """One file an artifact pull wrote (``unpacked``: a directory extracted)."""

    __slots__ = ("desc", "title", "path", "unpacked")
    desc: Descriptor
    title: str
    path: str
    unpacked: bool

    def __init__(self, desc: Descriptor, title: str, path: str, unpacked: bool) -> None:
        object.__setattr__(self, "desc", desc)
        object.__setattr__(self, "title", title)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "unpacked", unpacked)


def check_title(title: str) -> tuple[str, ...]:
    """The path components of a layer title, or InvalidContent when writing it
    could leave the destination (absolute, ``..``) or confuse (control chars)."""
    if not title or "\0" in title:
        raise InvalidContent(f"layer title '{quote(title, 100)}' is empty or has a NUL")
    if any(not c.isprintable() for c in title):
        raise InvalidContent(f"layer title '{quote(title, 100)}' has control characters")
    if title.startswith("/") or "\\" in title:
        raise InvalidContent(f"layer title '{quote(title, 100)}' is an absolute path")
    parts = tuple(p for p in title.split("/") if p not in ("", "."))
    if not parts or ".." in parts:
        raise InvalidContent(f"layer title '{quote(title, 100)}' leaves the destination")
    return parts


def pull_artifact(
    resolver: Resolver,
    ref: str,
    dest: str,
    *,
    media_types: Sequence[str] = (),
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    concurrency: int = 0,
) -> tuple[str, Descriptor, list[Pulled]]:
    """Write every titled layer of artifact ``ref`` under ``dest``.

    A walk of the artifact's graph: the root's handler reads the manifest
    and keeps the titled layers (``titled_layers``); each layer's handler
    writes its file (``Files``). Files come down in parallel, largest first;
    packed directories are extracted one at a time."""
    from ocidist.images.walk import children_handler, fetch_manifest, walk
    from ocidist.progress import NullProgress
    from ocidist.pull import default_concurrency
    from ocidist.remotes import resolve_to_fetch

    name, desc, fetcher = resolve_to_fetch(resolver, ref)
    chosen: dict[Digest, list[tuple[int, tuple[str, ...]]]] = {}
    read_root = children_handler(
        lambda d: fetch_manifest(fetcher, d), titled_layers(name, media_types, chosen)
    )
    files = Files(fetcher, dest, chosen, progress or NullProgress(), warn or _warn)
    try:

        def handle(d: Descriptor) -> Sequence[Descriptor]:
            # The root by identity, not by type: a layer typed as a manifest
            # is a file to write, not a graph to follow.
            return read_root(d) if d.digest == desc.digest else files(d)

        walk(handle, [desc], concurrency=concurrency or default_concurrency())
    finally:
        files.close()
    return name, desc, [p for _, p in sorted(files.pulled, key=lambda x: x[0])]


def titled_layers(
    name: str,
    media_types: Sequence[str],
    chosen: dict[Digest, list[tuple[int, tuple[str, ...]]]],
) -> Children:
    """The children of an artifact manifest worth pulling: its titled layers
    (oras too skips untitled ones), of ``media_types`` when given; each
    title checked (``check_title``) and noted in ``chosen`` by digest with
    its place in the manifest. An index is refused: an artifact is a manifest.
    ``layer_children`` bounds the layers as the walker bounds any manifest."""
    from ocidist.images.walk import layer_children

    def pick(desc: Descriptor, data: bytes) -> list[Descriptor]:
        if is_index(desc.media_type):
            raise InvalidContent(f"{name}: an index, not an artifact (pull one of its manifests)")
        out: list[Descriptor] = []
        seen: set[tuple[str, ...]] = set()
        for i, layer in enumerate(layer_children(desc, data)):
            title = layer.annotations.get(TITLE)
            if not title or (media_types and layer.media_type not in media_types):
                continue
            parts = check_title(title)
            if parts in seen:
                raise InvalidContent(f"{name}: two layers are titled '{quote(title, 100)}'")
            seen.add(parts)
            chosen.setdefault(layer.digest, []).append((i, parts))
            out.append(layer)
        return out

    return pick


class Files:
    """The walk handler that writes a layer's file(s) under ``dest``: every
    title ``chosen`` notes for its digest (a blob titled twice is two files)."""

    def __init__(
        self,
        fetcher: Fetcher,
        dest: str,
        chosen: Mapping[Digest, list[tuple[int, tuple[str, ...]]]],
        progress: Progress,
        warn: Callable[[str], None],
    ) -> None:
        self.fetcher = fetcher
        self.dest = dest
        self.chosen = chosen
        self.progress = progress
        self.warn = warn
        self.pulled: list[tuple[int, Pulled]] = []
        self._root = -1  # ``dest``, opened (created) when the first file comes
        # A directory's extraction writes a tree another title may lead into: one at a time.
        self.extracting = threading.Lock()
        self._lock = threading.Lock()

    def __call__(self, layer: Descriptor) -> list[Descriptor]:
        for i, parts in self.chosen.get(layer.digest, ()):
            pulled = _pull_layer(self, layer, parts)
            with self._lock:
                self.pulled.append((i, pulled))
        return []

    def root(self) -> int:
        with self._lock:
            if self._root < 0:
                os.makedirs(self.dest, exist_ok=True)
                self._root = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY)
            return self._root

    def close(self) -> None:
        if self._root >= 0:
            os.close(self._root)
            self._root = -1


def _pull_layer(files: Files, layer: Descriptor, parts: tuple[str, ...]) -> Pulled:
    title = "/".join(parts)
    dest = files.dest
    unpack = layer.annotations.get(UNPACK) == "true"
    parent = _open_parent(files.root(), parts[:-1] if not unpack else (), title)
    try:
        part_name = PARTIAL_PREFIX + layer.digest.encoded
        _download(files.fetcher, parent, part_name, layer, files.progress)
        if unpack:
            try:
                with files.extracting:
                    _unpack(parent, part_name, layer, parts, files.warn)
            finally:
                os.unlink(part_name, dir_fd=parent)
        else:
            final = parts[-1]
            st = _lstat(parent, final)
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise InvalidContent(f"{dest}/{title}: is a directory")
            os.rename(part_name, final, src_dir_fd=parent, dst_dir_fd=parent)
    finally:
        os.close(parent)
    files.progress.done(layer, "fetched")
    return Pulled(layer, title, os.path.join(dest, *parts), unpack)


def _open_parent(root: int, parts: Sequence[str], title: str) -> int:
    """The directory ``parts`` under ``root``, created as needed, never through a link."""
    fd = os.dup(root)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise InvalidContent(
                        f"layer title '{quote(title, 100)}': {quote(part, 100)} is a link "
                        "or a file, not a directory"
                    ) from None
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _download(
    fetcher: Fetcher, parent: int, partial: str, layer: Descriptor, prog: Progress
) -> None:
    """Bring ``layer`` into ``partial`` (resuming what an earlier pull left), verified."""
    fd = os.open(
        partial, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent
    )
    with os.fdopen(fd, "r+b", buffering=0) as f:
        h = layer.digest.hasher()
        held = 0
        buf = bytearray(BUF)
        view = memoryview(buf)
        while held < layer.size and (n := f.readinto(view)):
            n = min(n, layer.size - held)
            h.update(view[:n])
            held += n
        f.truncate(held)
        f.seek(held)
        prog.start(layer, held)
        if held < layer.size:
            src = fetcher.fetch(layer, held, verify=False)
            try:
                while held < layer.size and (n := src.readinto(view)):
                    n = min(n, layer.size - held)
                    f.write(view[:n])
                    h.update(view[:n])
                    held += n
                    prog.update(layer, held)
            finally:
                src.close()
        os.fsync(f.fileno())
    if held != layer.size or h.hexdigest() != layer.digest.encoded:
        os.unlink(partial, dir_fd=parent)
        got = f"{layer.digest.algorithm}:{h.hexdigest()}"
        raise DigestMismatch(f"layer {layer.digest}: digest mismatch: got {got} ({held} bytes)")


def _unpack(
    parent: int,
    partial: str,
    layer: Descriptor,
    parts: tuple[str, ...],
    warn: Callable[[str], None],
) -> None:
    """Extract the directory layer (downloaded and verified in ``partial``)
    under ``parent`` literally: files, not a container layer (no whiteouts,
    devices or setuid bits), every entry inside the titled directory."""
    from ocidist.archive.files import extract_files

    expected = layer.annotations.get(CONTENT_DIGEST)
    try:
        want = Digest.parse(expected) if expected else None
    except DistError:
        raise InvalidContent(
            f"layer {layer.digest}: {CONTENT_DIGEST} is not a digest: {quote(expected or '', 100)}"
        ) from None

    def open_stream() -> BinaryIO:
        fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        return os.fdopen(fd, "rb")

    extract_files(parent, parts, open_stream, expected=want, warn=warn)


def _warn(message: str) -> None:
    import logging

    from ocidist.text import escape

    logging.getLogger(__name__).warning("%s", escape(message))
