"""`dist unpack REF|NAME DIR`: an image's root filesystem into a directory."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ocidist.cli.apply import add_limit_options, limit_options
from ocidist.cli.context import Context
from ocidist.cli.transfer import add_transfer_options, progress_for
from ocidist.cli.usercreds import refs


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "unpack",
        examples=(
            "dist unpack localhost:5000/demo/hello:1.0 rootfs/",
            "dist --json unpack localhost:5000/demo/multi:1.0 arm/ --platform linux/arm64",
        ),
        parents=[common],
        help="unpack an image's layers into a directory (fetching what is missing)",
        description=(
            "Unpack the image REF (a name in the store, or a reference to pull) into DIR: "
            "missing content is fetched, and each layer is applied as soon as it and every "
            "layer below it are in the store, checked against the config's rootfs.diff_ids. "
            "DIR must be absent or empty unless --force; a failed unpack removes what it "
            "wrote there (not with --force)."
        ),
    )
    p.add_argument("ref", metavar="REF|NAME", help="image name in the store, or a reference")
    p.add_argument("dir", metavar="DIR", help="destination directory (created if absent)")
    p.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="platform to unpack from an index (default: this machine's)",
    )
    p.add_argument("--force", "-f", action="store_true", help="unpack over a non-empty DIR")
    add_transfer_options(p)
    add_limit_options(p)
    p.set_defaults(handler=run, registries=refs("ref"), early_connect="ref")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.descriptor import Platform
    from ocidist.images.platforms import default_matcher, only
    from ocidist.progress import human_size
    from ocidist.unpack import unpack_image

    matcher = only(Platform.parse(args.platform)) if args.platform else default_matcher()
    progress = progress_for(ctx, args)

    try:
        result = unpack_image(
            ctx.resolver(),
            ctx.store(),
            # Opened (and its WAL begun) in a thread; the lookup of a stored
            # name waits for it.
            ctx.metadata(background=True),
            args.ref,
            args.dir,
            matcher=matcher,
            concurrency=args.concurrency,
            progress=progress,
            force=args.force,
            warn=ctx.warn,
            apply_options=limit_options(args),
        )
    finally:
        progress.close()
    if ctx.json:
        ctx.emit("done", result.to_json())
        return 0
    print(f"{result.name} {result.manifest.digest}")
    if not ctx.quiet:
        print(
            f"unpacked {len(result.layers)} layers into {result.dest} "
            f"(fetched {len(result.fetched)} objects, {human_size(result.fetched_bytes)}; "
            f"download {result.download_seconds:.2f}s, apply {result.apply_seconds:.2f}s, "
            f"total {result.total_seconds:.2f}s)",
            file=sys.stderr,
        )
    return 0
