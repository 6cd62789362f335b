"""A metadata store left as a crashed writer leaves it: names committed by
a process that then ends without closing the store (no checkpoint), so the
commits are in ``metadata.db-wal`` only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

_CODE = """\
import json, os, sys
from ocidist.descriptor import Descriptor
from ocidist.digest import Digest
from ocidist.metadata import MetadataStore
names, labels = json.loads(sys.argv[2]), json.loads(sys.argv[3])
md = MetadataStore(sys.argv[1])
for name in names:
    md.put_image(name, Descriptor('application/x', Digest.from_bytes(name.encode()), 1), labels)
os._exit(0)  # no close: nothing checkpointed
"""


def names_left_in_wal(
    db: Path, names: Sequence[str], labels: Mapping[str, str] | None = None
) -> None:
    """Commit ``names`` into the store ``db`` (each naming the digest of its
    own bytes, with ``labels``) from a process of its own that exits
    without closing it."""
    subprocess.run(
        [sys.executable, "-c", _CODE, str(db), json.dumps(list(names)), json.dumps(labels or {})],
        env={**os.environ, "PYTHONPATH": SRC},
        check=True,
    )
