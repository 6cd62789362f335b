"""Resolving references against registries (OCI distribution-spec).

HEAD ``/v2/<name>/manifests/<tag|digest>`` with every manifest and index type
in ``Accept``; ``Docker-Content-Digest`` is trusted for tags only when present
with a known length, otherwise (or on 405) the manifest is fetched and hashed.
For a digest reference the reference's digest is the truth: the header never
overrides it, and a fetched body must hash to it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ocidist import reference
from ocidist.content.tuning import Tuning
from ocidist.descriptor import (
    ACCEPT_MANIFESTS,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    MAX_MANIFEST_SIZE,
    Descriptor,
    is_manifest_or_index,
    is_media_type,
    strip_params,
)
from ocidist.digest import Digest, InvalidDigest
from ocidist.errors import (
    DigestMismatch,
    DistError,
    InvalidContent,
    NotFound,
    Unavailable,
)
from ocidist.manifest import detect_media_type
from ocidist.remotes.docker.auth import Authorizer, CredentialFunc, no_credentials, pull_scope
from ocidist.remotes.docker.fetcher import DockerFetcher
from ocidist.remotes.docker.hosts import PULL, PUSH, RESOLVE, RegistryHost, first_success
from ocidist.remotes.docker.hostsconfig import configure_hosts
from ocidist.remotes.docker.proxy import ProxyConfig
from ocidist.remotes.docker.retry import RetryPolicy
from ocidist.remotes.docker.session import Session
from ocidist.remotes.docker.token import HTTPTokenSource
from ocidist.remotes.docker.transport import Deadline, Response, Transport
from ocidist.text import quote
from ocidist.value import Value

if TYPE_CHECKING:
    from ocidist.remotes.docker.pusher import DockerPusher, PushOptions

DEFAULT_RETRY = RetryPolicy()
HostsFunc = Callable[[str], list[RegistryHost]]


class ResolverOptions(Value):
    __slots__ = (
        "plain_http",
        "insecure",
        "deadline",
        "hosts_dir",
        "credentials",
        "retry",
        "pool_size",
        "hosts",
        "push",
        "proxies",
        "ranges",
    )
    _no_hash = ("credentials", "hosts", "push", "proxies")
    plain_http: bool
    insecure: bool
    deadline: float | None
    hosts_dir: str | None
    credentials: CredentialFunc
    retry: RetryPolicy
    pool_size: int
    hosts: HostsFunc | None
    push: PushOptions | None
    proxies: ProxyConfig | None
    ranges: Tuning | None

    def __init__(
        self,
        plain_http: bool = False,
        insecure: bool = False,
        deadline: float | None = None,  # time.monotonic() value for the whole command
        hosts_dir: str | None = None,
        credentials: CredentialFunc = no_credentials,
        retry: RetryPolicy = DEFAULT_RETRY,
        pool_size: int = 16,
        hosts: HostsFunc | None = None,  # overrides hosts_dir/default lookup
        push: PushOptions | None = None,  # for every pusher() not given its own
        proxies: ProxyConfig | None = None,  # None: from the environment (proxy.py)
        # Parallel ranged fetch of big blobs (content/parallel.py); None: defaults.
        ranges: Tuning | None = None,
    ) -> None:
        object.__setattr__(self, "plain_http", plain_http)
        object.__setattr__(self, "insecure", insecure)
        object.__setattr__(self, "deadline", deadline)
        object.__setattr__(self, "hosts_dir", hosts_dir)
        object.__setattr__(self, "credentials", credentials)
        object.__setattr__(self, "retry", retry)
        object.__setattr__(self, "pool_size", pool_size)
        object.__setattr__(self, "hosts", hosts)
        object.__setattr__(self, "push", push)
        object.__setattr__(self, "proxies", proxies)
        object.__setattr__(self, "ranges", ranges)


class DockerResolver:
    def __init__(self, options: ResolverOptions | None = None) -> None:
        self.options = opts = options or ResolverOptions()
        proxies = opts.proxies or ProxyConfig.from_environment()
        self.transport = Transport(pool_size=opts.pool_size, proxies=proxies)
        self.deadline = Deadline(opts.deadline)
        self.tokens = HTTPTokenSource(self.transport, deadline=self.deadline)
        self.session = Session(
            self.transport,
            Authorizer(self.tokens, opts.credentials),
            retry=opts.retry,
            deadline=self.deadline,
        )
        self._fetchers: dict[str, DockerFetcher] = {}
        self._hosts: dict[str, list[RegistryHost]] = {}
        self._lock = threading.Lock()

    def hosts(self, domain: str) -> list[RegistryHost]:
        """Mirrors first, then the upstream (hosts.toml under ``hosts_dir``)."""
        if self.options.hosts is not None:
            return self.options.hosts(domain)
        with self._lock:
            hosts = self._hosts.get(domain)
        if hosts is None:
            hosts = configure_hosts(
                domain,
                hosts_dir=self.options.hosts_dir,
                plain_http=self.options.plain_http,
                insecure=self.options.insecure,
            )
            with self._lock:
                self._hosts[domain] = hosts
            for h in hosts:
                if h.scheme == "https":
                    # Configured as HTTPS: no credential to its name over
                    # plain HTTP (origin.py, rule 2).
                    self.transport.https.add(h.origin.host)
        return hosts

    def fetcher(self, ref: str) -> DockerFetcher:
        r = reference.parse(ref)
        # Outside the lock: hosts() takes it too.
        pull = [h for h in self.hosts(r.domain) if PULL in h.capabilities]
        with self._lock:
            f = self._fetchers.get(r.repository)
            if f is None:
                # Flags beat hosts.toml; the first pull host's keys apply.
                tuning = self.options.ranges or next((h.ranges for h in pull if h.ranges), None)
                f = DockerFetcher(self.session, pull, r.path, tuning)
                self._fetchers[r.repository] = f
            return f

    def pusher(self, ref: str, options: PushOptions | None = None) -> DockerPusher:
        """A pusher for ``ref``'s repository on the first host that may push
        (mirrors are usually pull-only; the upstream comes last and can).
        ``ref``'s tag, if any, is where its manifests go (with a digest too:
        only that manifest), as containerd's pusher takes it."""
        # Imported here: the upload machinery is not needed to fetch.
        from ocidist.remotes.docker.pusher import DockerPusher

        r = reference.parse(ref, default_tag="")
        push = [h for h in self.hosts(r.domain) if PUSH in h.capabilities]
        if not push:
            raise NotFound(f"{r.name}: no host configured to push to {r.domain}")
        return DockerPusher(
            self.session,
            push[0],
            r.path,
            options or self.options.push,
            domain=r.domain,
            tag=r.tag,
            tagged=r.digest,
        )

    def warm(self, ref: str, n: int) -> None:
        """Open up to ``n`` connections to the host ``ref`` is pulled from,
        in the background (see ``Transport.warm``)."""
        try:
            r = reference.parse(ref)
            hosts = [h for h in self.hosts(r.domain) if PULL in h.capabilities]
        except DistError:
            return
        if hosts:
            self.transport.warm(hosts[0].base, n, hosts[0].tls)

    def resolve(self, ref: str) -> tuple[str, Descriptor]:
        """``ref``'s canonical name and descriptor, by HEAD (Docker Hub
        counts manifest GETs against the pull rate limit, not HEADs)."""
        name, desc, _ = self._resolve(ref, get=False)
        return name, desc

    def resolve_manifest(self, ref: str) -> tuple[str, Descriptor, bytes | None]:
        """``ref``'s name, descriptor and, read by the same GET, the manifest
        itself (verified against the digest): for a caller that reads it next
        (a pull), one round trip less. None for a digest only ``blobs/`` knows."""
        return self._resolve(ref, get=True)

    def _resolve(self, ref: str, *, get: bool) -> tuple[str, Descriptor, bytes | None]:
        r = reference.parse(ref)
        hosts = [h for h in self.hosts(r.domain) if RESOLVE in h.capabilities]
        if not hosts:
            raise NotFound(f"{r.name}: no host configured to resolve {r.domain}")
        # A mirror that is down, failing or missing the image is skipped; the
        # final error names every host and why, typed like the upstream's.
        desc, data = first_success(r.name, hosts, lambda h: self._resolve_on(h, r, get=get))
        return r.name, desc, data

    def _resolve_on(
        self, host: RegistryHost, r: reference.Reference, *, get: bool = False
    ) -> tuple[Descriptor, bytes | None]:
        path = f"/{r.path}/manifests/{r.object}"
        scopes = (pull_scope(r.path),)
        accept = ", ".join((*ACCEPT_MANIFESTS, "*/*"))
        try:
            resp = self.session.request(
                host,
                "GET" if get else "HEAD",
                path,
                scopes=scopes,
                headers={"Accept": accept},
                what=r.name,
                ok=(200,) if get else (200, 405),
            )
        except NotFound:
            if r.digest is None:
                raise
            return self._resolve_blob(host, r, r.digest), None
        if get:
            return self._body_descriptor(host, r, path, scopes, accept, resp)
        resp.close()
        if resp.status == 200:
            desc = _descriptor_from_head(resp, r.digest)
            if desc is not None:
                return desc, None
        # Some registries answer 405 to HEAD or omit Docker-Content-Digest: GET and hash.
        resp = self.session.request(
            host, "GET", path, scopes=scopes, headers={"Accept": accept}, what=r.name
        )
        return self._descriptor_from_body(r, resp)

    def _body_descriptor(
        self,
        host: RegistryHost,
        r: reference.Reference,
        path: str,
        scopes: tuple[str, ...],
        accept: str,
        resp: Response,
    ) -> tuple[Descriptor, bytes]:
        """The descriptor from a GET's body, and the body; a body that breaks off is asked
        for again, whole, within the retry policy. Not resumed with Range: for
        a tag, the second answer may be another manifest, and a spliced body
        would hash to a digest nobody pushed."""
        tries = self.session.retry.begin(r.name, self.session.deadline)
        while True:
            try:
                return self._descriptor_from_body(r, resp)
            except Unavailable as e:
                tries.failed(e)
            resp = self.session.request(
                host,
                "GET",
                path,
                scopes=scopes,
                headers={"Accept": accept},
                what=r.name,
                attempts=tries,
            )

    def _descriptor_from_body(
        self, r: reference.Reference, resp: Response
    ) -> tuple[Descriptor, bytes]:
        body = resp.read_capped(MAX_MANIFEST_SIZE)
        media_type = _media_type(resp.header("Content-Type"), body)
        if r.digest is not None:
            got = Digest.from_bytes(body, r.digest.algorithm)
            if got != r.digest:
                raise DigestMismatch(f"{r.name}: digest mismatch: registry sent {got}")
            dgst = r.digest
        else:
            dgst = Digest.from_bytes(body)
        return Descriptor(media_type=media_type, digest=dgst, size=len(body)), body

    def describe(self, ref: str, dgst: Digest, media_type: str = "") -> Descriptor:
        """The descriptor of object ``dgst`` in ``ref``'s repository, by HEAD.

        A manifest-typed hint tries ``manifests/`` first and ``blobs/`` only on
        404. Without a hint (or with a blob type) ``blobs/`` goes first: every
        object, manifests included, is a blob to the registry, while
        Distribution 2.8 answers ``manifests/<digest of a layer>`` with 500
        UNKNOWN rather than 404 (seen 2026-11 with docker-registry 2.8.2).
        """
        r = reference.parse(ref).with_digest(dgst)
        hosts = [h for h in self.hosts(r.domain) if RESOLVE in h.capabilities]
        if not hosts:
            raise NotFound(f"{r.name}: no host configured to resolve {r.domain}")
        desc = first_success(r.name, hosts, lambda h: self._describe_on(h, r, dgst, media_type))
        if media_type and desc.media_type != media_type:
            return Descriptor(media_type=media_type, digest=dgst, size=desc.size)
        return desc

    def _describe_on(
        self, host: RegistryHost, r: reference.Reference, dgst: Digest, media_type: str
    ) -> Descriptor:
        if is_manifest_or_index(media_type):
            return self._resolve_on(host, r)[0]
        try:
            return self._resolve_blob(host, r, dgst)
        except NotFound:
            return self._resolve_on(host, r)[0]

    def _resolve_blob(self, host: RegistryHost, r: reference.Reference, dgst: Digest) -> Descriptor:
        # Only a digest reference may fall back to blobs/, and only on 404.
        resp = self.session.request(
            host, "HEAD", f"/{r.path}/blobs/{dgst}", scopes=(pull_scope(r.path),), what=r.name
        )
        resp.close()
        size = resp.content_length()
        if size is None:
            raise InvalidContent(f"{r.name}: registry gave no size for the blob")
        mt = strip_params(resp.header("Content-Type") or "")
        if not is_media_type(mt):
            mt = "application/octet-stream"  # what a blob is when its type is garbage
        return Descriptor(media_type=mt, digest=dgst, size=size)

    def close(self) -> None:
        self.transport.close()


def _descriptor_from_head(resp: Response, ref_digest: Digest | None) -> Descriptor | None:
    """A descriptor from HEAD headers, or None when they are not enough to trust."""
    size = resp.content_length()
    ct = resp.header("Content-Type")
    header = resp.header("Docker-Content-Digest")
    if size is None or not ct:
        return None
    media_type = strip_params(ct)
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise InvalidContent("schema1 manifests are not supported")
    if not is_manifest_or_index(media_type):
        return None  # e.g. text/plain or application/json: let GET sniff the body
    if size > MAX_MANIFEST_SIZE:
        raise InvalidContent(f"manifest of {size} bytes exceeds {MAX_MANIFEST_SIZE}")
    if ref_digest is not None:
        return Descriptor(media_type=media_type, digest=ref_digest, size=size)
    if not header:
        return None
    try:
        dgst = Digest.parse(header.strip())
    except InvalidDigest:
        return None  # a registry sending a broken header: hash the body instead
    return Descriptor(media_type=media_type, digest=dgst, size=size)


def _media_type(content_type: str | None, body: bytes) -> str:
    mt = strip_params(content_type or "")
    if mt in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise InvalidContent("schema1 manifests are not supported")
    if not is_manifest_or_index(mt):
        mt = detect_media_type(body)
        if mt in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
            raise InvalidContent("schema1 manifests are not supported")
        if not is_manifest_or_index(mt):
            raise InvalidContent(f"unsupported manifest media type '{quote(mt, 80)}'")
    return mt
