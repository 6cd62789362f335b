"""containerd's list filters, the part clients use: ``field==v``, ``field!=v``,
``field~=regexp`` and a bare ``field`` (present), joined by ``,`` (and);
several filters in one request are or-ed. Field paths are dotted, and a
segment may be quoted (``labels."io.example/x"==y``); values may be quoted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ocidist.errors import InvalidArgument
from ocidist.value import Value

# What a filter sees of an object: the value at a field path, or None.
Fields = Callable[[tuple[str, ...]], str | None]
Predicate = Callable[[Fields], bool]

_TOKEN = re.compile(
    r'\s*(?:(?P<quoted>"(?:[^"\\]|\\.)*")|(?P<op>==|!=|~=)|(?P<sep>[.,])|(?P<word>[^.,=!~"\s]+))'
)


class _Selector(Value):
    __slots__ = ("path", "op", "value", "pattern")
    path: tuple[str, ...]
    op: str  # "", "==", "!=", "~="
    value: str
    pattern: re.Pattern[str] | None

    def __init__(
        self, path: tuple[str, ...], op: str, value: str, pattern: re.Pattern[str] | None
    ) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "pattern", pattern)

    def test(self, fields: Fields) -> bool:
        got = fields(self.path)
        if self.op == "":
            return got is not None
        if self.op == "!=":
            return got != self.value
        if got is None:
            return False
        if self.op == "==":
            return got == self.value
        assert self.pattern is not None
        return self.pattern.search(got) is not None


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _parse(text: str) -> list[_Selector]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidArgument(f"invalid filter {text!r} at offset {pos}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    out: list[_Selector] = []
    i = 0
    while i < len(tokens):
        path: list[str] = []
        while True:
            if i >= len(tokens) or tokens[i][0] not in ("word", "quoted"):
                raise InvalidArgument(f"invalid filter {text!r}: expected a field name")
            kind, val = tokens[i]
            path.append(_unquote(val) if kind == "quoted" else val)
            i += 1
            if i < len(tokens) and tokens[i] == ("sep", "."):
                i += 1
                continue
            break
        op, value = "", ""
        if i < len(tokens) and tokens[i][0] == "op":
            op = tokens[i][1]
            i += 1
            # A bare value runs to the next comma, dots and all (digests, names).
            parts = []
            while i < len(tokens) and tokens[i] != ("sep", ","):
                kind, val = tokens[i]
                parts.append(_unquote(val) if kind == "quoted" else val)
                i += 1
            value = "".join(parts)
        try:
            pattern = re.compile(value) if op == "~=" else None
        except re.error as e:
            raise InvalidArgument(f"invalid filter {text!r}: {e}") from None
        out.append(_Selector(tuple(path), op, value, pattern))
        if i < len(tokens):
            if tokens[i] != ("sep", ","):
                raise InvalidArgument(f"invalid filter {text!r}: expected ','")
            i += 1
    return out


def compile_filters(filters: Sequence[str]) -> Predicate:
    """A predicate true when any filter matches (all when there are none)."""
    parsed = [_parse(f) for f in filters if f.strip()]
    if not parsed:
        return lambda fields: True
    return lambda fields: any(all(s.test(fields) for s in sels) for sels in parsed)
