"""Digest values and a reader that verifies a stream against one.

A digest is ``algorithm:encoded`` as in the OCI image-spec. We support the
registered algorithms sha256 and sha512; anything else is refused up front so
that a hostile descriptor cannot make us trust bytes we cannot check.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ocidist.stream import Readable

from ocidist.errors import DigestMismatch, InvalidArgument
from ocidist.text import quote
from ocidist.value import Value

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = "0123456789abcdef"
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")


class InvalidDigest(InvalidArgument):
    """A digest string is malformed or uses an unsupported algorithm."""


class Digest(Value):
    """A validated content digest such as ``sha256:e3b0…``."""

    __slots__ = ("algorithm", "encoded")
    algorithm: str
    encoded: str

    def __init__(self, algorithm: str, encoded: str) -> None:
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "encoded", encoded)

    # Digests sort (content listings, deterministic output) by algorithm, then hex.
    def __lt__(self, other: Digest) -> bool:
        return (self.algorithm, self.encoded) < (other.algorithm, other.encoded)

    def __le__(self, other: Digest) -> bool:
        return (self.algorithm, self.encoded) <= (other.algorithm, other.encoded)

    def __gt__(self, other: Digest) -> bool:
        return (self.algorithm, self.encoded) > (other.algorithm, other.encoded)

    def __ge__(self, other: Digest) -> bool:
        return (self.algorithm, self.encoded) >= (other.algorithm, other.encoded)

    def __hash__(self) -> int:
        return hash(self.encoded)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Digest:
            return NotImplemented
        return self.encoded == other.encoded and self.algorithm == other.algorithm  # type: ignore[attr-defined,unused-ignore]

    @classmethod
    def parse(cls, text: str) -> Digest:
        if isinstance(text, str):
            # Fast path for the valid case (every descriptor of every manifest
            # goes through here); the regex below only words the error.
            alg, _, enc = text.partition(":")
            if len(enc) == _ALGORITHMS.get(alg, -1) and not enc.strip(_HEX):
                return cls(alg, enc)
        m = _DIGEST_RE.fullmatch(text) if isinstance(text, str) else None
        # The text may come from a registry: escaped and shortened in errors.
        shown = f"'{quote(text, 100)}'" if isinstance(text, str) else type(text).__name__
        if not m:
            raise InvalidDigest(f"invalid digest {shown}: expected algorithm:hex")
        alg, enc = m.group(1), m.group(2)
        if alg not in _ALGORITHMS:
            raise InvalidDigest(f"invalid digest {shown}: unsupported algorithm '{quote(alg, 40)}'")
        want = _ALGORITHMS[alg]
        if len(enc) != want or not re.fullmatch(r"[0-9a-f]+", enc):
            raise InvalidDigest(
                f"invalid digest {shown}: {alg} needs {want} lowercase hex characters"
            )
        return cls(alg, enc)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, _hash(algorithm, len(data))(data).hexdigest())

    def hasher(self) -> Any:
        """A fresh hasher (hashlib's interface) for this digest's algorithm."""
        return new_hasher(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


# Hashing without loading OpenSSL's hashlib (~3 ms of every command's CPU on
# a plain-HTTP registry, where nothing else loads libcrypto): CPython's own
# SHA-2 (``_sha256``/``_sha512``, ``_sha2`` from 3.12) for what is small.
# OpenSSL is ~5x faster per byte, so anything over SMALL goes to hashlib,
# which then pays its import once: manifests, configs and small layers never
# load it, a big layer does at no visible cost.
SMALL = 1 << 16


# Where CPython keeps them: 3.11 one module per size, 3.12 on ``_sha2``.
_BUILTIN = {"sha256": ("_sha256", "_sha2"), "sha512": ("_sha512", "_sha2")}


def _builtin(algorithm: str) -> Any:
    for module in _BUILTIN.get(algorithm, ()):
        try:
            return getattr(__import__(module), algorithm)
        except (ImportError, AttributeError):  # another version, or built without
            continue
    return None


def _openssl(algorithm: str) -> Any:
    import hashlib

    return getattr(hashlib, algorithm, None) or (lambda data=b"": hashlib.new(algorithm, data))


def _hash(algorithm: str, size: int) -> Any:
    """The constructor to hash ``size`` bytes with."""
    if size <= SMALL and "hashlib" not in sys.modules:
        builtin = _builtin(algorithm)
        if builtin is not None:
            return builtin
    return _openssl(algorithm)


def new_hasher(algorithm: str = "sha256") -> Any:
    """A hasher for a stream of unknown length (hashlib's interface:
    ``update``, ``copy``, ``digest``, ``hexdigest``)."""
    if "hashlib" in sys.modules or _builtin(algorithm) is None:
        return _openssl(algorithm)()
    return _Deferred(algorithm)


class _Deferred:
    """Holds the first SMALL bytes; hashes them with the builtin when the
    digest is asked for before more come, else hands everything to OpenSSL."""

    __slots__ = ("_algorithm", "_held", "_hasher")

    def __init__(self, algorithm: str) -> None:
        self._algorithm = algorithm
        self._held: bytearray | None = bytearray()
        self._hasher: Any = None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._hasher.update(data)
            return
        if len(held) + len(data) <= SMALL:
            held += data
            return
        self._hasher = _openssl(self._algorithm)(held)
        self._held = None
        self._hasher.update(data)

    def _final(self) -> Any:
        if self._held is None:
            return self._hasher
        return _hash(self._algorithm, len(self._held))(self._held)

    def copy(self) -> _Deferred:
        other = _Deferred(self._algorithm)
        if self._held is None:
            other._held, other._hasher = None, self._hasher.copy()
        else:
            other._held = bytearray(self._held)
        return other

    def digest(self) -> bytes:
        return bytes(self._final().digest())

    def hexdigest(self) -> str:
        return str(self._final().hexdigest())


class VerifyingReader:
    """Wraps a byte stream; raises ``DigestMismatch`` instead of returning the
    last bytes of a stream that does not hash to ``expected`` or has the wrong size.

    The check happens when the stream ends (a read returns fewer bytes than
    asked for, i.e. EOF reached), so a consumer that reads to EOF never sees a
    clean end of a corrupt object. Reading more than ``size`` bytes fails at once.
    """

    def __init__(self, raw: Readable, expected: Digest, size: int, what: str = "") -> None:
        self._raw = raw
        self._expected = expected
        self._size = size
        self._hasher = expected.hasher()
        self._seen = 0
        self._what = what or str(expected)
        self._done = False

    @property
    def offset(self) -> int:
        return self._seen

    def _feed(self, chunk: bytes | memoryview) -> None:
        self._seen += len(chunk)
        if self._size >= 0 and self._seen > self._size:
            raise DigestMismatch(
                f"{self._what}: size mismatch: more than the expected {self._size} bytes"
            )
        self._hasher.update(chunk)
        if self._seen == self._size:
            # Verify before the final bytes are handed out, so a consumer never
            # holds a complete-looking copy of a corrupt object.
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._size >= 0 and self._seen != self._size:
            raise DigestMismatch(
                f"{self._what}: size mismatch: got {self._seen} bytes, expected {self._size}"
            )
        got = self._hasher.hexdigest()
        if got != self._expected.encoded:
            raise DigestMismatch(
                f"{self._what}: digest mismatch: got {self._expected.algorithm}:{got}"
            )

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        data = self._raw.read(n) if n >= 0 else self._raw.read()
        if data:
            self._feed(data)
        if not data or n < 0:
            self._finish()
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        if self._done:
            return 0
        view = memoryview(buf)
        got = self._raw.readinto(view)
        if got:
            self._feed(view[:got])
        else:
            self._finish()
        return got

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
