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
    if _sink is None and logging is None:
        return
    from ocidist.text import escape

    # Arguments may be registry text (a URL, a status reason, an error whose
    # message quotes one): escaped, so one record stays one line.
    shown = tuple(escape(str(a)) if isinstance(a, str | BaseException) else a for a in args)
    if _sink is not None:
        # A closed stderr must not fail the command.
        with contextlib.suppress(OSError, ValueError):
            _sink.write(f"dist: debug: {msg % shown}\n")
    if logging is not None:
        logging.getLogger(logger).debug(msg, *shown)
