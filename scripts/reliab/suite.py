"""The fault kinds, how many trials each gets, and running them."""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from reliab import concurrency, crash, network, push
from reliab.env import Env
from reliab.outcome import Tally, Trial

TrialFn = Callable[[Env, random.Random, int], "Trial | list[Trial]"]


@dataclass(frozen=True)
class Kind:
    name: str  # the table's "fault kind"
    key: str  # for --kinds
    run: TrialFn
    quick: int  # trials in --quick (0: not run)
    full: int
    what: str  # one line for docs/RELIABILITY.md


KINDS: Sequence[Kind] = (
    Kind(
        "drop manifest",
        "drop-manifest",
        network.drop_manifest,
        3,
        50,
        "connection closed (FIN or RST) at a random offset of manifest GETs, 1-3 times or always",
    ),
    Kind(
        "drop blob",
        "drop-blob",
        network.drop_blob,
        3,
        50,
        "connection closed at a random offset of a blob body, 1-3 times or always",
    ),
    Kind(
        "registry restart",
        "restart",
        network.registry_restart,
        1,
        10,
        "registry SIGKILLed mid-blob, down 0-6 s, restarted; failed pulls are rerun",
    ),
    Kind(
        "stall vs --timeout",
        "stall-timeout",
        network.stall_timeout,
        2,
        8,
        "server silent for 60 s (before headers or mid-body) under --timeout 1-2.5 s",
    ),
    Kind(
        "stall vs read timeout",
        "stall-read",
        network.stall_read,
        1,
        6,
        "one stall longer than a 1.5 s read timeout: retried/resumed, completes",
    ),
    Kind(
        "stall vs read timeout (30s)",
        "stall-read-30",
        partial(network.stall_read, read=30.0),
        0,
        1,
        "the same against the real 30 s read timeout",
    ),
    Kind(
        "429 with Retry-After",
        "429-ra",
        network.too_many_retry_after,
        1,
        10,
        "1-7 answers 429 with Retry-After (seconds or HTTP date) on the tag's manifest or a blob",
    ),
    Kind(
        "429 without Retry-After",
        "429",
        network.too_many_plain,
        1,
        10,
        "1-7 answers 429 without Retry-After",
    ),
    Kind(
        "429 Retry-After 1h vs --timeout",
        "429-long",
        network.retry_after_beyond_deadline,
        1,
        2,
        "Retry-After: 3600 under --timeout 3s: fails at once, no hour-long wait",
    ),
    Kind(
        "5xx burst",
        "5xx",
        network.server_errors,
        2,
        12,
        "1-7 answers 500/502/503/504; 'gave up after N attempts' must match the proxy's count",
    ),
    Kind(
        "SIGKILL dist fetch",
        "kill-fetch",
        crash.kill_fetch,
        2,
        25,
        "dist fetch killed at a random time or byte offset; verify, images ls, rerun",
    ),
    Kind(
        "SIGKILL dist content ingest",
        "kill-ingest",
        crash.kill_ingest,
        2,
        25,
        "dist content ingest killed after a random number of stdin pieces; rerun resumes",
    ),
    Kind(
        "SIGKILL dist apply",
        "kill-apply",
        crash.kill_apply,
        1,
        20,
        "dist apply killed at a random time; rerun over the partial tree gives the same tree",
    ),
    Kind(
        "SIGKILL dist unpack",
        "kill-unpack",
        crash.kill_unpack,
        1,
        20,
        "dist unpack killed at a random time or byte offset; verify, rerun --force, same tree",
    ),
    Kind(
        "disk full (tmpfs)",
        "disk-full",
        crash.disk_full,
        2,
        10,
        "pull into a tmpfs full from the first write up to 99 % of the image; on the full disk "
        "images ls and prune --ingests free all but what is recorded; a second pull with room",
    ),
    Kind(
        "drop upload",
        "drop-upload",
        push.drop_upload,
        2,
        30,
        "dist push: the connection of a random POST/PATCH/PUT upload request cut (FIN or RST)",
    ),
    Kind(
        "SIGKILL dist push",
        "kill-push",
        push.kill_push,
        1,
        20,
        "dist push killed at a random time; source store verifies, rerun pushes a correct image",
    ),
    Kind(
        "8 concurrent pulls, one root",
        "concurrent",
        concurrency.concurrent_pulls,
        1,
        5,
        "8 processes pull 4 overlapping images into one root; repeated; trials = processes",
    ),
)


def run_trial(kind: Kind, env: Env, rng: random.Random, i: int) -> Trial | list[Trial]:
    """One trial; when the harness's own setting up or checking fails (an
    exception, not a verdict), the trial is unclean with the reason, and the
    run goes on: a crash here would leave no table at all."""
    try:
        return kind.run(env, rng, i)
    except Exception as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        at = f"{Path(where.filename).name}:{where.lineno}"
        note = f"harness check failed: {type(e).__name__}: {e} ({at})"
        try:
            env.recover()
        except Exception as again:
            note += f"; recovering failed too: {type(again).__name__}: {again}"
        return Trial(kind.name, "unclean", note=note)


def run_kinds(
    env: Env,
    kinds: Sequence[Kind],
    *,
    quick: bool,
    trials: int | None,
    seed: int,
    log: Callable[[str], None],
) -> list[Tally]:
    tallies = []
    for kind in kinds:
        n = trials if trials is not None else (kind.quick if quick else kind.full)
        tally = Tally(kind.name)
        start = time.monotonic()
        for i in range(n):
            rng = random.Random(f"{seed}-{kind.key}-{i}")
            result = run_trial(kind, env, rng, i)
            for t in result if isinstance(result, list) else [result]:
                tally.add(t)
                if t.outcome == "unclean" or t.corrupted or t.lost:
                    log(f"  {kind.name} #{i}: {t.outcome}: {t.note}")
            if tally.skipped and not tally.trials:
                break
        tally.seconds = time.monotonic() - start
        log(
            f"{kind.name}: {tally.trials} trials, {tally.completed} completed, "
            f"{tally.failed_cleanly} failed cleanly, {tally.unclean} unclean "
            f"({tally.seconds:.1f}s)"
        )
        tallies.append(tally)
    return tallies
