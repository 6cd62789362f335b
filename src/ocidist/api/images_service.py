"""``containerd.services.images.v1.Images`` over a metadata store.

Namespaces: every ``containerd-namespace`` sees the one store of the root
(``ctr`` uses "default"), so what ctr names, `dist images ls` lists.
"""

from __future__ import annotations

import grpc
from google.protobuf.empty_pb2 import Empty

from ocidist.api import convert, rpc
from ocidist.api.filters import Fields, compile_filters
from ocidist.api.gen import descriptor_pb2
from ocidist.api.gen import images_pb2 as pb
from ocidist.content.labels import validate as validate_labels
from ocidist.descriptor import Descriptor
from ocidist.errors import AlreadyExists, InvalidArgument, NotFound
from ocidist.metadata import Image, Metadata

SERVICE = "containerd.services.images.v1.Images"


def _fields(image: Image) -> Fields:
    def get(path: tuple[str, ...]) -> str | None:
        if path == ("name",):
            return image.name
        if path == ("target", "digest"):
            return str(image.target.digest)
        if path in (("target", "mediatype"), ("target", "media_type")):
            return image.target.media_type
        if len(path) == 2 and path[0] == "labels":
            return image.labels.get(path[1])
        return None

    return get


def _target(msg: descriptor_pb2.Descriptor) -> Descriptor:
    """An image's target, refused as containerd refuses it: a manifest is
    never empty, so a size of 0 is a client's mistake, not an image."""
    target = convert.descriptor_value(msg)
    if target.size <= 0:
        raise InvalidArgument("image target: size must be greater than zero")
    return target


class ImagesService:
    def __init__(self, metadata: Metadata) -> None:
        self.metadata = metadata

    def handler(self) -> grpc.GenericRpcHandler:
        m = rpc.Method
        return rpc.service(
            SERVICE,
            [
                m("Get", "unary", self.get, pb.GetImageRequest, pb.GetImageResponse),
                m("List", "unary", self.list, pb.ListImagesRequest, pb.ListImagesResponse),
                m("Create", "unary", self.create, pb.CreateImageRequest, pb.CreateImageResponse),
                m("Update", "unary", self.update, pb.UpdateImageRequest, pb.UpdateImageResponse),
                m("Delete", "unary", self.delete, pb.DeleteImageRequest, Empty),
            ],
        )

    def get(self, req: pb.GetImageRequest, context: grpc.ServicerContext) -> pb.GetImageResponse:
        return pb.GetImageResponse(image=convert.image_message(self.metadata.get_image(req.name)))

    def list(
        self, req: pb.ListImagesRequest, context: grpc.ServicerContext
    ) -> pb.ListImagesResponse:
        match = compile_filters(list(req.filters))
        images = self.metadata.list_images(filter=lambda i: match(_fields(i)))
        return pb.ListImagesResponse(images=[convert.image_message(i) for i in images])

    def create(
        self, req: pb.CreateImageRequest, context: grpc.ServicerContext
    ) -> pb.CreateImageResponse:
        if not req.image.name:
            raise InvalidArgument("image name must not be empty")
        target = _target(req.image.target)
        # Check, then put: the metadata store has no create-only insert. Two
        # creates of one name racing both succeed and the later target wins,
        # which is what an Update after ALREADY_EXISTS (ctr's retry) does anyway.
        try:
            self.metadata.get_image(req.image.name)
        except NotFound:
            image = self.metadata.put_image(req.image.name, target, dict(req.image.labels))
            return pb.CreateImageResponse(image=convert.image_message(image))
        raise AlreadyExists(f"image {req.image.name} already exists")

    def update(
        self, req: pb.UpdateImageRequest, context: grpc.ServicerContext
    ) -> pb.UpdateImageResponse:
        name = req.image.name
        if not name:
            raise InvalidArgument("image name must not be empty")
        current = self.metadata.get_image(name)
        paths = list(req.update_mask.paths)
        for p in paths:
            if p not in ("target", "labels", "name") and not p.startswith("labels."):
                raise InvalidArgument(f"image {name}: cannot update field {p!r}")
        # Everything checked before anything changes: a refused label must
        # not leave a new target behind.
        target = _target(req.image.target) if not paths or "target" in paths else None
        labels = convert.labels_by_mask(current.labels, dict(req.image.labels), paths)
        if labels is not None:
            validate_labels(labels)
        if target is not None:
            self.metadata.put_image(name, target)
        if labels is not None:
            self.metadata.update_labels(name, labels, replace=True)
        image = self.metadata.get_image(name)
        return pb.UpdateImageResponse(image=convert.image_message(image))

    def delete(self, req: pb.DeleteImageRequest, context: grpc.ServicerContext) -> Empty:
        self.metadata.delete_image(req.name)
        return Empty()
