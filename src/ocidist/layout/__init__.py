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

from ocidist.layout.common import (
    IMAGE_NAME,
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    REF_NAME,
    is_tar_path,
)
from ocidist.layout.exporter import ExportResult, export_image
from ocidist.layout.importer import import_layout

__all__ = [
    "IMAGE_NAME",
    "INDEX_FILE",
    "LAYOUT_FILE",
    "LAYOUT_VERSION",
    "REF_NAME",
    "ExportResult",
    "export_image",
    "import_layout",
    "is_tar_path",
]
