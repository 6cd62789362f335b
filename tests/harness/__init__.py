"""Real-program test harness: a Distribution registry process, a deterministic
image builder, skopeo-based pushing and a fault-injecting proxy.

Importable without pytest (scripts/demo.py and scripts/bench.py use it);
the pytest fixtures live in tests/conftest.py.
"""

from tests.harness.bigdata import large_image, large_layer
from tests.harness.blobs import Blob, Compression, sha256
from tests.harness.canned import (
    PLATFORMS,
    docker_image,
    many_small_layers,
    multiplatform_index,
    simple_image,
)
from tests.harness.faultproxy import FaultProxy
from tests.harness.faultrules import (
    AddHeader,
    Drop,
    FlipByte,
    IgnoreRange,
    LoggedRequest,
    Redirect,
    Respond,
    Rule,
    Stall,
    StripHeader,
)
from tests.harness.images import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    LAYER_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    BuiltImage,
    Format,
    Layer,
    build_image,
    build_index,
    build_layer,
)
from tests.harness.layout import write_layout
from tests.harness.names import repo_name_for
from tests.harness.push import http_push, inspect_digest, inspect_raw, push_image, run_skopeo
from tests.harness.registry import AccessEntry, Registry, TokenAuth
from tests.harness.tarspec import (
    Device,
    Dir,
    Fifo,
    File,
    Hardlink,
    LayerSpec,
    Opaque,
    Raw,
    Symlink,
    Whiteout,
    tar_bytes,
)

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "LAYER_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "PLATFORMS",
    "AccessEntry",
    "AddHeader",
    "Blob",
    "BuiltImage",
    "Compression",
    "Device",
    "Dir",
    "Drop",
    "FaultProxy",
    "Fifo",
    "File",
    "FlipByte",
    "Format",
    "Hardlink",
    "IgnoreRange",
    "Layer",
    "LayerSpec",
    "LoggedRequest",
    "Opaque",
    "Raw",
    "Redirect",
    "Registry",
    "Respond",
    "Rule",
    "Stall",
    "StripHeader",
    "Symlink",
    "TokenAuth",
    "Whiteout",
    "build_image",
    "build_index",
    "build_layer",
    "docker_image",
    "http_push",
    "inspect_digest",
    "inspect_raw",
    "large_image",
    "large_layer",
    "many_small_layers",
    "multiplatform_index",
    "push_image",
    "repo_name_for",
    "run_skopeo",
    "sha256",
    "simple_image",
    "tar_bytes",
    "write_layout",
]
