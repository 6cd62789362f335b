"""Gzip an image's uncompressed layers for a registry, as skopeo does.

A `docker save` archive holds its layers as plain tars. skopeo copying such
an archive to a registry compresses them (a registry destination wants
compressed layers; ``skopeo copy docker-archive:x.tar docker://…`` here
pushed ``…diff.tar.gzip`` layers), while it keeps them plain for an OCI
layout or another archive. ``compressed`` makes that registry copy: each
``application/vnd.oci.image.layer.v1.tar`` layer of a manifest in the store
is gzip'd into the store (read back verified against its digest), and a new
manifest names the compressed blobs; the config, and so the image's
diff_ids, stay as they are. The manifest's digest changes, as it does with
skopeo; nothing else about it does.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, cast

from ocidist import jsondata, manifest
from ocidist.content import Store
from ocidist.descriptor import OCI_LAYER, OCI_LAYER_GZIP, Descriptor
from ocidist.digest import Digest, VerifyingReader
from ocidist.errors import AlreadyExists
from ocidist.images.handlers import child_labels
from ocidist.images.scheduler import Scheduler
from ocidist.images.walk import manifest_children, read_manifest
from ocidist.stream import BUF, Readable

GZIP_FOR = {OCI_LAYER: OCI_LAYER_GZIP}


def compressed(store: Store, desc: Descriptor, *, concurrency: int = 1) -> Descriptor:
    """``desc`` (a manifest in ``store``) with its plain layers gzip'd; ``desc``
    itself when it has none (or is an index)."""
    data = read_manifest(store, desc)
    decoded = manifest.decode(data, desc.media_type)
    if not isinstance(decoded, manifest.Manifest):
        return desc
    plain = {layer.digest: layer for layer in decoded.layers if layer.media_type in GZIP_FOR}
    if not plain:
        return desc
    done: dict[Digest, Descriptor] = {}
    sched = Scheduler(concurrency, name="compress")
    for layer in plain.values():

        def run(layer: Descriptor = layer) -> None:
            done[layer.digest] = _gzip(store, layer)

        sched.add(str(layer.digest), run, priority=(0, -layer.size))
    sched.run()
    doc = jsondata.load_object(data, f"manifest {desc.digest}")
    entries = cast(list[dict[str, Any]], doc["layers"])
    for entry, layer in zip(entries, decoded.layers, strict=True):
        new = done.get(layer.digest) if layer.media_type in GZIP_FOR else None
        if new is not None:
            entry.update(mediaType=new.media_type, digest=str(new.digest), size=new.size)
    out = json.dumps(doc, separators=(",", ":")).encode()
    result = Descriptor(desc.media_type, Digest.from_bytes(out), len(out))
    labels = child_labels(result, manifest_children(result, out))
    store.put(out, result.digest, labels)
    return result


def _gzip(store: Store, layer: Descriptor) -> Descriptor:
    from ocidist.archive.compression import gzip_compressor

    comp = gzip_compressor()
    # A half-written compression cannot be resumed (the compressor's state
    # is gone): start the ingest over.
    writer = store.writer(f"gzip-{layer.digest}")
    try:
        writer.truncate(0)
        size = 0
        with store.reader(layer.digest) as f:
            src = VerifyingReader(cast(Readable, f), layer.digest, layer.size,
                                  what=f"content {layer.digest}")  # fmt: skip
            while chunk := src.read(BUF):
                size += writer.write(comp.compress(chunk))
        size += writer.write(comp.flush())
        dgst = writer.digest()
        # AlreadyExists: the same layer compressed before, to the same bytes.
        with contextlib.suppress(AlreadyExists):
            writer.commit(size, dgst)
    finally:
        writer.close()
    return Descriptor(GZIP_FOR[layer.media_type], dgst, size, annotations=layer.annotations)
