"""How a trial ended, and the table of all of them.

A trial is *completed* (exit 0 and the result checked correct), *failed
cleanly* (non-zero exit, exactly one ``dist: …`` line ending stderr, no
traceback, within its time bound) or *unclean* (anything else: a traceback,
a hang, exit 0 with a wrong result). Orthogonally it may have left the store
*corrupted* (a committed blob whose bytes do not hash to its name) or *lost
data* (something committed or recorded before is gone). Corrupted and lost
must be 0; completed + failed cleanly must equal the trials.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["completed", "failed_cleanly", "unclean", "skipped"]


@dataclass(frozen=True)
class Run:
    """One finished ``dist`` process."""

    argv: tuple[str, ...]
    rc: int | None  # None: killed by us after its time bound
    stdout: str
    stderr: str
    seconds: float

    @classmethod
    def of(cls, proc: subprocess.Popen[bytes], out: bytes, err: bytes, secs: float) -> Run:
        rc = proc.returncode
        return cls(
            argv_of(proc), rc, out.decode(errors="replace"), err.decode(errors="replace"), secs
        )

    def error_line(self) -> str | None:
        """The single ``dist:`` line a clean failure ends with, or None."""
        if "Traceback" in self.stderr:
            return None
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("dist: ")]
        if len(lines) != 1 or not self.stderr.rstrip().endswith(lines[0]):
            return None
        return lines[0]

    def summary(self) -> str:
        tail = self.stderr.strip().splitlines()[-3:]
        return f"rc={self.rc} {self.seconds:.1f}s: {' | '.join(tail)[:300]}"


def argv_of(proc: subprocess.Popen[bytes]) -> tuple[str, ...]:
    args = proc.args
    if isinstance(args, list | tuple):
        return tuple(str(a) for a in args)
    return (str(args),)


def classify(run: Run, correct: bool, *, max_seconds: float | None = None) -> Outcome:
    if run.rc is None or (max_seconds is not None and run.seconds > max_seconds):
        return "unclean"
    if run.rc == 0:
        return "completed" if correct else "unclean"
    if run.rc in (1, 2) and run.error_line() is not None:
        return "failed_cleanly"
    return "unclean"


@dataclass
class Trial:
    kind: str
    outcome: Outcome
    corrupted: int = 0
    lost: int = 0
    note: str = ""  # why it is unclean, or what the fault was


@dataclass
class Tally:
    kind: str
    trials: int = 0
    completed: int = 0
    failed_cleanly: int = 0
    unclean: int = 0
    corrupted: int = 0
    lost: int = 0
    skipped: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def add(self, t: Trial) -> None:
        if t.outcome == "skipped":
            self.skipped = t.note
            return
        self.trials += 1
        if t.outcome == "completed":
            self.completed += 1
        elif t.outcome == "failed_cleanly":
            self.failed_cleanly += 1
        else:
            self.unclean += 1
        self.corrupted += t.corrupted
        self.lost += t.lost
        if t.outcome == "unclean" or t.corrupted or t.lost:
            self.problems.append(t.note)

    @property
    def ok(self) -> bool:
        return (
            self.corrupted == 0
            and self.lost == 0
            and self.completed + self.failed_cleanly == self.trials
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "trials": self.trials,
            "completed": self.completed,
            "failed_cleanly": self.failed_cleanly,
            "unclean": self.unclean,
            "corrupted": self.corrupted,
            "lost": self.lost,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 2),
            "problems": self.problems,
        }


HEADER = (
    "fault kind",
    "trials",
    "completed",
    "failed cleanly",
    "unclean",
    "corrupted",
    "lost data",
)


def table(tallies: Iterable[Tally]) -> str:
    rows = [list(HEADER)]
    notes = []
    for t in tallies:
        if t.skipped and not t.trials:
            rows.append([t.kind, "-", "-", "-", "-", "-", "-"])
            notes.append(f"{t.kind}: skipped: {t.skipped}")
            continue
        rows.append(
            [t.kind]
            + [
                str(v)
                for v in (t.trials, t.completed, t.failed_cleanly, t.unclean, t.corrupted, t.lost)
            ]
        )
        notes.extend(f"{t.kind}: {p}" for p in t.problems)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]

    def line(r: list[str]) -> str:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        return "| " + " | ".join(cells) + " |"

    out = [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows[1:]]
    return "\n".join(out + notes) + "\n"
