"""The library in one object: ``from ocidist import Client``.

A `Client` holds what every operation needs — a registry resolver (hosts
directory, credentials, TLS, a deadline) and the local content store with its
image names — built lazily with the same defaults as the `dist` command, and
closes them when done::

    from ocidist import Client

    with Client() as client:                        # ~/.local/share/ocidist
        name, desc = client.resolve("alpine:3")
        client.pull("alpine:3", platform="linux/arm64")
        client.unpack("alpine:3", "rootfs/", platform="linux/arm64")

Every method is a thin call into the compositions (`ocidist.pull`,
`ocidist.push`, `ocidist.copy`, `ocidist.unpack`, `ocidist.artifact`,
`ocidist.images.inspect`); use those directly to plug in another store,
metadata or resolver (they take the Protocols in `ocidist.content`,
`ocidist.metadata` and `ocidist.remotes`). Errors are `ocidist.errors.DistError`
subclasses (`NotFound`, `Unauthorized`, `DigestMismatch`, `TimedOut`, …).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ocidist.descriptor import Descriptor
from ocidist.value import Value

if TYPE_CHECKING:
    from ocidist.artifact import ArtifactPush, Pulled
    from ocidist.content import Store
    from ocidist.copy import CopyResult
    from ocidist.images.platforms import MatchComparer
    from ocidist.metadata import Image, Metadata
    from ocidist.progress import Progress
    from ocidist.pull import PullResult
    from ocidist.push import PushResult
    from ocidist.remotes.docker.auth import CredentialFunc
    from ocidist.remotes.docker.resolver import DockerResolver
    from ocidist.unpack import UnpackResult

__all__ = ["Client", "ProgressEvent"]


class ProgressEvent(Value):
    """One step of a transfer, given to a ``progress`` callback.

    ``event`` is ``start`` (``offset``: bytes already held when resuming),
    ``progress`` (``offset``: bytes held now), or what became of the object:
    ``fetched``, ``exists``, ``pushed``, ``mounted``, ``applied``. ``kind`` is
    ``index``, ``manifest``, ``config``, ``layer`` or ``blob``. The same
    events as `dist --json` prints (docs/JSON.md): ``progress`` at most every
    0.5 s per object. The callback is never called from two threads at once
    (transfers wait while it runs: keep it quick), and an object's
    ``progress`` never follows its outcome."""

    __slots__ = ("event", "descriptor", "kind", "offset")
    event: str
    descriptor: Descriptor
    kind: str
    offset: int

    def __init__(self, event: str, descriptor: Descriptor, kind: str, offset: int) -> None:
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "descriptor", descriptor)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "offset", offset)

    def __repr__(self) -> str:
        return (
            f"ProgressEvent({self.event!r}, {self.kind} {self.descriptor.digest}, "
            f"{self.offset}/{self.descriptor.size})"
        )


ProgressCallback = Callable[[ProgressEvent], None]


def _callback_progress(callback: ProgressCallback) -> Progress:
    """The events `dist --json` prints, as `ProgressEvent`s to ``callback``."""
    from ocidist.progress import EventProgress

    def sink(event: str, desc: Descriptor, kind: str, offset: int) -> None:
        callback(ProgressEvent(event, desc, kind, offset))

    return EventProgress(sink)


class Client:
    """Registry operations and the local store, with `dist`'s defaults.

    Args:
        root: the content store directory (default ``$DIST_ROOT``, else
            ``$XDG_DATA_HOME/ocidist``, i.e. ``~/.local/share/ocidist``).
        credentials: ``{registry: (user, password)}``, each pair for that
            registry (``host[:port]``; ``docker.io`` for Docker Hub) and its
            token service alone, as `dist --user`: never for a mirror
            hosts.toml lists for it, nor another registry (a copy's other
            side); everything else from the files. Or a function
            ``host -> Credential | None``, asked for every host contacted,
            mirrors included: it decides. Default: Docker's ``config.json``
            (and its helpers), then podman/skopeo's ``auth.json``; with
            ``$REGISTRY_AUTH_FILE`` set, that file alone.
        hosts_dir: containerd-style ``certs.d`` directory for mirrors and TLS
            (default ``$DIST_HOSTS_DIR``, else ``~/.config/ocidist/certs.d``).
        plain_http: talk plain HTTP to registries that are not loopback.
        insecure: skip TLS certificate verification.
        timeout: seconds for everything this client does, from its creation
            (None: no deadline).
        concurrency: parallel transfers (0: 2 per core, at least 4).
        progress: a callback given every `ProgressEvent` (each method also
            takes one).

    Example::

        from ocidist import Client

        with Client(root="/tmp/store", credentials={"ghcr.io": ("ci", token)}) as client:
            result = client.pull("ghcr.io/org/app:1.2", platform="linux/amd64")
            print(result.name, result.target.digest, result.fetched_bytes)
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        credentials: Mapping[str, tuple[str, str]] | CredentialFunc | None = None,
        hosts_dir: str | os.PathLike[str] | None = None,
        plain_http: bool = False,
        insecure: bool = False,
        timeout: float | None = None,
        concurrency: int = 0,
        progress: ProgressCallback | None = None,
    ) -> None:
        from ocidist.paths import default_root

        self.root = os.fspath(root or os.environ.get("DIST_ROOT") or default_root())
        if isinstance(credentials, tuple):
            from ocidist.errors import InvalidArgument

            # It was "for every registry": every host contacted, mirrors
            # and the other side of a copy included.
            raise InvalidArgument(
                "Client: credentials=(user, password) names no registry, and a password "
                "goes to one registry only: give {registry: (user, password)}"
            )
        self._credentials = credentials
        hosts = hosts_dir or os.environ.get("DIST_HOSTS_DIR")
        self._hosts_dir = os.fspath(hosts) if hosts else None
        self._plain_http = plain_http
        self._insecure = insecure
        self._deadline = time.monotonic() + timeout if timeout else None
        self.concurrency = concurrency
        self._progress = progress
        self._resolver: DockerResolver | None = None
        self._store: Store | None = None
        self._metadata: Metadata | None = None

    # Services, built on first use -------------------------------------------

    @property
    def resolver(self) -> DockerResolver:
        """The registry resolver (hosts, credentials, TLS, deadline)."""
        if self._resolver is None:
            from ocidist.remotes.docker.resolver import DockerResolver, ResolverOptions

            self._resolver = DockerResolver(
                ResolverOptions(
                    plain_http=self._plain_http,
                    insecure=self._insecure,
                    deadline=self._deadline,
                    hosts_dir=self._hosts_dir,
                    credentials=self._credential_func(),
                )
            )
        return self._resolver

    @property
    def store(self) -> Store:
        """The content store under ``root``."""
        if self._store is None:
            from ocidist.content.local import LocalStore

            self._store = LocalStore(self.root)
        return self._store

    @property
    def metadata(self) -> Metadata:
        """Image names and what they point at (``root``/metadata.db)."""
        if self._metadata is None:
            from ocidist.metadata import MetadataStore

            self._metadata = MetadataStore(os.path.join(self.root, "metadata.db"))
        return self._metadata

    def _credential_func(self) -> CredentialFunc:
        from ocidist.remotes.docker import credentials as creds
        from ocidist.remotes.docker.auth import Credential
        from ocidist.remotes.docker.authfile import stored

        given = self._credentials
        if given is None:
            return stored()
        if not isinstance(given, Mapping):
            return given
        bound = [
            creds.for_registry(registry, Credential(username=user, secret=password))
            for registry, (user, password) in given.items()
        ]
        return creds.chain(*bound, stored())

    @contextmanager
    def _progress_for(self, callback: ProgressCallback | None) -> Iterator[Progress | None]:
        """The operation's progress, closed when it ends (its sender thread stops)."""
        chosen = callback or self._progress
        if chosen is None:
            yield None
            return
        progress = _callback_progress(chosen)
        try:
            yield progress
        finally:
            progress.close()

    # Operations ----------------------------------------------------------------

    def resolve(self, ref: str) -> tuple[str, Descriptor]:
        """The canonical name and descriptor of ``ref``.

        >>> name, desc = client.resolve("redis")  # doctest: +SKIP
        >>> name
        'docker.io/library/redis:latest'
        """
        return self.resolver.resolve(ref)

    def pull(
        self,
        ref: str,
        *,
        platform: str | Sequence[str] | None = None,
        all_platforms: bool = False,
        progress: ProgressCallback | None = None,
    ) -> PullResult:
        """Fetch ``ref`` (index, manifests, config, layers) into the store and
        record its name. ``platform``: ``"linux/arm64"`` or several (default:
        this machine's); an index without a match raises `NotFound` listing
        the platforms it has.

        >>> result = client.pull("alpine:3", platform="linux/arm64")  # doctest: +SKIP
        >>> result.name, len(result.fetched), result.fetched_bytes  # doctest: +SKIP
        """
        from ocidist.images.platforms import selection
        from ocidist.pull import fetch_image

        wanted = [platform] if isinstance(platform, str) else list(platform or [])
        matcher, limit = selection(wanted, all_platforms)
        with self._progress_for(progress) as prog:
            return fetch_image(
                self.resolver,
                self.store,
                self.metadata,
                ref,
                matcher=matcher,
                limit=limit,
                concurrency=self.concurrency,
                progress=prog,
            )

    def push(
        self,
        name: str,
        ref: str | None = None,
        *,
        platform: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> PushResult:
        """Push the stored image ``name`` to ``ref`` (default: ``name``).
        ``platform`` pushes that platform's manifest of an index alone.

        >>> client.push("localhost:5000/app:1", "registry.internal/app:1")  # doctest: +SKIP
        """
        from ocidist.push import push_image

        with self._progress_for(progress) as prog:
            return push_image(
                self.resolver,
                self.store,
                self.metadata,
                name,
                ref,
                concurrency=self.concurrency,
                progress=prog,
                platforms=_matcher(platform),
            )

    def copy(
        self,
        src: str,
        dst: str,
        *,
        platform: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> CopyResult:
        """Copy ``src`` to ``dst`` registry to registry, digests unchanged
        (every platform; with ``platform``, that platform's manifest alone).

        >>> client.copy("docker.io/library/alpine:3", "localhost:5000/alpine:3")  # doctest: +SKIP
        """
        from ocidist.copy import copy_image

        with self._progress_for(progress) as prog:
            return copy_image(
                self.resolver,
                src,
                dst,
                matcher=_matcher(platform),
                concurrency=self.concurrency,
                progress=prog,
            )

    def unpack(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        platform: str | None = None,
        force: bool = False,
        progress: ProgressCallback | None = None,
    ) -> UnpackResult:
        """Unpack image ``ref`` (a stored name or a reference; what is missing
        is fetched) into the directory ``dest``, which must be absent or
        empty unless ``force``. Layers are checked against the config's
        diff IDs and confined to ``dest``.

        >>> client.unpack("alpine:3", "rootfs/").diff_ids  # doctest: +SKIP
        """
        from ocidist.images.platforms import default_matcher
        from ocidist.unpack import unpack_image

        with self._progress_for(progress) as prog:
            return unpack_image(
                self.resolver,
                self.store,
                self.metadata,
                ref,
                os.fspath(dest),
                matcher=_matcher(platform) or default_matcher(),
                concurrency=self.concurrency,
                progress=prog,
                force=force,
            )

    def fetch_object(
        self, ref: str, obj: str | None = None, *, media_type: str = "", size: int = -1
    ) -> bytes:
        """The bytes of one object, verified against its digest: ``ref``'s
        manifest, or ``obj`` (a digest or a tag) in ``ref``'s repository.
        ``media_type`` and ``size`` (both) spare the lookup. For large blobs
        use ``client.resolver.fetcher(name).fetch(desc)``, a stream.

        >>> manifest = client.fetch_object("alpine:3")  # doctest: +SKIP
        >>> layer = client.fetch_object("alpine:3", "sha256:…")  # doctest: +SKIP
        """
        from ocidist.objects import describe

        hints = [f"mediatype:{media_type}"] if media_type else []
        hints += [f"size:{size}"] if size >= 0 else []
        name, desc = describe(self.resolver, ref, obj, hints)
        stream = self.resolver.fetcher(name).fetch(desc)
        try:
            return bytes(stream.read())
        finally:
            stream.close()

    def inspect(self, source: str, *, platform: str | None = None) -> dict[str, Any]:
        """What ``source`` is, as `dist --json inspect` prints it: an index's
        platforms, or an image's digest, platform, config facts and layers.
        ``source`` is a reference, ``oci:DIR[:TAG]``, ``oci-archive:FILE``,
        ``docker-archive:FILE`` or ``store:NAME``.

        >>> client.inspect("alpine:3", platform="linux/amd64")["layers"]  # doctest: +SKIP
        """
        from ocidist.images.inspect import choose, describe
        from ocidist.sources import open_source

        with open_source(
            source,
            resolver=lambda: self.resolver,
            store=lambda: self.store,
            metadata=lambda: self.metadata,
        ) as opened:
            return describe(opened, choose(opened, _matcher(platform)))

    def push_artifact(
        self,
        ref: str,
        files: Sequence[str | tuple[str, str]],
        *,
        artifact_type: str = "",
        annotations: Mapping[str, str] | None = None,
        subject: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> ArtifactPush:
        """Push files (paths, or ``(path, media type)``) as one OCI artifact
        to ``ref``, each a layer titled with its name; a directory is packed
        as tar+gzip as oras does. ``subject``: a reference the artifact
        refers to (an SBOM, a signature).

        >>> client.push_artifact("localhost:5000/models/bert:1", ["model.bin"],
        ...                      artifact_type="application/vnd.example.model")  # doctest: +SKIP
        """
        from ocidist.artifact import push_artifact

        pairs = [(f, None) if isinstance(f, str) else (f[0], f[1]) for f in files]
        subject_desc = self.resolver.resolve(subject)[1] if subject else None
        with self._progress_for(progress) as prog:
            return push_artifact(
                self.resolver,
                ref,
                pairs,
                artifact_type=artifact_type,
                annotations=annotations,
                subject=subject_desc,
                progress=prog,
                concurrency=self.concurrency,
            )

    def pull_artifact(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        media_types: Sequence[str] = (),
        progress: ProgressCallback | None = None,
    ) -> list[Pulled]:
        """Write each titled layer of artifact ``ref`` under ``dest`` (packed
        directories unpacked), optionally only those of ``media_types``.

        >>> pulled = client.pull_artifact("localhost:5000/models/bert:1", "out/")  # doctest: +SKIP
        >>> [p.path for p in pulled]  # doctest: +SKIP
        """
        from ocidist.artifact import pull_artifact

        with self._progress_for(progress) as prog:
            _, _, pulled = pull_artifact(
                self.resolver,
                ref,
                os.fspath(dest),
                media_types=media_types,
                progress=prog,
                concurrency=self.concurrency,
            )
        return pulled

    def images(self) -> list[Image]:
        """The names recorded in the store, with their targets."""
        return list(self.metadata.list_images())

    # Lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Close connections and the metadata store (the client can be used again)."""
        if self._resolver is not None:
            self._resolver.close()
            self._resolver = None
        if self._metadata is not None:
            self._metadata.close()
            self._metadata = None
        self._store = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _matcher(platform: str | None) -> MatchComparer | None:
    if not platform:
        return None
    from ocidist.descriptor import Platform
    from ocidist.images.platforms import only

    return only(Platform.parse(platform))
