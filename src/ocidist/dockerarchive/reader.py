"""Read a `docker save` archive: its images as OCI manifests, its blobs by digest.

A docker-archive has no manifest of the distribution kind: ``manifest.json``
lists, per image, the config file, the layer files in order and the
``RepoTags``. The reader makes one OCI image manifest per entry (compact
JSON, so the same archive always gives the same digest) whose config is the
archive's config file and whose layers are its layer files as they are —
plain tar as ``docker save`` writes them, or gzip/zstd when a tool compressed
them (``docker load`` and skopeo accept both) — with the media type the
bytes show. Docker 25 writes the same image manifest shape inside its
archives (plus an OCI layout, which ``open_archive`` prefers).

What the digests rest on: the config's is computed from its bytes (and must
equal the one in its file name); a plain layer's digest is its diff_id in
the config, a compressed layer's comes from its ``blobs/<alg>/<hex>`` name or
is computed. Nothing is trusted for that: every blob is checked against its
descriptor when it is copied anywhere (``fetch`` with ``verify``, or the
store writer that takes it), and unpacking checks diff_ids again.
"""

from __future__ import annotations

import io
import json
from typing import Any

from ocidist import jsondata, reference
from ocidist.descriptor import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    Platform,
)
from ocidist.digest import Digest, VerifyingReader, new_hasher
from ocidist.errors import DigestMismatch, DistError, InvalidContent, NotFound
from ocidist.stream import Readable
from ocidist.tarindex import Member, TarIndex
from ocidist.text import QUOTE_LIMIT, listing, quote
from ocidist.value import Value

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
# manifest.json of a save of many images is still small.
MAX_MANIFEST_JSON = 16 * 1024 * 1024
MAX_CONFIG_SIZE = 8 * 1024 * 1024
MAX_IMAGES = 10_000
MAX_LAYERS = 1_000
# Of all images together: each layer costs a descriptor and a line of its
# image's manifest, kept while the archive is open.
MAX_TOTAL_LAYERS = 20_000


class ArchiveImage(Value):
    """One entry of ``manifest.json``, as an OCI image."""

    __slots__ = ("index", "repo_tags", "desc", "manifest", "config", "layers", "platform")
    index: int
    repo_tags: tuple[str, ...]  # normalised references (docker.io/library/…)
    desc: Descriptor  # of ``manifest``
    manifest: bytes
    config: Descriptor
    layers: tuple[Descriptor, ...]
    platform: Platform | None

    def __init__(
        self,
        index: int,
        repo_tags: tuple[str, ...],
        desc: Descriptor,
        manifest: bytes,
        config: Descriptor,
        layers: tuple[Descriptor, ...],
        platform: Platform | None,
    ) -> None:
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "repo_tags", repo_tags)
        object.__setattr__(self, "desc", desc)
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "platform", platform)


class DockerArchiveReader:
    """The images of a docker-archive and a ``Fetcher`` of their objects."""

    def __init__(self, tar: TarIndex) -> None:
        self.tar = tar
        self.what = tar.what
        self._memory: dict[Digest, bytes] = {}  # synthesised manifests
        # Configs and layers, read from the archive when wanted: configs are
        # up to 8 MiB each, and an archive may list thousands.
        self._members: dict[Digest, Member] = {}
        self._layer_count = 0
        self.images: list[ArchiveImage] = self._read()

    # -- Fetcher --

    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = True) -> Readable:
        data = self._memory.get(desc.digest)
        if data is not None:
            if len(data) != desc.size:
                raise DigestMismatch(f"{self.what}: {desc.digest}: size mismatch")
            return io.BytesIO(data[offset:])  # hashed when it was read
        member = self._members.get(desc.digest)
        if member is None:
            raise NotFound(f"{self.what}: {desc.digest}: not in the archive")
        if member.size != desc.size:
            raise DigestMismatch(
                f"{self.what}: {quote(member.name)}: size mismatch: {member.size} bytes, "
                f"descriptor says {desc.size}"
            )
        stream = self.tar.open(member, offset)
        if verify and offset == 0:
            return VerifyingReader(
                stream, desc.digest, desc.size, what=f"{self.what}: {quote(member.name)}"
            )
        return stream

    # -- lookup --

    def find(self, ref: str | None) -> ArchiveImage:
        """The image ``ref`` names: ``@N`` (its position), a repository tag, or
        nothing when the archive holds one image (skopeo's docker-archive:FILE[:REF])."""
        if not ref:
            if len(self.images) != 1:
                raise InvalidContent(
                    f"{self.what}: holds {len(self.images)} images: name one "
                    f"(docker-archive:FILE:NAME:TAG or :@N) {self._has()}"
                )
            return self.images[0]
        if ref.startswith("@"):
            try:
                return self.images[int(ref[1:])]
            except (ValueError, IndexError):
                raise NotFound(f"{self.what}: no image {quote(ref)} {self._has()}") from None
        want = reference.parse(ref).name
        for image in self.images:
            if want in image.repo_tags:
                return image
        raise NotFound(f"{self.what}: no image tagged {quote(ref)} {self._has()}")

    def _has(self) -> str:
        """Each image as ``@N`` and its tags, for an error that asks the user
        to name one (the archive's text: escaped)."""
        images = (" ".join([f"@{i.index}", *i.repo_tags]) for i in self.images)
        return f"(the archive has {listing(images, each=QUOTE_LIMIT)})"

    # -- reading --

    def _read(self) -> list[ArchiveImage]:
        if not self.tar.has(MANIFEST_FILE):
            old = (
                " (a pre-1.10 Docker save, not supported)"
                if self.tar.has(REPOSITORIES_FILE)
                else ""
            )
            raise InvalidContent(f"{self.what}: not a docker-archive: no {MANIFEST_FILE}{old}")
        raw = self.tar.read(MANIFEST_FILE, MAX_MANIFEST_JSON)
        entries = jsondata.loads(raw, f"{self.what}: {MANIFEST_FILE}")
        if not isinstance(entries, list) or not entries:
            raise InvalidContent(f"{self.what}: {MANIFEST_FILE}: not a list of images")
        if len(entries) > MAX_IMAGES:
            raise InvalidContent(f"{self.what}: {MANIFEST_FILE}: {len(entries)} images")
        return [self._image(i, e) for i, e in enumerate(entries)]

    def _image(self, index: int, entry: Any) -> ArchiveImage:
        where = f"{self.what}: {MANIFEST_FILE}[{index}]"
        if not isinstance(entry, dict):
            raise InvalidContent(f"{where}: not an object")
        config_path = entry.get("Config")
        layer_paths = entry.get("Layers")
        tags = entry.get("RepoTags") or []
        if not isinstance(config_path, str) or not config_path:
            raise InvalidContent(f"{where}: no Config")
        if not isinstance(layer_paths, list) or not all(isinstance(p, str) for p in layer_paths):
            raise InvalidContent(f"{where}: Layers is not a list of paths")
        if len(layer_paths) > MAX_LAYERS:
            raise InvalidContent(f"{where}: {len(layer_paths)} layers")
        self._layer_count += len(layer_paths)
        if self._layer_count > MAX_TOTAL_LAYERS:
            raise InvalidContent(
                f"{self.what}: {MANIFEST_FILE}: more than {MAX_TOTAL_LAYERS} layers in all"
            )
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InvalidContent(f"{where}: RepoTags is not a list of names")
        try:
            repo_tags = tuple(reference.parse(t).name for t in tags)
        except DistError as e:
            raise InvalidContent(f"{where}: RepoTags: {e}") from None
        config, diff_ids, platform = self._config(config_path)
        if len(diff_ids) != len(layer_paths):
            raise InvalidContent(
                f"{where}: {len(layer_paths)} layers but the config has {len(diff_ids)} diff_ids"
            )
        layers = tuple(
            self._layer(path, diff_id) for path, diff_id in zip(layer_paths, diff_ids, strict=True)
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        data = json.dumps(manifest, separators=(",", ":")).encode()
        desc = Descriptor(OCI_MANIFEST, Digest.from_bytes(data), len(data))
        self._memory[desc.digest] = data
        return ArchiveImage(index, repo_tags, desc, data, config, layers, platform)

    def _config(self, path: str) -> tuple[Descriptor, list[Digest], Platform | None]:
        member = self.tar.find(path)
        data = self.tar.read(path, MAX_CONFIG_SIZE)
        dgst = Digest.from_bytes(data)
        named = _named_digest(path)
        if named is not None and named != dgst:
            raise DigestMismatch(f"{self.what}: {quote(path)}: digest mismatch: the file is {dgst}")
        obj = jsondata.loads(data, f"{self.what}: {quote(path)}")
        rootfs = obj.get("rootfs") if isinstance(obj, dict) else None
        ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(ids, list):
            raise InvalidContent(f"{self.what}: {quote(path)}: no rootfs.diff_ids")
        try:
            diff_ids = [Digest.parse(str(d)) for d in ids]
        except DistError as e:
            raise InvalidContent(f"{self.what}: {quote(path)}: rootfs.diff_ids: {e}") from None
        platform = None
        if isinstance(obj.get("os"), str) and isinstance(obj.get("architecture"), str):
            try:
                platform = Platform.from_json(obj)
            except InvalidContent as e:
                raise InvalidContent(f"{self.what}: {quote(path)}: {e}") from None
        assert member is not None  # read() found it
        self._members[dgst] = member
        return Descriptor(OCI_CONFIG, dgst, len(data)), diff_ids, platform

    def _layer(self, path: str, diff_id: Digest) -> Descriptor:
        from ocidist.archive.compression import Compression, detect
        from ocidist.errors import CompressionError

        member = self.tar.find(path)
        if member is None:
            raise InvalidContent(f"{self.what}: layer {quote(path)} is missing")
        head = self.tar.open(member).read(512)
        try:
            kind = detect(head)
        except CompressionError as e:
            raise InvalidContent(f"{self.what}: layer {quote(path)}: {e}") from None
        named = _named_digest(path)
        if kind is Compression.NONE:
            # The plain tar is what diff_id names: that is its digest.
            if named is not None and named != diff_id:
                raise DigestMismatch(
                    f"{self.what}: layer {quote(path)}: digest mismatch: the config says {diff_id}"
                )
            dgst = diff_id
        else:
            dgst = named if named is not None else self._hash(member)
        media_type = {
            Compression.NONE: OCI_LAYER,
            Compression.GZIP: OCI_LAYER_GZIP,
            Compression.ZSTD: OCI_LAYER_ZSTD,
        }[kind]
        known = self._members.get(dgst)
        if known is None or known.size != member.size:
            self._members[dgst] = member
        return Descriptor(media_type, dgst, member.size)

    def _hash(self, member: Member) -> Digest:
        h = new_hasher("sha256")
        stream = self.tar.open(member)
        while chunk := stream.read(1 << 20):
            h.update(chunk)
        return Digest("sha256", h.hexdigest())


def _named_digest(path: str) -> Digest | None:
    """The digest a member's name states: ``blobs/sha256/<hex>`` (Docker 25),
    ``<hex>.json`` (a config) or ``<hex>.tar`` (skopeo's layers)."""
    parts = path.strip("/").split("/")
    try:
        if len(parts) == 3 and parts[0] == "blobs":
            return Digest.parse(f"{parts[1]}:{parts[2]}")
        if len(parts) == 1 and parts[0].endswith((".json", ".tar")):
            stem = parts[0].rsplit(".", 1)[0]
            if len(stem) == 64:
                return Digest.parse(f"sha256:{stem}")
    except DistError:
        return None
    return None
