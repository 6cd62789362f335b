"""Decoding JSON that came from a registry or an image.

``json.loads`` on hostile bytes fails in ways that are not one clear line:
an integer of thousands of digits raises the interpreter's own advice
(``sys.set_int_max_str_digits``), deep nesting raises ``RecursionError``,
``NaN``/``Infinity`` are accepted though JSON has no such numbers, and a key
given twice silently keeps the last value — where another tool may keep
the first and see a different image. ``loads`` refuses all of these with an
``InvalidContent`` that says what and why.
"""

from __future__ import annotations

import json
from typing import Any

from ocidist.errors import InvalidContent
from ocidist.text import quote

# Far beyond any size or count (int64 has 19 digits), far below the
# interpreter's 4300-digit conversion limit.
MAX_INT_DIGITS = 100


class _Refused(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Refused(f"key {quote(k, 80)} appears twice in one object")
            seen.add(k)
    return obj


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"a number of {len(text)} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"a number out of range ({quote(text, 40)})")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def loads(data: bytes | str, what: str) -> Any:
    """The JSON value in ``data``; ``what`` names it in the error."""
    try:
        return json.loads(
            data,
            object_pairs_hook=_object,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except _Refused as e:
        why = str(e)
    except json.JSONDecodeError as e:
        why = f"{e.msg} at line {e.lineno} column {e.colno}"
    except UnicodeDecodeError:
        why = "not UTF-8 text"
    except RecursionError:
        why = "nested too deeply"
    except ValueError as e:  # anything else the decoder refuses, in its words
        why = quote(str(e), 120)
    raise InvalidContent(f"{what} is not valid JSON ({why})")


def load_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Like ``loads``, for a document that must be a JSON object."""
    obj = loads(data, what)
    if not isinstance(obj, dict):
        raise InvalidContent(f"{what} is not a JSON object")
    return obj
