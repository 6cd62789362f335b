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
        logging.getLogger(logger).debug(msg, *args)
