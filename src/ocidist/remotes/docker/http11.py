"""HTTP/1.1 message syntax (RFC 9112) for the registry client, strict, by hand.

Pure functions on bytes; httpconn.py owns the socket, the clock and the
receive buffer and calls these for every request head it sends and every
response head, chunk-size line and trailer block it reads.

Why not h11, which framed these exchanges before: start-up. Importing h11
imports ``dataclasses`` (and with it ``inspect``, ``ast``, ``dis``,
``tokenize``), creates its event classes and compiles its regular
expressions: +18 ms of CPU on every ``dist resolve`` and ``dist fetch``,
a third more than the command took before (docs/BENCHMARKS.md, "Start-up
after the review"). The part of HTTP/1.1 a client needs is small, and this
module keeps every refusal h11 made (tests/test_http11.py compares the two
on generated answers) plus a few of its own:

- a request method must be a token, its target visible ASCII, each field
  name a token and each value free of NUL, CR, LF and leading or trailing
  blanks, all ASCII: nothing a caller passes can split the request;
- an answer's head is a status line ``HTTP/1.x NNN [reason]`` and field
  lines ``token ":" OWS value OWS``, every line ended by CRLF (a bare CR or
  LF is refused; h11 took a bare LF as a line end), at most ``MAX_FIELDS``
  fields; obs-fold continuation lines are joined with a space, as RFC 9112
  §5.2 asks of a user agent (and as h11 did), inside the same size cap;
- ``Transfer-Encoding`` only as one field that says ``chunked``;
  ``Content-Length`` 1-20 ASCII digits, repeated (in one field or several)
  only with the same value;
- a chunk-size line is 1-20 hex digits, extensions ignored;
- a trailer block's lines as a head's, its framing fields (which mean
  nothing there) held to the same rules, as h11 held them.

Plain loops over bytes and ``bytes.translate`` tables, no ``re``: compiling
patterns would be start-up again.
"""

from __future__ import annotations

# The head of an answer (status line + fields, with its blank line) and a
# trailer block; also the longest chunk-size line.
MAX_HEAD = 64 * 1024
MAX_FIELDS = 100


class Protocol(Exception):
    """The peer's answer is not HTTP/1.x we can frame (or breaks a cap)."""


# Character classes as the set of bytes ``bytes.translate(None, delete)``
# removes: what is left over is what does not belong.
_DIGITS = b"0123456789"
_HEX = _DIGITS + b"abcdefABCDEF"
_TCHAR = _DIGITS + b"!#$%&'*+-.^_`|~abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VCHAR = bytes(range(0x21, 0x7F))
# A field value (and a reason phrase): visible characters, obs-text, blanks
# and, as h11 allowed (real cookies hold \x01), other control characters;
# never NUL, CR, LF, VT or FF, which parsers downstream treat as separators.
_VALUE = bytes(b for b in range(256) if b not in b"\x00\r\n\x0b\x0c")
_BLANKS = b" \t"


def _is_token(data: bytes) -> bool:
    return bool(data) and not data.translate(None, _TCHAR)


def _short(data: bytes | bytearray) -> str:
    """A hostile line, quoted short: it may be 64 KiB long."""
    return repr(bytes(data[:40])) + ("..." if len(data) > 40 else "")


# -- requests ------------------------------------------------------------------


def _ascii(text: str, what: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"non-ASCII {what}") from None


def request_head(method: str, target: str, fields: list[tuple[str, str]]) -> bytes:
    """The request line and header block, or ValueError for anything that
    could split the request or that a server could read another way. The
    message names the field, never its value: that may be a credential."""
    m = _ascii(method, "method")
    if not _is_token(m):
        raise ValueError("illegal method characters")
    t = _ascii(target, "target")
    if not t or t.translate(None, _VCHAR):
        raise ValueError("illegal target characters")
    lines = [b"%s %s HTTP/1.1\r\n" % (m, t)]
    for name, value in fields:
        n = _ascii(name, "header name")
        if not _is_token(n):
            raise ValueError(f"illegal header name {_short(n)}")
        v = _ascii(value, f"value in header {name}")
        if v.strip(_BLANKS) != v or v.translate(None, _VALUE):
            raise ValueError(f"illegal value in header {name}")
        lines.append(b"%s: %s\r\n" % (n, v))
    lines.append(b"\r\n")
    return b"".join(lines)


def request_framing(fields: list[tuple[str, str]]) -> int | None:
    """How the request body is framed: its declared length, or None when
    chunked. ValueError for a length that is not one, a transfer coding we
    do not send, or both."""
    lengths = {v for n, v in fields if n.lower() == "content-length"}
    chunked = [v for n, v in fields if n.lower() == "transfer-encoding"]
    if chunked:
        if chunked != ["chunked"] or lengths:
            raise ValueError("a request body is framed by Transfer-Encoding: chunked alone")
        return None
    if not lengths:
        return 0
    if len(lengths) > 1:
        raise ValueError("conflicting Content-Length headers")
    length = _length(lengths.pop())
    if length is None:
        raise ValueError("bad Content-Length")
    return length


# -- answers -------------------------------------------------------------------


class Head:
    """A parsed status line and header block, with its body's framing:
    ``length`` (Content-Length) and ``chunked`` (Transfer-Encoding), both
    validated whatever the status (h11 did too: a bad length on a 204 or
    HEAD answer is still a bad answer)."""

    __slots__ = ("chunked", "fields", "length", "status", "version")

    def __init__(
        self,
        version: bytes,
        status: int,
        fields: list[tuple[str, str]],
        length: int | None,
        chunked: bool,
    ) -> None:
        self.version = version
        self.status = status
        self.fields = fields
        self.length = length
        self.chunked = chunked


def starts_like_http(data: bytes | bytearray) -> bool:
    """Whether ``data`` may be the start of a status line: every answer
    starts "HTTP/", so anything else (an SSH banner, an HTTP/2 preface, a
    TLS alert) is refused at its first bytes, not when a line never ends."""
    start = bytes(data[:5])
    return b"HTTP/".startswith(start)


def parse_head(block: bytes | bytearray) -> Head:
    """The head of an answer: ``block`` is everything before its blank
    line (status line and field lines, joined by CRLF)."""
    _line_ends(block, "head")
    lines = bytes(block).split(b"\r\n")
    line = lines[0]
    # HTTP-version SP 3DIGIT [SP reason-phrase]; the reason may be missing
    # altogether (some servers send "HTTP/1.1 200"), as h11 allowed.
    if not (
        len(line) >= 12
        and line.startswith(b"HTTP/1.")
        and line[7:8].isdigit()
        and line[8:9] == b" "
        and line[9:12].isdigit()
        and line[9:10] != b"0"
        and (len(line) == 12 or line[12:13] == b" ")
        and not line[13:].translate(None, _VALUE)
    ):
        raise Protocol(f"illegal status line: {_short(line)}")
    fields = parse_fields(lines[1:], "header block")
    length, chunked = _framing(fields)
    if length is not None:
        # One Content-Length field holding the one value ("2, 2" and a
        # repeated field are that length), as h11 handed it on: readers of
        # the header see a number.
        first = True
        kept = []
        for name, value in fields:
            if name.lower() == "content-length":
                if not first:
                    continue
                first = False
                value = value.split(",", 1)[0].strip(" \t")
            kept.append((name, value))
        fields = kept
    return Head(line[5:8], int(line[9:12]), fields, length, chunked)


def parse_trailers(block: bytes | bytearray) -> list[tuple[str, str]]:
    """A trailer block (everything before its blank line; empty for none)."""
    if not block:
        return []
    _line_ends(block, "trailer block")
    fields = parse_fields(bytes(block).split(b"\r\n"), "trailer block")
    # Framing fields held to the head's rules, as h11 held them: a trailer
    # saying "Transfer-Encoding: gzip" is a peer another parser may read
    # differently, even if nothing here uses trailers.
    _framing(fields)
    return fields


def _line_ends(block: bytes | bytearray, what: str) -> None:
    # Lines end with CRLF only: a bare CR or LF is where parsers disagree
    # about where a line (and so a field, or the head) ends.
    crlf = block.count(b"\r\n")
    if block.count(b"\r") != crlf or block.count(b"\n") != crlf:
        raise Protocol(f"bare CR or LF in the {what}")


def parse_fields(lines: list[bytes], what: str) -> list[tuple[str, str]]:
    """Field lines as (name, value) text (latin-1: obs-text is kept, not
    decoded), continuation lines joined, at most ``MAX_FIELDS``."""
    joined: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            # obs-fold: RFC 9112 §5.2 has a user agent replace it with SP.
            # Pieces are joined once, below: appending to a growing value
            # line by line would copy it once per line.
            if not joined:
                raise Protocol(f"continuation line at the start of the {what}")
            joined[-1].append(line.lstrip(_BLANKS))
            continue
        joined.append([line])
        if len(joined) > MAX_FIELDS:
            raise Protocol(f"{what} of more than {MAX_FIELDS} fields")
    fields = []
    for parts in joined:
        name, colon, value = b" ".join(parts).partition(b":")
        if not colon:
            raise Protocol(f"{what}: a line without a colon: {_short(name)}")
        # A token right up to the colon: "Name : v" is refused (RFC 9112 §5.1),
        # since a proxy might read "Name " as another field than "Name".
        if not _is_token(name):
            raise Protocol(f"{what}: illegal field name {_short(name)}")
        value = value.strip(_BLANKS)
        if value.translate(None, _VALUE):
            raise Protocol(f"{what}: illegal value in field {name.decode('ascii')}")
        fields.append((name.decode("ascii"), value.decode("latin-1")))
    return fields


def _framing(fields: list[tuple[str, str]]) -> tuple[int | None, bool]:
    """(Content-Length, chunked) of a head, refusing what cannot be framed
    one way only."""
    codings = [v for n, v in fields if n.lower() == "transfer-encoding"]
    if len(codings) > 1:
        raise Protocol("multiple Transfer-Encoding fields")
    # Only chunked alone: a server that compresses a body says so in
    # Content-Encoding; "gzip, chunked" would leave us a body we cannot use.
    if codings and codings[0].lower() != "chunked":
        raise Protocol(f"unsupported Transfer-Encoding {codings[0][:40]!r}")
    lengths = {
        part.strip(" \t")
        for n, v in fields
        if n.lower() == "content-length"
        for part in v.split(",")
    }
    if len(lengths) > 1:
        raise Protocol("conflicting Content-Length fields")
    length = None
    if lengths:
        length = _length(lengths.pop())
        if length is None:
            raise Protocol("bad Content-Length")
    return length, bool(codings)


def chunk_size(line: bytes | bytearray) -> int:
    """The size on a chunk-size line (without its CRLF): 1-20 hex digits,
    then extensions (ignored) or blanks."""
    size, semi, ext = bytes(line).partition(b";")
    if not semi:
        size = size.rstrip(_BLANKS)
    elif ext.translate(None, _VALUE):
        raise Protocol(f"illegal chunk extension: {_short(ext)}")
    if not (0 < len(size) <= 20) or size.translate(None, _HEX):
        raise Protocol(f"illegal chunk size line: {_short(line)}")
    return int(size, 16)


def _length(text: str) -> int | None:
    """1-20 ASCII digits, nothing else (not even the Unicode blanks
    ``str.strip`` would take off a latin-1 value), or None."""
    if 0 < len(text) <= 20 and text.isascii() and text.isdigit():
        return int(text)
    return None


def tokens(values: list[str]) -> set[str]:
    """The lower-cased tokens of a comma-separated field (all its lines)."""
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}
