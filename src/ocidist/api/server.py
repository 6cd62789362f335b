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
from ocidist.content.local import LocalStore
from ocidist.errors import DistError, InvalidArgument
from ocidist.leases import LeaseStore
from ocidist.metadata import MetadataStore
from ocidist.remotes.docker.resolver import DockerResolver

# A Write stream holds a worker for its whole life; this many clients can
# write at once before further calls queue.
MAX_WORKERS = 64
GRACE_SECONDS = 5.0


class AddressInUse(DistError):
    """Another process serves on the address."""


class Server:
    def __init__(self, root: str, address: Address, resolver: Callable[[], DockerResolver]) -> None:
        self.root = root
        self.address = address
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
                DistributionService(self.store, self.metadata, resolver).handler(),
                _version_handler(),
            )
        )
        self.port = 0
        self._stopped = threading.Event()
        self._owns_socket = False

    def start(self) -> None:
        if self.address.path:
            _claim_socket_path(self.address)
            # From here the path is ours to remove on stop (not before: a
            # refused start must not unlink a running daemon's socket).
            self._owns_socket = True
        try:
            self.port = self._server.add_insecure_port(self.address.target)
        except RuntimeError:
            self.port = 0
        if self.address.path == "" and self.port == 0:
            raise AddressInUse(f"serve {self.address}: address already in use")
        if self.address.path and not os.path.exists(self.address.path):
            raise DistError(f"serve {self.address}: could not listen on the socket")
        self._server.start()
        if self.address.path:
            # The API has no authentication: the socket's mode is the guard.
            os.chmod(self.address.path, 0o600)

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
