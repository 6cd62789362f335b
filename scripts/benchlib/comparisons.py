"""The registry of comparisons: one function per operation, run per workload.

Each comparison runs ours and its peer interleaved, cold every run (a fresh
store, layout or destination), and returns a ``Row`` of medians. Adding an
operation means writing one function and adding it to ``COMPARISONS``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import shutil
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import Registry
from tests.harness.netrelay import NetRelay, Profile

from benchlib.containerd import Containerd, ContainerdUnavailable
from benchlib.measure import CommandFailed, Sample, median_sample, run
from benchlib.workloads import Workload


@dataclass(frozen=True)
class Row:
    comparison: str
    workload: str
    peer_name: str
    ours: Sample
    peer: Sample | None = None
    floor: Sample | None = None  # the curl wire floor, where it applies
    extra: dict[str, float] = field(default_factory=dict)  # e.g. ours' own phase timings
    note: str = ""
    network: str = "loopback"  # or the relay profile the row ran through


@dataclass
class Context:
    dist: list[str]  # argv prefix that runs our CLI
    scratch: Path  # fresh per-run directories are made (and removed) here
    runs: int
    log: Callable[[str], None]
    env: dict[str, str] | None = None  # for our CLI (see bench.dist_env)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    # Why containerd cannot run here, once found out; comparisons told of it.
    containerd_unavailable: str | None = None
    skips_logged: set[str] = field(default_factory=set)
    # The emulated link every side goes through (None: plain loopback).
    profile: Profile | None = None

    @property
    def network(self) -> str:
        return self.profile.name if self.profile else "loopback"

    def fresh(self, what: str) -> Path:
        """A path that does not exist yet (tools that want to create it)."""
        return self.scratch / f"{what}-{next(self._counter)}"

    def has(self, program: str) -> bool:
        return shutil.which(program) is not None


Comparison = Callable[[Context, Workload], "Row | None"]


def _rm(*paths: Path) -> None:
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)


def _interleave(ctx: Context, steps: Sequence[Callable[[], Sample] | None]) -> list[list[Sample]]:
    """Run each step ``ctx.runs`` times, interleaved, rotating which goes
    first so neither side always gets the warmer page cache. One untimed
    warm-up of each comes first: program files and bytecode in the page
    cache, as on any machine that ran the tool before."""
    out: list[list[Sample]] = [[] for _ in steps]
    live = [i for i, s in enumerate(steps) if s is not None]
    for i in live:
        step = steps[i]
        assert step is not None
        step()
    for r in range(ctx.runs):
        order = live[r % len(live) :] + live[: r % len(live)]
        for i in order:
            step = steps[i]
            assert step is not None
            out[i].append(step())
    return out


def _med(samples: list[Sample]) -> Sample | None:
    return median_sample(samples) if samples else None


# The registry refuses a manifest whose type the Accept header leaves out.
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)

# -- fetch ---------------------------------------------------------------


def fetch(ctx: Context, w: Workload) -> Row:
    """``dist fetch`` vs ``skopeo copy docker:// oci:``, with curl's floor."""

    def ours() -> Sample:
        return _dist_fetch(ctx, w)

    def skopeo() -> Sample:
        oci = ctx.fresh("skopeo-oci")
        argv = ["skopeo", "copy", "--all", "--src-tls-verify=false"]
        try:
            return run([*argv, f"docker://{w.ref}", f"oci:{oci}:{w.tag}"])
        finally:
            _rm(oci)

    def curl() -> Sample:
        # One process, one connection reused for every object in turn.
        argv = ["curl", "-s", "-f", "-H", "Accept: " + ", ".join(MANIFEST_TYPES)]
        for url in w.urls():
            argv += ["-o", "/dev/null", url]
        return run(argv)

    # One connection is a floor on loopback, not on a link that caps each
    # connection: there the row's floor is the link's (``ours/link``).
    floor = curl if ctx.has("curl") and ctx.profile is None else None
    o, p, c = _interleave(ctx, [ours, skopeo if ctx.has("skopeo") else None, floor])
    note = "" if ctx.has("skopeo") else "skopeo not installed"
    return Row("fetch", w.name, "skopeo", median_sample(o), _med(p), _med(c), note=note)


def _dist_fetch(ctx: Context, w: Workload) -> Sample:
    """``dist fetch`` of every platform into a brand-new store."""
    store = ctx.fresh("dist-store")
    try:
        argv = [*ctx.dist, "--root", str(store), "fetch", w.ref, "--all-platforms", "-q"]
        return run(argv, env=ctx.env)
    finally:
        _rm(store)


# -- unpack (skipped with a note while `dist unpack` is missing) ---------


def unpack(ctx: Context, w: Workload) -> Row | None:
    """``dist unpack REF DIR`` from a warm store vs ``umoci unpack`` of an
    OCI layout: both start from local content, so this times the apply."""
    if w.image.is_index:
        return None  # umoci unpacks one manifest; a platform pick is another bench
    store = ctx.fresh("unpack-store")
    run([*ctx.dist, "--root", str(store), "fetch", w.ref, "-q"], env=ctx.env)
    layout = w.layout(ctx.scratch)
    phases: dict[str, list[float]] = {"downloadSeconds": [], "applySeconds": []}

    def ours() -> Sample:
        dest = ctx.fresh("dist-rootfs")
        try:
            s = run(
                [*ctx.dist, "--root", str(store), "unpack", w.ref, str(dest), "--json"],
                env=ctx.env,
            )
        finally:
            _rm(dest)
        _collect_phases(s.stdout, phases)
        return s

    def umoci() -> Sample:
        bundle = ctx.fresh("umoci-bundle")
        try:
            return run(["umoci", "unpack", "--image", f"{layout}:{w.tag}", str(bundle)])
        finally:
            _rm(bundle)

    try:
        o, p = _interleave(ctx, [ours, umoci if ctx.has("umoci") else None])
    finally:
        _rm(store)
    extra = {k: sorted(v)[len(v) // 2] for k, v in phases.items() if v}
    return Row("unpack", w.name, "umoci", median_sample(o), _med(p), extra=extra)


def _collect_phases(stdout: bytes, into: dict[str, list[float]]) -> None:
    # `dist unpack --json` reports its phases; the last JSON line is the summary.
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            for k, v in into.items():
                if isinstance(doc.get(k), int | float):
                    v.append(float(doc[k]))
            return


# -- push (skipped with a note while `dist push` is missing) -------------


def push(ctx: Context, w: Workload) -> Row | None:
    """``dist push NAME REF`` from the store vs ``skopeo copy oci: docker://``,
    each run into a brand-new registry so nothing is already there to skip
    or mount."""
    store = ctx.fresh("push-store")
    run([*ctx.dist, "--root", str(store), "fetch", w.ref, "--all-platforms", "-q"], env=ctx.env)
    layout = w.layout(ctx.scratch)

    def into_fresh_registry(
        argv_for: Callable[[str], list[str]], env: dict[str, str] | None = None
    ) -> Sample:
        reg = Registry(ctx.fresh("push-registry"), log_level="error")
        reg.start()
        relay = NetRelay(reg.host, ctx.profile).start() if ctx.profile else None
        try:
            host = relay.host if relay else reg.host
            return run(argv_for(f"{host}/{w.repo}:{w.tag}"), env=env)
        finally:
            if relay is not None:
                relay.stop()
            reg.stop()
            _rm(reg.workdir)

    def ours() -> Sample:
        return into_fresh_registry(
            lambda dest: [*ctx.dist, "--root", str(store), "push", w.ref, dest, "-q"], ctx.env
        )

    def skopeo() -> Sample:
        argv = ["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:{w.tag}"]
        return into_fresh_registry(lambda dest: [*argv, f"docker://{dest}"])

    try:
        o, p = _interleave(ctx, [ours, skopeo if ctx.has("skopeo") else None])
    finally:
        _rm(store)
    return Row("push", w.name, "skopeo", median_sample(o), _med(p))


# -- containerd: ctr content fetch / ctr images pull ---------------------


@contextlib.contextmanager
def _containerd(ctx: Context, comparison: str) -> Iterator[Containerd | None]:
    """A daemon of our own for one comparison on one workload (fresh root,
    stopped by PID on the way out), or None with a one-line note once per
    comparison if containerd cannot run here."""
    daemon: Containerd | None = None
    if ctx.containerd_unavailable is None:
        try:
            daemon = Containerd(ctx.fresh("containerd")).start()
        except ContainerdUnavailable as e:
            ctx.containerd_unavailable = str(e)
    if daemon is None:
        if comparison not in ctx.skips_logged:
            ctx.skips_logged.add(comparison)
            ctx.log(
                f"{comparison}: skipped: containerd cannot run here: {ctx.containerd_unavailable}"
            )
        yield None
        return
    ctx.log(f"containerd {daemon.version} (pid {daemon.pid}), snapshotter {daemon.snapshotter}")
    try:
        yield daemon
    finally:
        daemon.stop()


class _CtrRuns:
    """Runs ctr against the daemon, each in a namespace of its own, and
    cleans up after each so the next starts cold. The peer's sample adds the
    daemon's share: CPU = ctr + daemon's CPU delta; peak RSS = ctr's peak +
    the daemon's VmHWM reset just before the run (the sum of two peaks, an
    upper bound of their joint peak)."""

    def __init__(self, ctx: Context, daemon: Containerd, ref: str) -> None:
        self.ctx, self.daemon, self.ref = ctx, daemon, ref
        self.parts: dict[str, list[float]] = {
            "ctrCpuSeconds": [],
            "containerdCpuSeconds": [],
            "ctrRssMB": [],
            "containerdPeakRssMB": [],
        }
        self.daemon_rss_counted = True

    def run(self, *args: str) -> Sample:
        ns = self.ctx.fresh("ns").name
        s, daemon_cpu, daemon_rss = self.daemon.measure(self.daemon.ctr(ns, *args, self.ref))
        self.daemon.clean(ns, self.ref)
        self.parts["ctrCpuSeconds"].append(s.cpu)
        self.parts["containerdCpuSeconds"].append(daemon_cpu)
        self.parts["ctrRssMB"].append(s.rss_mb)
        if daemon_rss is None:
            self.daemon_rss_counted = False
        else:
            self.parts["containerdPeakRssMB"].append(daemon_rss)
        return Sample(wall=s.wall, cpu=s.cpu + daemon_cpu, rss_mb=s.rss_mb + (daemon_rss or 0.0))

    def extra(self) -> dict[str, float]:
        """Medians of the peer's parts; also logged, as the table shows sums."""
        ex = {k: statistics.median(v) for k, v in self.parts.items() if v}
        daemon_rss = ex.get("containerdPeakRssMB")
        self.ctx.log(
            f"  ctr side: CPU ctr {ex['ctrCpuSeconds']:.2f} s + containerd"
            f" {ex['containerdCpuSeconds']:.2f} s; peak RSS ctr {ex['ctrRssMB']:.0f} MB"
            + (f" + containerd {daemon_rss:.0f} MB" if daemon_rss is not None else "")
        )
        return ex

    def note(self) -> str:
        rss = "ctr + daemon VmHWM" if self.daemon_rss_counted else "ctr only (daemon's not counted)"
        return (
            f"containerd {self.daemon.version}, snapshotter {self.daemon.snapshotter};"
            f" peer CPU = ctr + daemon; peer RSS = {rss}"
        )


def fetch_ctr(ctx: Context, w: Workload) -> Row | None:
    """``dist fetch`` vs ``ctr content fetch --all-platforms`` into a
    bench-started containerd, whose content store is emptied after each run."""
    with _containerd(ctx, "fetch-ctr") as daemon:
        if daemon is None:
            return None
        runs = _CtrRuns(ctx, daemon, w.ref)

        def ours() -> Sample:
            return _dist_fetch(ctx, w)

        def ctr() -> Sample:
            return runs.run("content", "fetch", "--plain-http", "--all-platforms")

        o, p = _interleave(ctx, [ours, ctr])
        return Row(
            "fetch-ctr",
            w.name,
            "ctr",
            median_sample(o),
            _med(p),
            extra=runs.extra(),
            note=runs.note(),
        )


def dist_unpack(ctx: Context, w: Workload) -> Sample:
    """``dist unpack REF DIR --json`` into a fresh store and directory."""
    store, dest = ctx.fresh("dist-store"), ctx.fresh("dist-rootfs")
    try:
        return run([*ctx.dist, "--root", str(store), "unpack", w.ref, str(dest), "--json"],
                   env=ctx.env)  # fmt: skip
    finally:
        _rm(store, dest)


def ctr_pull(runs: _CtrRuns, daemon: Containerd) -> Sample:
    """``ctr images pull`` into the daemon's snapshotter (cleaned after)."""
    return runs.run("images", "pull", "--plain-http", "--snapshotter", daemon.snapshotter)


def pull_unpack_ctr(ctx: Context, w: Workload) -> Row | None:
    """``dist unpack REF DIR`` from an empty store (fetch + apply) vs ``ctr
    images pull`` (fetch, then unpack into the snapshotter), this machine's
    platform on both sides."""
    with _containerd(ctx, "pull-unpack-ctr") as daemon:
        if daemon is None:
            return None
        runs = _CtrRuns(ctx, daemon, w.ref)
        phases: dict[str, list[float]] = {"downloadSeconds": [], "applySeconds": []}

        def ours() -> Sample:
            s = dist_unpack(ctx, w)
            _collect_phases(s.stdout, phases)
            return s

        o, p = _interleave(ctx, [ours, lambda: ctr_pull(runs, daemon)])
        extra = {k: statistics.median(v) for k, v in phases.items() if v} | runs.extra()
        peer = f"ctr/{daemon.snapshotter}"
        return Row(
            "pull-unpack-ctr",
            w.name,
            peer,
            median_sample(o),
            _med(p),
            extra=extra,
            note=runs.note(),
        )


# The order here is the order of the table.
COMPARISONS: dict[str, Comparison] = {
    "fetch": fetch,
    "unpack": unpack,
    "push": push,
    "fetch-ctr": fetch_ctr,
    "pull-unpack-ctr": pull_unpack_ctr,
}


def run_all(
    ctx: Context, names: Sequence[str], workloads: Sequence[Workload]
) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    failures: list[str] = []
    for name in names:
        if ctx.profile is not None and name in LOCAL_ONLY:
            continue
        for w in workloads:
            what = f"{name} {w.name}" + (f" @{ctx.network}" if ctx.profile else "")
            ctx.log(f"{what} …")
            try:
                row = COMPARISONS[name](ctx, w)
            except CommandFailed as e:
                failures.append(f"{what}: {e}")
                ctx.log(f"{what}: FAILED: {e}")
                continue
            if row is not None:
                rows.append(_on_network(ctx, w, row))
    return rows, failures


# Comparisons that do not touch the network: run on loopback only.
LOCAL_ONLY = frozenset({"unpack"})


def _on_network(ctx: Context, w: Workload, row: Row) -> Row:
    """The row labelled with its network; where the link has a total cap,
    the time the image's bytes need at that rate (no client can beat it)."""
    extra = dict(row.extra)
    if ctx.profile is not None and ctx.profile.total_rate:
        floor = w.compressed_bytes / ctx.profile.total_rate
        if floor >= 0.25:  # below that, round trips are all there is to it
            extra["linkFloorSeconds"] = floor
    return dataclasses.replace(row, network=ctx.network, extra=extra)
