"""The bench's table (for people and BENCHMARKS.md) and its JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchlib.comparisons import Row
from benchlib.measure import Sample

HEADER = (
    "comparison",
    "net",
    "workload",
    "ours (s)",
    "peer",
    "peer (s)",
    "ours/peer",
    "curl (s)",
    "ours/curl",
    "CPU s",
    "peer CPU s",
    "RSS MB",
    "peer RSS MB",
    "ours/link",
)


def _s(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def _ratio(a: Sample, b: Sample | None) -> float | None:
    return None if b is None or b.wall <= 0 else a.wall / b.wall


def table(rows: Sequence[Row]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        link = r.extra.get("linkFloorSeconds")
        cells = (
            r.comparison,
            r.network,
            r.workload,
            _s(r.ours.wall),
            r.peer_name if r.peer is not None else f"({r.peer_name} missing)",
            _s(r.peer.wall if r.peer else None),
            _s(_ratio(r.ours, r.peer)),
            _s(r.floor.wall if r.floor else None),
            _s(_ratio(r.ours, r.floor)),
            _s(r.ours.cpu),
            _s(r.peer.cpu if r.peer else None),
            _s(r.ours.rss_mb, "{:.0f}"),
            _s(r.peer.rss_mb if r.peer else None, "{:.0f}"),
            _s(r.ours.wall / link if link else None),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sample(s: Sample | None) -> dict[str, float] | None:
    if s is None:
        return None
    return {"wall": round(s.wall, 4), "cpu": round(s.cpu, 4), "rssMB": round(s.rss_mb, 1)}


def to_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [
        {
            "comparison": r.comparison,
            "network": r.network,
            "workload": r.workload,
            "peer": r.peer_name,
            "ours": _sample(r.ours),
            "peerSample": _sample(r.peer),
            "curl": _sample(r.floor),
            "oursOverPeer": _ratio(r.ours, r.peer),
            "oursOverCurl": _ratio(r.ours, r.floor),
            "extra": r.extra,
            "note": r.note,
        }
        for r in rows
    ]
