"""Blob labels kept as small JSON sidecars: ``<root>/labels/<alg>/<hex>.json``.

Why sidecars and not SQLite: the content store stays plain files (the blob
and its labels live and die by the same kind of filesystem operation, and a
store copied with ``cp -a`` keeps its labels); readers need no lock because
each sidecar is replaced atomically. Writers serialise their
read-modify-write with one ``flock`` on ``labels/.lock`` so two processes
adding different labels to one blob do not lose each other's update.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress

from ocidist.content.fsutil import stamp
from ocidist.digest import Digest
from ocidist.errors import InvalidArgument, InvalidContent
from ocidist.stream import write_all

# containerd's limit on one label (key plus value); labels are for references
# and small notes, not for data.
MAX_LABEL_SIZE = 4096

_tmp_counter = itertools.count()


def validate(labels: Mapping[str, str]) -> None:
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise InvalidArgument(f"invalid label {k!r}={v!r}: keys and values are strings")
        if len(k.encode()) + len(v.encode()) > MAX_LABEL_SIZE:
            raise InvalidArgument(f"label {k!r} is longer than {MAX_LABEL_SIZE} bytes")


def merge(current: Mapping[str, str], change: Mapping[str, str], replace: bool) -> dict[str, str]:
    """Apply ``change``: an empty value deletes the label (as in containerd);
    ``replace`` drops every label not named in ``change``."""
    out = {} if replace else dict(current)
    for k, v in change.items():
        if v:
            out[k] = v
        else:
            out.pop(k, None)
    return out


class LabelFiles:
    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, dgst: Digest) -> str:
        return os.path.join(self.root, dgst.algorithm, dgst.encoded + ".json")

    def read(self, dgst: Digest) -> dict[str, str]:
        try:
            with open(self.path(dgst), "rb") as f:
                obj = json.loads(f.read())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise InvalidContent(f"labels of {dgst} are corrupt: {e}") from e
        if not isinstance(obj, dict):
            raise InvalidContent(f"labels of {dgst} are not a JSON object")
        return {str(k): str(v) for k, v in obj.items()}

    def mtime(self, dgst: Digest) -> float | None:
        """When the labels were last written (stamped from the wall clock)."""
        try:
            return os.stat(self.path(dgst)).st_mtime_ns / 1e9
        except FileNotFoundError:
            return None

    def write(self, dgst: Digest, labels: Mapping[str, str], *, keep: bool = False) -> None:
        """Replace the labels; none left removes the sidecar unless ``keep``
        (an update keeps an empty one: its time is the blob's updated_at)."""
        path = self.path(dgst)
        if not labels and not keep:
            self.remove(dgst)
            return
        data = json.dumps(dict(sorted(labels.items()))).encode()
        try:
            _replace(path, data)
        except FileNotFoundError:
            # Made on first use rather than checked on every write: every
            # fetched blob gets labels, so this runs once per blob.
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _replace(path, data)

    def remove(self, dgst: Digest) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self.path(dgst))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes, for one read-modify-write."""
        path = os.path.join(self.root, ".lock")
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(self.root, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _replace(path: str, data: bytes) -> None:
    """Replace ``path`` so readers see the old or the new bytes, never a mix.

    The temporary name is unique per process, thread and call (no random
    name to draw, no mode to fix afterwards as with mkstemp's 0600); a name
    left by a crash never collides with a later one (another pid or count).
    """
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}-{next(_tmp_counter)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            write_all(fd, data)
            stamp(fd)  # the labels' time is the blob's updated_at
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
