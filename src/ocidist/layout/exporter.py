"""Export an image from the store as an OCI image layout (directory or tar)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tarfile
from typing import IO, Any, BinaryIO, cast

from ocidist import jsondata, reference
from ocidist.content import Store
from ocidist.content.fsutil import atomic_file
from ocidist.descriptor import (
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    Descriptor,
    is_index,
    is_manifest_or_index,
)
from ocidist.digest import VerifyingReader
from ocidist.errors import (
    InvalidArgument,
    InvalidContent,
    NotFound,
)
from ocidist.images.platforms import MatchComparer
from ocidist.images.walk import Recorder, manifest_children, none_held, platform_children, walk
from ocidist.layout.common import (
    BUFSIZE,
    IMAGE_NAME,
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    REF_NAME,
    is_tar_path,
    read_small,
)
from ocidist.metadata import Image, Metadata
from ocidist.stream import Readable, copy_stream


class ExportResult:
    # A plain class, as the other results (PullResult…): a dataclass costs
    # ~1 ms of start-up.
    def __init__(
        self, name: str, target: Descriptor, dest: str, blobs: list[Descriptor] | None = None
    ) -> None:
        self.name = name
        self.target = target
        self.dest = dest
        self.blobs: list[Descriptor] = blobs if blobs is not None else []

    @property
    def size(self) -> int:
        return sum(d.size for d in self.blobs)


def export_image(
    store: Store,
    metadata: Metadata,
    name: str,
    dest: str,
    *,
    platforms: MatchComparer | None = None,
    tag: str | None = None,
    tar: bool | None = None,
    record_name: bool = True,
) -> ExportResult:
    """Write image ``name`` as an OCI layout to the directory or tar ``dest``.

    ``platforms`` keeps only matching manifests of an index; ``tag`` overrides
    the ``ref.name`` (default: the name's tag). An existing layout directory
    gets the image added, replacing an entry with the same ``ref.name``.
    ``tar`` forces a tar (or a directory); by default ``dest`` decides
    (``is_tar_path``). ``record_name`` False leaves out io.containerd.image.name
    (an image whose name was made up for the export).
    """
    image = lookup_image(metadata, name)
    blobs = _closure(store, image.target, platforms)
    entry = _index_entry(image, tag)
    if not record_name:
        del entry["annotations"][IMAGE_NAME]
    if is_tar_path(dest) if tar is None else tar:
        _write_tar(store, blobs, entry, dest)
    else:
        _write_dir(store, blobs, entry, dest)
    return ExportResult(image.name, image.target, dest, blobs)


def lookup_image(metadata: Metadata, name: str) -> Image:
    """The stored image ``name``, as given or normalised (``redis`` finds
    docker.io/library/redis:latest)."""
    try:
        return metadata.get_image(name)
    except NotFound:
        try:
            canonical = reference.parse(name).name
        except InvalidArgument:
            raise NotFound(f"image {name}: not found") from None
        return metadata.get_image(canonical)


def _closure(store: Store, target: Descriptor, matcher: MatchComparer | None) -> list[Descriptor]:
    """Everything ``target`` reaches that an export must carry, parents first:
    every object a manifest names, and an index's entries that were pulled."""
    children = manifest_children if matcher is None else platform_children(matcher)

    def carry(desc: Descriptor) -> list[Descriptor]:
        if not store.exists(desc.digest):
            raise NotFound(f"content {desc.digest} ({desc.media_type}): not in the store")
        if not is_manifest_or_index(desc.media_type):
            return []
        kids = children(desc, read_small(store, desc))
        if is_index(desc.media_type):
            present = [k for k in kids if store.exists(k.digest)]  # never pulled: left out
            if kids and not present:
                if matcher is None:
                    raise NotFound(f"{desc.digest}: none of its manifests is in the store")
                # Pulled for other platforms: say which, as push and copy do.
                entries = manifest_children(desc, read_small(store, desc))
                held = [e for e in entries if store.exists(e.digest)]
                raise none_held(str(desc.digest), matcher, entries, held)
            return present
        return kids

    recorder = Recorder(carry)
    walk(recorder, [target])
    return list(recorder.visited)


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


def _verified(f: BinaryIO, desc: Descriptor) -> VerifyingReader:
    """A store blob, checked as it is read: a corrupt store never leaks out."""
    return VerifyingReader(cast(Readable, f), desc.digest, desc.size, what=f"content {desc.digest}")


def _write_dir(store: Store, blobs: list[Descriptor], entry: dict[str, Any], dest: str) -> None:
    absent = not os.path.exists(dest)
    fresh = absent or (os.path.isdir(dest) and not os.listdir(dest))
    index = _existing_index(dest)
    try:
        _fill_dir(store, blobs, entry, dest, index)
    except BaseException:
        # A layout this export began is removed, not left half-written (a
        # later export would refuse the non-empty directory that is not a
        # layout). In an existing layout, blobs already written stay: they
        # are unreferenced, which a layout allows, and the next export
        # reuses them; index.json is only ever replaced whole.
        if fresh:
            _empty(dest)
            if absent:
                with contextlib.suppress(OSError):
                    os.rmdir(dest)
        raise


def _empty(dest: str) -> None:
    import shutil

    with contextlib.suppress(OSError):
        for name in os.listdir(dest):
            path = os.path.join(dest, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def _fill_dir(
    store: Store, blobs: list[Descriptor], entry: dict[str, Any], dest: str, index: dict[str, Any]
) -> None:
    for desc in blobs:
        directory = os.path.join(dest, "blobs", desc.digest.algorithm)
        path = os.path.join(directory, desc.digest.encoded)
        with contextlib.suppress(FileNotFoundError):
            if os.path.getsize(path) == desc.size:
                continue  # content-addressed: the same name holds the same bytes
        os.makedirs(directory, exist_ok=True)
        with atomic_file(path) as out, store.reader(desc.digest) as f:
            copy_stream(_verified(f, desc), out)
    ref = entry["annotations"].get(REF_NAME)
    keep = [m for m in index["manifests"] if ref is None or _ref_name(m) != ref]
    index["manifests"] = [*keep, entry]
    with atomic_file(os.path.join(dest, LAYOUT_FILE)) as out:
        out.write(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
    with atomic_file(os.path.join(dest, INDEX_FILE)) as out:
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
            index = jsondata.loads(f.read(MAX_MANIFEST_SIZE + 1), f"{dest}/{INDEX_FILE}")
    except FileNotFoundError:
        return fresh
    if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
        raise InvalidContent(f"{dest}/{INDEX_FILE}: not an image index")
    index.setdefault("manifests", [])
    return index


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
                    tf.addfile(info, _verified(f, desc))
            tf.addfile(_tar_info(INDEX_FILE, len(index_bytes)), io.BytesIO(index_bytes))

    if dest == "-":
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with atomic_file(os.path.abspath(dest)) as out:
        write(out)
