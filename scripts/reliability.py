"""`make reliability`: fault trials against real processes, and the table.

Starts its own registry on a free loopback port with the fault proxy in
front, pushes the images it needs, runs every fault kind (see
``reliab.suite.KINDS``) for a number of trials, and prints one row per kind:
trials, completed, failed cleanly, unclean, corrupted, lost data. Exits 1
unless corrupted and lost data are 0 and every trial completed or failed
cleanly. ``--quick`` is the short form `make test` runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from reliab.env import Env  # noqa: E402
from reliab.outcome import table  # noqa: E402
from reliab.suite import KINDS, run_kinds  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a few trials per kind (about a minute)")
    p.add_argument("--trials", type=int, help="trials per kind (overrides the defaults)")
    keys = ", ".join(k.key for k in KINDS)
    p.add_argument("--kinds", help=f"comma list of {keys} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="random seed (offsets, timings)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--workdir", type=Path, help="scratch directory (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--verbose", "-v", action="store_true", help="progress per kind on stderr")
    args = p.parse_args(argv)
    chosen = [x for x in (args.kinds or "").split(",") if x]
    unknown = set(chosen) - {k.key for k in KINDS}
    if unknown:
        p.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    args.kind_list = [k for k in KINDS if not chosen or k.key in chosen]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ocidist-reliability-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        if args.verbose:
            print(msg, file=sys.stderr, flush=True)

    # SIGTERM (a CI timeout, kill PID) unwinds like Ctrl-C, so the registry,
    # the proxy and any tmpfs mount are cleaned up by the finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    start = time.monotonic()
    commit = source_commit()
    env = Env(workdir, quick=args.quick)
    try:
        try:
            env.start()
        except Exception as e:
            # No trial can run without the registry and its images: say why
            # in one line (the trials themselves never end the run).
            print(f"reliability: setting up failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        log(f"set up in {time.monotonic() - start:.1f}s ({workdir})")
        tallies = run_kinds(
            env, args.kind_list, quick=args.quick, trials=args.trials, seed=args.seed, log=log
        )
    finally:
        env.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    ok = all(t.ok for t in tallies)
    elapsed = time.monotonic() - start
    if args.json:
        doc = {
            "quick": args.quick,
            "seed": args.seed,
            "commit": commit,
            "seconds": round(elapsed, 1),
            "ok": ok,
            "kinds": [t.to_json() for t in tallies],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(table(tallies), end="")
        print(
            f"{sum(t.trials for t in tallies)} trials in {elapsed:.0f}s; "
            f"{'all clean' if ok else 'PROBLEMS FOUND'} (commit {commit}, seed {args.seed})"
        )
    return 0 if ok else 1


def source_commit() -> str:
    """The commit the run is on (with "+changes" for a dirty tree), for the
    table's footnote; "unknown" outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
