"""Registry and image text is data: validated where it has a grammar, escaped
wherever it is shown, and never a traceback or an interpreter message.

The registry is a fake at the protocol seam (tests/harness/recording.py): a
loopback server answering crafted bodies and headers no real registry
sends — error messages with newlines and terminal escape sequences, tags and
repository names that are not names, platforms and media types outside their
grammar, JSON that trips the decoder. ``dist`` runs for real in a subprocess.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dist_cli import json_list, one_error_line, run_dist
from tests.harness.recording import Recorded, RecordingServer, Reply

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
JSON = {"Content-Type": "application/json"}
# Newlines, NUL, colour, window title (OSC … BEL), C1 CSI, bidi override.
EVIL = "line1\nline2\r\x1b[31mred\x1b]0;pwned\x07\x00nul\x9b2J\u202eevil"
RAW = ("\n", "\r", "\x1b", "\x07", "\x00", "\x9b", "\u202e")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class FakeRegistry:
    """Routes by path; anything unrouted is a distribution-spec 404."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.server = RecordingServer(responder=self.answer)

    def answer(self, req: Recorded) -> Reply:
        path = req.path.partition("?")[0]
        if path == "/v2/":
            return Reply(200, JSON, b"{}")
        unknown = dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]})
        return self.routes.get(path, Reply(404, JSON, unknown))

    @property
    def host(self) -> str:
        return self.server.host

    def manifest(self, tag: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
        reply = Reply(200, {"Content-Type": media_type, "Docker-Content-Digest": sha(body)}, body)
        self.routes[f"/v2/x/y/manifests/{tag}"] = reply
        self.routes[f"/v2/x/y/manifests/{sha(body)}"] = reply
        return f"{self.host}/x/y:{tag}"

    def blob(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.routes[f"/v2/x/y/blobs/{sha(data)}"] = Reply(200, {"Content-Type": content_type}, data)
        return sha(data)

    def image(self, config: dict[str, Any], **manifest: Any) -> bytes:
        cfg = dumps({"rootfs": {"type": "layers", "diff_ids": []}, **config})
        self.blob(cfg)
        return dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
                "layers": [],
                **manifest,
            }
        )


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    f = FakeRegistry()
    f.server.start()
    try:
        yield f
    finally:
        f.server.stop()


def dist(tmp_path: Path, *args: str) -> Any:
    return run_dist("--root", str(tmp_path / "root"), "--timeout", "30s", *args, timeout=60)


def clean(data: bytes) -> str:
    """Output that a terminal shows as it is: every line printable."""
    text = data.decode("utf-8")
    for line in text.splitlines():
        assert line.isprintable(), repr(line)
        assert not any(c in line for c in RAW), repr(line)
    return text


def failed_cleanly(proc: Any, code: int = 1) -> str:
    assert proc.returncode == code, proc.stderr.decode(errors="replace")
    line = one_error_line(proc)
    clean(proc.stderr)
    for word in ("Traceback", "set_int_max_str_digits", "recursion", "Error:"):
        assert word not in line, line
    return line


# -- error messages ---------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500])
def test_registry_error_messages_are_one_escaped_line(
    tmp_path: Path, fake: FakeRegistry, status: int
) -> None:
    body = dumps({"errors": [{"code": "DENIED\x1b[31m", "message": EVIL, "detail": EVIL}]})
    headers = {**JSON, "WWW-Authenticate": 'Basic realm="r"'} if status == 401 else JSON
    fake.routes["/v2/x/y/tags/list"] = Reply(status, headers, body)
    line = failed_cleanly(dist(tmp_path, "-u", "u:p", "tags", f"{fake.host}/x/y"))
    if status != 500:  # 500 is retried; the last answer's words are kept too
        assert "line1\\nline2" in line, line
    assert "DENIED\\x1b" not in line  # an error code that is not a code is dropped


def test_error_message_of_a_blob_fetch(tmp_path: Path, fake: FakeRegistry) -> None:
    digest = sha(b"gone")
    body = dumps({"errors": [{"code": "BLOB_UNKNOWN", "message": EVIL}]})
    fake.routes[f"/v2/x/y/blobs/{digest}"] = Reply(404, JSON, body)
    # With both hints no HEAD is sent: the GET's error body is read.
    hints = ("size:4", "mediatype:application/octet-stream")
    line = failed_cleanly(dist(tmp_path, "fetch-object", f"{fake.host}/x/y", digest, *hints))
    assert "not found" in line and "\\x1b]0;pwned\\x07" in line, line


def test_huge_error_message_is_shortened(tmp_path: Path, fake: FakeRegistry) -> None:
    body = dumps({"errors": [{"code": "DENIED", "message": "\x1b[31m" * 20_000}]})
    fake.routes["/v2/x/y/tags/list"] = Reply(403, JSON, body)
    line = failed_cleanly(dist(tmp_path, "tags", f"{fake.host}/x/y"))
    assert len(line) < 500, len(line)


# -- names from listings ----------------------------------------------------

INVALID_TAGS = ["evil\nINJECTED line", "\x1b[2J", "a" * 129, "-dash", "sl/ash", "\ud800", ""]


def test_tags_leave_out_what_is_not_a_tag(tmp_path: Path, fake: FakeRegistry) -> None:
    tags = ["v1", "latest", "A_b.c-d", "x" * 128, *INVALID_TAGS]
    fake.routes["/v2/x/y/tags/list"] = Reply(200, JSON, dumps({"name": "x/y", "tags": tags}))
    proc = dist(tmp_path, "tags", f"{fake.host}/x/y")
    assert proc.returncode == 0, proc.stderr.decode()
    assert clean(proc.stdout).splitlines() == ["v1", "latest", "A_b.c-d", "x" * 128]
    warning = clean(proc.stderr)
    assert f"{len(INVALID_TAGS)} invalid tag names" in warning and "INJECTED" in warning
    assert len(warning.splitlines()) == 1
    proc = dist(tmp_path, "--json", "tags", f"{fake.host}/x/y")
    assert json.loads(proc.stdout)["tags"] == ["v1", "latest", "A_b.c-d", "x" * 128]


def test_catalog_leaves_out_what_is_not_a_repository(tmp_path: Path, fake: FakeRegistry) -> None:
    repos = ["a/b", "lib/x-y__z.w", "evil\nrepo", "UPPER/case", "a//b", "/a", "\x1b]0;t\x07"]
    fake.routes["/v2/_catalog"] = Reply(200, JSON, dumps({"repositories": repos}))
    proc = dist(tmp_path, "catalog", fake.host)
    assert proc.returncode == 0, proc.stderr.decode()
    assert clean(proc.stdout).splitlines() == ["a/b", "lib/x-y__z.w"]
    assert "5 invalid repository names" in clean(proc.stderr)
    proc = dist(tmp_path, "--json", "catalog", fake.host)
    assert json.loads(proc.stdout)["repositories"] == ["a/b", "lib/x-y__z.w"]


# -- JSON the decoder must refuse in words ----------------------------------

DIGITS = b"1" * 5000


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"schemaVersion":2,"x":' + DIGITS + b"}", "5000 digits"),
        (b'{"schemaVersion":2,"config":{"size":' + DIGITS + b"}}", "5000 digits"),
        (b'{"schemaVersion":2,"x":1e999}', "out of range"),
        (b'{"schemaVersion":2,"x":NaN}', "NaN"),
        (b'{"schemaVersion":2,"x":-Infinity}', "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
        (b'{"schemaVersion":2,"schemaVersion":1}', "appears twice"),
        (b'{"schemaVersion":2,"mediaType":"\xff"}', "UTF-8"),
    ],
    ids=["huge-int", "huge-size", "huge-float", "nan", "infinity", "deep-array", "deep-object",
         "duplicate-key", "not-utf8"],
)  # fmt: skip
def test_manifest_json_traps_are_one_clean_line(
    tmp_path: Path, fake: FakeRegistry, body: bytes, why: str
) -> None:
    ref = fake.manifest("v1", body)
    line = failed_cleanly(dist(tmp_path, "fetch", ref))
    assert "not valid JSON" in line and why in line, line


def test_config_json_traps_are_one_clean_line(tmp_path: Path, fake: FakeRegistry) -> None:
    cfg = b'{"os":"linux","architecture":"amd64","x":' + DIGITS + b"}"
    man = dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": fake.blob(cfg), "size": len(cfg)},
            "layers": [],
        }
    )
    ref = fake.manifest("v1", man)
    line = failed_cleanly(dist(tmp_path, "inspect", ref))
    assert "5000 digits" in line, line
    line = failed_cleanly(dist(tmp_path, "unpack", ref, str(tmp_path / "out")))
    assert "5000 digits" in line, line


# -- grammars: platforms, media types ---------------------------------------


@pytest.mark.parametrize(
    "platform",
    [
        {"os": "linux\nINJECTED", "architecture": "amd64"},
        {"os": "linux", "architecture": "amd64\x00"},
        {"os": "linux", "architecture": "arm64", "variant": "v8\x1b[2J"},
        {"os": ["linux"], "architecture": "amd64"},
        {"os": "l" * 65, "architecture": "amd64"},
    ],
    ids=["os-newline", "arch-nul", "variant-escape", "os-list", "os-long"],
)
def test_index_platforms_outside_the_grammar_are_refused(
    tmp_path: Path, fake: FakeRegistry, platform: dict[str, Any]
) -> None:
    child = fake.image({"os": "linux", "architecture": "amd64"})
    fake.manifest("child", child)
    entry = {"mediaType": OCI_MANIFEST, "digest": sha(child), "size": len(child)}
    index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": [{**entry, "platform": platform}]})  # fmt: skip
    ref = fake.manifest("v1", index, OCI_INDEX)
    line = failed_cleanly(dist(tmp_path, "fetch", ref))
    assert "platform" in line, line
    nothing_named(tmp_path)


@pytest.mark.parametrize("field", ["mediaType", "artifactType"])
@pytest.mark.parametrize(
    "value",
    ["application/x\n\x1b[2J", "no-slash", "a/b/c", "application/" + "x" * 200],
    ids=["escape", "no-slash", "two-slashes", "long"],
)
def test_descriptor_media_types_outside_the_grammar_are_refused(
    tmp_path: Path, fake: FakeRegistry, field: str, value: str
) -> None:
    cfg = dumps({"os": "linux", "architecture": "amd64", "rootfs": {"diff_ids": []}})
    config = {"mediaType": OCI_CONFIG, "digest": fake.blob(cfg), "size": len(cfg), field: value}
    man = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []})
    line = failed_cleanly(dist(tmp_path, "fetch", fake.manifest("v1", man)))
    assert field in line, line
    nothing_named(tmp_path)


def test_blob_content_type_that_is_not_a_media_type(tmp_path: Path, fake: FakeRegistry) -> None:
    digest = fake.blob(b"hello", content_type="text/x\x1b[31mred")
    proc = dist(tmp_path, "resolve", f"{fake.host}/x/y@{digest}")
    assert proc.returncode == 0, proc.stderr.decode()
    out = clean(proc.stdout)
    assert "mediaType: application/octet-stream" in out, out


def nothing_named(tmp_path: Path) -> None:
    proc = dist(tmp_path, "--json", "images", "ls")
    assert proc.returncode == 0, proc.stderr.decode()
    assert json_list(proc.stdout) == []


# -- shown from the store ---------------------------------------------------


def test_images_ls_and_inspect_escape_what_the_image_says(
    tmp_path: Path, fake: FakeRegistry
) -> None:
    """A config's platform is not checked by fetch (fetch does not read
    configs); listing it must still show one escaped line per image."""
    man = fake.image({"os": "linux\n\x00X", "architecture": "amd\x1b[2J64"})
    ref = fake.manifest("v1", man)
    proc = dist(tmp_path, "fetch", ref)
    assert proc.returncode == 0, proc.stderr.decode()
    proc = dist(tmp_path, "images", "ls")
    assert proc.returncode == 0, proc.stderr.decode()
    rows = clean(proc.stdout).splitlines()
    assert len(rows) == 2 and "linux\\n\\x00X/amd\\x1b[2J64" in rows[1], rows
    proc = dist(tmp_path, "--json", "images", "ls")
    assert json_list(proc.stdout)[0]["platforms"] == ["linux\n\x00X/amd\x1b[2J64"]
    # Acting on it (inspect reads the platform) refuses it in words.
    line = failed_cleanly(dist(tmp_path, "inspect", ref))
    assert "platform os 'linux\\n\\x00X'" in line, line


def test_inspect_escapes_labels_annotations_and_env(tmp_path: Path, fake: FakeRegistry) -> None:
    man = fake.image(
        {
            "os": "linux",
            "architecture": "amd64",
            "created": EVIL,
            "config": {"Labels": {EVIL: EVIL}, "Env": [EVIL], "Cmd": [EVIL], "User": EVIL},
        },
        annotations={EVIL: EVIL},
    )
    proc = dist(tmp_path, "inspect", fake.manifest("v1", man))
    assert proc.returncode == 0, proc.stderr.decode()
    out = clean(proc.stdout)
    assert "Label:" in out and "line1\\nline2" in out, out
    proc = dist(tmp_path, "--json", "inspect", fake.manifest("v1", man))
    assert json.loads(proc.stdout)["labels"] == {EVIL: EVIL}


def test_lone_surrogates_in_registry_json(tmp_path: Path, fake: FakeRegistry) -> None:
    """JSON may escape a lone surrogate ("\\ud800"); printing one raises in
    Python unless it is escaped first."""
    body = b'{"errors":[{"code":"DENIED","message":"bad \\ud800 text"}]}'
    fake.routes["/v2/x/y/tags/list"] = Reply(403, JSON, body)
    line = failed_cleanly(dist(tmp_path, "tags", f"{fake.host}/x/y"))
    assert "\\ud800" in line, line
    fake.routes["/v2/x/y/tags/list"] = Reply(200, JSON, b'{"tags":["ok","\\udfff"]}')
    proc = dist(tmp_path, "tags", f"{fake.host}/x/y")
    assert proc.returncode == 0, proc.stderr.decode()
    assert clean(proc.stdout).splitlines() == ["ok"]


# -- auth challenge text ----------------------------------------------------


def test_challenge_realm_is_escaped_in_the_error(tmp_path: Path, fake: FakeRegistry) -> None:
    challenge = 'Bearer realm="ftp://evil.example/\x9b2J\xe2\x80\xae",service="x"'
    fake.routes["/v2/x/y/tags/list"] = Reply(401, {**JSON, "WWW-Authenticate": challenge}, b"{}")
    line = failed_cleanly(dist(tmp_path, "tags", f"{fake.host}/x/y"))
    assert "not an http(s) URL" in line and "\\x9b2J" in line, line


# -- image JSON read back from the store or a layout ------------------------


def test_export_into_a_layout_with_a_hostile_index(tmp_path: Path, fake: FakeRegistry) -> None:
    ref = fake.manifest("v1", fake.image({"os": "linux", "architecture": "amd64"}))
    assert dist(tmp_path, "fetch", ref).returncode == 0
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for body, why in [(b"[" * 50_000, "nested too deeply"), (b'{"manifests":[],"a":1e999}',
                                                             "out of range")]:  # fmt: skip
        (layout / "index.json").write_bytes(body)
        line = failed_cleanly(dist(tmp_path, "export", ref, str(layout)))
        assert "index.json is not valid JSON" in line and why in line, line


def test_docker_export_of_a_deeply_nested_config(tmp_path: Path, fake: FakeRegistry) -> None:
    """The config is the image's, and docker-archive's legacy layer JSON is
    made from it: nesting too deep for the decoder is no traceback."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    layer = gzip.compress(tar.getvalue(), mtime=0)
    cfg = (
        b'{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["'
        + sha(tar.getvalue()).encode()
        + b'"]},"d":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}"
    )
    man = dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": fake.blob(cfg), "size": len(cfg)},
            "layers": [{"mediaType": LAYER, "digest": fake.blob(layer), "size": len(layer)}],
        }
    )
    ref = fake.manifest("v1", man)
    assert dist(tmp_path, "fetch", ref).returncode == 0
    proc = dist(tmp_path, "export", "--format", "docker", ref, str(tmp_path / "out.tar"))
    if proc.returncode:
        failed_cleanly(proc)
    else:
        clean(proc.stderr)


# -- header values with a grammar -------------------------------------------


@pytest.mark.parametrize(
    "content_range",
    ["bytes \u0661\u0660-19/20", "bytes 1_0-19/20", "bytes " + "1" * 5000 + "-19/20",
     "bytes \x1b[2J10-19/20"],
    ids=["arabic-digits", "underscore", "5000-digits", "escape"],
)  # fmt: skip
def test_content_range_of_a_resumed_blob(
    tmp_path: Path, fake: FakeRegistry, content_range: str
) -> None:
    """A blob body breaks off after 10 bytes; the resumed GET's 206 names
    where its bytes start in something that is not ASCII decimal."""
    data = bytes(range(20))
    digest = sha(data)
    calls = []

    def answer(req: Recorded) -> Reply:
        if req.path.partition("?")[0] != f"/v2/x/y/blobs/{digest}":
            return FakeRegistry.answer(fake, req)
        calls.append(req)
        if req.header("Range") is None:
            return Reply(200, {"Content-Length": "20"}, data[:10])
        return Reply(206, {"Content-Range": content_range.encode().decode("latin-1")}, data[10:])

    fake.server.responder = answer
    hints = ("size:20", "mediatype:application/octet-stream")
    proc = dist(tmp_path, "fetch-object", f"{fake.host}/x/y", digest, *hints)
    line = failed_cleanly(proc)
    assert "Content-Range" in line, line
    assert any(r.header("Range") for r in calls), "no resume was asked for"
