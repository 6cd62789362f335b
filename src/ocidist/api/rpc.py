"""Serving and calling methods without generated service stubs.

grpcio-tools would also write ``*_pb2_grpc`` modules, but they are untyped;
the handful of tables here give typed handlers over the generated messages
and turn a DistError into the status code it stands for (convert.py).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from ocidist.api.convert import code_for
from ocidist.errors import DistError

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


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "unary", "stream" (server streams) or "bidi"
    fn: Callable[[Any, grpc.ServicerContext], Any]
    request: type[Message]
    response: type[Message]


def _abort(context: grpc.ServicerContext, e: BaseException) -> None:
    if isinstance(e, DistError):
        log.debug("%s", e)
        context.abort(code_for(e), str(e))
    # A bug of ours: keep the traceback in the server log, give the client
    # one line instead of grpc's "Exception calling application".
    log.error("internal error: %s", "".join(traceback.format_exception(e)))
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {e}")


def _guard_unary(fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except Exception as e:
            _abort(context, e)
            raise  # unreachable: abort raises

    return call


def _guard_stream(fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(request, context)
        except Exception as e:
            _abort(context, e)

    return call


def service(full_name: str, methods: Sequence[Method]) -> grpc.GenericRpcHandler:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for m in methods:
        if m.kind == "unary":
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(
                _guard_unary(m.fn),
                request_deserializer=m.request.FromString,
                response_serializer=m.response.SerializeToString,
            )
        elif m.kind == "stream":
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(
                _guard_stream(m.fn),
                request_deserializer=m.request.FromString,
                response_serializer=m.response.SerializeToString,
            )
        else:
            handlers[m.name] = grpc.stream_stream_rpc_method_handler(
                _guard_stream(m.fn),
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
