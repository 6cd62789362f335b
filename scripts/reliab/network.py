"""Network faults: drops at random offsets, a registry killed and restarted
mid-pull, stalls against the read timeout and ``--timeout``, 429 and 5xx.

Each trial pulls a whole image with ``dist fetch --all-platforms`` into a
fresh root through the fault proxy, then checks the store: every committed
blob hashes to its name, and a recorded name has every object of its image.
"""

from __future__ import annotations

import email.utils
import os
import random
import re
import signal
import time
from pathlib import Path

from tests.harness import Drop, Respond, Stall

from reliab.env import (
    Env,
    blobs,
    corrupt_blobs,
    expected_objects,
    finish,
    lost_objects,
    recorded,
)
from reliab.outcome import Run, Trial, classify

DEFAULT_ATTEMPTS = 5  # RetryPolicy.attempts: what "gave up after N attempts" must say


def pull(
    env: Env, name: str, root: Path, *extra: str, timeout: float = 90, pre: tuple[str, ...] = ()
) -> Run:
    return env.dist(
        "fetch", "--all-platforms", *extra, env.ref(name), root=root, timeout=timeout, pre=pre
    )


def complete(env: Env, name: str, root: Path) -> bool:
    """The pull's result is right: every object present and the name recorded."""
    img = env.images[name]
    return (
        expected_objects(img) <= set(blobs(root))
        and recorded(root).get(env.ref(name)) == img.digest
    )


def judge(
    env: Env,
    kind: str,
    name: str,
    root: Path,
    run: Run,
    note: str,
    *,
    max_seconds: float | None = None,
    before: set[str] | None = None,
) -> Trial:
    outcome = classify(run, complete(env, name, root), max_seconds=max_seconds)
    bad = corrupt_blobs(root)
    lost = lost_objects(root, before or set(), {env.ref(name): env.images[name]})
    why = note if outcome != "unclean" else f"{note}: {run.summary()}"
    if bad:
        why += f"; corrupt {bad}"
    if lost:
        why += f"; lost {lost}"
    return Trial(kind, outcome, len(bad), len(lost), why)


# -- connection drops ---------------------------------------------------------
def drop_manifest(env: Env, rng: random.Random, i: int) -> Trial:
    """Drop manifest transfers (index and platform manifests) at a random
    offset, once, a few times, or on every attempt; sometimes the tag's
    resolve (a GET since 2026-11: fetch reuses its body) before its headers."""
    env.proxy.clear()
    img = env.images["multi"]
    offset = rng.randrange(0, max(m.size for m in img.manifests()))
    times = rng.choice([1, 1, 2, 3, None])
    reset = rng.random() < 0.5
    env.proxy.add(Drop(offset, reset=reset), method="GET", path="/manifests/", times=times)
    if rng.random() < 0.3:
        env.proxy.add(Drop(before_headers=True), method="GET", path="/manifests/v1", times=1)
    root = env.new_dir("root")
    run = pull(env, "multi", root)
    return judge(
        env, "drop manifest", "multi", root, run, f"offset {offset} times {times} reset {reset}"
    )


def drop_blob(env: Env, rng: random.Random, i: int) -> Trial:
    """Drop one blob's body at a random offset (resumed with Range)."""
    env.proxy.clear()
    img = env.images["big"]
    blob = rng.choice(list(img.blobs().values()))
    offset = rng.randrange(0, blob.size)
    times = rng.choice([1, 1, 2, 3, None])
    reset = rng.random() < 0.5
    env.proxy.add(
        Drop(offset, reset=reset), method="GET", path=f"/blobs/{blob.digest}", times=times
    )
    root = env.new_dir("root")
    run = pull(env, "big", root)
    t = judge(
        env,
        "drop blob",
        "big",
        root,
        run,
        f"{blob.digest[:19]} of {blob.size} at {offset} times {times} reset {reset}",
    )
    sent = env.proxy.bytes_sent[env.blob_path("big", blob.digest)]
    # Resuming must fetch only the missing bytes, never start over. After a
    # FIN the client has every byte sent; an RST discards what sat unread in
    # its socket buffer, so up to the whole dropped prefix may come again.
    waste = offset if reset else min(offset, 1 << 20)
    if t.outcome == "completed" and times is not None and sent > blob.size + times * waste:
        t.outcome, t.note = "unclean", f"{t.note}: {sent} bytes sent for {blob.size}"
    return t


# -- registry killed and restarted mid-pull ----------------------------------
def registry_restart(env: Env, rng: random.Random, i: int) -> Trial:
    """SIGKILL the registry while a blob is mid-transfer, keep it down for a
    while, start it again; the pull resumes or fails cleanly, and a rerun
    fetches only what is missing."""
    env.proxy.clear()
    img = env.images["big"]
    blob = max(img.blobs().values(), key=lambda b: b.size)
    path = env.blob_path("big", blob.digest)
    offset = rng.randrange(blob.size // 10, blob.size * 9 // 10)
    down = rng.choice([0.0, 0.5, 1.5, 6.0])
    # Park the transfer at ``offset`` so the kill lands mid-body.
    env.proxy.add(Stall(1.0, offset), method="GET", path=f"/blobs/{blob.digest}", times=1)
    root = env.new_dir("root")
    start = time.monotonic()
    proc = env.spawn("fetch", "--all-platforms", env.ref("big"), root=root)
    deadline = start + 30
    while env.proxy.bytes_sent[path] < offset and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    reg = env.registry
    if reg.pid is not None:
        os.kill(reg.pid, signal.SIGKILL)
    time.sleep(down)
    reg.restart()
    run = finish(proc, start, 90)
    note = f"killed at {offset} of {blob.size}, down {down}s"
    t = judge(env, "registry restart", "big", root, run, note)
    if t.outcome == "failed_cleanly":
        # The rerun must complete, fetching only objects not yet committed
        # (and of a partial ingest only its missing bytes).
        have = blobs(root)
        missing = sum(b.size for b in img.blobs().values() if b.digest not in have)
        sent_before = sum(env.proxy.bytes_sent.values())
        rerun = pull(env, "big", root)
        sent = sum(env.proxy.bytes_sent.values()) - sent_before
        manifests = sum(m.size for m in img.manifests())
        if rerun.rc != 0 or not complete(env, "big", root):
            t.outcome, t.note = "unclean", f"{note}: rerun {rerun.summary()}"
        elif sent > missing + manifests:
            t.outcome, t.note = "unclean", f"{note}: rerun sent {sent} > missing {missing}"
        t.corrupted = len(corrupt_blobs(root))
    return t


# -- stalls ---------------------------------------------------------------------
def stall_timeout(env: Env, rng: random.Random, i: int) -> Trial:
    """A server that stops answering (before headers or mid-body) for longer
    than ``--timeout``: a clean "timed out" within the deadline."""
    env.proxy.clear()
    img = env.images["big"]
    where = rng.choice(["tag resolve", "manifest GET", "blob headers", "blob body"])
    timeout = rng.choice([1.0, 1.5, 2.5])
    blob = rng.choice(list(img.blobs().values()))
    if where == "tag resolve":
        env.proxy.add(Stall(60), method="GET", path="/manifests/v1", times=None)
    elif where == "manifest GET":
        env.proxy.add(Stall(60), method="GET", path="/manifests/", times=None)
    elif where == "blob headers":
        env.proxy.add(Stall(60), method="GET", path=f"/blobs/{blob.digest}", times=None)
    else:
        off = rng.randrange(0, blob.size)
        env.proxy.add(Stall(60, off), method="GET", path=f"/blobs/{blob.digest}", times=None)
    root = env.new_dir("root")
    run = env.dist(
        "--timeout",
        f"{timeout}s",
        "fetch",
        "--all-platforms",
        env.ref("big"),
        root=root,
        timeout=40,
    )
    # Python start-up and clean-up come on top of the deadline.
    t = judge(
        env,
        "stall vs --timeout",
        "big",
        root,
        run,
        f"{where}, --timeout {timeout}s",
        max_seconds=timeout + 4,
    )
    line = run.error_line() or ""
    if t.outcome == "failed_cleanly" and "timed out" not in line:
        t.outcome, t.note = "unclean", f"{t.note}: no 'timed out' in {line!r}"
    return t


# The read timeout (30 s) has no flag; the quick trials run dist with a
# shorter one by replacing the defaults class before the CLI starts.
SHORT_READ = (
    "-c",
    "import dataclasses, sys; from ocidist.remotes.docker import transport as t; "
    "t.Timeouts = dataclasses.make_dataclass('Timeouts', "
    "[('connect', float, 10.0), ('read', float, {read})], frozen=True); "
    "from ocidist.cli.main import main; sys.exit(main(sys.argv[1:]))",
)


def stall_read(env: Env, rng: random.Random, i: int, *, read: float = 1.5) -> Trial:
    """One stall longer than the read timeout: the stalled request is given
    up and retried (resumed), and the pull completes."""
    env.proxy.clear()
    img = env.images["big"]
    blob = rng.choice(list(img.blobs().values()))
    where = rng.choice(["manifest GET", "blob headers", "blob body"])
    stall = read + 3 if read < 30 else read + 5
    if where == "manifest GET":
        env.proxy.add(Stall(stall), method="GET", path="/manifests/", times=1)
    elif where == "blob headers":
        env.proxy.add(Stall(stall), method="GET", path=f"/blobs/{blob.digest}", times=1)
    else:
        off = rng.randrange(0, blob.size)
        env.proxy.add(Stall(stall, off), method="GET", path=f"/blobs/{blob.digest}", times=1)
    root = env.new_dir("root")
    pre = () if read >= 30 else (SHORT_READ[0], SHORT_READ[1].replace("{read}", str(read)))
    run = env.dist(
        "--timeout",
        f"{read + 40}s",
        "fetch",
        "--all-platforms",
        env.ref("big"),
        root=root,
        timeout=read + 60,
        pre=pre,
    )
    kind = "stall vs read timeout" if read < 30 else "stall vs read timeout (30s)"
    t = judge(env, kind, "big", root, run, f"{where}, read timeout {read}s", max_seconds=stall + 20)
    if t.outcome == "completed" and run.seconds >= stall + 1:
        # Completing only after the stall ended means the timeout never fired.
        t.outcome, t.note = "unclean", f"{t.note}: waited out the stall ({run.seconds:.1f}s)"
    elif t.outcome == "failed_cleanly":
        # One stall is one failed attempt; the retry budget must cover it.
        t.outcome, t.note = "unclean", f"{t.note}: gave up: {run.error_line()}"
    return t


# -- 429 and 5xx ------------------------------------------------------------------
_GAVE_UP = re.compile(r"gave up after (\d+) attempts")


def _throttled(
    env: Env, rng: random.Random, kind: str, status: int, retry_after: str | None
) -> Trial:
    env.proxy.clear()
    img = env.images["big"]
    n = rng.choice([1, 2, 3, DEFAULT_ATTEMPTS, DEFAULT_ATTEMPTS + 2])
    if rng.random() < 0.5:
        # The tag's resolve: a GET whose body the walk reuses.
        method, path, counted = "GET", "/manifests/v1", "/manifests/v1$"
    else:
        blob = rng.choice(list(img.blobs().values()))
        method, path, counted = "GET", f"/blobs/{blob.digest}", f"/blobs/{blob.digest}$"
    env.proxy.add(
        Respond(status, retry_after=retry_after, body=b'{"errors":[]}'),
        method=method,
        path=path,
        times=n,
    )
    root = env.new_dir("root")
    run = pull(env, "big", root, timeout=120)
    note = f"{status} x{n} on {method} {path[:26]} retry-after {retry_after}"
    t = judge(env, kind, "big", root, run, note)
    if t.outcome == "failed_cleanly":
        m = _GAVE_UP.search(run.error_line() or "")
        seen = env.proxy.count(method, counted)
        if m is None or int(m[1]) != seen or seen != DEFAULT_ATTEMPTS:
            t.outcome = "unclean"
            t.note = f"{note}: proxy saw {seen} attempts; error {run.error_line()!r}"
    elif (
        t.outcome == "completed"
        and retry_after
        and retry_after.isdigit()
        and run.seconds < n * int(retry_after)
    ):
        t.outcome, t.note = "unclean", f"{note}: Retry-After not honoured ({run.seconds:.1f}s)"
    return t


def too_many_retry_after(env: Env, rng: random.Random, i: int) -> Trial:
    value = rng.choice(["1", "0", "2"])
    if rng.random() < 0.3:  # the HTTP-date form, one second ahead
        value = email.utils.formatdate(time.time() + 1, usegmt=True)
    return _throttled(env, rng, "429 with Retry-After", 429, value)


def too_many_plain(env: Env, rng: random.Random, i: int) -> Trial:
    return _throttled(env, rng, "429 without Retry-After", 429, None)


def server_errors(env: Env, rng: random.Random, i: int) -> Trial:
    return _throttled(env, rng, "5xx burst", rng.choice([500, 502, 503, 504]), None)


def retry_after_beyond_deadline(env: Env, rng: random.Random, i: int) -> Trial:
    """A 429 asking for an hour under ``--timeout``: a clean, prompt failure."""
    env.proxy.clear()
    env.proxy.add(Respond(429, retry_after="3600"), method="GET", path="/manifests/", times=None)
    root = env.new_dir("root")
    run = env.dist("--timeout", "3s", "fetch", env.ref("big"), root=root, timeout=30)
    return judge(
        env, "429 Retry-After 1h vs --timeout", "big", root, run, "retry-after 3600", max_seconds=7
    )
