"""``containerd.services.leases.v1.Leases`` over the LeaseStore.

Content written with a ``containerd-lease`` header is added to that lease by
the content service; `dist content prune` keeps what live leases hold.
"""

from __future__ import annotations

import grpc
from google.protobuf.empty_pb2 import Empty

from ocidist.api import convert, rpc
from ocidist.api.filters import Fields, compile_filters
from ocidist.api.gen import leases_pb2 as pb
from ocidist.leases import Lease, LeaseStore, Resource

SERVICE = "containerd.services.leases.v1.Leases"


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
        return pb.CreateResponse(lease=_message(self.leases.create(req.id, dict(req.labels))))

    def delete(self, req: pb.DeleteRequest, context: grpc.ServicerContext) -> Empty:
        self.leases.delete(req.id)
        return Empty()

    def list(self, req: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListResponse:
        match = compile_filters(list(req.filters))
        return pb.ListResponse(
            leases=[_message(x) for x in self.leases.list_leases() if match(_fields(x))]
        )

    def add_resource(self, req: pb.AddResourceRequest, context: grpc.ServicerContext) -> Empty:
        self.leases.add_resource(req.id, Resource(req.resource.id, req.resource.type))
        return Empty()

    def delete_resource(
        self, req: pb.DeleteResourceRequest, context: grpc.ServicerContext
    ) -> Empty:
        self.leases.delete_resource(req.id, Resource(req.resource.id, req.resource.type))
        return Empty()

    def list_resources(
        self, req: pb.ListResourcesRequest, context: grpc.ServicerContext
    ) -> pb.ListResourcesResponse:
        return pb.ListResourcesResponse(
            resources=[pb.Resource(id=r.id, type=r.type) for r in self.leases.resources(req.id)]
        )
