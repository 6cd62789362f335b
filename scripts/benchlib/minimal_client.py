"""The least a Python client can do to pull one platform of an image: the
floor ``scripts/floor.py`` measures dist against.

Run as its own process (``python minimal_client.py HOST PORT REPO TAG DIR``),
standard library only, it does what a pull cannot skip and nothing else:
four connections opened before anything else is imported (dist's early
connection and warm-up), the tag's index, the manifest for this machine's
platform, then the config and the layers at once, one connection each; each
blob checked against its digest and committed as dist's store commits (a
temporary file, fsync, a link to its digest's name, fsync of the
directory). No layer is unpacked, no name recorded, no label written, no
retry, no error handling: a lower bound, not a tool.
"""

import socket
import sys

# The connections first, before any other import (dist begins its first one
# before its imports too, and warms the others while the index is read).
_HOST, _PORT = sys.argv[1], int(sys.argv[2])
CONNS = [socket.create_connection((_HOST, _PORT)) for _ in range(4)]

import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import threading  # noqa: E402

ACCEPT = (
    "Accept: application/vnd.oci.image.index.v1+json,"
    "application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.list.v2+json,"
    "application/vnd.docker.distribution.manifest.v2+json\r\n"
)
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def connect(host: str, port: int) -> socket.socket:
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def get(s: socket.socket, host: str, port: int, path: str, accept: str = "") -> bytes:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{accept}\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise SystemExit(f"{path}: {status.decode()}")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += s.recv(65536)
    return body


def commit(directory: str, digest: str, data: bytes) -> None:
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise SystemExit(f"{digest}: digest mismatch")
    path = os.path.join(directory, digest.split(":", 1)[1])
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(path + ".tmp", path)
    os.unlink(path + ".tmp")
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def main() -> None:
    host, port, repo, tag, out = _HOST, _PORT, *sys.argv[3:6]
    for s in CONNS:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conns = CONNS
    index = json.loads(get(conns[0], host, port, f"/v2/{repo}/manifests/{tag}", ACCEPT))
    entries = index.get("manifests")
    if entries is None:  # a plain manifest
        manifest = index
    else:
        mine = next(
            m
            for m in entries
            if m.get("platform", {}).get("os") == "linux"
            and m.get("platform", {}).get("architecture") == ARCH
        )
        manifest = json.loads(
            get(conns[0], host, port, f"/v2/{repo}/manifests/{mine['digest']}", ACCEPT)
        )
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    os.makedirs(out, exist_ok=True)
    more = [connect(host, port) for _ in range(len(blobs) - len(conns))]
    pool = conns + more

    def one(i: int, digest: str) -> None:
        commit(out, digest, get(pool[i], host, port, f"/v2/{repo}/blobs/{digest}"))

    threads = [threading.Thread(target=one, args=(i, d)) for i, d in enumerate(blobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
