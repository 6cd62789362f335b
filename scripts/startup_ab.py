"""Start-up of `dist` across source trees, interleaved: ``--help``,
``resolve REF`` and ``fetch -q REF`` of a two-layer image of a few KB.

    .venv/bin/python scripts/startup_ab.py --runs 40 TREE_A TREE_B [TREE ...]

Each TREE is a checkout (e.g. ``git worktree add --detach /tmp/base 439fdef``);
its ``src`` goes first on ``PYTHONPATH`` and this interpreter runs
``-m ocidist``, so only the code differs. Starts its own registry on a free
loopback port (plain HTTP) and stops it by PID at the end. Runs go A B C, then
C B A, … so drift in the machine's load falls on every tree alike; CPU is the
child's user + system time from ``wait4``. Prints per command and tree the
median and minimum CPU, the median wall, and the median of the pairwise
ratios against the first tree (docs/BENCHMARKS.md, "Review of issue 15").
Bytecode is cached under a temporary ``PYTHONPYCACHEPREFIX`` (as the bench
does) and one warm-up run per tree and command is not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import Registry  # noqa: E402
from tests.harness.images import build_image  # noqa: E402
from tests.harness.push import http_push  # noqa: E402

COMMANDS = {
    "help": ["--help"],
    "resolve": ["resolve", "{ref}"],
    "fetch": ["--root", "{root}", "fetch", "-q", "{ref}"],
}


def run_once(tree: Path, argv: list[str], env: dict[str, str], root: Path) -> tuple[float, float]:
    shutil.rmtree(root, ignore_errors=True)
    child_env = {**env, "PYTHONPATH": str(tree / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocidist", *argv],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{tree}: {' '.join(argv)}: {err.decode(errors='replace')}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("trees", nargs="+", type=Path)
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--commands", default=",".join(COMMANDS))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="startup-ab-") as tmp:
        work = Path(tmp)
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        for key in [k for k in env if k.lower().endswith("_proxy")]:
            del env[key]
        with Registry(work / "registry") as reg:
            image = build_image([{"etc/hello": b"hello\n" * 100}, {"bin/x": b"x" * 3000}])
            http_push(reg, "startup/small", "v1", image)
            ref, root = f"{reg.host}/startup/small:v1", work / "root"
            for name in args.commands.split(","):
                argv = [w.format(ref=ref, root=root) for w in COMMANDS[name]]
                cpu: dict[Path, list[float]] = {t: [] for t in args.trees}
                wall: dict[Path, list[float]] = {t: [] for t in args.trees}
                for tree in args.trees:
                    run_once(tree, argv, env, root)
                for i in range(args.runs):
                    for tree in args.trees if i % 2 == 0 else args.trees[::-1]:
                        c, w = run_once(tree, argv, env, root)
                        cpu[tree].append(c)
                        wall[tree].append(w)
                first = args.trees[0]
                print(f"{name} ({args.runs} runs each):")
                for tree in args.trees:
                    pairs = zip(cpu[tree], cpu[first], strict=True)
                    ratio = statistics.median(a / b for a, b in pairs)
                    print(
                        f"  {tree}: CPU median {statistics.median(cpu[tree]) * 1000:.1f} ms"
                        f" (min {min(cpu[tree]) * 1000:.1f}), x{ratio:.3f} pairwise;"
                        f" wall median {statistics.median(wall[tree]) * 1000:.1f} ms",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
