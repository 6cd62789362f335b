"""Pushing to one repository: blob uploads (see upload.py), mounts, manifests.

``push(desc)`` answers with a content ``Writer`` — or ``AlreadyExists`` when
the registry has the object, or ``Mounted`` when a cross-repository mount
(``POST ?mount=<digest>&from=<repo>``) made it exist without a byte sent. A
registry that cannot mount answers 202 with an upload session, which the
writer then uses. Only objects of at least ``PushOptions.lookup_min`` bytes
are looked up first (``HEAD``); smaller ones go without asking (see
upload.PushOptions), blobs in one request where the registry takes that
(singlepost.SinglePost). Manifests are buffered and sent in one ``PUT
/v2/<name>/manifests/<tag|digest>`` with their exact bytes and their media
type as ``Content-Type``; pushing children before parents is the caller's
part (push.py, copy.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from ocidist.content import Status, Writer
from ocidist.descriptor import (
    ACCEPT_MANIFESTS,
    DISTRIBUTION_SOURCE,
    MAX_MANIFEST_SIZE,
    Descriptor,
    is_manifest_or_index,
)
from ocidist.digest import Digest
from ocidist.errors import (
    AlreadyExists,
    DigestMismatch,
    FailedPrecondition,
    InvalidContent,
    Mounted,
    NotFound,
)
from ocidist.remotes.docker.auth import pull_scope, push_scope
from ocidist.remotes.docker.hosts import RegistryHost
from ocidist.remotes.docker.session import Session
from ocidist.remotes.docker.singlepost import SinglePost
from ocidist.remotes.docker.transport import Response
from ocidist.remotes.docker.upload import BlobWriter, PushOptions, check_digest

__all__ = ["DockerPusher", "Mounted", "PushOptions"]  # Mounted: errors.Mounted


def delete_scope(path: str) -> str:
    # Distribution's token auth wants the "delete" action for DELETE requests.
    return f"repository:{path}:delete"


class DockerPusher:
    def __init__(
        self,
        session: Session,
        host: RegistryHost,
        path: str,
        options: PushOptions | None = None,
        *,
        domain: str = "",
        tag: str | None = None,
        tagged: Digest | None = None,
    ) -> None:
        self._session = session
        self._host = host
        self.path = path
        self.options = options or PushOptions()
        self.single_post = SinglePost(self.options.single_post)
        self._domain = domain  # the registry as references name it (mount sources)
        self._tag = tag  # from the ref: manifests go under it…
        self._tagged = tagged  # …only this one, when the ref names a digest too

    # -- Pusher ------------------------------------------------------------------

    def push(self, desc: Descriptor) -> Writer:
        """A writer uploading ``desc``; AlreadyExists when the registry has it.

        A manifest goes under the pusher's tag when its ref gave one (see
        ``_tag_for``), else under its digest. A blob's
        ``containerd.io/distribution.source.<registry>`` annotation names
        other repositories of this registry known to hold it, tried as mount
        sources before uploading.
        """
        look = self.asks_first(desc)
        if is_manifest_or_index(desc.media_type):
            tag = self._tag_for(desc)
            if look and self.exists(desc):
                raise AlreadyExists(f"{self._what(desc, tag)}: already exists")
            return ManifestWriter(self, desc, tag)
        if look and self.exists(desc):
            raise AlreadyExists(f"{self._what(desc)}: already exists")
        return self._start_upload(desc, self._mount_sources(desc), look)

    def asks_first(self, desc: Descriptor) -> bool:
        return desc.size < 0 or desc.size >= self.options.lookup_min

    def _tag_for(self, desc: Descriptor) -> str | None:
        if self._tag is None or not is_manifest_or_index(desc.media_type):
            return None
        return self._tag if self._tagged in (None, desc.digest) else None

    def _mount_sources(self, desc: Descriptor) -> list[str]:
        value = desc.annotations.get(DISTRIBUTION_SOURCE + self._domain, "")
        # containerd keeps a comma-separated list.
        return [r for r in value.split(",") if r and r != self.path]

    def exists(self, desc: Descriptor) -> bool:
        """Whether the registry holds ``desc`` (a manifest the pusher tags:
        whether the tag points at ``desc``)."""
        tag = self._tag_for(desc)
        manifest = is_manifest_or_index(desc.media_type)
        endpoint = "manifests" if manifest else "blobs"
        obj = tag if (manifest and tag) else str(desc.digest)
        headers = {"Accept": ", ".join((desc.media_type, *ACCEPT_MANIFESTS))} if manifest else {}
        try:
            resp = self._session.request(
                self._host,
                "HEAD",
                f"/{self.path}/{endpoint}/{obj}",
                scopes=(push_scope(self.path),),
                headers=headers,
                what=self._what(desc, tag),
            )
        except NotFound:
            return False
        resp.close()
        if manifest and tag:
            # A tag exists; it is "ours" only when it names this very digest.
            return (resp.header("Docker-Content-Digest") or "").strip() == str(desc.digest)
        return True

    # -- blobs ---------------------------------------------------------------------

    def _start_upload(self, desc: Descriptor, sources: list[str], eager: bool) -> BlobWriter:
        """A writer for ``desc``: after a mount attempt's 202, in that session;
        otherwise in a session opened now (``eager``) or by the writer when
        its bytes go (a small blob: at commit, perhaps in a single POST)."""
        what = self._what(desc)
        scopes: tuple[str, ...] = (push_scope(self.path),)
        first: Response | None = None
        for src in sources[:3]:
            mount_scopes = (push_scope(self.path), pull_scope(src))
            resp = self._session.request(
                self._host,
                "POST",
                f"/{self.path}/blobs/uploads/?mount={desc.digest}&from={src}",
                scopes=mount_scopes,
                what=what,
                idempotent=True,  # bodiless, like the plain POST below
                ok=(201, 202),
            )
            resp.read_capped(64 * 1024)
            if resp.status == 201:
                raise Mounted(f"{what}: mounted from {src}", src)
            # 202: not mountable from there; the answer is an upload session.
            first, scopes = resp, mount_scopes
            break

        def start() -> Response:
            resp = self._session.request(
                self._host,
                "POST",
                f"/{self.path}/blobs/uploads/",
                scopes=(push_scope(self.path),),
                what=what,
                # Bodiless: a replay after a dropped connection costs at most
                # an abandoned session the registry expires; not replaying
                # failed the whole push on one drop (make reliability).
                idempotent=True,
                ok=(202,),
            )
            resp.read_capped(64 * 1024)
            return resp

        if first is None and eager:
            first = start()
        return BlobWriter(
            self._session,
            self._host,
            scopes,
            what,
            desc.digest,
            desc.size,
            start,
            first,
            self.options,
            exists=lambda: self.exists(desc),
            uploads=f"{self._host.base}/{self.path}/blobs/uploads/",
            single=self.single_post,
        )

    # -- manifests -------------------------------------------------------------------

    def put_manifest(self, desc: Descriptor, data: bytes) -> str | None:
        """PUT ``data`` (exactly these bytes) as ``desc`` under the pusher's
        tag for it (see ``_tag_for``) or its digest.

        Returns the answer's ``OCI-Subject`` header: a registry with the
        referrers API names the pushed manifest's subject there (OCI
        distribution-spec 1.1); without it, the referrers tag is the client's job."""
        return self._put_manifest(desc, data, self._tag_for(desc))

    def _put_manifest(self, desc: Descriptor, data: bytes, tag: str | None) -> str | None:
        what = self._what(desc, tag)
        if len(data) != desc.size or Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
            raise DigestMismatch(f"{what}: manifest bytes do not match {desc.digest}")
        resp = self._session.request(
            self._host,
            "PUT",
            f"/{self.path}/manifests/{tag or desc.digest}",
            scopes=(push_scope(self.path),),
            headers={"Content-Type": desc.media_type},
            body=data,
            what=what,
            # We hold the bytes and a PUT of the same manifest is idempotent.
            idempotent=True,
            ok=(201, 200, 204),
        )
        resp.read_capped(64 * 1024)
        check_digest(resp, desc.digest, what)
        return resp.header("OCI-Subject")

    def delete_manifest(self, dgst: Digest) -> None:
        """DELETE a manifest by digest (the registry must allow deletes)."""
        resp = self._session.request(
            self._host,
            "DELETE",
            f"/{self.path}/manifests/{dgst}",
            scopes=(push_scope(self.path), delete_scope(self.path)),
            what=f"{self.path}@{dgst}",
            ok=(202, 200, 204),
        )
        resp.read_capped(64 * 1024)

    def _what(self, desc: Descriptor, tag: str | None = None) -> str:
        return f"{self.path}:{tag}" if tag else f"{self.path}@{desc.digest}"


class ManifestWriter:
    """Buffers a manifest (they are small) and PUTs it whole on commit."""

    def __init__(self, pusher: DockerPusher, desc: Descriptor, tag: str | None) -> None:
        self._pusher = pusher
        self._desc = desc
        self._tag = tag
        self._buf = bytearray()
        self._started_at = self._updated_at = time.time()
        self._done = False

    def write(self, data: bytes | memoryview) -> int:
        if self._done:
            raise FailedPrecondition(f"{self._desc.digest}: writer is closed")
        if len(self._buf) + len(data) > MAX_MANIFEST_SIZE:
            raise InvalidContent(f"{self._desc.digest}: manifest exceeds {MAX_MANIFEST_SIZE} bytes")
        self._buf += data
        self._updated_at = time.time()
        return len(data)

    def status(self) -> Status:
        return Status(
            key=f"push-{self._desc.digest}",
            offset=len(self._buf),
            total=self._desc.size,
            expected=self._desc.digest,
            started_at=self._started_at,
            updated_at=self._updated_at,
        )

    def digest(self) -> Digest:
        return Digest.from_bytes(memoryview(self._buf), self._desc.digest.algorithm)

    def truncate(self, size: int) -> None:
        if size != 0:
            raise FailedPrecondition("a manifest upload can only restart from 0")
        self._buf = bytearray()

    def commit(self, size: int, expected: Digest, labels: Mapping[str, str] | None = None) -> None:
        if self._done:
            raise AlreadyExists(f"{self._desc.digest}: already committed")
        if len(self._buf) != size or expected != self._desc.digest:
            raise DigestMismatch(f"{self._desc.digest}: manifest bytes do not match {expected}")
        # put_manifest checks the bytes against the digest (once).
        self._pusher._put_manifest(self._desc, bytes(self._buf), self._tag)
        self._done = True

    def close(self) -> None:
        self._done = True
        self._buf = bytearray()
