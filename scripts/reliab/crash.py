"""``dist`` killed with SIGKILL at random points, and a disk that fills up.

After every kill: ``dist content verify`` must report 0 bad blobs, the
metadata store must open (``dist images ls``), our own re-hash must agree,
and rerunning the same command must complete without losing anything that
was committed before.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness import Stall
from tests.harness.fstree import tree

from reliab.env import (
    Env,
    blobs,
    corrupt_blobs,
    feed,
    ingest_dirs,
    kill,
    lost_objects,
)
from reliab.network import judge, pull
from reliab.outcome import Trial, classify

_baselines: dict[str, float] = {}


def baseline(key: str, run: Callable[[], float]) -> float:
    """How long a clean run of ``key`` takes (measured once): kills are
    spread over that span."""
    if key not in _baselines:
        _baselines[key] = run()
    return _baselines[key]


def _after_kill(env: Env, root: Path) -> tuple[set[str], list[str], int]:
    """Committed blobs right after the kill, problems found, corrupt count."""
    before = set(blobs(root))
    problems = []
    bad = corrupt_blobs(root)
    v = env.dist("content", "verify", root=root)
    if v.rc != 0 or "0 bad" not in v.stderr:
        problems.append(f"content verify: {v.summary()}")
    ls = env.dist("images", "ls", root=root)
    if ls.rc != 0:
        problems.append(f"metadata: images ls: {ls.summary()}")
    return before, problems, len(bad)


def kill_at(
    env: Env,
    rng: random.Random,
    proc: subprocess.Popen[bytes],
    key: str,
    clean_run: Callable[[], float],
    stall_path: str,
    offset: int | None,
) -> str:
    """Kill ``proc`` at a random time, or once the proxy has sent ``offset``
    bytes of ``stall_path`` (where a stall rule holds it)."""
    if offset is None:
        delay = rng.uniform(0.02, baseline(key, clean_run))
        time.sleep(delay)
        point = f"after {delay:.2f}s"
    else:
        deadline = time.monotonic() + 30
        while env.proxy.bytes_sent[stall_path] < offset and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.1))
        point = f"at byte {offset} of {stall_path.rsplit('/', 1)[-1][:19]}"
    finished = proc.poll() is not None
    kill(proc)
    return point + (" (had finished)" if finished else "")


def _clean_fetch(env: Env) -> float:
    root = env.new_dir("base")
    return pull(env, "big", root).seconds


def kill_fetch(env: Env, rng: random.Random, i: int) -> Trial:
    env.proxy.clear()
    img = env.images["big"]
    offset: int | None = None
    path = ""
    if rng.random() < 0.5:
        blob = rng.choice(list(img.blobs().values()))
        offset = rng.randrange(0, blob.size)
        path = env.blob_path("big", blob.digest)
        env.proxy.add(Stall(1.0, offset), method="GET", path=f"/blobs/{blob.digest}", times=1)
    root = env.new_dir("root")
    proc = env.spawn("-q", "fetch", "--all-platforms", env.ref("big"), root=root)
    point = kill_at(env, rng, proc, "fetch", lambda: _clean_fetch(env), path, offset)
    env.proxy.clear()
    before, problems, bad = _after_kill(env, root)
    rerun = pull(env, "big", root)
    t = judge(env, "SIGKILL dist fetch", "big", root, rerun, f"killed {point}", before=before)
    return _merge(t, problems, bad)


def _merge(t: Trial, problems: list[str], bad: int) -> Trial:
    if problems:
        t.outcome = "unclean"
        t.note = f"{t.note}: {'; '.join(problems)}"
    t.corrupted = max(t.corrupted, bad)
    return t


# -- ingest from stdin ------------------------------------------------------------
def _ingest_data(env: Env) -> tuple[Path, str, int]:
    path = env.workdir / "ingest.bin"
    if not path.exists():
        path.write_bytes(random.Random(11).randbytes(8 << 20))
    data = path.read_bytes()
    return path, "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def kill_ingest(env: Env, rng: random.Random, i: int) -> Trial:
    path, dgst, size = _ingest_data(env)
    data = path.read_bytes()
    root = env.new_dir("root")
    key = f"reliability-{i}"
    args = ("content", "ingest", key, "--expected-digest", dgst, "--expected-size", str(size))
    proc = env.spawn(*args, root=root, stdin=subprocess.PIPE)
    pieces = (size + 65535) // 65536
    stop_after = rng.randint(0, pieces) if rng.random() < 0.7 else None
    feeder = feed(proc, data, stop_after)
    if stop_after is not None:
        feeder.join(30)
        time.sleep(rng.uniform(0, 0.05))
        point = f"after {stop_after} of {pieces} pieces"
    else:
        delay = rng.uniform(0.05, 0.6)
        time.sleep(delay)
        point = f"after {delay:.2f}s"
    finished = proc.poll() is not None
    kill(proc)
    feeder.join(5)
    before, problems, bad = _after_kill(env, root)
    rerun = env.dist(*args, root=root, stdin_file=path)
    ok = rerun.rc == 0 and dgst in blobs(root) and not ingest_dirs(root)
    note = f"killed {point}" + (" (had finished)" if finished else "")
    outcome = classify(rerun, ok)
    corrupt = corrupt_blobs(root)
    lost = lost_objects(root, before, {})
    if outcome == "unclean":
        note += f": rerun {rerun.summary()}"
    t = Trial("SIGKILL dist content ingest", outcome, len(corrupt), len(lost), note)
    return _merge(t, problems, bad)


# -- apply and unpack --------------------------------------------------------------
_trees: dict[str, dict[str, tuple[object, ...]]] = {}


def _reference_apply(env: Env) -> float:
    d = env.new_dir("apply-ref")
    run = env.dist("apply", str(d), str(env.layer_file))
    if run.rc != 0:
        raise RuntimeError(f"clean apply failed: {run.summary()}")
    _trees["apply"] = tree(d)
    return run.seconds


def kill_apply(env: Env, rng: random.Random, i: int) -> Trial:
    d = env.new_dir("apply")
    proc = env.spawn("apply", str(d), str(env.layer_file))
    point = kill_at(env, rng, proc, "apply", lambda: _reference_apply(env), "", None)
    rerun = env.dist("apply", str(d), str(env.layer_file))
    ok = rerun.rc == 0 and env.layer_diff_id in rerun.stdout and tree(d) == _trees["apply"]
    outcome = classify(rerun, ok)
    note = f"killed {point}" + ("" if outcome != "unclean" else f": rerun {rerun.summary()}")
    return Trial("SIGKILL dist apply", outcome, 0, 0, note)


def _reference_unpack(env: Env) -> float:
    root, d = env.new_dir("unpack-ref-root"), env.workdir / f"unpack-ref-{time.time_ns()}"
    run = env.dist("unpack", env.ref("tree"), str(d), root=root)
    if run.rc != 0:
        raise RuntimeError(f"clean unpack failed: {run.summary()}")
    _trees["unpack"] = tree(d)
    return run.seconds


def kill_unpack(env: Env, rng: random.Random, i: int) -> Trial:
    env.proxy.clear()
    img = env.images["tree"]
    offset: int | None = None
    path = ""
    if rng.random() < 0.4:
        blob = max(img.blobs().values(), key=lambda b: b.size)
        offset = rng.randrange(0, blob.size)
        path = env.blob_path("tree", blob.digest)
        env.proxy.add(Stall(1.0, offset), method="GET", path=f"/blobs/{blob.digest}", times=1)
    root = env.new_dir("root")
    d = root.parent / f"{root.name}-rootfs"
    proc = env.spawn("-q", "unpack", env.ref("tree"), str(d), root=root)
    point = kill_at(env, rng, proc, "unpack", lambda: _reference_unpack(env), path, offset)
    env.proxy.clear()
    before, problems, bad = _after_kill(env, root)
    force = ("--force",) if d.exists() and any(d.iterdir()) else ()
    rerun = env.dist("-q", "unpack", *force, env.ref("tree"), str(d), root=root)
    ok = rerun.rc == 0 and tree(d) == _trees["unpack"]
    outcome = classify(rerun, ok)
    corrupt = corrupt_blobs(root)
    lost = lost_objects(root, before, {})
    note = f"killed {point}" + ("" if outcome != "unclean" else f": rerun {rerun.summary()}")
    t = Trial("SIGKILL dist unpack", outcome, len(corrupt), len(lost), note)
    return _merge(t, problems, bad)


# -- disk full -------------------------------------------------------------------------
def disk_full(env: Env, rng: random.Random, i: int) -> Trial:
    """Pull into a root on a small tmpfs: "no space left on device" in one
    line, no committed partial blob, and the ingest can be pruned."""
    kind = "disk full (tmpfs)"
    if os.geteuid() != 0:
        return Trial(kind, "skipped", note="needs root to mount a tmpfs")
    total = sum(b.size for b in env.images["big"].blobs().values())
    size_kib = max(16, int(total * rng.choice([0.002, 0.05, 0.3, 0.6, 0.9])) // 1024)
    mnt = env.new_dir("tmpfs")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mnt)],
        check=True,
        capture_output=True,
    )
    try:
        env.proxy.clear()
        root = mnt / "root"
        run = pull(env, "big", root)
        t = judge(env, kind, "big", root, run, f"tmpfs of {size_kib} KiB")
        line = run.error_line() or ""
        if t.outcome == "failed_cleanly" and "no space left on device" not in line:
            t.outcome, t.note = "unclean", f"{t.note}: error without 'no space left': {line!r}"
        # Cleaning up must work on the full disk, or fail cleanly in words:
        # SQLite needs ~36 KiB free to open the metadata store (its -shm and
        # -wal files), which a disk filled to the last block does not have.
        prune = env.dist("content", "prune", "--ingests", "--force", root=root)
        ls = env.dist("images", "ls", root=root)
        left = ingest_dirs(root)
        for what, r in (("prune --ingests", prune), ("images ls", ls)):
            if r.rc == 0:
                continue
            if "no space left on device" in (r.error_line() or "") and not left:
                t.note += f"; {what}: no space left (clean)"
                continue
            t.outcome, t.note = "unclean", f"{t.note}: {what}: {r.summary()}"
        if left:
            t.outcome, t.note = "unclean", f"{t.note}: {len(left)} ingests left after prune"
        return t
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
