"""The `docker save` / `docker load` archive format ("docker-archive" in skopeo's terms).

``reader`` turns an archive into OCI images and a ``Fetcher`` of their
objects (so importing one is an ordinary pull, through the image walker,
from that fetcher); ``writer`` saves images from the store in the format
``docker load`` and skopeo read. See each module for the details.
"""

from __future__ import annotations

from collections.abc import Sequence

from ocidist import reference
from ocidist.content import Store
from ocidist.descriptor import Descriptor, is_index
from ocidist.dockerarchive.reader import (
    MANIFEST_FILE,
    REPOSITORIES_FILE,
    ArchiveImage,
    DockerArchiveReader,
)
from ocidist.dockerarchive.writer import SavedImage, chain_ids, write_docker_archive
from ocidist.errors import InvalidArgument
from ocidist.images.platforms import MatchComparer, default_matcher
from ocidist.metadata import Image, Metadata
from ocidist.tarindex import TarIndex

__all__ = [
    "MANIFEST_FILE",
    "REPOSITORIES_FILE",
    "ArchiveImage",
    "DockerArchiveReader",
    "SavedImage",
    "chain_ids",
    "export_docker",
    "import_docker",
    "write_docker_archive",
]


class DockerExport:
    def __init__(self, name: str, target: Descriptor, dest: str, size: int) -> None:
        self.name = name
        self.target = target  # the image manifest written (one platform of an index)
        self.dest = dest
        self.size = size


def export_docker(
    store: Store,
    metadata: Metadata,
    name: str,
    dest: str,
    *,
    platforms: MatchComparer | None = None,
    tag: str | None = None,
    untagged: bool = False,
) -> DockerExport:
    """Save stored image ``name`` to ``dest`` as a docker-archive. An index
    gives its best platform manifest (``platforms``, default this machine's),
    as ``docker save`` does; ``tag`` replaces the RepoTag (``repo:tag``);
    ``untagged`` writes none (an image whose name was made up)."""
    from ocidist.images.plan import stored_platform
    from ocidist.images.unpack import manifest_parts, read_config
    from ocidist.layout.exporter import lookup_image

    image = lookup_image(metadata, name)
    target = image.target
    if is_index(target.media_type):
        target = stored_platform(store, target, platforms or default_matcher(), image.name)
    config, layers = manifest_parts(store, target)
    parts = read_config(store, target, config, layers)
    repo_tags = [] if untagged else [_repo_tag(image.name, tag)]
    size = write_docker_archive(store, [SavedImage(parts, [t for t in repo_tags if t])], dest)
    return DockerExport(image.name, target, dest, size)


def _repo_tag(name: str, tag: str | None) -> str:
    r = reference.parse(name, default_tag="")
    if tag:
        r = reference.parse(tag) if ("/" in tag or ":" in tag) else r.with_tag(tag)
    if r.tag is None:
        return ""  # a digest-only name: docker save writes no RepoTag either
    return reference.Reference(r.domain, r.path, r.tag).familiar()


def import_docker(
    store: Store,
    metadata: Metadata,
    tar: TarIndex,
    *,
    name: str | None = None,
    concurrency: int = 0,
) -> list[Image]:
    """Read the docker-archive indexed by ``tar`` into the store and name its
    images: by their RepoTags, or ``name`` (a repository, tagged with each
    RepoTag's tag, or one full reference for a one-image archive)."""
    from ocidist.images.handlers import FetchHandler
    from ocidist.images.walk import walk
    from ocidist.pull import default_concurrency

    reader = DockerArchiveReader(tar)
    base = reference.parse(name, default_tag="") if name is not None else None
    if base is not None and (base.tag or base.digest) and len(reader.images) > 1:
        raise InvalidArgument(f"--name {name} has a tag but the archive holds {len(reader.images)}")
    # Names before anything is written: a bad one leaves no trace.
    named = [(image, _names(image, base, tar.what)) for image in reader.images]
    # The archive is a Fetcher: importing it is a pull from it, on the walker.
    handler = FetchHandler(store, reader)
    roots = [i.desc for i in reader.images]
    walk(handler, roots, concurrency=concurrency or default_concurrency())
    return [metadata.put_image(n, image.desc) for image, names in named for n in names]


def _names(image: ArchiveImage, base: reference.Reference | None, what: str) -> Sequence[str]:
    if base is None:
        if not image.repo_tags:
            raise InvalidArgument(
                f"{what}: image {image.index} has no RepoTags: give --name REPOSITORY"
            )
        return image.repo_tags
    if base.tag is not None or base.digest is not None:
        return [base.name]
    tags = [reference.parse(t).tag for t in image.repo_tags]
    if not any(tags):
        return [base.with_digest(image.desc.digest).name]
    return [base.with_tag(t).name for t in tags if t]


def is_docker_archive(tar: TarIndex) -> bool:
    """A docker-archive, and not (also) an OCI layout (Docker 25 writes both)."""
    return tar.has(MANIFEST_FILE) and not tar.has("oci-layout")
