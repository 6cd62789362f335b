"""`dist push-object`, `dist push NAME [REF]` and `dist copy SRC DST`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from ocidist.cli.context import Context
from ocidist.cli.transfer import add_transfer_options, progress_for
from ocidist.cli.usercreds import add_src_dest_options, refs

if TYPE_CHECKING:
    from ocidist.push import PushResult
    from ocidist.remotes.docker.pusher import PushOptions

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2}
_UNITS |= {"mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """``16MiB``, ``512k``, ``1000000``: a byte count for size options."""
    s = text.strip().lower()
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num) :].strip()
    try:
        value = float(num)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 16MiB, 512k)") from None
    if unit not in _UNITS or value <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 16MiB, 512k)")
    return int(value * _UNITS[unit])


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "push-object",
        examples=(
            "dist push-object localhost:5000/demo/blobs model.bin",
            "dist push-object localhost:5000/demo/app:1.0 manifest.json "
            "--media-type application/vnd.oci.image.manifest.v1+json",
        ),
        parents=[common],
        help="upload one object (the mirror of fetch-object); prints its digest",
        description="Upload FILE (or stdin) to REF's repository. A manifest or index media "
        "type is PUT under REF's tag (or its digest); anything else is a blob. With "
        "REF@digest the content must hash to that digest.",
    )
    p.add_argument("ref", metavar="REF", help="repository, with :tag for a manifest")
    p.add_argument("file", metavar="FILE", nargs="?", default="-", help="file, or - for stdin")
    p.add_argument(
        "--media-type",
        default="application/octet-stream",
        metavar="TYPE",
        help="media type of the object (default application/octet-stream)",
    )
    add_upload_options(p)
    p.set_defaults(handler=run_push_object, registries=refs("ref"))

    p = sub.add_parser(
        "push",
        examples=(
            "dist push localhost:5000/demo/hello:1.0 registry.internal/team/hello:1.0",
            "dist push localhost:5000/demo/multi:1.0 --platform linux/arm64",
        ),
        parents=[common],
        help="push a stored image to a registry",
        description="Push image NAME from the content store to REF (default: NAME). Blobs go "
        "first, in parallel, mounted from another repository of the same registry when "
        "they were fetched from there; manifests follow, children first, byte for byte.",
    )
    p.add_argument("name", metavar="NAME", help="image name in the store (see dist images ls)")
    p.add_argument("target", metavar="REF", nargs="?", help="where to push (default: NAME)")
    p.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="push only this platform's manifest of an index, as the image itself",
    )
    add_push_options(p)
    p.set_defaults(handler=run_push, registries=_push_target)

    p = sub.add_parser(
        "copy",
        examples=(
            "dist copy registry.a/app:1 registry.b/app:1",
            "dist copy docker.io/library/alpine:3 localhost:5000/alpine:3 --platform linux/amd64",
            "dist copy --referrers registry.a/app:1 registry.b/app:1",
            "dist copy --src-user alice --dest-user bob registry.a/app:1 registry.b/app:1",
            "dist copy oci:layout-dir:1.0 docker-archive:app.tar:app:1.0",
            "dist copy docker-archive:saved.tar localhost:5000/app:1",
        ),
        parents=[common],
        help="copy an image between registries, layouts, archives and the store",
        description="Copy SRC to DST. Each is a registry reference or oci:DIR[:TAG], "
        "oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG] (a `docker save` tarball; "
        "as a source also :@N) or store:NAME (the local store). Between registries blobs "
        "stream from one to the other (mounted when both are on the same registry); other "
        "copies go through a content store (the local one for store:, else a temporary "
        "one), every blob verified on the way in and again on the way out. By default every "
        "platform is copied and an index keeps its digest (a docker-archive holds one "
        "platform: this machine's unless --platform). An index cannot be filtered without "
        "changing its digest, so with --platform the matching platform manifest itself is "
        "copied and tagged (like crane copy --platform). Credentials typed on the command "
        "line go to one registry each: --src-user to SRC's, --dest-user to DST's (-u only "
        "when both sides are on one registry); the rest come from config.json/auth.json.",
    )
    p.add_argument("src", metavar="SRC", help="source: a reference or TRANSPORT:…")
    p.add_argument("dst", metavar="DST", help="destination: a reference or TRANSPORT:…")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="copy only this platform")
    p.add_argument("--all-platforms", action="store_true", help="copy every platform (default)")
    p.add_argument(
        "--via-store",
        action="store_true",
        help="fetch into the content store (--root) first, then push from it",
    )
    p.add_argument(
        "--referrers",
        action="store_true",
        help="also copy what refers to the image (signatures, SBOMs…), recursively",
    )
    add_src_dest_options(p)
    add_push_options(p)
    p.set_defaults(handler=run_copy, registries=refs("src", "dst"))


def _push_target(args: argparse.Namespace) -> dict[str, str]:
    """push NAME [REF]: the registry of REF, else of NAME (where it goes)."""
    return refs("target")(args) if args.target else refs("name")(args)


def add_upload_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chunk-size",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="bytes per PATCH for large blobs (default: the whole blob in one "
        "streamed PATCH; the registry's OCI-Chunk-Min-Length wins when larger)",
    )
    p.add_argument(
        "--monolithic-max",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="blobs up to this size go in one PUT (default 4MiB)",
    )


def add_push_options(p: argparse.ArgumentParser) -> None:
    add_upload_options(p)
    add_transfer_options(p, "uploads")


def push_options(args: argparse.Namespace, *, look_first: bool = False) -> PushOptions:
    """``look_first``: ask (HEAD) before sending any object, however small."""
    from ocidist.remotes.docker.pusher import PushOptions

    base = PushOptions()
    chunk = args.chunk_size or base.chunk_size
    mono = args.monolithic_max if args.monolithic_max is not None else base.monolithic_max
    lookup = 0 if look_first else base.lookup_min
    return PushOptions(chunk_size=chunk, monolithic_max=mono, lookup_min=lookup)


def _platform_matcher(text: str | None) -> Any:
    from ocidist.descriptor import Platform
    from ocidist.images.platforms import only

    return only(Platform.parse(text)) if text else None


def run_push_object(args: argparse.Namespace, ctx: Context) -> int:
    import io

    from ocidist import reference
    from ocidist.descriptor import MAX_MANIFEST_SIZE, Descriptor, is_manifest_or_index
    from ocidist.errors import DigestMismatch, InvalidArgument
    from ocidist.push import upload_blob

    media_type = args.media_type.strip()
    manifest = is_manifest_or_index(media_type)
    r = reference.parse(args.ref, default_tag="")
    if r.tag is not None and not manifest:
        raise InvalidArgument(
            f"push-object: {r.name}: only manifests can be tagged ({media_type} is a blob type)"
        )
    src = _open_input(args.file, MAX_MANIFEST_SIZE if manifest else -1)
    try:
        dgst, size = _hash(src, (r.digest.algorithm if r.digest else "sha256"))
        if r.digest is not None and dgst != r.digest:
            raise DigestMismatch(f"push-object: {r.name}: digest mismatch: the input is {dgst}")
        desc = Descriptor(media_type=media_type, digest=dgst, size=size)
        # The ref's tag, with the digest: only this object goes under it.
        tagged = f"{r.repository}:{r.tag}@{dgst}" if manifest and r.tag else r.repository
        pusher = ctx.resolver().pusher(tagged, push_options(args))

        def open_at(offset: int) -> Any:
            src.seek(offset, io.SEEK_SET)
            return _Unclosable(src)

        status = upload_blob(pusher, desc, open_at)
    finally:
        src.close()
    name = f"{r.repository}:{r.tag}" if (manifest and r.tag) else f"{r.repository}@{dgst}"
    if ctx.json:
        ctx.emit("pushed", {"name": name, **desc.to_json(), "status": status})
    else:
        print(dgst)
    return 0


class _Unclosable:
    """The input stays open across resumed copies; copy_from closes what it opens."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def readinto(self, buf: Any) -> int:
        return self._f.readinto(buf)  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        pass


def _open_input(path: str, cap: int) -> IO[bytes]:
    """A seekable copy of the input: the file itself, or stdin spooled."""
    import shutil
    import tempfile

    from ocidist.errors import InvalidContent

    if path != "-":
        import os

        from ocidist.errors import InvalidArgument

        if not os.path.isfile(path):
            raise InvalidArgument(f"push-object: {path}: no such file")
        return open(path, "rb")
    spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115
    shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
    if cap >= 0 and spool.tell() > cap:
        spool.close()
        raise InvalidContent(f"push-object: a manifest larger than {cap} bytes is refused")
    spool.seek(0)
    return spool


def _hash(f: IO[bytes], algorithm: str) -> tuple[Any, int]:
    from ocidist.digest import Digest, new_hasher

    h = new_hasher(algorithm)
    size = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while n := f.readinto(view):  # type: ignore[attr-defined]
        h.update(view[:n])
        size += n
    return Digest(algorithm, h.hexdigest()), size


def run_push(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.push import push_image

    matcher = _platform_matcher(args.platform)
    ctx.push_options = push_options(args)
    progress = progress_for(ctx, args)
    try:
        result = push_image(
            ctx.resolver(),
            ctx.store(),
            ctx.metadata(),
            args.name,
            args.target,
            concurrency=args.concurrency,
            progress=progress,
            platforms=matcher,
        )
    finally:
        progress.close()
    report(ctx, result)
    return 0


def run_copy(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.errors import InvalidArgument
    from ocidist.sources import is_registry

    if args.platform and args.all_platforms:
        raise InvalidArgument("--platform and --all-platforms exclude each other")
    registries = is_registry(args.src) and is_registry(args.dst)
    if args.referrers and not registries:
        raise InvalidArgument("--referrers: both SRC and DST must be registry references")
    if args.via_store and not registries:
        raise InvalidArgument("--via-store: only between registries (other copies use a store)")
    matcher = _platform_matcher(args.platform)
    # copy_image does not ask whether the destination has the image before
    # it starts (push_image does, see push.image_present): without a HEAD per
    # object a second copy would fetch and send every small blob again.
    ctx.push_options = push_options(args, look_first=registries)
    progress = progress_for(ctx, args)
    try:
        if registries:
            result = _copy_registries(args, ctx, matcher, progress)
        else:
            result = _copy_transports(args, ctx, matcher, progress)
    finally:
        progress.close()
    report(ctx, result)
    return 0


def _copy_registries(args: argparse.Namespace, ctx: Context, matcher: Any, progress: Any) -> Any:
    from ocidist import reference
    from ocidist.copy import copy_image

    def copy(src: str, dst: str, matcher: Any = matcher) -> Any:
        return copy_image(
            ctx.resolver(),
            src,
            dst,
            matcher=matcher,
            via_store=ctx.store() if args.via_store else None,
            concurrency=args.concurrency,
            progress=progress,
        )

    result = copy(args.src, args.dst)
    if args.referrers:
        from ocidist.referrers import copy_referrers

        src = reference.parse(result.source).repository
        dst = reference.parse(result.name).repository
        # Referrers are copied whole (every platform of an index they may be).
        found = copy_referrers(
            ctx.resolver(),
            src,
            dst,
            result.target,
            lambda s, d: copy(s, d, None).target,
            warn=ctx.warn,
        )
        result.referrers = found
    return result


@contextlib.contextmanager
def staging(near: str | None) -> Iterator[tuple[Any, Any]]:
    """A temporary content and metadata store for a copy, removed afterwards."""
    import shutil
    import tempfile

    from ocidist.content.local import LocalStore
    from ocidist.metadata import MetadataStore
    from ocidist.paths import big_temp_dir

    tmp = tempfile.mkdtemp(prefix=".ocidist-copy-", dir=near or big_temp_dir())
    metadata = None
    try:
        metadata = MetadataStore(os.path.join(tmp, "metadata.db"))
        yield LocalStore(tmp), metadata
    finally:
        if metadata is not None:
            metadata.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_transports(args: argparse.Namespace, ctx: Context, matcher: Any, progress: Any) -> Any:
    from ocidist.push import PushResult
    from ocidist.transports import Services, copy_any

    copied = copy_any(
        Services(ctx.resolver, ctx.store, ctx.metadata, staging),
        args.src,
        args.dst,
        matcher=matcher,
        concurrency=args.concurrency,
        progress=progress,
    )
    result = PushResult(copied.name, copied.target)
    result.pushed, result.existing = copied.written, copied.existing
    return result


def report(ctx: Context, result: PushResult) -> None:
    from ocidist.progress import human_size

    referrers = getattr(result, "referrers", None)  # copy --referrers

    if ctx.json:
        doc = {"name": result.name, **result.target.to_json()}
        doc |= {"pushed": len(result.pushed), "pushedBytes": result.pushed_bytes}
        doc |= {"mounted": len(result.mounted), "existing": len(result.existing)}
        if referrers is not None:
            doc["referrers"] = [d.to_json() for d in referrers]
        ctx.emit("done", doc)
        return
    print(f"{result.name} {result.target.digest}")
    if not ctx.quiet:
        extra = f", {len(referrers)} referrers" if referrers is not None else ""
        print(
            f"pushed {len(result.pushed)} objects ({human_size(result.pushed_bytes)}), "
            f"{len(result.mounted)} mounted, {len(result.existing)} already present{extra}",
            file=sys.stderr,
        )
