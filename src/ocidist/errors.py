"""One error hierarchy for the whole toolkit.

Low-level exceptions (sockets, TLS, HTTP framing, OSError, JSON) are converted to these
at one boundary per backend, so callers and the CLI see only ``DistError``::

    DistError
    ├── InvalidArgument            bad input from the user (exit 2)
    │   ├── InvalidReference
    │   └── OutOfRange             an offset past the end (a daemon read or write)
    ├── NotFound
    ├── AlreadyExists
    │   └── Mounted                a push found a blob mountable from another repository
    ├── FailedPrecondition         e.g. ingest locked by another writer
    ├── PermissionDenied           refused by policy (e.g. a daemon's unpack roots)
    ├── Unimplemented              an operation this implementation does not offer
    ├── DigestMismatch             bytes do not match digest or size
    ├── InvalidContent             malformed manifest, oversized object, bad media type
    │   └── GraphLimit             an image graph past the walker's bounds
    ├── ArchiveError               a layer tar could not be applied
    │   ├── CompressionError, PathError, SizeLimitExceeded, Truncated, Malformed
    ├── Unavailable                network/connection failures, timeouts
    │   ├── TimedOut
    │   └── UploadRestarted        the registry lost an upload session (refeed from 0)
    ├── Cancelled                  work stopped because what it served failed
    ├── NoSpace                    disk full
    ├── CredentialError            a credentials file or helper failed
    ├── AddressInUse               another process serves on the address
    └── RegistryError              any non-success registry answer (status, codes, body)
        ├── Unauthorized           401 (and 403 as Denied)
        │   └── Denied
        └── TooManyRequests        429, with retry_after
"""

from __future__ import annotations

from collections.abc import Sequence

# An error body from a registry can be arbitrarily large (an HTML page from a
# proxy, say); we keep only enough to explain the failure.
BODY_CAP = 2048


class DistError(Exception):
    """Base of every error ocidist raises on purpose."""

    exit_code = 1


class InvalidArgument(DistError):
    """The caller (usually the command line) gave an invalid value."""

    exit_code = 2


class InvalidReference(InvalidArgument):
    """An image reference could not be parsed."""


class OutOfRange(InvalidArgument):
    """An offset past the end of the data, or not where the data ends (a
    daemon's Read and Write: containerd answers OUT_OF_RANGE for these)."""


class NotFound(DistError):
    """The object, image, repository or ingest does not exist."""


class AlreadyExists(DistError):
    """The content or name exists already (callers like pull treat it as success)."""


class Mounted(AlreadyExists):
    """A blob now exists in the target repository by a cross-repository mount."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


class FailedPrecondition(DistError):
    """The operation cannot proceed in the current state (e.g. a locked ingest)."""


class PermissionDenied(DistError):
    """Not allowed by the policy in force (not a filesystem permission error)."""


class Unimplemented(DistError):
    """The operation (or this kind of object) is not offered here."""


class DigestMismatch(DistError):
    """Bytes did not hash to the expected digest, or had the wrong size."""


class InvalidContent(DistError):
    """Content is malformed: bad JSON manifest, unsupported media type, too large."""


class GraphLimit(InvalidContent):
    """An image graph past the walker's bounds: indexes nested too deep, too
    many children, a manifest too large (``images.walk``)."""


class ArchiveError(DistError):
    """A layer archive could not be applied."""


class CompressionError(ArchiveError):
    """The compressed stream is corrupt, truncated or of an unsupported kind."""


class PathError(ArchiveError):
    """A path could not be resolved inside the root (link loop, not a directory)."""


class SizeLimitExceeded(ArchiveError):
    """The uncompressed layer is larger than the configured limit."""


class Truncated(ArchiveError):
    """The tar stream ended in the middle of an entry."""


class Malformed(ArchiveError):
    """A tar header could not be parsed."""


class Unavailable(DistError):
    """The remote could not be reached or the transfer broke off."""

    def __init__(self, message: str = "", *, attempts: int | None = None) -> None:
        super().__init__(message)
        # How many attempts this failure is worth at most (None: the retry
        # policy's): 1 for what trying again cannot change (TLS spoken to a
        # plain-HTTP registry, a certificate that does not verify), 2 for an
        # unknown host name.
        self.attempts = attempts


class UploadRestarted(Unavailable):
    """An upload must be fed again from the writer's offset: 0 when the
    registry lost the session (a new one starts), the registry's offset when
    a streamed PATCH broke off (``gained``: bytes the registry confirmed
    since the last such break)."""

    gained: int = 0


class Cancelled(DistError):
    """Work stopped because what it served has already failed (an unpack's
    transfers after the apply failed)."""


class TimedOut(Unavailable):
    """A deadline or read timeout expired."""


class NoSpace(DistError):
    """The filesystem is full."""


class RegistryError(DistError):
    """A registry answered with an unexpected status."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        codes: Sequence[str] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.codes = tuple(codes)
        self.body = body[:BODY_CAP]


class Unauthorized(RegistryError):
    """The registry refused our (lack of) credentials."""


class Denied(Unauthorized):
    """Authenticated, but not allowed (403 / DENIED)."""


class TooManyRequests(RegistryError):
    """HTTP 429; ``retry_after`` is the server's requested wait in seconds, if any."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int = 429,
        codes: Sequence[str] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(message, status=status, codes=codes, body=body)
        self.retry_after = retry_after


def reworded(e: DistError, message: str) -> DistError:
    """``e`` as the same kind of error saying ``message``, with its registry
    details (status, codes, body, Retry-After) kept."""
    if isinstance(e, TooManyRequests):
        return TooManyRequests(
            message, retry_after=e.retry_after, status=e.status, codes=e.codes, body=e.body
        )
    if isinstance(e, RegistryError):
        return type(e)(message, status=e.status, codes=e.codes, body=e.body)
    if isinstance(e, Unavailable):
        return type(e)(message, attempts=e.attempts)
    return type(e)(message)


class CredentialError(DistError):
    """A config file or credential helper failed (never carries the secret)."""


class AddressInUse(DistError):
    """Another process serves on the address (``dist serve``)."""
