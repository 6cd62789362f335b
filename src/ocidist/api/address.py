"""`--address` values: ``unix:///path``, a plain path, or ``tcp://HOST:PORT``.

TCP is served on loopback only: the API has no authentication, so the socket
file's permissions (or the machine's own users, for loopback) are the guard.
"""

from __future__ import annotations

import ipaddress
import os

from ocidist.errors import InvalidArgument
from ocidist.value import Value

LOOPBACK_NAMES = ("localhost",)


class Address(Value):
    __slots__ = ("text", "path", "host", "port")
    text: str  # as the user wrote it
    path: str  # unix socket path, or ""
    host: str  # tcp host, or ""
    port: int

    def __init__(self, text: str, path: str, host: str, port: int) -> None:
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    @property
    def target(self) -> str:
        """What grpc calls this address (for a channel or a server port)."""
        if self.path:
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.path else f"tcp://{self.target}"


# sun_path is 108 bytes on Linux, with a terminating NUL.
MAX_SOCKET_PATH = 107


def parse(text: str) -> Address:
    if not text:
        raise InvalidArgument("address must not be empty")
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path:
            raise InvalidArgument(f"invalid address {text!r}: no socket path")
        return _unix(text, path)
    if text.startswith("tcp://"):
        hostport = text[len("tcp://") :]
        host, sep, port_text = hostport.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
            raise InvalidArgument(f"invalid address {text!r}: expected tcp://127.0.0.1:PORT")
        if not _loopback(host):
            raise InvalidArgument(
                f"invalid address {text!r}: only loopback TCP addresses are allowed "
                "(the API has no authentication); use a unix socket"
            )
        return Address(text, "", host, int(port_text))
    if "://" in text:
        raise InvalidArgument(f"invalid address {text!r}: use unix:///path, a path or tcp://…")
    return _unix(text, text)


def _unix(text: str, path: str) -> Address:
    path = os.path.abspath(path)
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise InvalidArgument(
            f"invalid address {text!r}: socket path longer than {MAX_SOCKET_PATH} bytes"
        )
    return Address(text, path, "", 0)


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
