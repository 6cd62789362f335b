"""Where an image can be read from, named the way skopeo names transports.

    REF | docker://REF          a registry (localhost:5000/app:1, redis, …)
    oci:DIR[:TAG]               an OCI image layout directory
    oci-archive:FILE[:TAG]      an OCI image layout in a tar (gzip or not)
    docker-archive:FILE[:REF]   a `docker save` archive (REF: name:tag or @N)
    store:NAME                  an image named in the local store

Each opens as a ``Source``: the image's name, its root descriptor and a
``Fetcher`` of its objects — the same contract the registry implements, so
everything that reads images (inspect, the image walker's pull and copy
handlers) works on all of them alike. Every fetcher verifies what it hands
out when asked to (``verify``), whatever the transport.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ocidist import jsondata
from ocidist.descriptor import MAX_MANIFEST_SIZE, Descriptor
from ocidist.digest import Digest, VerifyingReader
from ocidist.errors import DigestMismatch, DistError, InvalidArgument, InvalidContent, NotFound
from ocidist.stream import Readable
from ocidist.text import listing, quote

if TYPE_CHECKING:
    from ocidist.content import Store
    from ocidist.images.platforms import MatchComparer
    from ocidist.metadata import Metadata
    from ocidist.remotes import Fetcher, Resolver

TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive", "store")
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"


class Source:
    """An opened image: ``name`` (for people), ``root`` and a ``fetcher``."""

    def __init__(
        self,
        transport: str,
        name: str,
        root: Descriptor,
        fetcher: Fetcher,
        close: Callable[[], None] | None = None,
        ref: str = "",
        has: Callable[[Descriptor], bool] | None = None,
    ) -> None:
        self.transport = transport
        self.name = name
        self.root = root
        self.fetcher = fetcher
        self._close = close
        self.ref = ref  # the image's reference, when the source knows one
        # Whether a local copy (store, layout) holds an object: it may hold
        # only some platforms of an index. None: a registry, which has all.
        self.has = has

    def read(self, desc: Descriptor, cap: int = MAX_MANIFEST_SIZE) -> bytes:
        """A small object (manifest, index, config) whole, verified."""
        if desc.size > cap:
            raise InvalidContent(f"{self.name}: {desc.digest}: {desc.size} bytes is too large")
        stream = self.fetcher.fetch(desc)
        try:
            data = stream.read(desc.size + 1)
            if len(data) < desc.size:
                data += stream.read(desc.size + 1 - len(data))
        finally:
            stream.close()
        if len(data) != desc.size or Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
            raise DigestMismatch(f"{self.name}: {desc.digest}: digest mismatch")
        return data

    def platform(
        self, index: Descriptor, matcher: MatchComparer, read: Callable[[Descriptor], bytes]
    ) -> Descriptor:
        """The manifest for ``matcher`` below ``index`` (read with ``read``):
        the walker's pick, among what the source holds when it is a local
        copy, which names the platforms it does hold when the wanted one is
        not there."""
        from ocidist.images.walk import children_handler, find_manifest, platform_children

        if self.has is None:
            return find_manifest(children_handler(read, platform_children(matcher, 1)), index)
        from ocidist.images.plan import held_platform

        where = "the store" if self.transport == "store" else "the layout"
        return held_platform(read, self.has, index, matcher, self.name, where)

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split_transport(text: str) -> tuple[str, str]:
    """``oci:dir:tag`` -> (``oci``, ``dir:tag``); a plain reference -> (``docker``, it)."""
    if text.startswith("docker://"):
        return "docker", text[len("docker://") :]
    head, sep, rest = text.partition(":")
    if sep and head in TRANSPORTS and head != "docker":
        return head, rest
    return "docker", text


def is_registry(text: str) -> bool:
    return split_transport(text)[0] == "docker"


def split_path(rest: str) -> tuple[str, str]:
    """``PATH[:TAG]`` as skopeo splits it: at the first colon."""
    path, _, tag = rest.partition(":")
    if not path:
        raise InvalidArgument(f"{rest!r}: no path")
    return path, tag


def open_source(
    text: str,
    *,
    resolver: Callable[[], Resolver] | None = None,
    store: Callable[[], Store] | None = None,
    metadata: Callable[[], Metadata] | None = None,
) -> Source:
    """Open the image ``text`` names (see the module docstring)."""
    transport, rest = split_transport(text)
    if transport == "docker":
        if resolver is None:
            raise InvalidArgument(f"{text}: registry references are not possible here")
        return _registry(resolver(), rest)
    if transport == "store":
        if store is None or metadata is None:
            raise InvalidArgument(f"{text}: the local store is not available here")
        return store_source(store(), metadata(), rest)
    path, ref = split_path(rest)
    if transport == "docker-archive":
        return _docker_archive(path, ref)
    if transport == "oci" and os.path.isdir(path):
        return _layout(LayoutDir(path), ref)
    if not os.path.exists(path):
        raise NotFound(f"{path}: not found")
    # skopeo's oci: is a directory; a tar given as oci: is read as oci-archive.
    from ocidist.tarindex import TarIndex

    tar = TarIndex(path)
    try:
        return _layout(LayoutTar(tar), ref)
    except BaseException:
        tar.close()
        raise


def _registry(resolver: Resolver, ref: str) -> Source:
    from ocidist.remotes import resolve_to_fetch

    name, desc, fetcher = resolve_to_fetch(resolver, ref)
    return Source("docker", name, desc, fetcher, ref=name)


class StoreFetcher:
    """The local store as a ``Fetcher`` (what it holds was verified on the way in,
    and is checked again on the way out)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = True) -> Readable:
        f = self.store.reader(desc.digest)
        if offset:
            f.seek(offset)
        stream = cast(Readable, f)
        if verify and offset == 0:
            return VerifyingReader(stream, desc.digest, desc.size, what=f"content {desc.digest}")
        return stream


def store_source(store: Store, metadata: Metadata, name: str) -> Source:
    from ocidist.layout.exporter import lookup_image

    image = lookup_image(metadata, name)
    return Source(
        "store",
        image.name,
        image.target,
        StoreFetcher(store),
        ref=image.name,
        has=lambda d: store.exists(d.digest),
    )


# -- OCI layouts --------------------------------------------------------------------


class LayoutDir:
    """Blobs of a layout directory (names are digests: nothing to escape)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read_file(self, name: str, cap: int) -> bytes:
        try:
            with open(os.path.join(self.path, name), "rb") as f:
                return f.read(cap + 1)
        except FileNotFoundError:
            raise InvalidContent(f"{self.path}: not an OCI layout: no {name}") from None

    def has(self, desc: Descriptor) -> bool:
        return os.path.isfile(self._blob(desc))

    def _blob(self, desc: Descriptor) -> str:
        return os.path.join(self.path, "blobs", desc.digest.algorithm, desc.digest.encoded)

    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = True) -> Readable:
        path = self._blob(desc)
        try:
            f = open(path, "rb")  # noqa: SIM115 - the caller closes the stream
        except FileNotFoundError:
            raise NotFound(f"{self.path}: blob {desc.digest} is missing") from None
        if offset:
            f.seek(offset)
        return _checked(cast(Readable, f), desc, offset, verify, self.path)

    def close(self) -> None:
        pass


class LayoutTar:
    """Blobs of a layout tar, read at their offsets."""

    def __init__(self, tar: object) -> None:
        from ocidist.tarindex import TarIndex

        self.tar = cast(TarIndex, tar)
        self.path = self.tar.what

    def read_file(self, name: str, cap: int) -> bytes:
        if not self.tar.has(name):
            raise InvalidContent(f"{self.path}: not an OCI layout: no {name}")
        return self.tar.read(name, cap)

    def has(self, desc: Descriptor) -> bool:
        return self.tar.find(f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}") is not None

    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = True) -> Readable:
        member = self.tar.find(f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}")
        if member is None:
            raise NotFound(f"{self.path}: blob {desc.digest} is missing")
        return _checked(self.tar.open(member, offset), desc, offset, verify, self.path)

    def close(self) -> None:
        self.tar.close()


def _checked(stream: Readable, desc: Descriptor, offset: int, verify: bool, where: str) -> Readable:
    if verify and offset == 0:
        return VerifyingReader(stream, desc.digest, desc.size, what=f"{where}: {desc.digest}")
    return stream


def layout_entries(layout: LayoutDir | LayoutTar) -> list[Descriptor]:
    from ocidist.images.walk import index_entries

    version = layout.read_file("oci-layout", 4096)
    try:
        found = str(jsondata.load_object(version, "oci-layout").get("imageLayoutVersion", ""))
    except InvalidContent:
        found = ""
    ok = found.startswith("1.")
    if not ok:
        raise InvalidContent(f"{layout.path}: oci-layout: unsupported layout version")
    data = layout.read_file("index.json", MAX_MANIFEST_SIZE)
    return index_entries(data, f"{layout.path}: index.json")


def _layout(layout: LayoutDir | LayoutTar, tag: str) -> Source:
    entries = layout_entries(layout)
    if tag:
        found = [
            e
            for e in entries
            if tag in (e.annotations.get(REF_NAME), e.annotations.get(IMAGE_NAME))
        ]
        if not found:
            raise NotFound(f"{layout.path}: no image tagged {quote(tag)} {_has(entries)}")
        root = found[0]
    elif len(entries) == 1:
        root = entries[0]
    else:
        raise InvalidArgument(
            f"{layout.path}: holds {len(entries)} images: name one with :TAG {_has(entries)}"
            if entries
            else f"{layout.path}: index.json lists no images"
        )
    label = root.annotations.get(IMAGE_NAME) or root.annotations.get(REF_NAME) or ""
    name = f"{layout.path}:{label}" if label else layout.path
    plain = Descriptor(root.media_type, root.digest, root.size, platform=root.platform)
    return Source("oci", name, plain, layout, layout.close, ref=_entry_ref(root), has=layout.has)


def _has(entries: list[Descriptor]) -> str:
    """The tags a layout's index.json gives its images, for an error that
    asks the user to name one (the layout's text: escaped)."""
    tags = [e.annotations.get(REF_NAME) or e.annotations.get(IMAGE_NAME) or "" for e in entries]
    named = [t for t in tags if t]
    if not named:
        return "(the layout's images have no tags)"
    return f"(the layout has {listing(named)})"


def _entry_ref(entry: Descriptor) -> str:
    """The image reference a layout entry records, if any (containerd's
    full name, or a ref.name that is a full reference)."""
    from ocidist import reference

    for text in (entry.annotations.get(IMAGE_NAME, ""), entry.annotations.get(REF_NAME, "")):
        if text and ("/" in text or "." in text.split(":")[0]):
            try:
                return reference.parse(text).name
            except DistError:
                continue
    return ""


# -- docker-archive -------------------------------------------------------------------


def _docker_archive(path: str, ref: str) -> Source:
    from ocidist.dockerarchive import DockerArchiveReader, is_docker_archive
    from ocidist.tarindex import TarIndex

    tar = TarIndex(path)
    try:
        if not is_docker_archive(tar):
            # Docker 25 also writes an OCI layout, with the image's own manifest.
            if tar.has("oci-layout"):
                source = _layout(LayoutTar(tar), _layout_tag(ref))
                source.transport = "docker-archive"  # what the user named
                return source
            raise InvalidContent(f"{path}: not a docker-archive: no manifest.json")
        reader = DockerArchiveReader(tar)
        image = reader.find(ref or None)
        name = image.repo_tags[0] if image.repo_tags else f"{path}:@{image.index}"
        ref = image.repo_tags[0] if image.repo_tags else ""
        return Source("docker-archive", name, image.desc, reader, tar.close, ref=ref)
    except BaseException:
        tar.close()
        raise


def _layout_tag(ref: str) -> str:
    if not ref or ref.startswith("@"):
        return ""
    from ocidist import reference

    return reference.parse(ref).name
