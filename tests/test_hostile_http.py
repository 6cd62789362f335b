"""The real `dist` against a socket-level hostile registry (issue 15).

``tests/harness/hostile.py`` serves a tiny image correctly until a rule
takes over a request and misbehaves at the byte level: lengths that lie or
conflict, a second answer smuggled after the first, endless 1xx answers,
header, continuation or trailer lines, trickles, answers that never end.
Every case asserts the outcome (one clean ``dist:`` line, or the right
result), a time bound and a peak-RSS bound (GNU time's ``%M`` of the `dist`
process). The manifest- and tar-level hostility is in test_hostile.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.dist_cli import one_error_line
from tests.harness.authfixtures import pki
from tests.harness.certs import CA
from tests.harness.hostile import HostileRegistry, Peer, Request, answer, sha

__all__ = ["pki"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
TIME = "/usr/bin/time"
# `dist` itself peaks at ~25-35 MB; the obs-fold bug took it past 100 MB.
RSS_LIMIT_KB = 80 * 1024


class Run(NamedTuple):
    proc: subprocess.CompletedProcess[bytes]
    rss_kb: int
    seconds: float

    @property
    def line(self) -> str:
        return one_error_line(self.proc)


def dist(tmp_path: Path, *args: str, timeout: float = 60) -> Run:
    """``dist --root <tmp>/root ARGS`` under GNU time: wall seconds, peak RSS."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    rss_file = tmp_path / "rss"
    cmd = [TIME, "-f", "%M", "-o", str(rss_file), sys.executable, "-m", "ocidist"]
    cmd += ["--root", str(tmp_path / "root"), *args]
    start = time.monotonic()
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
    )
    seconds = time.monotonic() - start
    return Run(proc, int(rss_file.read_text().split()[-1]), seconds)


def fails(r: Run, *words: str, within: float) -> str:
    """A clean one-line failure saying ``words``, within ``within`` seconds
    and the memory bound."""
    assert r.proc.returncode == 1, r.proc.stderr.decode()[-2000:]
    line = r.line
    for w in words:
        assert w in line, line
    assert r.seconds < within, f"took {r.seconds:.1f}s: {line}"
    assert r.rss_kb < RSS_LIMIT_KB, f"peak RSS {r.rss_kb} kB: {line}"
    return line


def succeeds(r: Run, within: float) -> str:
    assert r.proc.returncode == 0, r.proc.stderr.decode()[-2000:]
    assert r.seconds < within, f"took {r.seconds:.1f}s"
    assert r.rss_kb < RSS_LIMIT_KB, f"peak RSS {r.rss_kb} kB"
    return r.proc.stdout.decode()


class Image(NamedTuple):
    manifest: bytes
    config: bytes
    layer: bytes

    @property
    def digest(self) -> str:
        return sha(self.manifest)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@pytest.fixture
def reg() -> Iterator[HostileRegistry]:
    with HostileRegistry() as r:
        yield r


@pytest.fixture
def img(reg: HostileRegistry) -> Image:
    """A small image served correctly (until a rule says otherwise)."""
    layer = b"layer bytes " * 1000
    config = _dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}})  # fmt: skip
    manifest = _dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": sha(layer), "size": len(layer)}],
    })  # fmt: skip
    reg.blob(config, OCI_CONFIG)
    reg.blob(layer, LAYER)
    reg.manifest("v1", OCI_MANIFEST, manifest)
    return Image(manifest, config, layer)


def raw(data: bytes, *, keep: bool = True) -> object:
    """A rule action that sends ``data`` as the whole answer."""

    def action(peer: Peer, req: Request) -> bool:
        return peer.send(data) and keep

    return action


# -- framing: lengths ------------------------------------------------------------------
@pytest.mark.parametrize(
    "length",
    ["²", "1" * 5000, "12, 13", "-5"],
    ids=["unicode-digit", "5000-digits", "conflicting", "negative"],
)
def test_bad_content_length_on_resolve_and_fetch(
    tmp_path: Path, reg: HostileRegistry, img: Image, length: str
) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {length}\r\n\r\n"
    reg.on(None, "/manifests/v1$", raw(head.encode() + img.manifest, keep=False))
    fails(dist(tmp_path, "resolve", reg.ref()), "invalid HTTP response", within=30)
    reg.rules.clear()
    blob = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nContent-Length: 5\r\n\r\nabcde"
    reg.on("GET", f"/blobs/{sha(img.layer)}$", raw(blob.encode(), keep=False))
    fails(
        dist(tmp_path, "fetch-object", reg.ref(), sha(img.layer)),
        "invalid HTTP response",
        within=30,
    )


def test_unicode_retry_after_is_one_clean_line(
    tmp_path: Path, reg: HostileRegistry, img: Image
) -> None:
    busy = answer(429, b"{}", {"Retry-After": "²", "Content-Type": "application/json"})
    reg.on(None, "/manifests/v1$", raw(busy))
    fails(dist(tmp_path, "resolve", reg.ref()), "429", "gave up after", within=30)


# -- framing: desync ---------------------------------------------------------------------
def test_smuggled_answer_is_never_read_as_the_next_one(
    tmp_path: Path, reg: HostileRegistry, img: Image
) -> None:
    """Every answer comes with a second, smuggled one behind it (a manifest
    of another image): reusing the connection would read it as the answer
    to the next request. The pull must be the real image."""
    evil = _dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []})
    smuggled = answer(200, evil, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha(evil)})

    def with_tail(peer: Peer, req: Request) -> bool:
        return peer.send(reg.proper(req) + smuggled)

    reg.on(None, "", with_tail)
    out = succeeds(dist(tmp_path, "fetch", reg.ref()), within=30)
    assert img.digest in out, out
    assert sha(evil) not in out
    # A fresh connection for every request after the first answer.
    assert reg.connections >= len(reg.requests()) - 1


# -- framing: caps ------------------------------------------------------------------------
def endless(first: bytes, line: bytes) -> object:
    def action(peer: Peer, req: Request) -> bool:
        if not peer.send(first):
            return False
        block = line * max(1, 16384 // len(line))
        while peer.send(block):
            pass
        return False

    return action


@pytest.mark.parametrize(
    ("first", "line", "words"),
    [
        (b"HTTP/1.1 200 OK\r\nX-A: a\r\n", b" folded\r\n", "65536 bytes"),
        (b"HTTP/1.1 200 OK\r\n", b"X-Field: value\r\n", "65536 bytes"),
        (b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * 1000, "65536 bytes"),
        (b"", b"HTTP/1.1 100 Continue\r\n\r\n", "informational"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
            b"X-Trailer: t\r\n",
            "65536 bytes",
        ),
    ],
    ids=["obs-fold", "header-lines", "giant-header", "100-continue", "trailers"],
)
def test_endless_heads_fail_fast_in_bounded_memory(
    tmp_path: Path, reg: HostileRegistry, img: Image, first: bytes, line: bytes, words: str
) -> None:
    """Without any --timeout: the caps end it, not the server."""
    reg.on(None, "/manifests/v1$", endless(first, line))
    fails(dist(tmp_path, "fetch", reg.ref()), words, within=30)


# -- retries: attempts per object, progress required --------------------------------------
def give(limit: int) -> object:
    """Serve the blob from the requested offset, but only ``limit`` bytes of
    it, then close the connection."""

    def action(peer: Peer, req: Request) -> bool:
        assert isinstance(peer.server, HostileRegistry)
        head, _, body = peer.server.proper(req).partition(b"\r\n\r\n")
        peer.send(head + b"\r\n\r\n" + body[:limit])
        return False

    return action


def test_one_byte_then_close_gives_up_after_the_attempts(
    tmp_path: Path, reg: HostileRegistry, img: Image
) -> None:
    """Each answer brings one more byte, then the connection closes: that
    is not progress. The old client made one GET per byte (311 for 310)."""
    reg.on("GET", f"/blobs/{sha(img.layer)}$", give(1))
    line = fails(
        dist(tmp_path, "fetch-object", reg.ref(), sha(img.layer)),
        "gave up after 5 attempts",
        within=30,
    )
    assert "connection" in line
    assert len(reg.requests("GET", f"/blobs/{sha(img.layer)}")) <= 5


def test_real_progress_keeps_a_transfer_going(tmp_path: Path, reg: HostileRegistry) -> None:
    """A blob of 6 MiB whose every answer breaks off after 1.5 MiB: each
    resume gains more than the minimum, so the fetch completes."""
    import os

    big = os.urandom(6 << 20)
    reg.blob(big)
    reg.on("GET", f"/blobs/{sha(big)}$", give(1536 << 10))
    out = dist(tmp_path, "fetch-object", reg.ref(), sha(big))
    assert out.proc.returncode == 0, out.proc.stderr.decode()
    assert out.proc.stdout == big
    assert 4 <= len(reg.requests("GET", f"/blobs/{sha(big)}")) <= 6


# -- deadlines: --timeout bounds the command whatever the server does ----------------------
DEADLINE = 3.0
# Start-up, teardown and a loaded machine on top of the deadline itself.
SLACK = 4.0


def slowly(first: bytes, line: bytes, every: float) -> object:
    """Send ``first``, then ``line`` again and again, one every ``every`` seconds."""

    def action(peer: Peer, req: Request) -> bool:
        if not peer.send(first):
            return False
        while peer.send(line):
            if peer.server.stopping.wait(every):
                break
        return False

    return action


def trickle(data_of: object, every: float = 1.0) -> object:
    """The proper answer, one byte per ``every`` seconds."""

    def action(peer: Peer, req: Request) -> bool:
        assert isinstance(peer.server, HostileRegistry)
        peer.trickle(peer.server.proper(req), every)
        return False

    return action


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/manifests/v1$", trickle(None)),
        ("/manifests/v1$", slowly(b"", b"HTTP/1.1 100 Continue\r\n\r\n", 0.4)),
        ("/manifests/v1$", slowly(b"HTTP/1.1 200 OK\r\nX-A: a\r\n", b" fold\r\n", 0.2)),
        ("/manifests/v1$", slowly(b"HTTP/1.1 200 OK\r\n", b"X-A: a\r\n", 0.2)),
        (
            "/manifests/v1$",
            slowly(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n0\r\n",
                b"X-Trailer: t\r\n",
                0.2,
            ),
        ),
        ("/manifests/v1$", lambda peer, req: peer.hold() or False),
        ("/blobs/", trickle(None)),
    ],
    ids=["trickled-head", "slow-100-continue", "slow-obs-fold", "slow-header-lines",
         "slow-trailers", "silent", "trickled-body"],
)  # fmt: skip
@pytest.mark.xdist_group("timing")  # DEADLINE + SLACK
def test_timeout_holds_whatever_the_server_does(
    tmp_path: Path, reg: HostileRegistry, img: Image, path: str, action: object
) -> None:
    reg.on(None, path, action)  # type: ignore[arg-type]
    line = fails(
        dist(tmp_path, "--timeout", f"{DEADLINE:g}s", "fetch", reg.ref()),
        "timed out",
        within=DEADLINE + SLACK,
    )
    assert "Traceback" not in line


@pytest.mark.xdist_group("timing")
def test_timeout_holds_in_a_tls_handshake(tmp_path: Path) -> None:
    """A server that accepts and never answers the TLS handshake."""
    with HostileRegistry() as silent:
        silent.on(None, "", lambda peer, req: False)
        silent.script = lambda peer: peer.hold()  # type: ignore[method-assign]
        d = tmp_path / "certs.d" / silent.host
        d.mkdir(parents=True)
        (d / "hosts.toml").write_text(f'server = "https://{silent.host}"\n')
        r = dist(tmp_path, "--hosts-dir", str(tmp_path / "certs.d"), "--timeout",
                 f"{DEADLINE:g}s", "resolve", silent.ref())  # fmt: skip
        fails(r, "timed out", within=DEADLINE + SLACK)


# -- fail fast on what cannot change --------------------------------------------------------
def _https_hosts(tmp_path: Path, host: str, extra: str = "") -> str:
    d = tmp_path / "certs.d" / host
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(f'server = "https://{host}"\n{extra}')
    return str(tmp_path / "certs.d")


def test_tls_to_a_plain_http_registry_fails_at_once(
    tmp_path: Path, reg: HostileRegistry, img: Image
) -> None:
    hosts = _https_hosts(tmp_path, reg.host)
    line = fails(dist(tmp_path, "--hosts-dir", hosts, "resolve", reg.ref()),
                 "plain HTTP", "--plain-http", within=15)  # fmt: skip
    assert "gave up" not in line
    assert reg.connections == 1  # one attempt: trying again cannot change it


def _resolving_from_files_only(tmp_path: Path) -> list[str] | None:
    """A command prefix that runs its command in a private mount namespace
    where host names resolve from a hosts file of our own alone
    (``hosts: files``), so an unknown name is answered "no such name" here,
    without a query to this machine's resolver (which may be private, slow,
    or answer "try again" instead). None where namespaces are not allowed."""
    hosts, nss = tmp_path / "hosts", tmp_path / "nsswitch.conf"
    hosts.write_text("127.0.0.1 localhost\n")
    nss.write_text("hosts: files\n")
    script = (f"mount --bind {hosts} /etc/hosts && mount --bind {nss} /etc/nsswitch.conf "
              '&& exec "$@"')  # fmt: skip
    prefix = ["unshare", "--mount", "--map-root-user", "sh", "-c", script, "sh"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def test_an_unknown_host_fails_after_one_retry(tmp_path: Path) -> None:
    """The name does not exist (RFC 6761 reserves .invalid; here no resolver
    is even asked): "unknown host" after one more try, not the policy's 5."""
    prefix = _resolving_from_files_only(tmp_path)
    if prefix is None:
        pytest.skip("unshare cannot make a mount namespace here")
    ref = "no-such-registry.invalid/a:v1"
    cmd = [*prefix, sys.executable, "-m", "ocidist", "--debug", "--root", str(tmp_path / "root"),
           "--plain-http", "--timeout", "30s", "resolve", ref]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]
    err = proc.stderr.decode()
    line = [ln for ln in err.splitlines() if ln.startswith("dist: ") and "debug" not in ln]
    assert line == [f"dist: {ref}: unknown host; gave up after 2 attempts"], err[-2000:]
    assert err.count("attempt 1 failed (unknown host)") == 1, err[-2000:]
    assert "attempt 2 failed" not in err
    assert time.monotonic() - start < 15


def test_certificate_verification_failure_fails_at_once(tmp_path: Path, pki: CA) -> None:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    issued = pki.server("hostile-tls")
    ctx.load_cert_chain(str(issued.cert_path), str(issued.key_path))
    with HostileRegistry(tls=ctx) as tls_reg:
        hosts = _https_hosts(tmp_path, tls_reg.host)
        line = fails(dist(tmp_path, "--hosts-dir", hosts, "resolve", tls_reg.ref()),
                     "certificate verification failed", within=15)  # fmt: skip
        assert "gave up" not in line
        assert tls_reg.connections == 1
        # With the CA it is trusted, and the same registry answers.
        tls_reg.manifest("v1", OCI_MANIFEST, b"{}")
        hosts2 = _https_hosts(tmp_path / "2", tls_reg.host, f'ca = "{pki.cert_path}"\n')
        r = dist(tmp_path / "2", "--hosts-dir", hosts2, "resolve", tls_reg.ref())
        assert "certificate" not in r.proc.stderr.decode()


# -- more hostility: answers that are not HTTP/1.1 at all ----------------------------------
@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "invalid HTTP response"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "invalid HTTP response"),
        (b"\x15\x03\x03\x00\x02\x02\x46", "invalid HTTP response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 30 + b"\r\n",
         "invalid HTTP response"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\n\r\nanything", "invalid HTTP"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "invalid HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Bad\x00Name: v\r\n\r\nhello",
         "invalid HTTP response"),
    ],
    ids=["ssh-banner", "http2-preface", "tls-alert", "huge-chunk-size", "switching-protocols",
         "four-digit-status", "nul-in-field"],
)  # fmt: skip
def test_answers_that_are_not_http(
    tmp_path: Path, reg: HostileRegistry, img: Image, reply: bytes, words: str
) -> None:
    reg.on(None, "/manifests/v1$", raw(reply, keep=False))
    fails(dist(tmp_path, "fetch", reg.ref()), words, within=30)


def test_http10_close_delimited_answers_are_read_whole(
    tmp_path: Path, reg: HostileRegistry, img: Image
) -> None:
    """An HTTP/1.0 server framing every body by closing the connection."""

    def http10(peer: Peer, req: Request) -> bool:
        assert isinstance(peer.server, HostileRegistry)
        head, _, body = peer.server.proper(req).partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n")[1:] if not ln.startswith(b"Content-Length")]
        out = b"\r\n".join([b"HTTP/1.0 " + head.split(b" ", 1)[1].split(b"\r\n")[0], *lines])
        peer.send(out + b"\r\n\r\n" + (b"" if req.method == "HEAD" else body))
        return False

    reg.on(None, "", http10)
    out = succeeds(dist(tmp_path, "fetch", reg.ref()), within=30)
    assert img.digest in out
