"""Debug logging that costs nothing until someone asks for it.

Importing ``logging`` is ~2 ms of every command's start-up. A message can only
be seen if some code imported and configured ``logging`` (its last-resort
handler prints warnings and above only), or if `dist --debug` turned the
trace on (``enable``: one ``dist: debug: …`` line per message on stderr);
otherwise there is nobody to tell and nothing to do.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TextIO

_sink: TextIO | None = None


def enable(stream: TextIO) -> None:
    """Write every debug message to ``stream`` (`dist --debug`)."""
    global _sink
    _sink = stream


def enabled() -> bool:
    return _sink is not None or "logging" in sys.modules


def debug(logger: str, msg: str, *args: object) -> None:
    logging = sys.modules.get("logging")
    if _sink is not None:
        from ocidist.text import escape

        shown = tuple(escape(a) if isinstance(a, str) else a for a in args)
        # A closed stderr must not fail the command.
        with contextlib.suppress(OSError, ValueError):
            _sink.write(f"dist: debug: {msg % shown}\n")
    if logging is not None:
        # Arguments may be registry text (a URL, a status reason, an error):
        # escaped, so one record stays one line.
        from ocidist.text import escape

        shown = tuple(escape(a) if isinstance(a, str) else a for a in args)
        logging.getLogger(logger).debug(msg, *shown)
