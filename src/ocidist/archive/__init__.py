"""Apply OCI layer tars (gzip, zstd or plain) to a directory, confined to it.

``apply_layer`` is the entry point; ``rootpath`` and ``compression`` are
usable on their own (image unpacking reuses them).
"""

from ocidist.archive.apply import ApplyOptions, ApplyResult, apply_layer
from ocidist.archive.compression import Compression, detect

__all__ = ["ApplyOptions", "ApplyResult", "Compression", "apply_layer", "detect"]
