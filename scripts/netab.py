"""A/B of one change through the emulated WAN link (docs/BENCHMARKS.md).

``make bench`` compares dist with its peers; this compares dist with an
older dist (a git revision, its ``src`` exported and put first on
``PYTHONPATH`` with this tree's virtualenv), interleaved run by run, and
reports medians and pairwise ratios, which is what a shared, noisy machine
allows. Three workloads:

- ``push``: ``dist push`` of an image of one random blob (default 1 GiB) from
  the store into a brand-new registry behind a fresh relay each run, with
  ``skopeo copy oci: docker://`` of the same image as a third side;
- ``fetch``: ``dist fetch`` of that image into an empty store, from one
  registry behind one relay; with ``--workload``, of one of the bench's
  images instead (every platform, as the bench fetches them);
- ``unpack``: ``dist unpack REF DIR`` from an empty store, of one of the
  bench's images (``--workload``) in a registry behind one relay.

Usage: ``.venv/bin/python scripts/netab.py push --old REV [--size BYTES]``,
``.venv/bin/python scripts/netab.py unpack --old REV --workload large``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import workloads  # noqa: E402
from tests.harness import Registry  # noqa: E402
from tests.harness.netrelay import PROFILES, NetRelay  # noqa: E402

DIST = [sys.executable, "-m", "ocidist"]


def export(rev: str, into: Path) -> str:
    """``rev``'s src directory, for PYTHONPATH."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return str(into / "src")


def interleave(
    sides: dict[str, Callable[[], float]], runs: int, *, warm_up: bool = True
) -> dict[str, list[float]]:
    names = list(sides)
    times: dict[str, list[float]] = {n: [] for n in names}
    # One untimed run of each first (as the bench does): bytecode written to
    # its cache, program files in the page cache. Not for push: a run there
    # is a minute, and compiling is ~0.2 s of it.
    for name in names if warm_up else ():
        sides[name]()
    for i in range(runs):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(sides[name]())
            print(f"run {i + 1} {name}: {times[name][-1]:.2f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    return times


def report(times: dict[str, list[float]]) -> None:
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.3f} s of {[round(t, 2) for t in ts]}")
    if "new" in times and "old" in times:
        pairs = [n / o for n, o in zip(times["new"], times["old"], strict=True)]
        print(f"pairwise new/old: median {statistics.median(pairs):.3f} "
              f"of {[round(p, 2) for p in pairs]}")  # fmt: skip


def timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.monotonic()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.monotonic() - t
    if r.returncode:
        raise SystemExit(f"netab: {' '.join(argv)}: {r.stderr.strip()}")
    return took


def env_for(src: str | None, pycache: Path) -> dict[str, str]:
    """As the bench runs dist (bench.dist_env): bytecode cached, in a
    directory per side, even where PYTHONDONTWRITEBYTECODE is set, or every
    run compiles every module again (+~0.2 s of start-up on each side)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache / ("old" if src is not None else "new"))
    if src is not None:
        env["PYTHONPATH"] = src
    return env


def one_blob_layout(layout: Path, size: int) -> None:
    """An OCI layout (tag v1) of one image with one layer of random bytes."""
    blobs = layout / "blobs/sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    tmp = layout / "layer.tmp"
    with open("/dev/urandom", "rb") as src, tmp.open("wb") as out:
        left = size
        while left:
            b = src.read(min(left, 1 << 24))
            h.update(b)
            out.write(b)
            left -= len(b)
    tmp.rename(blobs / h.hexdigest())

    def put(doc: object) -> dict[str, object]:
        data = json.dumps(doc).encode()
        d = hashlib.sha256(data).hexdigest()
        (blobs / d).write_bytes(data)
        return {"digest": "sha256:" + d, "size": len(data)}

    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar",
             "digest": "sha256:" + h.hexdigest(), "size": size}  # fmt: skip
    rootfs = {"type": "layers", "diff_ids": [layer["digest"]]}
    config = put({"architecture": "amd64", "os": "linux", "rootfs": rootfs})
    manifest = put({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [layer],
    })  # fmt: skip
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
             "annotations": {"org.opencontainers.image.ref.name": "v1"}}  # fmt: skip
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))


def push(args: argparse.Namespace, work: Path, old: str) -> None:
    layout, store = work / "layout", work / "store"
    one_blob_layout(layout, args.size)
    src = Registry(work / "src-registry", log_level="error").start()
    name = f"{src.host}/blob:v1"
    try:
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:v1",
                        f"docker://{name}"], check=True)  # fmt: skip
        subprocess.run([*DIST, "--root", str(store), "fetch", name, "-q"], check=True)
    finally:
        src.stop()

    def into_fresh(argv_for: Callable[[str], list[str]], env: dict[str, str]) -> float:
        reg = Registry(Path(tempfile.mkdtemp(dir=work)), log_level="error").start()
        relay = NetRelay(reg.host, PROFILES[args.network]).start()
        try:
            return timed(argv_for(f"{relay.host}/blob:v1"), env)
        finally:
            relay.stop()
            reg.stop()
            shutil.rmtree(reg.workdir, ignore_errors=True)

    def dist(src_path: str | None) -> Callable[[], float]:
        return lambda: into_fresh(
            lambda dest: [*DIST, "--root", str(store), "push", name, dest, "-q"],
            env_for(src_path, work),
        )

    skopeo = ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:v1"]
    sides = {
        "new": dist(None),
        "old": dist(old),
        "skopeo": lambda: into_fresh(lambda dest: [*skopeo, f"docker://{dest}"], dict(os.environ)),
    }
    report(interleave(sides, args.runs, warm_up=False))


def fetch(args: argparse.Namespace, work: Path, old: str) -> None:
    reg = Registry(work / "registry", log_level="error").start()
    relay = None
    try:
        if args.workload is None:
            layout = work / "layout"
            one_blob_layout(layout, args.size)
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:v1",
                            f"docker://{reg.host}/blob:v1"], check=True)  # fmt: skip
            path, extra = "blob:v1", []
        else:
            (work / "scratch").mkdir()
            (w,) = workloads.build([args.workload], work / "cache", reg, work / "scratch", print)
            path, extra = f"{w.repo}:{w.tag}", ["--all-platforms"]
        relay = NetRelay(reg.host, PROFILES[args.network]).start()
        ref = f"{relay.host}/{path}"

        def side(src_path: str | None) -> Callable[[], float]:
            def once() -> float:
                d = Path(tempfile.mkdtemp(dir=work))
                try:
                    argv = [*DIST, "--root", str(d), "fetch", ref, *extra, "-q"]
                    return timed(argv, env_for(src_path, work))
                finally:
                    shutil.rmtree(d, ignore_errors=True)

            return once

        report(interleave({"new": side(None), "old": side(old)}, args.runs))
    finally:
        if relay is not None:
            relay.stop()
        reg.stop()


def unpack(args: argparse.Namespace, work: Path, old: str) -> None:
    args.workload = args.workload or "large"
    reg = Registry(work / "registry", log_level="error").start()
    relay = None
    try:
        (work / "scratch").mkdir()
        (w,) = workloads.build([args.workload], work / "cache", reg, work / "scratch", print)
        relay = NetRelay(reg.host, PROFILES[args.network]).start()
        ref = w.ref.replace(reg.host, relay.host, 1)

        def side(src_path: str | None) -> Callable[[], float]:
            def once() -> float:
                d = Path(tempfile.mkdtemp(dir=work))
                try:
                    argv = [*DIST, "--root", str(d / "s"), "unpack", ref, str(d / "r"), "-q"]
                    return timed(argv, env_for(src_path, work))
                finally:
                    shutil.rmtree(d, ignore_errors=True)

            return once

        report(interleave({"new": side(None), "old": side(old)}, args.runs))
    finally:
        if relay is not None:
            relay.stop()
        reg.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["push", "fetch", "unpack"])
    p.add_argument("--old", required=True, help="git revision to compare with")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--network", default="wan", choices=sorted(PROFILES))
    p.add_argument("--size", type=int, default=1 << 30, help="push, fetch: the blob's bytes")
    p.add_argument(
        "--workload",
        help="unpack (default large), fetch (default: the one random blob): a bench workload",
    )
    args = p.parse_args()
    work = Path(
        tempfile.mkdtemp(
            prefix="netab-", dir=ROOT / ".bench" if (ROOT / ".bench").is_dir() else None
        )
    )
    try:
        old = export(args.old, work / "old")
        {"push": push, "fetch": fetch, "unpack": unpack}[args.what](args, work, old)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
