"""Run the fuzz targets under atheris (coverage-guided) for a bounded time.

``python tests/fuzz/run.py --seconds 30 [TARGET ...]``; each target gets its
own process and share of the time. atheris is optional: without it this
prints a note and exits 0. A crash leaves its input in ``--artifacts`` and
makes the exit status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NAMES = ("reference", "digest", "manifest", "platform", "http")

# The child: instrument the product's parsers, then fuzz one target.
CHILD = """
import sys
sys.path.insert(0, {root!r})
import atheris
with atheris.instrument_imports(include=["ocidist"]):
    from tests.fuzz.targets import TARGETS
atheris.Setup(sys.argv, TARGETS[{name!r}])
atheris.Fuzz()
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("targets", nargs="*", metavar="TARGET", help=f"any of {', '.join(NAMES)}")
    p.add_argument("--seconds", type=int, default=30, help="total fuzzing time")
    p.add_argument("--artifacts", type=Path, help="where crashing inputs go")
    args = p.parse_args(argv)
    args.targets = args.targets or list(NAMES)
    unknown = set(args.targets) - set(NAMES)
    if unknown:
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if importlib.util.find_spec("atheris") is None:
        print("fuzz: atheris is not installed; skipping (pip install atheris)")
        return 0
    artifacts = args.artifacts or Path(tempfile.mkdtemp(prefix="ocidist-fuzz-"))
    artifacts.mkdir(parents=True, exist_ok=True)
    each = max(1, args.seconds // len(args.targets))
    sys.path.insert(0, str(ROOT))
    from tests.fuzz.targets import SEEDS

    failed = []
    for name in args.targets:
        code = CHILD.format(root=str(ROOT), name=name)
        flags = [f"-max_total_time={each}", f"-artifact_prefix={artifacts}/{name}-",
                 "-rss_limit_mb=2048", "-print_final_stats=1"]  # fmt: skip
        if (HERE / f"{name}.dict").exists():
            flags.append(f"-dict={HERE / f'{name}.dict'}")
        corpus = None
        if name in SEEDS:
            # A scratch corpus: libFuzzer adds what it finds to this directory.
            corpus = Path(tempfile.mkdtemp(prefix=f"ocidist-fuzz-{name}-"))
            for i, seed in enumerate(SEEDS[name]):
                (corpus / f"seed{i}").write_bytes(seed)
            flags.append(str(corpus))
        proc = subprocess.run([sys.executable, "-c", code, *flags], capture_output=True, text=True)
        if corpus is not None:
            shutil.rmtree(corpus, ignore_errors=True)
        stats = [ln for ln in proc.stderr.splitlines() if ln.startswith("stat::number_of_executed")]
        runs = stats[0].split(":")[-1].strip() if stats else "?"
        verdict = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"fuzz {name}: {runs} inputs in {each}s: {verdict}")
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-4000:], file=sys.stderr)
    if failed:
        print(f"fuzz: crashing inputs in {artifacts}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
