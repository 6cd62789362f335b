"""``containerd.services.leases.v1.Leases`` over the LeaseStore, and the
``containerd.services.namespaces.v1.Namespaces`` listing that goes with it.

Leases live in the namespace of the call's ``containerd-namespace`` header
(required, as containerd requires it). Content written with a
``containerd-lease`` header is added to that lease by the content service;
`dist content prune` keeps what live leases of every namespace hold.
"""

from __future__ import annotations

import grpc
from google.protobuf.empty_pb2 import Empty

from ocidist.api import convert, rpc
from ocidist.api.filters import Fields, compile_filters
from ocidist.api.gen import leases_pb2 as pb
from ocidist.api.gen import namespaces_pb2 as npb
from ocidist.errors import NotFound, Unimplemented
from ocidist.leases import DEFAULT_NAMESPACE, Lease, LeaseStore, Resource, check_namespace

SERVICE = "containerd.services.leases.v1.Leases"
NAMESPACES_SERVICE = "containerd.services.namespaces.v1.Namespaces"


def namespace(context: grpc.ServicerContext) -> str:
    """The call's namespace; FailedPrecondition without one (containerd's rule)."""
    return check_namespace(rpc.metadata_value(context, rpc.NAMESPACE_KEY))


def _message(lease: Lease) -> pb.Lease:
    return pb.Lease(
        id=lease.id, created_at=convert.timestamp(lease.created_at), labels=dict(lease.labels)
    )


def _fields(lease: Lease) -> Fields:
    def get(path: tuple[str, ...]) -> str | None:
        if path == ("id",):
            return lease.id
        if len(path) == 2 and path[0] == "labels":
            return lease.labels.get(path[1])
        return None

    return get


class LeasesService:
    def __init__(self, leases: LeaseStore) -> None:
        self.leases = leases

    def handler(self) -> grpc.GenericRpcHandler:
        m = rpc.Method
        return rpc.service(
            SERVICE,
            [
                m("Create", "unary", self.create, pb.CreateRequest, pb.CreateResponse),
                m("Delete", "unary", self.delete, pb.DeleteRequest, Empty),
                m("List", "unary", self.list, pb.ListRequest, pb.ListResponse),
                m("AddResource", "unary", self.add_resource, pb.AddResourceRequest, Empty),
                m("DeleteResource", "unary", self.delete_resource, pb.DeleteResourceRequest, Empty),
                m(
                    "ListResources",
                    "unary",
                    self.list_resources,
                    pb.ListResourcesRequest,
                    pb.ListResourcesResponse,
                ),
            ],
        )

    def create(self, req: pb.CreateRequest, context: grpc.ServicerContext) -> pb.CreateResponse:
        lease = self.leases.create(namespace(context), req.id, dict(req.labels))
        return pb.CreateResponse(lease=_message(lease))

    def delete(self, req: pb.DeleteRequest, context: grpc.ServicerContext) -> Empty:
        # Sync asks for the collection to run before the answer; content here
        # is collected by `dist content prune`, so there is nothing to wait for.
        self.leases.delete(namespace(context), req.id)
        return Empty()

    def list(self, req: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListResponse:
        ns = namespace(context)
        match = compile_filters(list(req.filters))
        return pb.ListResponse(
            leases=[_message(x) for x in self.leases.list_leases(ns) if match(_fields(x))]
        )

    def add_resource(self, req: pb.AddResourceRequest, context: grpc.ServicerContext) -> Empty:
        resource = Resource(req.resource.id, req.resource.type)
        self.leases.add_resource(namespace(context), req.id, resource)
        return Empty()

    def delete_resource(
        self, req: pb.DeleteResourceRequest, context: grpc.ServicerContext
    ) -> Empty:
        resource = Resource(req.resource.id, req.resource.type)
        self.leases.delete_resource(namespace(context), req.id, resource)
        return Empty()

    def list_resources(
        self, req: pb.ListResourcesRequest, context: grpc.ServicerContext
    ) -> pb.ListResourcesResponse:
        resources = self.leases.resources(namespace(context), req.id)
        return pb.ListResourcesResponse(
            resources=[pb.Resource(id=r.id, type=r.type) for r in resources]
        )


class NamespacesService:
    """List and Get: the namespaces that hold leases, and ``default``.

    Images and content are shared by all namespaces, so there is nothing to
    create or delete; those calls are not implemented.
    """

    def __init__(self, leases: LeaseStore) -> None:
        self.leases = leases

    def handler(self) -> grpc.GenericRpcHandler:
        m = rpc.Method
        return rpc.service(
            NAMESPACES_SERVICE,
            [
                m(
                    "List",
                    "unary",
                    self.list,
                    npb.ListNamespacesRequest,
                    npb.ListNamespacesResponse,
                ),
                m("Get", "unary", self.get, npb.GetNamespaceRequest, npb.GetNamespaceResponse),
                m(
                    "Create",
                    "unary",
                    _unimplemented,
                    npb.CreateNamespaceRequest,
                    npb.CreateNamespaceResponse,
                ),
                m(
                    "Update",
                    "unary",
                    _unimplemented,
                    npb.UpdateNamespaceRequest,
                    npb.UpdateNamespaceResponse,
                ),
                m("Delete", "unary", _unimplemented, npb.DeleteNamespaceRequest, Empty),
            ],
        )

    def _names(self) -> list[str]:
        return sorted({DEFAULT_NAMESPACE, *self.leases.namespaces()})

    def list(
        self, req: npb.ListNamespacesRequest, context: grpc.ServicerContext
    ) -> npb.ListNamespacesResponse:
        match = compile_filters([req.filter])
        names = [n for n in self._names() if match(_namespace_fields(n))]
        return npb.ListNamespacesResponse(namespaces=[npb.Namespace(name=n) for n in names])

    def get(
        self, req: npb.GetNamespaceRequest, context: grpc.ServicerContext
    ) -> npb.GetNamespaceResponse:
        if req.name not in self._names():
            raise NotFound(f"namespace {req.name!r}: not found")
        return npb.GetNamespaceResponse(namespace=npb.Namespace(name=req.name))


def _namespace_fields(name: str) -> Fields:
    return lambda path: name if path == ("name",) else None


def _unimplemented(req: object, context: grpc.ServicerContext) -> object:
    raise Unimplemented("namespaces are not created or changed here: every one shares the store")
