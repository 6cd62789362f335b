"""The live progress display in a real terminal (tmux) of 60×8 and 120×30:
rows never wrap, the block never outgrows the screen, redraws leave no copies
in the scrollback, objects are labelled by kind, and there is a total line."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocidist.descriptor import Descriptor
from ocidist.digest import Digest
from ocidist.progress import TTYProgress
from tests.harness import FaultProxy, Registry, build_image, push_image

LAYERS = 10


@pytest.fixture(scope="module")
def tmux() -> str:
    path = shutil.which("tmux")
    if path is None:
        pytest.skip("tmux is not installed (run `make deps`)")
    return path


class Pane:
    """A detached tmux session of a given size on a server of our own."""

    def __init__(self, tmux: str, columns: int, lines: int, command: str, log: Path) -> None:
        self.tmux = tmux
        self.socket = f"ocidist-test-{uuid.uuid4().hex[:8]}"
        # The command waits until the pane's output is being logged.
        script = f"sleep 0.3; {command}; echo EXIT=$?; sleep 120"
        self._tmux("new-session", "-d", "-x", str(columns), "-y", str(lines), "-s", "t", script)
        self._tmux("set-option", "-t", "t", "history-limit", "5000")
        self._tmux("pipe-pane", "-t", "t", "-o", f"cat >> {log}")

    def _tmux(self, *args: str) -> str:
        proc = subprocess.run(
            [self.tmux, "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            timeout=30,
            check=True,
        )
        return proc.stdout.decode()

    def history(self) -> list[str]:
        """Every line of scrollback and screen, wrapped lines joined (-J)."""
        text = self._tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-", "-E", "-")
        return [ln.rstrip() for ln in text.splitlines()]

    def wait_for(self, marker: str, timeout: float = 90) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.history()
            if any(marker in ln for ln in lines):
                return lines
            time.sleep(0.2)
        raise AssertionError(f"{marker!r} not seen: {self.history()}")

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-L", self.socket, "kill-server"], capture_output=True, timeout=30
        )


@pytest.fixture(scope="module")
def slow_image(registry: Registry) -> Iterator[tuple[str, list[str]]]:
    """An image of 10 incompressible layers of 2.5 MB in its own repository
    (over 1 MiB: streamed to the store, with byte progress every MiB)."""
    layers = [{f"blob{i}": os.urandom(2_500_000)} for i in range(LAYERS)]
    image = build_image(layers)
    repo = "t/progress-tty/app"
    push_image(registry, repo, "v1", image)
    yield repo, [layer.blob.digest for layer in image.layers]


def _pull_in_pane(
    tmux: str,
    columns: int,
    lines: int,
    registry: Registry,
    slow_image: tuple[str, list[str]],
    tmp_path: Path,
) -> tuple[list[str], str]:
    repo, layer_digests = slow_image
    with FaultProxy(registry) as proxy:
        # Every layer stops for a while half-way: the display has time to
        # redraw many times with transfers in flight.
        for dgst in layer_digests:
            proxy.stall(1.2, f"/blobs/{dgst}", after_bytes=1_300_000)
        log = tmp_path / "pane.log"
        command = (
            f"{sys.executable} -m ocidist --root {tmp_path / 'root'} "
            f"pull {proxy.host}/{repo}:v1 --concurrency 4"
        )
        pane = Pane(tmux, columns, lines, command, log)
        try:
            history = pane.wait_for("EXIT=")
        finally:
            pane.close()
    return history, log.read_text(errors="replace")


def _check_common(history: list[str], raw: str, columns: int) -> list[str]:
    assert "EXIT=0" in history, history
    # Redrawn in place: one total line in the whole scrollback, however many
    # times it was drawn.
    totals = [ln for ln in history if ln.startswith("total")]
    assert len(totals) == 1, history
    # The display's rows never wrap: joined (-J) lines would be longer than
    # the pane. (The result on stdout after it, name and digest, may wrap.)
    block = history[: history.index(totals[0]) + 1]
    assert all(len(ln) < columns for ln in block), [ln for ln in block if len(ln) >= columns]
    assert f"{LAYERS + 2}/{LAYERS + 2} objects" in totals[0]
    # It really was redrawn while transfers were in flight.
    assert raw.count("\x1b[F") > 20, "no redraws seen"
    assert "%" in raw
    assert any(f"fetched {LAYERS + 2} objects" in ln for ln in history), history
    return totals


def test_progress_120x30_shows_every_object_with_its_kind(
    tmux: str, registry: Registry, slow_image: tuple[str, list[str]], tmp_path: Path
) -> None:
    history, raw = _pull_in_pane(tmux, 120, 30, registry, slow_image, tmp_path)
    _check_common(history, raw, 120)
    rows = [ln for ln in history if ln.split()[:1] in (["layer"], ["config"], ["manifest"])]
    assert [r.split()[0] for r in rows].count("layer") == LAYERS, history
    assert [r.split()[0] for r in rows].count("config") == 1
    assert [r.split()[0] for r in rows].count("manifest") == 1
    for dgst in slow_image[1]:  # each layer's row once: no copies left behind
        assert sum(f" {dgst[7:19]} " in ln for ln in history) == 1, (dgst, history)
    assert all("fetched" in r for r in rows)


def test_progress_60x8_is_a_compact_summary(
    tmux: str, registry: Registry, slow_image: tuple[str, list[str]], tmp_path: Path
) -> None:
    history, raw = _pull_in_pane(tmux, 60, 8, registry, slow_image, tmp_path)
    _check_common(history, raw, 60)
    summaries = [ln for ln in history if ln.startswith("done:")]
    assert len(summaries) == 1, history
    assert f"{LAYERS} layers" in summaries[0] and "config" in summaries[0]
    # The block (summary .. total) fits the 8-line pane with a line to spare.
    top = history.index(summaries[0])
    bottom = next(i for i, ln in enumerate(history) if ln.startswith("total"))
    assert bottom - top + 1 <= 7
    # While it ran, the busiest transfers showed up as rows of their own,
    # part-way through.
    assert "layer" in raw and "/s" in raw
    assert re.search(r" [1-9][0-9]\.[0-9]%", raw), "no partial progress drawn"


# The same rules without a terminal, on many sizes ---------------------------


def _desc(i: int, size: int, media_type: str) -> Descriptor:
    return Descriptor(media_type=media_type, digest=Digest("sha256", f"{i:064x}"), size=size)


@pytest.mark.parametrize(("columns", "lines"), [(20, 3), (40, 5), (60, 8), (80, 24), (200, 60)])
def test_lines_fit_every_size(columns: int, lines: int) -> None:
    display = TTYProgress(out=io.StringIO(), size=(columns, lines), interval=60)
    layer = "application/vnd.oci.image.layer.v1.tar+gzip"
    for i in range(30):
        d = _desc(i, 10_000_000 + i, layer)
        display.start(d, 0)
        display.update(d, 1_000_000 * (i % 7))
        if i % 3 == 0:
            display.done(d, "fetched")
    shown = display.lines()
    display.close()
    assert 1 <= len(shown) <= max(lines - 1, 1)
    assert all(len(ln) < columns for ln in shown), shown
    assert shown[-1].startswith("total")


def test_summary_counts_each_kind_in_plain_words() -> None:
    """A multi-level index pulled in a short pane: "2 indexes", "1 config"."""
    display = TTYProgress(out=io.StringIO(), size=(120, 4), interval=60)
    kinds = ["application/vnd.oci.image.index.v1+json"] * 2 + [
        "application/vnd.oci.image.config.v1+json"
    ]
    for i, media_type in enumerate(kinds):
        display.done(_desc(i, 100, media_type), "fetched")
    for i in range(3, 8):
        display.start(_desc(i, 1000, "application/vnd.oci.image.layer.v1.tar+gzip"), 0)
    summary = display.lines()[0]
    display.close()
    assert summary.startswith("done: 2 indexes, 1 config;"), summary
