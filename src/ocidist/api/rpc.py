"""Serving and calling methods without generated service stubs.

grpcio-tools would also write ``*_pb2_grpc`` modules, but they are untyped;
the handful of tables here give typed handlers over the generated messages
and turn a DistError into the status code it stands for (convert.py).
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from ocidist.api.convert import code_for, error_trailer
from ocidist.errors import DistError
from ocidist.value import Value

log = logging.getLogger("ocidist.api")

NAMESPACE_KEY = "containerd-namespace"
LEASE_KEY = "containerd-lease"
DEFAULT_NAMESPACE = "default"

# containerd's own limits (defaults.DefaultMaxRecvMsgSize/SendMsgSize): a
# client chunking writes the way containerd does stays within them.
MAX_MESSAGE = 16 << 20
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
)


class Method(Value):
    __slots__ = ("name", "kind", "fn", "request", "response")
    name: str
    kind: str  # "unary", "stream" (server streams) or "bidi"
    fn: Callable[[Any, grpc.ServicerContext], Any]
    request: type[Message]
    response: type[Message]

    def __init__(
        self,
        name: str,
        kind: str,
        fn: Callable[[Any, grpc.ServicerContext], Any],
        request: type[Message],
        response: type[Message],
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "response", response)


class _CallEnd:
    """How one call ended, said once in the log: a call the client cancelled
    or dropped is noted as such (grpc gives a handler no error for it: a
    request iterator just ends, a response generator is not resumed)."""

    def __init__(self, method: str, context: grpc.ServicerContext) -> None:
        self.method = method
        self._lock = threading.Lock()
        self._said = False
        if not context.add_callback(self.cancelled):
            self.cancelled()  # over before the handler started

    def finished(self) -> None:
        """The handler answered (or failed): grpc's end of the call is no news."""
        with self._lock:
            self._said = True

    def cancelled(self) -> None:
        with self._lock:
            if self._said:
                return
            self._said = True
        log.info("%s: cancelled by the client", self.method)


def _abort(context: grpc.ServicerContext, end: _CallEnd, e: BaseException) -> None:
    if isinstance(e, grpc.RpcError) or not context.is_active():
        # The client cancelled the call or went away (a request iterator
        # raises RpcError then): nobody is left to answer, and it is no bug
        # of ours. grpc itself stays quiet about the RpcError it raised.
        end.cancelled()
        if isinstance(e, grpc.RpcError):
            raise e
        context.abort(grpc.StatusCode.CANCELLED, f"{end.method}: cancelled")
    end.finished()
    if isinstance(e, DistError):
        log.debug("%s: %s", end.method, e)
        context.set_trailing_metadata(error_trailer(e))
        context.abort(code_for(e), str(e))
    # A bug of ours: keep the traceback in the server log, give the client
    # one line instead of grpc's "Exception calling application".
    log.error("%s: internal error: %s", end.method, "".join(traceback.format_exception(e)))
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {e}")


def _ended(context: grpc.ServicerContext, end: _CallEnd) -> None:
    if context.is_active():
        end.finished()
    else:
        end.cancelled()  # e.g. a Write whose requests stopped: the client left


def _guard_unary(method: str, fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        end = _CallEnd(method, context)
        try:
            out = fn(request, context)
        except Exception as e:
            _abort(context, end, e)
            raise  # unreachable: abort raises
        _ended(context, end)
        return out

    return call


def _guard_stream(
    method: str, fn: Callable[[Any, grpc.ServicerContext], Any]
) -> Callable[..., Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        end = _CallEnd(method, context)
        try:
            yield from fn(request, context)
        except Exception as e:
            _abort(context, end, e)
        _ended(context, end)

    return call


def service(full_name: str, methods: Sequence[Method]) -> grpc.GenericRpcHandler:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for m in methods:
        name = f"{full_name.rsplit('.', 1)[-1]}.{m.name}"
        if m.kind == "unary":
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(
                _guard_unary(name, m.fn),
                request_deserializer=m.request.FromString,
                response_serializer=m.response.SerializeToString,
            )
        elif m.kind == "stream":
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(
                _guard_stream(name, m.fn),
                request_deserializer=m.request.FromString,
                response_serializer=m.response.SerializeToString,
            )
        else:
            handlers[m.name] = grpc.stream_stream_rpc_method_handler(
                _guard_stream(name, m.fn),
                request_deserializer=m.request.FromString,
                response_serializer=m.response.SerializeToString,
            )
    return grpc.method_handlers_generic_handler(full_name, handlers)


def metadata_value(context: grpc.ServicerContext, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


# -- client side -------------------------------------------------------------------


def path(full_service: str, method: str) -> str:
    return f"/{full_service}/{method}"
