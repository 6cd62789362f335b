"""The hashers of ocidist.digest: CPython's builtin SHA-2 for what is small
(no OpenSSL import at start-up), hashlib for the rest; both must give
hashlib's answer at every size, however the bytes are split, and a copy
taken mid-stream must go on independently."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocidist.digest import SMALL, Digest, new_hasher

SIZES = [0, 1, 100, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL + 7]


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("size", SIZES)
def test_same_digest_as_hashlib_however_split(algorithm: str, size: int) -> None:
    data = os.urandom(size)
    want = hashlib.new(algorithm, data).hexdigest()
    assert Digest.from_bytes(data, algorithm).encoded == want
    for step in (1000, SMALL // 2 + 1, size or 1):
        h = new_hasher(algorithm)
        for i in range(0, size, step):
            h.update(memoryview(data)[i : i + step])
        assert h.hexdigest() == want
        assert h.digest() == bytes.fromhex(want)


@pytest.mark.parametrize("cut", [10, SMALL - 5, SMALL + 5])
def test_a_copy_goes_on_alone(cut: int) -> None:
    data = os.urandom(2 * SMALL)
    h = new_hasher()
    h.update(data[:cut])
    early = h.copy()
    h.update(data[cut:])
    assert early.hexdigest() == hashlib.sha256(data[:cut]).hexdigest()
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    early.update(b"more")
    assert early.hexdigest() == hashlib.sha256(data[:cut] + b"more").hexdigest()


def test_small_objects_do_not_load_openssl_and_big_ones_do() -> None:
    code = (
        "import sys\n"
        "from ocidist.digest import Digest, new_hasher\n"
        "Digest.from_bytes(b'x' * 1000)\n"
        "h = new_hasher(); h.update(b'y' * 1000); h.hexdigest()\n"
        "print('hashlib' in sys.modules)\n"
        "h = new_hasher(); h.update(b'y' * (1 << 20)); h.hexdigest()\n"
        "print('hashlib' in sys.modules)\n"
    )
    src = str(Path(__file__).resolve().parent.parent / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
        check=True,
        timeout=60,
    ).stdout.split()
    assert out == ["False", "True"]
