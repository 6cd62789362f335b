"""`dist fetch REF` / `dist pull REF`: a whole image into the content store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ocidist.cli.context import Context
from ocidist.cli.transfer import add_transfer_options, progress_for


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    for name, help_text in (
        ("fetch", "fetch an image (index, manifests, config, layers) into the content store"),
        ("pull", "the same as fetch (the name docker, podman and ctr users type)"),
    ):
        p = sub.add_parser(
            name,
            parents=[common],
            help=help_text,
            description="Fetch REF's index, manifests, config and layers (this machine's "
            "platform unless --platform/--all-platforms) into the content store, every "
            "object verified, and record REF's name (see dist images ls). "
            "`dist fetch` and `dist pull` are the same command.",
            examples=(
                f"dist {name} redis",
                f"dist {name} localhost:5000/demo/app:1.0 --platform linux/arm64",
                f"dist --json {name} ghcr.io/org/app:1.2 --all-platforms",
            ),
        )
        add_pull_options(p)
        p.set_defaults(handler=run)


def add_pull_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="REF", help="image reference, e.g. redis or host:5000/a/b:tag")
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="platform to fetch (repeatable; default: this machine's)",
    )
    p.add_argument("--all-platforms", action="store_true", help="fetch every platform")
    add_transfer_options(p)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.images.platforms import selection
    from ocidist.progress import human_size
    from ocidist.pull import fetch_image

    matcher, limit = selection(args.platform, args.all_platforms)
    progress = progress_for(ctx, args)
    try:
        result = fetch_image(
            ctx.resolver(),
            ctx.store(),
            ctx.metadata,  # opened in a thread while the transfers run
            args.ref,
            matcher=matcher,
            limit=limit,
            concurrency=args.concurrency,
            progress=progress,
        )
    finally:
        progress.close()
    if ctx.json:
        doc = {"name": result.name, **result.target.to_json()}
        doc["fetched"] = len(result.fetched)
        doc["fetchedBytes"] = result.fetched_bytes
        doc["existing"] = len(result.skipped)
        ctx.emit("done", doc)
        return 0
    print(f"{result.name} {result.target.digest}")
    if not ctx.quiet:
        print(
            f"fetched {len(result.fetched)} objects ({human_size(result.fetched_bytes)}), "
            f"{len(result.skipped)} already present",
            file=sys.stderr,
        )
    return 0
