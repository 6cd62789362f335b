"""Upload faults: ``dist push`` (store -> registry through the fault proxy)
with connections dropped on upload requests, and ``dist push`` SIGKILLed.

The source root holds the "big" image, pulled straight from the registry;
pushing it through the proxy (another host name) rules out cross-repository
mounts, so every blob is really uploaded, in small chunks. A push is correct
when pulling the pushed reference back from the registry gives every object
of the image, each hashing to its digest.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from tests.harness import Drop

from reliab.crash import kill_at
from reliab.env import Env, blobs, corrupt_blobs, expected_objects
from reliab.outcome import Run, Trial, classify

CHUNKS = ("--chunk-size", "256KiB", "--monolithic-max", "256KiB")


def source_root(env: Env) -> Path:
    root = env.workdir / "push-source"
    if not (root / "metadata.db").exists():
        run = env.dist("fetch", "--all-platforms", env.ref("big", direct=True), root=root)
        if run.rc != 0:
            raise RuntimeError(f"cannot fill the push source: {run.summary()}")
    return root


def push(env: Env, dest: str, *, timeout: float = 120) -> Run:
    src = env.ref("big", direct=True)
    return env.dist("push", *CHUNKS, src, dest, root=source_root(env), timeout=timeout)


def pushed_correctly(env: Env, repo: str) -> tuple[bool, int]:
    """Pull ``repo:v1`` back straight from the registry: complete, and how
    many objects are corrupt."""
    root = env.new_dir("pullback")
    ref = f"{env.registry.host}/{repo}:v1"
    run = env.dist("fetch", "--all-platforms", ref, root=root)
    want = expected_objects(env.images["big"])
    return run.rc == 0 and want <= set(blobs(root)), len(corrupt_blobs(root))


def _arm_after(env: Env, method: str, path: str, k: int, drop: Drop) -> threading.Thread:
    """Add the drop rule once ``k`` matching requests went through (a watcher:
    the proxy's rules cannot skip the first k)."""

    def run() -> None:
        deadline = time.monotonic() + 60
        while env.proxy.count(method, path) < k and time.monotonic() < deadline:
            time.sleep(0.001)
        env.proxy.add(drop, method=method, path=path, times=1)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def drop_upload(env: Env, rng: random.Random, i: int) -> Trial:
    """Cut the connection of a random upload request (a PATCH chunk, the
    closing PUT, or the POST that opens the session)."""
    source_root(env)
    env.proxy.clear()
    repo = f"rel/pushed-drop-{i}"
    method = rng.choice(["PATCH", "PATCH", "PUT", "POST"])
    k = rng.randrange(0, 12 if method == "PATCH" else 3)
    reset = rng.random() < 0.5
    watcher = _arm_after(env, method, "/blobs/uploads/", k, Drop(before_headers=True, reset=reset))
    run = push(env, f"{env.proxy.host}/{repo}:v1")
    watcher.join(1)
    ok, bad = pushed_correctly(env, repo) if run.rc == 0 else (False, 0)
    outcome = classify(run, ok)
    note = f"{method} #{k + 1} dropped, reset {reset}"
    if outcome == "unclean":
        note += f": {run.summary()}"
    return Trial("drop upload", outcome, bad, 0, note)


def kill_push(env: Env, rng: random.Random, i: int) -> Trial:
    """SIGKILL dist push at a random time; the source store still verifies
    and a rerun pushes a correct image."""
    src = source_root(env)
    env.proxy.clear()
    repo = f"rel/pushed-kill-{i}"
    dest = f"{env.proxy.host}/{repo}:v1"
    proc = env.spawn("push", *CHUNKS, env.ref("big", direct=True), dest, root=src)

    def clean() -> float:
        return push(env, f"{env.proxy.host}/rel/pushed-base:v1").seconds

    point = kill_at(env, rng, proc, "push", clean, "", None)
    before = set(blobs(src))
    problems = []
    v = env.dist("content", "verify", root=src)
    if v.rc != 0 or "0 bad" not in v.stderr:
        problems.append(f"content verify: {v.summary()}")
    rerun = push(env, dest)
    ok, bad = pushed_correctly(env, repo) if rerun.rc == 0 else (False, 0)
    outcome = classify(rerun, ok)
    lost = sorted(before - set(blobs(src)))
    note = f"killed {point}"
    if outcome == "unclean" or problems:
        outcome = "unclean"
        note += f": rerun {rerun.summary()} {'; '.join(problems)}"
    return Trial("SIGKILL dist push", outcome, bad + len(corrupt_blobs(src)), len(lost), note)
