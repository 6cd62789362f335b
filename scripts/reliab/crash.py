"""``dist`` killed with SIGKILL at random points, and a disk that fills up.

After every kill: ``dist content verify`` must report 0 bad blobs, the
metadata store must open (``dist images ls``), our own re-hash must agree,
and rerunning the same command must complete without losing anything that
was committed before.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness import Stall
from tests.harness.fstree import tree
from tests.harness.tmpfs import can_mount, fill, free_bytes, resize, tmpfs

from reliab.env import (
    Env,
    blobs,
    corrupt_blobs,
    expected_objects,
    feed,
    ingest_dirs,
    kill,
    lost_objects,
    recorded,
)
from reliab.network import complete, judge, pull
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
# Sizes of the filesystem the pull goes into, in the order trials take them
# (so --quick's two cover the ends): "first write" is a tmpfs already full
# to the last block when `dist` starts; "<n>k" a fixed size; a fraction is
# of the image's bytes (some jitter added).
DISK_SIZES: tuple[float | str, ...] = (
    "first write",
    0.3,
    "64k",
    0.9,
    0.002,
    "16k",
    0.6,
    0.05,
    0.99,
    0.15,
)
# Files of the metadata store that stay after a prune (the reserve is kept
# on purpose; see ocidist.sqlitedb).
_METADATA = {"metadata.db", "metadata.db-wal", "metadata.db-shm", "metadata.db.reserve"}


def disk_full(env: Env, rng: random.Random, i: int) -> Trial:
    """Pull into a root on a small tmpfs: "no space left on device" in one
    line, nothing committed partially or lost. Then, on the full disk,
    `dist images ls` lists and `dist content prune --ingests --force` frees
    every byte no recorded image needs; given room again, a second pull
    completes."""
    kind = "disk full (tmpfs)"
    if not can_mount():
        return Trial(kind, "skipped", note="needs root, allowed to mount a tmpfs")
    img = env.images["big"]
    total = sum(o.size for o in img.objects())
    choice = DISK_SIZES[i % len(DISK_SIZES)]
    if isinstance(choice, str) and choice.endswith("k"):
        size_kib = int(choice[:-1])
    elif isinstance(choice, float):
        size_kib = max(16, int(total * choice * rng.uniform(0.95, 1.05)) // 1024)
    else:
        size_kib = 64
    with tmpfs(env.new_dir("tmpfs"), size_kib) as mnt:
        env.proxy.clear()
        root = mnt / "root"
        what = f"tmpfs of {size_kib} KiB"
        if choice == "first write":
            fill(mnt)
            what = f"tmpfs full before the first write ({size_kib} KiB)"
        run = pull(env, "big", root)
        t = judge(env, kind, "big", root, run, what)
        line = run.error_line() or ""
        if t.outcome == "failed_cleanly" and "no space left on device" not in line:
            t.outcome, t.note = "unclean", f"{t.note}: error without 'no space left': {line!r}"
        problems = _after_disk_full(env, mnt, root, total)
        if problems:
            t.outcome, t.note = "unclean", f"{t.note}: {'; '.join(problems)}"
        t.corrupted = max(t.corrupted, len(corrupt_blobs(root)))
        return t


def _after_disk_full(env: Env, mnt: Path, root: Path, total: int) -> list[str]:
    """What is wrong with cleaning up after the pull (empty when all is well)."""
    problems = []
    full = free_bytes(mnt) < 64 << 10
    for args in (("images", "ls"), ("content", "prune", "--ingests", "--force"), ("images", "ls")):
        r = env.dist(*args, root=root)
        if r.rc != 0:
            disk = "full disk" if full else "disk"
            problems.append(f"{' '.join(args)} on the {disk}: {r.summary()}")
    if ingest_dirs(root):
        problems.append(f"{len(ingest_dirs(root))} ingests left after prune")
    # Freed: nothing is left but the metadata store and what a recorded
    # image needs (and the filler of a "first write" trial).
    keep: set[str] = set()
    for name, target in recorded(root).items():
        keep.add(target)
        if name == env.ref("big") and target == env.images["big"].digest:
            keep |= expected_objects(env.images["big"])
    stray = []
    if root.is_dir():
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            if path.is_dir() or str(rel) in _METADATA or rel.name == ".lock":
                continue
            name = path.name.removesuffix(".json")
            if rel.parts[0] in ("blobs", "labels") and f"{rel.parts[1]}:{name}" in keep:
                continue
            stray.append(f"{rel} ({path.stat().st_size} B)")
    if stray:
        problems.append(f"prune left {len(stray)} files: {', '.join(sorted(stray)[:3])}")
    # With room again, the same pull completes.
    resize(mnt, total // 1024 + 4096)
    again = pull(env, "big", root)
    if again.rc != 0 or not complete(env, "big", root):
        problems.append(f"second pull with room: {again.summary()}")
    return problems
