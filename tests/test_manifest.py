"""Manifest and index decoding: valid documents, every kind of malformed one."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocidist.descriptor import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Platform,
)
from ocidist.digest import Digest
from ocidist.errors import InvalidContent
from ocidist.manifest import Index, Manifest, children, decode, detect_media_type


def _desc(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": str(Digest.from_bytes(content)),
        "size": len(content),
        **extra,
    }


CONFIG = _desc(OCI_CONFIG, b"config")
LAYERS = [_desc(OCI_LAYER_GZIP, b"layer1"), _desc(OCI_LAYER_GZIP, b"layer2")]
AMD64 = {"os": "linux", "architecture": "amd64"}
ARM64 = {"os": "linux", "architecture": "arm64", "variant": "v8"}


def oci_manifest(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": CONFIG,
        "layers": LAYERS,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def oci_index(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            _desc(OCI_MANIFEST, b"m-amd64", platform=AMD64),
            _desc(OCI_MANIFEST, b"m-arm64", platform=ARM64),
        ],
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_oci_manifest() -> None:
    subject = _desc(OCI_MANIFEST, b"subject")
    doc = oci_manifest(annotations={"a": "b"}, subject=subject, artifactType="application/x")
    m = decode(dump(doc), OCI_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.media_type == OCI_MANIFEST
    assert m.config == Descriptor.from_json(CONFIG)
    assert [str(d.digest) for d in m.layers] == [d["digest"] for d in LAYERS]
    assert dict(m.annotations) == {"a": "b"}
    assert m.subject == Descriptor.from_json(subject)
    assert m.artifact_type == "application/x"


def test_docker_schema2_manifest() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": _desc(DOCKER_CONFIG, b"c"),
        "layers": [_desc(DOCKER_LAYER_GZIP, b"l")],
    }
    m = decode(dump(doc), DOCKER_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.media_type == DOCKER_MANIFEST
    assert m.config.media_type == DOCKER_CONFIG
    assert m.layers[0].media_type == DOCKER_LAYER_GZIP
    assert m.subject is None and m.artifact_type == ""


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_indexes(media_type: str) -> None:
    idx = decode(dump(oci_index(mediaType=media_type)), media_type)
    assert isinstance(idx, Index)
    assert idx.media_type == media_type
    assert [d.platform for d in idx.manifests] == [
        Platform("linux", "amd64"),
        Platform("linux", "arm64", "v8"),
    ]


def test_media_type_field_is_optional_and_parameters_are_stripped() -> None:
    body = dump(oci_manifest(mediaType=...))
    m = decode(body, OCI_MANIFEST + "; charset=utf-8")
    assert m.media_type == OCI_MANIFEST


def test_empty_layer_list_is_valid() -> None:
    m = decode(dump(oci_manifest(layers=[])), OCI_MANIFEST)
    assert isinstance(m, Manifest) and m.layers == ()


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (oci_manifest(), OCI_MANIFEST),
        (oci_manifest(mediaType=DOCKER_MANIFEST), DOCKER_MANIFEST),
        (oci_manifest(mediaType=...), OCI_MANIFEST),
        (oci_index(mediaType=...), OCI_INDEX),
        (oci_index(mediaType=DOCKER_MANIFEST_LIST), DOCKER_MANIFEST_LIST),
    ],
)
@pytest.mark.parametrize("served_as", ["", "application/octet-stream", "application/json"])
def test_uninformative_content_type_is_detected(
    doc: dict[str, Any], expected: str, served_as: str
) -> None:
    assert decode(dump(doc), served_as).media_type == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (dump({"mediaType": OCI_INDEX + "; x=y", "manifests": []}), OCI_INDEX),
        (dump({"manifests": []}), OCI_INDEX),
        (dump({"config": {}}), OCI_MANIFEST),
        (dump({"layers": []}), OCI_MANIFEST),
        (dump({"schemaVersion": 1, "fsLayers": []}), DOCKER_SCHEMA1),
        (dump({"mediaType": DOCKER_MANIFEST}), DOCKER_MANIFEST),
    ],
)
def test_detect_media_type(body: bytes, expected: str) -> None:
    assert detect_media_type(body) == expected


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"{}", "cannot tell"), (b"[]", "not a JSON object"), (b"nope", "not valid JSON")],
)
def test_detect_media_type_errors(body: bytes, why: str) -> None:
    with pytest.raises(InvalidContent, match=why):
        detect_media_type(body)


def _schema1() -> bytes:
    return dump({"schemaVersion": 1, "name": "a", "tag": "b", "fsLayers": []})


@pytest.mark.parametrize(
    ("body", "media_type", "why"),
    [
        (b"{", OCI_MANIFEST, "not valid JSON"),
        (b"\xff\xfe", OCI_MANIFEST, "not valid JSON"),
        (b"[" * 100_000, OCI_MANIFEST, "not valid JSON"),
        (b"[]", OCI_MANIFEST, "not a JSON object"),
        (b"null", OCI_MANIFEST, "not a JSON object"),
        (b" " * (MAX_MANIFEST_SIZE + 1), OCI_MANIFEST, "more than the"),
        (_schema1(), DOCKER_SCHEMA1_SIGNED, "schema1 manifests are not supported"),
        (_schema1(), "text/plain", "schema1 manifests are not supported"),
        (_schema1(), DOCKER_MANIFEST, "schema1 manifests are not supported"),
        (dump(oci_manifest()), OCI_LAYER_GZIP, "not a manifest or index"),
        (dump(oci_manifest()), DOCKER_MANIFEST, "declares mediaType"),
        (dump(oci_index()), DOCKER_MANIFEST_LIST, "declares mediaType"),
        (dump(oci_manifest(mediaType=7)), OCI_MANIFEST, "non-string mediaType"),
        (dump(oci_manifest(schemaVersion=...)), OCI_MANIFEST, "schemaVersion None"),
        (dump(oci_manifest(schemaVersion=3)), OCI_MANIFEST, "schemaVersion 3"),
        (dump(oci_manifest(schemaVersion="2")), OCI_MANIFEST, "schemaVersion '2'"),
        (dump(oci_manifest(schemaVersion=True)), OCI_MANIFEST, "schemaVersion True"),
        (dump(oci_manifest(schemaVersion=2.0)), OCI_MANIFEST, "schemaVersion 2.0"),
        (
            dump({"schemaVersion": 1, "mediaType": DOCKER_SCHEMA1_SIGNED}),
            DOCKER_MANIFEST,
            "schema1 manifests are not supported",
        ),
        (dump(oci_manifest(config=...)), OCI_MANIFEST, "no config"),
        (dump(oci_index(mediaType=...)), OCI_MANIFEST, "no config"),
        (dump(oci_manifest(config=[])), OCI_MANIFEST, "config: descriptor is not a JSON"),
        (dump(oci_manifest(layers=...)), OCI_MANIFEST, "no layers"),
        (dump(oci_manifest(layers={})), OCI_MANIFEST, "layers is not a list"),
        (dump(oci_manifest(layers=[1])), OCI_MANIFEST, r"layers\[0\]: descriptor is not"),
        (dump(oci_manifest(layers=[{**LAYERS[0], "size": -1}])), OCI_MANIFEST, "invalid size"),
        (dump(oci_manifest(layers=[{**LAYERS[0], "size": "1"}])), OCI_MANIFEST, "invalid size"),
        (dump(oci_manifest(layers=[{**LAYERS[0], "size": True}])), OCI_MANIFEST, "invalid size"),
        (dump(oci_manifest(layers=[{**LAYERS[0], "size": 1.5}])), OCI_MANIFEST, "invalid size"),
        (
            dump(oci_manifest(layers=[LAYERS[0], {**LAYERS[1], "digest": "sha256:abc"}])),
            OCI_MANIFEST,
            r"layers\[1\]: descriptor has a bad digest",
        ),
        (
            dump(oci_manifest(config={**CONFIG, "digest": "md5:" + "0" * 32})),
            OCI_MANIFEST,
            "unsupported algorithm",
        ),
        (dump(oci_manifest(config={"size": 1})), OCI_MANIFEST, "no digest"),
        (
            dump(oci_manifest(config={k: v for k, v in CONFIG.items() if k != "mediaType"})),
            OCI_MANIFEST,
            "config: descriptor sha256:[0-9a-f]+ has no mediaType",
        ),
        (dump(oci_manifest(annotations=[])), OCI_MANIFEST, "annotations"),
        (dump(oci_manifest(annotations={"a": 1})), OCI_MANIFEST, "annotations"),
        (dump(oci_manifest(artifactType=1)), OCI_MANIFEST, "artifactType"),
        (dump(oci_manifest(subject="x")), OCI_MANIFEST, "subject"),
        (dump(oci_index(manifests=...)), OCI_INDEX, "no manifests"),
        (dump(oci_index(manifests=None)), OCI_INDEX, "no manifests"),
        (
            dump(oci_index(manifests=[_desc(OCI_MANIFEST, b"m", platform={"os.features": 5})])),
            OCI_INDEX,
            r"manifests\[0\]: platform os.features must be a list",
        ),
        (dump({"schemaVersion": 2}), "", "cannot tell"),
    ],
)
def test_invalid(body: bytes, media_type: str, why: str) -> None:
    with pytest.raises(InvalidContent, match=why):
        decode(body, media_type)


def test_children_of_index_and_manifest() -> None:
    idx_body = dump(oci_index())
    idx = Descriptor(OCI_INDEX, Digest.from_bytes(idx_body), len(idx_body))
    kids = children(idx, idx_body)
    assert [str(d.digest) for d in kids] == [d["digest"] for d in oci_index()["manifests"]]

    man_body = dump(oci_manifest())
    man = Descriptor(OCI_MANIFEST, Digest.from_bytes(man_body), len(man_body))
    got = [(d.media_type, str(d.digest)) for d in children(man, man_body)]
    assert got == [(d["mediaType"], d["digest"]) for d in [CONFIG, *LAYERS]]


@pytest.mark.parametrize("media_type", [OCI_LAYER_GZIP, OCI_CONFIG, "application/x-unknown"])
def test_other_types_have_no_children(media_type: str) -> None:
    desc = Descriptor(media_type, Digest.from_bytes(b"x"), 1)
    assert children(desc, b"\x00 not json") == []


def test_children_of_a_broken_index_is_an_error() -> None:
    desc = Descriptor(OCI_INDEX, Digest.from_bytes(b"{}"), 2)
    with pytest.raises(InvalidContent):
        children(desc, b"{}")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
_fields = st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "manifests"])


@given(
    st.sampled_from([oci_manifest(), oci_index()]),
    st.dictionaries(_fields, _json, max_size=3),
    st.sampled_from([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, "", "text/plain"]),
)
def test_mangled_documents_only_raise_invalid_content(
    doc: dict[str, Any], changes: dict[str, Any], media_type: str
) -> None:
    body = json.dumps({**doc, **changes}).encode()
    try:
        decoded = decode(body, media_type)
    except InvalidContent:
        return
    assert isinstance(decoded, Manifest | Index)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_invalid_content(body: bytes) -> None:
    for fn in (lambda: decode(body, OCI_MANIFEST), lambda: detect_media_type(body)):
        with contextlib.suppress(InvalidContent):
            fn()
