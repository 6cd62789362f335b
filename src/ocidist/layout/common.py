"""Names and helpers shared by layout export and import."""

from __future__ import annotations

from ocidist.content import Store
from ocidist.descriptor import Descriptor
from ocidist.digest import Digest
from ocidist.errors import DigestMismatch
from ocidist.images.walk import read_manifest

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


def read_small(store: Store, desc: Descriptor) -> bytes:
    """A manifest-sized blob from the store, re-verified (it is about to be trusted)."""
    data = read_manifest(store, desc)
    if Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
        raise DigestMismatch(f"content {desc.digest}: digest mismatch in the store")
    return data
