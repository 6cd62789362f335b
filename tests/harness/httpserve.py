"""A ThreadingHTTPServer that can be stopped with clients still connected."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.harness.net import free_port


class TrackingServer(ThreadingHTTPServer):
    """Remembers open client sockets: ``shutdown()`` alone leaves keep-alive
    connections parked in a read, so ``stop()`` cuts them too."""

    daemon_threads = True

    def __init__(self, bind_host: str, handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        self.owner = owner
        self.conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((bind_host, free_port(bind_host)), handler)

    @property
    def host(self) -> str:
        return f"{self.server_address[0]!s}:{self.server_address[1]}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        with self._conns_lock:
            conns = list(self.conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self.server_close()
