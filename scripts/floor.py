"""How far dist is from the least any Python client could do, next to ctr.

``make bench``'s pull+unpack row compares ``dist unpack REF DIR`` with
``ctr images pull``. This runs, interleaved in one session and through the
same relay, a third side: ``benchlib/minimal_client.py``, which only opens
its connections, reads the index, the platform's manifest, then the config
and layers at once, and commits each blob as dist's store does (checked,
fsynced, linked) — no unpacking, no name, no retries. Its time is a floor
for a Python program on this machine, registry and link (interpreter
start, round trips, the registry's and the relay's own latency, the
fsyncs); dist's distance to it is what dist's own code still costs.

Usage: ``.venv/bin/python scripts/floor.py [--network wan] [--workload
multi-platform] [--runs 9]``. Prints the medians and the ratios.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import dist_argv, dist_env, log  # noqa: E402
from benchlib import workloads  # noqa: E402
from benchlib.comparisons import (  # noqa: E402
    Context,
    _containerd,
    _CtrRuns,
    _interleave,
    _rm,
    ctr_pull,
    dist_unpack,
)
from benchlib.measure import Sample, run  # noqa: E402
from tests.harness import Registry  # noqa: E402
from tests.harness.netrelay import PROFILES, NetRelay  # noqa: E402

MINIMAL = ROOT / "scripts" / "benchlib" / "minimal_client.py"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--network", default="wan", choices=sorted(PROFILES))
    p.add_argument("--workload", default="multi-platform")
    p.add_argument("--runs", type=int, default=9)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="floor-"))
    scratch = work / "scratch"
    scratch.mkdir()
    registry = Registry(work / "registry", log_level="error")
    relay: NetRelay | None = None
    try:
        registry.start()
        (w,) = workloads.build([args.workload], work / "cache", registry, scratch, log)
        relay = NetRelay(registry.host, PROFILES[args.network]).start()
        w = w.via(relay.host)
        host, port = relay.host.rsplit(":", 1)
        ctx = Context(
            dist=dist_argv(), scratch=scratch, runs=args.runs, log=log, env=dist_env(work)
        )
        ctx.profile = PROFILES[args.network]

        def minimal() -> Sample:
            out = ctx.fresh("minimal")
            try:
                return run([sys.executable, str(MINIMAL), host, port, w.repo, w.tag, str(out)])
            finally:
                _rm(out)

        with _containerd(ctx, "floor") as daemon:
            runs = _CtrRuns(ctx, daemon, w.ref) if daemon is not None else None

            ctr = (lambda: ctr_pull(runs, daemon)) if runs and daemon else None
            o, m, c = _interleave(ctx, [lambda: dist_unpack(ctx, w), minimal, ctr])
        med = {
            k: statistics.median(s.wall for s in v)
            for k, v in (("dist", o), ("minimal", m), ("ctr", c))
            if v
        }
        print(
            f"{args.workload} through {PROFILES[args.network].describe()}; median of {args.runs}:"
        )
        for k, v in med.items():
            print(f"  {k:8s} {v:.3f} s")
        print(f"  dist/minimal {med['dist'] / med['minimal']:.3f}")
        if "ctr" in med:
            print(f"  dist/ctr {med['dist'] / med['ctr']:.3f}")
            print(f"  minimal/ctr {med['minimal'] / med['ctr']:.3f}")
    finally:
        if relay is not None:
            relay.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
