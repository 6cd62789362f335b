"""The `dist serve` daemon: one gRPC server over the store of a root.

Every service shares one LocalStore, MetadataStore and LeaseStore; all are
safe across threads and processes, so `dist` commands without ``--address``
may work on the same root while the daemon runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from collections.abc import Callable
from concurrent import futures

import grpc
from google.protobuf.empty_pb2 import Empty

from ocidist import __version__
from ocidist.api import rpc
from ocidist.api.address import Address
from ocidist.api.content_service import ContentService
from ocidist.api.gen import version_pb2
from ocidist.api.images_service import ImagesService
from ocidist.api.leases_service import LeasesService, NamespacesService
from ocidist.api.ocidist_service import DistributionService
from ocidist.api.unpack_roots import UnpackRoots
from ocidist.content.local import LocalStore
from ocidist.errors import AddressInUse, DistError, InvalidArgument
from ocidist.leases import LeaseStore
from ocidist.metadata import MetadataStore
from ocidist.remotes.docker.resolver import DockerResolver
from ocidist.value import Value

# A Write stream holds a worker for its whole life; this many clients can
# write at once before further calls queue.
MAX_WORKERS = 64
GRACE_SECONDS = 5.0


class Policy(Value):
    """What the operator allows a daemon's clients (see README, trust model)."""

    __slots__ = ("unpack_roots", "unauthenticated_tcp")
    # Directories below which Unpack may write; none: Unpack is refused.
    unpack_roots: UnpackRoots
    # Serve on TCP as root: the API has no authentication, so every local
    # user could then act as root; only when the operator says so.
    unauthenticated_tcp: bool

    def __init__(
        self, unpack_roots: UnpackRoots | None = None, unauthenticated_tcp: bool = False
    ) -> None:
        object.__setattr__(self, "unpack_roots", unpack_roots or UnpackRoots(()))
        object.__setattr__(self, "unauthenticated_tcp", unauthenticated_tcp)


class Server:
    def __init__(
        self,
        root: str,
        address: Address,
        resolver: Callable[[], DockerResolver],
        policy: Policy | None = None,
    ) -> None:
        self.root = root
        self.address = address
        self.policy = policy or Policy()
        self._check_tcp()
        self.store = LocalStore(root)
        self.metadata = MetadataStore(os.path.join(root, "metadata.db"))
        self.leases = LeaseStore(self.metadata.path)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="rpc"),
            # grpc sets SO_REUSEPORT by default, which would let a second
            # daemon bind the same TCP port silently.
            options=[*rpc.CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)],
        )
        self._server.add_generic_rpc_handlers(
            (
                ContentService(self.store, self.leases).handler(),
                ImagesService(self.metadata).handler(),
                LeasesService(self.leases).handler(),
                NamespacesService(self.leases).handler(),
                DistributionService(
                    self.store, self.metadata, resolver, self.policy.unpack_roots
                ).handler(),
                _version_handler(),
            )
        )
        self.port = 0
        self._stopped = threading.Event()
        self._owns_socket = False
        self._bound = False

    def _check_tcp(self) -> None:
        if self.address.path or os.geteuid() != 0 or self.policy.unauthenticated_tcp:
            return
        raise InvalidArgument(
            f"serve {self.address}: refusing to serve on TCP as root: the API has no "
            "authentication, so every local user could act as root through it (use a unix "
            "socket, or --unauthenticated-tcp to accept that)"
        )

    def start(self) -> None:
        if not self._bound:
            self.bind()
        self._server.start()

    def bind(self) -> None:
        """Take the address (the socket exists, private, when this returns);
        ``start`` then serves on it."""
        self._bound = True
        if self.address.path:
            _claim_socket_path(self.address)
            # From here the path is ours to remove on stop (not before: a
            # refused start must not unlink a running daemon's socket).
            self._owns_socket = True
        # The API has no authentication: the socket's mode is the guard, so
        # the socket is made 0600 by bind itself. A chmod after binding would
        # leave a window in which anyone could connect under a lax umask.
        # (The umask is the process's; nothing else creates files meanwhile.)
        umask = os.umask(0o177) if self.address.path else None
        try:
            self.port = self._server.add_insecure_port(self.address.target)
        except RuntimeError:
            self.port = 0
        finally:
            if umask is not None:
                os.umask(umask)
        if self.address.path == "" and self.port == 0:
            raise AddressInUse(f"serve {self.address}: address already in use")
        if self.address.path:
            _check_socket(self.address)

    @property
    def listening(self) -> str:
        if self.address.path:
            return str(self.address)
        return f"tcp://{self.address.host}:{self.port}"

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Refuse new calls, give running ones ``grace`` seconds, then cancel
        them (their writers close, leaving resumable ingests)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.stop(grace).wait()
        if self._owns_socket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address.path)
        self.leases.close()
        self.metadata.close()


def _version_handler() -> grpc.GenericRpcHandler:
    """containerd's Version service: `ctr version` (and health checks) answer."""

    def version(req: Empty, context: grpc.ServicerContext) -> version_pb2.VersionResponse:
        return version_pb2.VersionResponse(version=f"ocidist {__version__}", revision="dist serve")

    method = rpc.Method("Version", "unary", version, Empty, version_pb2.VersionResponse)
    return rpc.service("containerd.services.version.v1.Version", [method])


def _check_socket(address: Address) -> None:
    """The socket is ours and only ours to use, or we do not serve."""
    try:
        st = os.lstat(address.path)
    except FileNotFoundError:
        raise DistError(f"serve {address}: could not listen on the socket") from None
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid() or mode != 0o600:
        raise DistError(
            f"serve {address}: the socket is not a private one (mode {mode:o}, "
            f"owner {st.st_uid}); not serving"
        )


def _claim_socket_path(address: Address) -> None:
    """Make the socket path ours: refuse a live daemon's, remove a stale one.

    grpc would unlink whatever is there and bind, taking the path from under
    a running daemon without a word.
    """
    path = address.path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidArgument(f"serve {address}: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left behind by a daemon that died
        return
    finally:
        probe.close()
    raise AddressInUse(f"serve {address}: address already in use")
