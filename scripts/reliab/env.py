"""The world the trials run in: one registry, a fault proxy before it, the
images pushed there, fresh store roots, and ``dist`` as a subprocess.

Checks on a store root read the files directly (``blobs/sha256/<hex>``) and
hash them here, independently of the product's own ``verify``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.harness import (
    BuiltImage,
    FaultProxy,
    Registry,
    build_image,
    build_layer,
    large_image,
    multiplatform_index,
    push_image,
)
from tests.harness.tarspec import Dir, Entry, File, Symlink

from reliab.outcome import Run, argv_of

DIST = (sys.executable, "-m", "ocidist")


@dataclass
class Images:
    """What the registry holds, by short name (also the repository: rel/<name>)."""

    by_name: dict[str, BuiltImage] = field(default_factory=dict)

    def __getitem__(self, name: str) -> BuiltImage:
        return self.by_name[name]


def expected_objects(image: BuiltImage) -> set[str]:
    """Every digest a pull of ``image`` with ``--all-platforms`` stores."""
    return {o.digest for o in image.objects()}


def tree_layer(rng_seed: int, files: int) -> dict[str, Entry]:
    """A layer of many small files and a few larger ones (slow enough to
    apply that a kill lands inside it)."""
    import random

    rng = random.Random(rng_seed)
    spec: dict[str, Entry] = {"data": Dir()}
    for d in range(files // 100 + 1):
        spec[f"data/d{d:03d}"] = Dir()
    for i in range(files):
        spec[f"data/d{i // 100:03d}/f{i:05d}"] = File(rng.randbytes(rng.randint(0, 4096)))
    for i in range(4):
        spec[f"data/big{i}"] = File(rng.randbytes(1 << 20))
    spec["data/link"] = Symlink("big0")
    return spec


class Env:
    def __init__(self, workdir: Path, *, quick: bool) -> None:
        self.workdir = workdir
        self.quick = quick
        self.registry = Registry(workdir / "registry")
        self.proxy = FaultProxy(self.registry)
        self.images = Images()
        self._roots = 0
        self.layer_file = workdir / "layer.tar.gz"
        self.layer_diff_id = ""

    # -- lifecycle -------------------------------------------------------
    def start(self) -> Env:
        self.registry.start()
        self.proxy.start()
        # A client killed or cut off mid-body makes the proxy's socketserver
        # print a traceback per connection; that is the trial working, not news.
        self.proxy._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        imgs = self.images.by_name
        imgs["multi"] = multiplatform_index(tag="reliability")
        big_total = (6 if self.quick else 12) << 20
        imgs["big"] = large_image(self.workdir / "big", total_compressed=big_total, layers=3)
        tree = build_layer(tree_layer(7, 300 if self.quick else 2000))
        assert tree.blob.data is not None
        self.layer_file.write_bytes(tree.blob.data)
        self.layer_diff_id = tree.diff_id
        imgs["tree"] = build_image([tree, {"etc": Dir(), "etc/hello": b"hi\n"}])
        from reliab.concurrency import overlapping_images  # it imports this module

        layer_size = (256 if self.quick else 1024) << 10
        for j, img in enumerate(overlapping_images(5, layer_size)):
            imgs[f"overlap{j}"] = img
        for name, img in imgs.items():
            push_image(self.registry, f"rel/{name}", "v1", img, method="http")
        return self

    def stop(self) -> None:
        self.proxy.stop()
        self.registry.stop()

    def recover(self) -> None:
        """After a trial broke off: no fault rules left, the registry up."""
        self.proxy.clear()
        self.registry.start()  # nothing to do when it runs

    # -- addresses and roots ---------------------------------------------
    def ref(self, name: str, *, direct: bool = False) -> str:
        host = self.registry.host if direct else self.proxy.host
        return f"{host}/rel/{name}:v1"

    def blob_path(self, name: str, digest: str) -> str:
        return f"/v2/rel/{name}/blobs/{digest}"

    def new_dir(self, prefix: str) -> Path:
        self._roots += 1
        path = self.workdir / f"{prefix}{self._roots:04d}"
        path.mkdir(parents=True)
        return path

    # -- running dist ----------------------------------------------------
    def spawn(
        self,
        *args: str,
        root: Path | None = None,
        stdin: int | IO[bytes] | None = None,
        pre: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        # ``pre`` replaces ``-m ocidist`` (a ``-c`` driver that runs the CLI).
        argv = [DIST[0], *pre] if pre else list(DIST)
        if root is not None:
            argv += ["--root", str(root)]
        return subprocess.Popen(
            [*argv, *args],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(),
        )

    def dist(
        self,
        *args: str,
        root: Path | None = None,
        timeout: float = 90,
        stdin_file: Path | None = None,
        pre: Sequence[str] = (),
    ) -> Run:
        start = time.monotonic()
        f = stdin_file.open("rb") if stdin_file else None
        try:
            proc = self.spawn(*args, root=root, stdin=f, pre=pre)
            return finish(proc, start, timeout)
        finally:
            if f is not None:
                f.close()


def finish(proc: subprocess.Popen[bytes], start: float, timeout: float) -> Run:
    """Wait for ``proc`` up to ``timeout``; a process that overruns is killed
    (by its PID) and reported with ``rc=None``."""
    try:
        out, err = proc.communicate(timeout=max(0.1, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Run(
            argv_of(proc),
            None,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - start,
        )
    return Run.of(proc, out, err, time.monotonic() - start)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL our own child by PID and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            with contextlib.suppress(OSError, ValueError):
                f.close()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Keep the user's credentials and hosts config out of the trials.
    env.pop("DIST_ROOT", None)
    env.pop("DIST_TIMEOUT", None)
    env.setdefault("DOCKER_CONFIG", "/nonexistent-ocidist-reliability")
    env["XDG_CONFIG_HOME"] = "/nonexistent-ocidist-reliability"
    return env


# -- store checks (independent of the product) ------------------------------
def blobs(root: Path) -> dict[str, Path]:
    d = root / "blobs" / "sha256"
    if not d.is_dir():
        return {}
    return {f"sha256:{p.name}": p for p in d.iterdir() if p.is_file()}


def corrupt_blobs(root: Path) -> list[str]:
    """Committed blobs whose bytes do not hash to their name."""
    bad = []
    for dgst, path in blobs(root).items():
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if "sha256:" + h.hexdigest() != dgst:
            bad.append(dgst)
    return bad


def recorded(root: Path) -> dict[str, str]:
    """name -> target digest from the metadata database, read with sqlite3
    directly (so a schema the product cannot open still shows up).

    Read from a copy of ``metadata.db`` and its WAL on another filesystem:
    on a full disk even a read-only WAL reader needs room for a ``-shm``
    index, and a copy leaves the store under test untouched (no checkpoint,
    no files of ours). Call it when no ``dist`` process is writing the root.
    """
    db = root / "metadata.db"
    if not db.exists():
        return {}
    with tempfile.TemporaryDirectory(prefix="ocidist-recorded-") as scratch:
        copy = Path(scratch) / "metadata.db"
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                shutil.copyfile(f"{db}{suffix}", f"{copy}{suffix}")
        conn = sqlite3.connect(copy, timeout=10)
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if "images" not in tables:
                return {}
            cols = [r[1] for r in conn.execute("PRAGMA table_info(images)")]
            dcol = next((c for c in cols if "digest" in c), None)
            if dcol is None or "name" not in cols:
                return {}
            return {str(n): str(d) for n, d in conn.execute(f"SELECT name, {dcol} FROM images")}
        finally:
            conn.close()


def lost_objects(root: Path, before: set[str], images: Mapping[str, BuiltImage]) -> list[str]:
    """What was committed (``before``) or is recorded as a complete image but
    is missing now. ``images`` maps recorded names to what they must hold."""
    have = set(blobs(root))
    missing = sorted(before - have)
    for name, target in recorded(root).items():
        img = images.get(name)
        need = expected_objects(img) if img is not None and img.digest == target else {target}
        missing += sorted(f"{name}: {d}" for d in need - have)
    return missing


def ingest_dirs(root: Path) -> list[Path]:
    d = root / "ingest"
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def feed(
    proc: subprocess.Popen[bytes],
    data: bytes,
    chunks_before_stop: int | None,
    piece: int = 64 * 1024,
    pause: float = 0.002,
) -> threading.Thread:
    """Write ``data`` to ``proc``'s stdin in pieces from a thread; stop
    (leaving stdin open) after ``chunks_before_stop`` pieces, if given."""

    def run() -> None:
        assert proc.stdin is not None
        try:
            for n, off in enumerate(range(0, len(data), piece)):
                if chunks_before_stop is not None and n >= chunks_before_stop:
                    return
                proc.stdin.write(data[off : off + piece])
                proc.stdin.flush()
                time.sleep(pause)
            proc.stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the process was killed under us: that is the point

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
