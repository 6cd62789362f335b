"""`make bench`: dist against its peers on images built here, no internet.

Starts its own registry on a free loopback port, builds and pushes the
workloads (large blobs are cached under .bench/cache), then runs every
comparison in ``benchlib.comparisons.COMPARISONS`` per workload: ours and the
peer interleaved, cold each run, medians of ``--runs``. With ``--network``
the comparisons run again through a relay that behaves like a wide-area link
(``tests.harness.netrelay``: round trip, per-connection and total rate caps,
slow start), every side through the same relay. Prints a table of wall
time, ratios, CPU seconds and peak RSS, then start-up times. Everything it
starts is stopped by PID at the end, on errors and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import workloads  # noqa: E402
from benchlib.comparisons import COMPARISONS, Context, Row, run_all  # noqa: E402
from benchlib.measure import wall_median  # noqa: E402
from benchlib.report import table, to_json  # noqa: E402
from tests.harness import Registry  # noqa: E402
from tests.harness.netrelay import PROFILES, NetRelay  # noqa: E402

DEFAULT_WORKLOADS = [s.name for s in workloads.SPECS if not s.optional]


def dist_argv() -> list[str]:
    # The console script users run, from this interpreter's environment.
    script = Path(sys.executable).with_name("dist")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ocidist"]


def dist_env(workdir: Path) -> dict[str, str]:
    """Our CLI's environment: bytecode cached (in .bench, not the source
    tree) even where PYTHONDONTWRITEBYTECODE is set, as an installed
    package's is; otherwise every run would compile every module again."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3, help="runs per side (median; default 3)")
    p.add_argument(
        "--workloads",
        default=",".join(DEFAULT_WORKLOADS),
        help=f"comma list of {', '.join(s.name for s in workloads.SPECS)}",
    )
    p.add_argument("--big-blob", action="store_true", help="add the >=500 MB single-blob workload")
    p.add_argument("--gb-blob", action="store_true", help="add the >=1 GB single-blob workload")
    p.add_argument(
        "--network",
        default="loopback",
        help=f"comma list of loopback, {', '.join(PROFILES)} (relay profiles; default loopback)",
    )
    names = ", ".join(COMPARISONS)
    p.add_argument("--comparisons", default=",".join(COMPARISONS), help=f"comma list of {names}")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--workdir", type=Path, default=ROOT / ".bench", help="cache and scratch")
    p.add_argument("--startup-runs", type=int, default=10)
    args = p.parse_args(argv)
    args.workload_list = [x for x in args.workloads.split(",") if x]
    if args.big_blob and "big-blob" not in args.workload_list:
        args.workload_list.append("big-blob")
    if args.gb_blob and "gb-blob" not in args.workload_list:
        args.workload_list.append("gb-blob")
    args.network_list = [x for x in args.network.split(",") if x]
    for x in args.network_list:
        if x != "loopback" and x not in PROFILES:
            p.error(f"unknown network {x!r}")
    args.comparison_list = [x for x in args.comparisons.split(",") if x]
    known = {s.name for s in workloads.SPECS}
    for x in args.workload_list:
        if x not in known:
            p.error(f"unknown workload {x!r}")
    for x in args.comparison_list:
        if x not in COMPARISONS:
            p.error(f"unknown comparison {x!r}")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split()[1]
        mem_gb = f"{int(mem) / 1024 / 1024:.1f} GiB"
    except OSError:
        mem_gb = "?"
    return f"{os.cpu_count()} CPUs ({model}), {mem_gb} RAM, Python {sys.version.split()[0]}"


def run_network(
    ctx: Context,
    net: str,
    registry: Registry,
    loads: list[workloads.Workload],
    names: list[str],
) -> tuple[list[Row], list[str]]:
    """Every comparison on every workload, through ``net``'s relay (one
    relay process, started and stopped here; push starts its own per run in
    front of each fresh registry)."""
    if net == "loopback":
        ctx.profile = None
        return run_all(ctx, names, [w for w in loads if net not in w.spec.skip_networks])
    profile = PROFILES[net]
    relay = NetRelay(registry.host, profile).start()
    try:
        log(f"network {profile.describe()}: relay {relay.host} (pid {relay.pid})")
        ctx.profile = profile
        kept = [w.via(relay.host) for w in loads if net not in w.spec.skip_networks]
        return run_all(ctx, names, kept)
    finally:
        ctx.profile = None
        relay.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    workdir: Path = args.workdir
    scratch = workdir / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    registry = Registry(workdir / "registry", log_level="error")
    started = time.perf_counter()
    try:
        registry.start()
        log(f"registry {registry.url} (pid {registry.pid}); {machine()}")
        loads = workloads.build(args.workload_list, workdir / "cache", registry, scratch, log)
        env = dist_env(workdir)
        ctx = Context(dist=dist_argv(), scratch=scratch, runs=args.runs, log=log, env=env)
        rows: list[Row] = []
        failures: list[str] = []
        for net in args.network_list:
            net_rows, net_failures = run_network(ctx, net, registry, loads, args.comparison_list)
            rows += net_rows
            failures += net_failures
        log("start-up …")
        ref = loads[0].ref if loads else f"{registry.host}/none:none"
        startup = {
            "help": wall_median([*ctx.dist, "--help"], args.startup_runs, env),
            "resolve": wall_median([*ctx.dist, "resolve", ref], args.startup_runs, env),
        }
    except KeyboardInterrupt:
        log("interrupted; stopping what the bench started")
        return 130
    finally:
        registry.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        doc = {
            "machine": machine(),
            "runs": args.runs,
            "rows": to_json(rows),
            "startup": startup,
            "failures": failures,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"machine: {machine()}; median of {args.runs} runs, cold each run")
        print(table(rows))
        help_ms, resolve_ms = startup["help"] * 1000, startup["resolve"] * 1000
        print(
            f"start-up (median of {args.startup_runs}): dist --help {help_ms:.0f} ms,"
            f" dist resolve {resolve_ms:.0f} ms"
        )
        for f in failures:
            print(f"FAILED: {f}")
        print(f"(bench took {time.perf_counter() - started:.0f}s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
