"""The shared helpers for remote text: ``text.escape`` and ``jsondata.loads``."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocidist import jsondata
from ocidist.errors import InvalidContent
from ocidist.text import escape, quote


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("\x1b[31mred\x1b]0;title\x07", "\\x1b[31mred\\x1b]0;title\\x07"),
        ("nul\x00", "nul\\x00"),
        ("c1 \x9b csi", "c1 \\x9b csi"),
        ("bidi \u202e evil", "bidi \\u202e evil"),
        ("sep \u2028 \u2029", "sep \\u2028 \\u2029"),
        ("lone \ud800", "lone \\ud800"),
        ("ünïcödé 日本", "ünïcödé 日本"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_escape(raw: str, shown: str) -> None:
    assert escape(raw) == shown
    assert escape(shown) == shown  # idempotent: escaping twice changes nothing


@given(st.text())
def test_escaped_text_is_one_printable_line(text: str) -> None:
    out = escape(text)
    assert out.isprintable()
    out.encode("utf-8")  # no lone surrogate left to raise on output


def test_quote_shortens() -> None:
    assert quote("x" * 1000, 10) == "x" * 10 + "…"
    assert quote("\n" * 1000, 3) == "\\n\\n\\n…"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"a":' + b"9" * 5000 + b"}", "a number of 5000 digits"),
        (b'{"a":-' + b"9" * 101 + b"}", "digits"),
        (b'{"a":1e400}', "out of range"),
        (b'{"a":NaN}', "NaN is not a JSON number"),
        (b'{"a":Infinity}', "Infinity is not a JSON number"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"a":1,"a":2}', "key a appears twice"),
        (b'{"k\\n\\u001b":1,"k\\n\\u001b":2}', "key k\\n\\x1b appears twice"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b'{"a":', "Expecting value at line 1 column 6"),
        (b"", "Expecting value"),
    ],
)
def test_loads_refuses_in_words(data: bytes, why: str) -> None:
    with pytest.raises(InvalidContent) as info:
        jsondata.loads(data, "thing")
    msg = str(info.value)
    assert msg.startswith("thing is not valid JSON (") and why in msg, msg
    assert msg.isprintable()


def test_loads_keeps_what_json_means() -> None:
    doc = {"a": [1, -2, 3.5, 2**63 - 1, True, None, "x\u00e9"], "b": {"c": {}}}
    assert jsondata.loads(json.dumps(doc).encode(), "doc") == doc
    assert jsondata.loads(json.dumps(doc).encode("utf-16"), "doc") == doc


def test_load_object_wants_an_object() -> None:
    with pytest.raises(InvalidContent, match="thing is not a JSON object"):
        jsondata.load_object(b"[1]", "thing")


@given(st.binary(max_size=300))
def test_loads_raises_only_invalid_content(data: bytes) -> None:
    try:
        jsondata.loads(data, "fuzz")
    except InvalidContent as e:
        assert str(e).isprintable()


def test_debug_lines_escape_every_text_argument() -> None:
    """`--debug` records stay one line: string arguments were escaped, an
    exception passed as one (its message may quote registry text) was not."""
    import io

    from ocidist import logs

    sink = io.StringIO()
    logs.enable(sink)
    try:
        logs.debug("t", "%s: failed (%s) after %d", "a\nb", ValueError("c\x1b]0;t\x07"), 3)
    finally:
        logs._sink = None
    assert sink.getvalue() == "dist: debug: a\\nb: failed (c\\x1b]0;t\\x07) after 3\n"
