"""Fuzzing the parsers of untrusted input: references, digests, platforms and
manifests may only raise their documented error, whatever they are fed.

hypothesis drives the targets of tests/fuzz/targets.py here (mutations of
valid inputs, arbitrary text and structured JSON); tests/fuzz/run.py drives
the same targets under atheris when it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import (
    SEEDS,
    TARGETS,
    digest_target,
    http_target,
    manifest_target,
    platform_target,
    reference_target,
)

HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
VALID = [
    "redis",
    "localhost:5000/a/b:t",
    f"ghcr.io/org/app:v1@sha256:{HEX}",
    "[::1]:5000/a",
    "docker.io/library/redis:7",
    "a__b/c--d/e.f_g:T_1",
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[str]) -> str:
    """A valid input with a few characters inserted, deleted or replaced."""
    text = list(draw(st.sampled_from(seeds)))
    alphabet = st.sampled_from([*"/:@.-_[]%+ \x00\t\né", "sha256", "sha512:", "::", "//", "A"])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert" or not text:
            text.insert(pos, draw(alphabet))
        elif op == "delete":
            del text[min(pos, len(text) - 1)]
        else:
            text[min(pos, len(text) - 1)] = draw(alphabet)
    return "".join(text)


@pytest.mark.slow
@settings(max_examples=1500)
@given(st.one_of(mutated(VALID), st.text(max_size=300), st.binary(max_size=300).map(repr)))
@example("a" * 300 + "/b")
@example("localhost:" + "9" * 40 + "/a")
@example("a/" * 200 + "b")
@example(f"a@sha256:{HEX}{HEX}")
@example("a:" + "t" * 200)
def test_reference_parser_raises_only_invalid_reference(text: str) -> None:
    reference_target(text.encode())


@settings(max_examples=800)
@given(st.one_of(mutated([f"sha256:{HEX}", f"sha512:{HEX}{HEX}"]), st.text(max_size=200)))
@example("sha256:" + "A" * 64)
@example("md5:abc")
@example(":")
def test_digest_parser_raises_only_invalid_digest(text: str) -> None:
    digest_target(text.encode())


@given(st.text(max_size=80))
def test_platform_parser_raises_only_invalid_argument(text: str) -> None:
    platform_target(text.encode())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def descriptor_like() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "mediaType": st.sampled_from(["application/vnd.oci.image.manifest.v1+json", "", 5]),
            "digest": st.sampled_from([f"sha256:{HEX}", "sha256:xyz", "nope:1", 7, None]),
            "size": st.one_of(st.integers(-5, 2**64), st.floats(), st.text(max_size=3)),
            "platform": st.one_of(json_values, st.just({"os": "linux", "os.features": "x"})),
            "annotations": json_values,
            "urls": json_values,
        },
    )


manifest_like = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.one_of(st.sampled_from([1, 2, True, "2"]), json_values),
        "mediaType": st.sampled_from([
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "text/html",
        ]),
        "config": st.one_of(descriptor_like(), json_values),
        "layers": st.one_of(st.lists(descriptor_like(), max_size=3), json_values),
        "manifests": st.one_of(st.lists(descriptor_like(), max_size=3), json_values),
        "annotations": json_values,
        "subject": st.one_of(descriptor_like(), json_values),
        "artifactType": json_values,
    },
)  # fmt: skip


@pytest.mark.slow
@settings(max_examples=1500)
@given(st.integers(0, 255), st.one_of(manifest_like.map(json.dumps), st.text(max_size=200)))
@example(0, "[" * 100_000)
@example(1, '{"schemaVersion": 2, "manifests": [' + "{}," * 10 + "{}]}")
def test_manifest_decoder_raises_only_invalid_content(kind: int, body: str) -> None:
    manifest_target(bytes([kind]) + body.encode())


@settings(max_examples=300)
@given(st.sampled_from(SEEDS["http"]), st.binary(max_size=2), st.binary(max_size=8), st.integers(2))
def test_http_target_agrees_with_h11(seed: bytes, plan: bytes, noise: bytes, at: int) -> None:
    # The atheris target's own inputs (plan bytes, then an answer), a seed
    # with noise spliced in; tests/test_http11.py drives the check harder.
    data = plan + seed[len(plan) :]
    at = min(at, len(data))
    http_target(data[:at] + noise + data[at:])


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_harness_runs_briefly(tmp_path: Path) -> None:
    # The optional coverage-guided run; `make reliability` gives it longer.
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, str(root / "tests" / "fuzz" / "run.py"), "--seconds", "8",
         "--artifacts", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count(": ok") == len(TARGETS), proc.stdout
