"""Write built images as OCI image layout directories (image-spec layout.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.harness.images import OCI_INDEX, BuiltImage

REF_NAME = "org.opencontainers.image.ref.name"


def write_layout(path: Path, image: BuiltImage, tag: str = "latest") -> Path:
    """Add ``image`` to the layout at ``path`` under ``tag`` (creating the
    layout if needed; an existing entry for ``tag`` is replaced)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for obj in image.objects():
        dest = blobs / obj.digest.split(":", 1)[1]
        if not dest.exists():
            obj.copy_to(dest)
    index_path = path / "index.json"
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if index_path.exists():
        index = json.loads(index_path.read_text())
    keep = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
    # A layout's index.json describes the top-level object, never its platform.
    desc = image.descriptor(annotations={REF_NAME: tag})
    desc.pop("platform", None)
    index["manifests"] = [*keep, desc]
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return path
