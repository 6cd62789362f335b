"""Hostile or broken registry answers and layer tars: each gets one clear
error line (exit 1), in bounded memory and time, and nothing is recorded.

The registry here is a fake at the protocol seam: a tiny loopback HTTP server
of our own that speaks just enough of the distribution API (``/v2/``,
manifests, blobs) to serve crafted answers no real registry would send. The
client under test is the real ``dist`` in a subprocess, measured with GNU
time for its peak RSS.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.dist_cli import one_error_line

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
TIME = "/usr/bin/time"
RSS_LIMIT_KB = 300 * 1024  # a hostile answer must not make us hold it whole


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # A body too big to hold: pieces from a generator, with this length
    # declared (None: chunked transfer encoding).
    stream: Callable[[], Iterable[bytes]] | None = None
    length: int | None = None


class FakeRegistry:
    """Serves ``objects`` ("manifests/<ref>" or "blobs/<digest>" under any
    repository) and ``routes`` (method, path regex) -> Answer, which win."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[str, bytes]] = {}
        self.routes: list[tuple[str | None, re.Pattern[str], Answer]] = []
        self.hits: Counter[tuple[str, str]] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def ref(self, tag: str = "v1") -> str:
        return f"{self.host}/hostile/img:{tag}"

    def route(self, method: str | None, path: str, answer: Answer) -> None:
        self.routes.append((method, re.compile(path), answer))

    def manifest(self, ref: str, media_type: str, data: bytes) -> str:
        self.objects[f"manifests/{ref}"] = (media_type, data)
        self.objects[f"manifests/{sha(data)}"] = (media_type, data)
        return sha(data)

    def blob(self, data: bytes, media_type: str = "application/octet-stream") -> str:
        self.objects[f"blobs/{sha(data)}"] = (media_type, data)
        return sha(data)

    def answer(self, method: str, path: str) -> Answer:
        self.hits[(method, path)] += 1
        for m, pat, ans in self.routes:
            if (m is None or m == method) and pat.search(path):
                return ans
        if path in ("/v2", "/v2/"):
            return Answer(200, {"Content-Type": "application/json"}, b"{}")
        m2 = re.match(r"^/v2/.+/((?:manifests|blobs)/[^/]+)$", path)
        if m2 and m2[1] in self.objects:
            media_type, data = self.objects[m2[1]]
            hdrs = {"Content-Type": media_type, "Docker-Content-Digest": sha(data)}
            return Answer(200, hdrs, data)
        return Answer(404, {"Content-Type": "application/json"},
                      b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')  # fmt: skip

    def __enter__(self) -> FakeRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        fake: FakeRegistry = self.server.fake  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        ans = fake.answer(self.command, path)
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        try:
            self.send_response(ans.status)
            for k, v in ans.headers.items():
                self.send_header(k, v)
            chunked = ans.stream is not None and ans.length is None
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif "Content-Length" not in ans.headers:
                length = ans.length if ans.stream is not None else len(ans.body)
                self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command == "HEAD":
                return
            if ans.stream is None:
                self.wfile.write(ans.body)
                return
            for piece in ans.stream():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading: as it should

    do_GET = do_HEAD = do_POST = do_PUT = _serve


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as f:
        yield f


@dataclass
class Result:
    proc: subprocess.CompletedProcess[bytes]
    rss_kb: int

    @property
    def line(self) -> str:
        return one_error_line(self.proc)


def dist(tmp_path: Path, *args: str, timeout: float = 120) -> Result:
    """``dist --root <tmp>/root ARGS`` under GNU time (peak RSS)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    rss_file = tmp_path / "rss"
    cmd = [sys.executable, "-m", "ocidist", "--root", str(tmp_path / "root"), *args]
    if Path(TIME).exists():
        cmd = [TIME, "-f", "%M", "-o", str(rss_file), *cmd]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    rss = int(rss_file.read_text().split()[-1]) if rss_file.exists() else 0
    return Result(proc, rss)


def failed(r: Result, *words: str, code: int = 1) -> str:
    """Assert a clean failure with ``code`` whose line says each of ``words``."""
    assert r.proc.returncode == code, r.proc.stderr.decode()[-2000:]
    line = r.line
    for w in words:
        assert w in line, line
    assert r.rss_kb < RSS_LIMIT_KB, f"peak RSS {r.rss_kb} kB"
    return line


def nothing_recorded(tmp_path: Path) -> None:
    from ocidist.metadata import MetadataStore

    db = tmp_path / "root" / "metadata.db"
    if db.exists():
        meta = MetadataStore(str(db))
        try:
            assert meta.list_images() == []
        finally:
            meta.close()
    # Whatever was committed hashes to its name.
    for p in (tmp_path / "root" / "blobs" / "sha256").glob("*"):
        assert sha(p.read_bytes()) == f"sha256:{p.name}"


def image(fake: FakeRegistry, layers: list[dict[str, Any]] | None = None) -> bytes:
    """A real config (served) and the given layer descriptors; returns the manifest."""
    config = dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                    "diff_ids": []}})  # fmt: skip
    fake.blob(config, OCI_CONFIG)
    return dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "config": desc(OCI_CONFIG, config), "layers": layers or []})  # fmt: skip


# -- manifests --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "media_type", "words"),
    [
        (b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "con',
         OCI_MANIFEST, ["not valid JSON"]),
        (b"\xff\xfe garbage", OCI_MANIFEST, ["not valid JSON"]),
        (b"[1, 2, 3]", OCI_MANIFEST, ["not a JSON object"]),
        (b"[" * 50_000 + b"]" * 50_000, OCI_MANIFEST, ["not valid JSON"]),
        (b'{"schemaVersion": 2, "mediaType": "' + OCI_INDEX.encode() + b'", "manifests": []}',
         OCI_MANIFEST, ["declares mediaType"]),
        (b'{"schemaVersion": 3, "config": {}, "layers": []}', OCI_MANIFEST, ["schemaVersion"]),
        (b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "layers": []}',
         OCI_MANIFEST, ["no config"]),
        (b"<html>hello</html>", "text/html", ["manifest"]),
        (b'{"schemaVersion": 1, "fsLayers": []}',
         "application/vnd.docker.distribution.manifest.v1+prettyjws", ["schema1"]),
    ],
    ids=["truncated", "binary", "array", "deep-nesting", "declared-index", "schema3",
         "no-config", "html", "schema1"],
)  # fmt: skip
def test_malformed_manifests(
    tmp_path: Path, fake: FakeRegistry, body: bytes, media_type: str, words: list[str]
) -> None:
    fake.manifest("v1", media_type, body)
    failed(dist(tmp_path, "fetch", fake.ref()), *words)
    nothing_recorded(tmp_path)


def test_tag_served_as_a_layer_type(tmp_path: Path, fake: FakeRegistry) -> None:
    # A wrong Content-Type on a real manifest: the body's own mediaType wins
    # (as for text/plain from old registries) and the pull is correct.
    body = image(fake)
    fake.manifest("v1", LAYER, body)
    r = dist(tmp_path, "fetch", fake.ref())
    assert r.proc.returncode == 0, r.proc.stderr.decode()
    assert sha(body) in r.proc.stdout.decode()
    # A tag whose bytes are not a manifest at all is refused in words.
    fake.manifest("v2", LAYER, gzip.compress(tar_of({"a": b"x"}), mtime=0))
    failed(dist(tmp_path / "2", "fetch", fake.ref("v2")), "manifest")
    nothing_recorded(tmp_path / "2")


def test_child_with_wrong_media_type(tmp_path: Path, fake: FakeRegistry) -> None:
    # The index says its child is an index; the child's bytes are a manifest.
    child = image(fake)
    fake.manifest(sha(child), OCI_MANIFEST, child)
    index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": [desc(OCI_INDEX, child)]})  # fmt: skip
    fake.manifest("v1", OCI_INDEX, index)
    failed(dist(tmp_path, "fetch", "--all-platforms", fake.ref()), "mediaType")
    nothing_recorded(tmp_path)


def test_cycle_is_a_digest_mismatch(tmp_path: Path, fake: FakeRegistry) -> None:
    """A content-addressed graph cannot loop; a registry that makes one must
    serve some other object's bytes for a digest, which is a mismatch."""
    other = image(fake)
    index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": [desc(OCI_INDEX, other)]})  # fmt: skip
    fake.manifest("v1", OCI_INDEX, index)
    # The child's digest answers with the parent index itself.
    fake.objects[f"manifests/{sha(other)}"] = (OCI_INDEX, index)
    fake.objects[f"blobs/{sha(other)}"] = (OCI_INDEX, index)
    r = dist(tmp_path, "fetch", "--all-platforms", fake.ref())
    failed(r, "mismatch")
    assert sha(other)[7:] not in {p.name for p in (tmp_path / "root").rglob("*")}
    nothing_recorded(tmp_path)


def _index_of(n: int) -> bytes:
    kids = [{"mediaType": OCI_MANIFEST, "digest": "sha256:" + hashlib.sha256(b"%d" % i).hexdigest(),
             "size": 100, "platform": {"os": "linux", "architecture": "amd64"}}
            for i in range(n)]  # fmt: skip
    return dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": kids})


def test_absurd_fan_out_is_refused(tmp_path: Path, fake: FakeRegistry) -> None:
    big = _index_of(100_000)  # ~14 MB: over the manifest size cap
    assert len(big) > 4 << 20
    fake.manifest("huge", OCI_INDEX, big)
    failed(dist(tmp_path, "fetch", "--all-platforms", fake.ref("huge")), "bytes")
    wide = _index_of(20_000)  # under the cap, over the children limit
    assert len(wide) < 4 << 20
    fake.manifest("wide", OCI_INDEX, wide)
    failed(dist(tmp_path, "fetch", "--all-platforms", fake.ref("wide")), "too many")
    layers = [{"mediaType": LAYER, "digest": sha(b"%d" % i), "size": 1} for i in range(20_000)]
    fake.manifest("layers", OCI_MANIFEST, image(fake, layers))
    failed(dist(tmp_path, "fetch", fake.ref("layers")), "too many")
    nothing_recorded(tmp_path)


def test_deeply_nested_indexes_are_bounded(tmp_path: Path, fake: FakeRegistry) -> None:
    inner = image(fake)
    fake.manifest(sha(inner), OCI_MANIFEST, inner)
    current = inner
    current_type = OCI_MANIFEST
    for _ in range(200):
        idx = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                     "manifests": [desc(current_type, current)]})  # fmt: skip
        fake.manifest(sha(idx), OCI_INDEX, idx)
        current, current_type = idx, OCI_INDEX
    fake.manifest("v1", OCI_INDEX, current)
    failed(dist(tmp_path, "fetch", "--all-platforms", fake.ref()), "nested")
    fetched = sum(n for (m, p), n in fake.hits.items() if m == "GET")
    assert fetched < 100
    nothing_recorded(tmp_path)


# -- descriptors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layer", "words"),
    [
        ({"mediaType": LAYER, "digest": sha(b"x"), "size": -1}, ["invalid size"]),
        ({"mediaType": LAYER, "digest": sha(b"x"), "size": 1.5}, ["invalid size"]),
        ({"mediaType": LAYER, "digest": sha(b"x"), "size": "1"}, ["invalid size"]),
        ({"mediaType": LAYER, "digest": "md5:" + "0" * 32, "size": 1}, ["md5"]),
        ({"mediaType": LAYER, "digest": "sha256:" + "0" * 10, "size": 1}, ["digest"]),
        ({"mediaType": LAYER, "digest": "sha256:" + "G" * 64, "size": 1}, ["digest"]),
    ],
    ids=["negative", "float", "string", "md5", "short-hex", "bad-hex"],
)
def test_bad_descriptors(
    tmp_path: Path, fake: FakeRegistry, layer: dict[str, Any], words: list[str]
) -> None:
    fake.manifest("v1", OCI_MANIFEST, image(fake, [layer]))
    failed(dist(tmp_path, "fetch", fake.ref()), *words)
    nothing_recorded(tmp_path)


def test_huge_declared_size_is_a_mismatch_not_a_preallocation(
    tmp_path: Path, fake: FakeRegistry
) -> None:
    layer = b"tiny layer bytes"
    fake.blob(layer, LAYER)
    fake.manifest("v1", OCI_MANIFEST, image(fake, [desc(LAYER, layer, size=1 << 62)]))
    r = dist(tmp_path, "fetch", fake.ref())
    assert r.proc.returncode == 1
    nothing_recorded(tmp_path)
    # Nothing near the declared size reached the disk.
    used = sum(p.stat().st_blocks * 512 for p in (tmp_path / "root").rglob("*") if p.is_file())
    assert used < 64 << 20


@pytest.mark.parametrize(
    "header",
    ["md5:" + "0" * 32, "sha256:" + "0" * 5, "garbage", "sha512:" + "0" * 128],
)
def test_unknown_or_bad_digest_header(tmp_path: Path, fake: FakeRegistry, header: str) -> None:
    body = image(fake)
    fake.manifest("v1", OCI_MANIFEST, body)
    fake.route("HEAD", "/manifests/v1$", Answer(200, {"Content-Type": OCI_MANIFEST,
               "Docker-Content-Digest": header, "Content-Length": str(len(body))}))  # fmt: skip
    # fetch resolves with GET (the header is not needed), resolve with HEAD.
    for command in ("fetch", "resolve"):
        r = dist(tmp_path, command, fake.ref())
        # Either the header is ignored (GET and hash), or trusted and then the
        # object is missing under that digest, or it is refused: in one line.
        # A well-formed header is what resolve reports (HEAD trusts it for a tag).
        if r.proc.returncode == 0:
            out = r.proc.stdout.decode()
            assert sha(body) in out or (command == "resolve" and header in out), out
        else:
            failed(r)
            nothing_recorded(tmp_path)


def test_huge_manifest_is_refused(tmp_path: Path, fake: FakeRegistry) -> None:
    size = 5 << 20
    piece = b" " * 65536

    def body() -> Iterator[bytes]:
        yield b'{"schemaVersion":2,'
        for _ in range(size // len(piece)):
            yield piece

    hdr = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha(b"x")}
    fake.route("HEAD", "/manifests/v1$", Answer(200, {**hdr, "Content-Length": str(size)}))
    fake.route("GET", "/manifests/", Answer(200, hdr, stream=body, length=size + 19))
    failed(dist(tmp_path, "fetch", fake.ref()), "exceeds")
    # Without a length up front (chunked), reading stops at the cap.
    fake.routes.clear()
    fake.route("HEAD", "/manifests/v2$", Answer(200, {"Content-Type": OCI_MANIFEST}))
    fake.route("GET", "/manifests/", Answer(200, {"Content-Type": OCI_MANIFEST}, stream=body))
    failed(dist(tmp_path, "fetch", fake.ref("v2")), "exceeds")
    nothing_recorded(tmp_path)


# -- HTTP-level hostility -----------------------------------------------------------------
@pytest.mark.parametrize(
    "challenge",
    [
        "garbage",
        'Bearer realm=""',
        "Bearer realm",
        'Bearer realm="unterminated',
        'Bearer realm="file:///etc/passwd",service="x"',
        'Bearer realm="http://127.0.0.1:9/token",service="x"',
        "Basic " + "a" * 60_000,
        'Bearer realm="http://[::1",service=',
        ", , ,",
    ],
    ids=["word", "empty-realm", "no-value", "unterminated", "file-realm", "dead-realm",
         "huge", "bad-url", "commas"],
)  # fmt: skip
def test_garbage_www_authenticate(tmp_path: Path, fake: FakeRegistry, challenge: str) -> None:
    fake.route(None, "", Answer(401, {"WWW-Authenticate": challenge,
                                      "Content-Type": "application/json"}, b"{}"))  # fmt: skip
    failed(dist(tmp_path, "fetch", fake.ref()))
    nothing_recorded(tmp_path)


def test_redirect_loop(tmp_path: Path, fake: FakeRegistry) -> None:
    layer = b"layer"
    fake.blob(layer, LAYER)
    fake.manifest("v1", OCI_MANIFEST, image(fake, [desc(LAYER, layer)]))
    loc = f"http://{fake.host}/v2/hostile/img/blobs/{sha(layer)}"
    fake.route("GET", f"/blobs/{sha(layer)}$", Answer(307, {"Location": loc}))
    failed(dist(tmp_path, "fetch", fake.ref()), "redirect")
    # Two URLs sending the client to each other, on the manifest (fetch
    # resolves with GET, `dist resolve` with HEAD: both are routed).
    fake.routes.clear()
    for method in ("HEAD", "GET"):
        fake.route(
            method, "/manifests/a$", Answer(302, {"Location": "/v2/hostile/img/manifests/b"})
        )
        fake.route(
            method, "/manifests/b$", Answer(302, {"Location": "/v2/hostile/img/manifests/a"})
        )
    failed(dist(tmp_path, "fetch", fake.ref("a")), "redirect")
    failed(dist(tmp_path, "resolve", fake.ref("a")), "redirect")
    # A Location that is not a URL at all.
    fake.routes.clear()
    for method in ("HEAD", "GET"):
        fake.route(method, "/manifests/c$", Answer(307, {"Location": "http://[::1/x"}))
    failed(dist(tmp_path, "fetch", fake.ref("c")), "invalid URL")
    nothing_recorded(tmp_path)


def test_huge_error_body_is_capped(tmp_path: Path, fake: FakeRegistry) -> None:
    piece = b"<p>error</p>" * 5000

    def body() -> Iterator[bytes]:
        for _ in range((200 << 20) // len(piece)):
            yield piece

    length = (200 << 20) // len(piece) * len(piece)
    html = {"Content-Type": "text/html"}
    fake.route(None, "/manifests/", Answer(400, html, stream=body, length=length))
    line = failed(dist(tmp_path, "fetch", fake.ref()), "400")
    assert len(line) < 1000
    fake.routes.clear()
    fake.route(None, "/manifests/", Answer(503, {}, stream=body))  # chunked, retried
    line = failed(dist(tmp_path, "fetch", fake.ref()), "503")
    assert len(line) < 1000
    nothing_recorded(tmp_path)


# -- layer tars ------------------------------------------------------------------------------
def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def apply(tmp_path: Path, layer: bytes, *flags: str) -> Result:
    f = tmp_path / "layer"
    f.write_bytes(layer)
    out = tmp_path / "rootfs"
    out.mkdir(exist_ok=True)
    return dist(tmp_path, "apply", *flags, str(out), str(f))


def test_tar_bomb_many_entries(tmp_path: Path) -> None:
    layer = gzip.compress(tar_of({f"f{i}": b"" for i in range(3000)}))
    failed(apply(tmp_path, layer, "--max-entries", "1000"), "more than 1000 entries")
    assert len(list((tmp_path / "rootfs").iterdir())) <= 1000
    ok = apply(tmp_path, layer, "--max-entries", "5000")
    assert ok.proc.returncode == 0, ok.proc.stderr.decode()


def test_tar_bomb_deep_path(tmp_path: Path) -> None:
    deep = "/".join(["d"] * 300) + "/file"
    layer = tar_of({deep: b"x"})
    failed(apply(tmp_path, layer, "--max-path-depth", "100"), "deeper than 100")
    # The default limit (1024 components) refuses a path deeper still.
    deeper = "/".join(["d"] * 1100) + "/file"
    failed(apply(tmp_path, tar_of({deeper: b"x"})), "deeper than 1024")


@pytest.mark.slow
def test_gzip_bomb_is_bounded(tmp_path: Path) -> None:
    """1 GiB of zeros in a ~1 MB gzip layer, refused at a 64 MiB limit."""
    size = 1 << 30
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        info = tarfile.TarInfo("zeros")
        info.size = size
        gz.write(info.tobuf(format=tarfile.GNU_FORMAT))
        zeros = bytes(1 << 20)
        for _ in range(size >> 20):
            gz.write(zeros)
        gz.write(bytes(1024))
    layer = raw.getvalue()
    assert len(layer) < 8 << 20
    r = apply(tmp_path, layer, "--max-size", str(64 << 20))
    failed(r, "exceeds the limit")
    written = sum(p.stat().st_size for p in (tmp_path / "rootfs").rglob("*") if p.is_file())
    assert written <= 64 << 20


def test_sparse_file_bomb_is_bounded(tmp_path: Path) -> None:
    """A GNU sparse member expands a tiny layer into a huge file."""
    src = tmp_path / "src"
    src.mkdir()
    with (src / "huge").open("wb") as f:
        f.truncate(8 << 30)
        f.seek(100)
        f.write(b"x")
    layer = tmp_path / "sparse.tgz"
    subprocess.run(["tar", "--sparse", "-czf", str(layer), "-C", str(src), "huge"], check=True)
    assert layer.stat().st_size < 4096
    r = apply(tmp_path, layer.read_bytes(), "--max-size", str(64 << 20))
    failed(r, "sparse file", "exceeds the size limit")
    assert not (tmp_path / "rootfs" / "huge").exists()


def test_bad_limit_flags(tmp_path: Path) -> None:
    failed(apply(tmp_path, tar_of({"a": b""}), "--max-entries", "0"), "--max-entries", code=2)
