"""Repository names derived from test ids, valid per the distribution-spec."""

from __future__ import annotations

import hashlib
import re

# distribution-spec: path components [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
MAX_NAME = 200  # the registry allows 255 for the whole name; leave room


def _component(text: str) -> str:
    comp = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return comp or "x"


def repo_name_for(node_id: str, prefix: str = "t") -> str:
    """``tests/test_pull.py::test_x[a/b]`` -> ``t/test-pull/test-x-a-b``.

    Long ids are cut and suffixed with a hash of the full id, so distinct
    tests keep distinct names.
    """
    file_part, _, test_part = node_id.partition("::")
    module = file_part.rsplit("/", 1)[-1].removesuffix(".py")
    name = f"{prefix}/{_component(module)}/{_component(test_part or file_part)}"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(node_id.encode()).hexdigest()[:12]
        name = f"{name[: MAX_NAME - 13].rstrip('-')}-{digest}"
    assert all(_COMPONENT_RE.match(c) for c in name.split("/")), name
    return name
