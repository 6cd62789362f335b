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
        ("pull", "same as fetch: everything into the store, then record the name"),
    ):
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
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
        doc = {"event": "done", "name": result.name, **result.target.to_json()}
        doc["fetched"] = len(result.fetched)
        doc["fetchedBytes"] = result.fetched_bytes
        doc["existing"] = len(result.skipped)
        sys.stdout.write(__import__("json").dumps(doc, separators=(",", ":")) + "\n")
        return 0
    print(f"{result.name} {result.target.digest}")
    if not ctx.quiet:
        print(
            f"fetched {len(result.fetched)} objects ({human_size(result.fetched_bytes)}), "
            f"{len(result.skipped)} already present",
            file=sys.stderr,
        )
    return 0
