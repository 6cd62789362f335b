"""Numbers from text take ASCII digits only, wherever the text comes from.

``"²".isdigit()`` is True and ``int("²")`` raises: every place that checked
``isdigit()`` and then called ``int()`` turned a registry's (or a user's)
``²`` into a traceback (issue 15: Content-Length, Retry-After). This pins
the class, not only the instances the issue saw."""

from __future__ import annotations

import argparse

import pytest

from ocidist.cli.context import parse_size
from ocidist.images.platforms import _version
from ocidist.remotes.docker.httpconn import decimal
from ocidist.remotes.docker.retry import parse_retry_after

ODD = ["²", "١٢", "½", "１２", "1²", "", " ", "-1", "+1", "1.0", "0x10", "1" * 21]


@pytest.mark.parametrize("text", ODD)
def test_http_decimal_refuses_anything_but_ascii_digits(text: str) -> None:
    assert decimal(text) is None


def test_http_decimal() -> None:
    assert decimal(" 42 ") == 42
    assert decimal("0") == 0
    assert decimal("9" * 20) == int("9" * 20)


@pytest.mark.parametrize("text", ["²", "١٢", "１２", "1²"])
def test_retry_after_with_odd_digits_is_no_retry_after(text: str) -> None:
    assert parse_retry_after(text) is None


def test_retry_after_of_5000_digits_is_just_long() -> None:
    assert parse_retry_after("9" * 5000) == float("9" * 12)


@pytest.mark.parametrize("variant", ["v²", "v8.²", "v١", "v８"])
def test_platform_variants_with_odd_digits_are_not_versions(variant: str) -> None:
    assert _version(variant) is None


@pytest.mark.parametrize("text", ["²", "１２k", "1²MiB"])
def test_sizes_with_odd_digits_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)
