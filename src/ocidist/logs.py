"""Debug logging that costs nothing until someone configures logging.

Importing ``logging`` is ~2 ms of every command's start-up. A message can only
be seen if some code imported and configured ``logging`` (its last-resort
handler prints warnings and above only), so while the module is not loaded
there is nobody to tell and nothing to do.
"""

from __future__ import annotations

import sys


def debug(logger: str, msg: str, *args: object) -> None:
    logging = sys.modules.get("logging")
    if logging is not None:
        # Arguments may be registry text (a URL, a status reason, an error):
        # escaped, so one record stays one line.
        from ocidist.text import escape

        shown = tuple(escape(a) if isinstance(a, str) else a for a in args)
        logging.getLogger(logger).debug(msg, *shown)
