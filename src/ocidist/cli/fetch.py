"""`dist fetch REF` / `dist pull REF`: a whole image into the content store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ocidist.cli.context import Context
from ocidist.cli.transfer import add_transfer_options, progress_for
from ocidist.cli.usercreds import refs


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
        p.set_defaults(handler=run, registries=refs("ref"), early_connect="ref")


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
    p.add_argument(
        "--referrers",
        action="store_true",
        help="also fetch what refers to the image (signatures, SBOMs…), recursively",
    )
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
            ctx.metadata(background=True),  # opened while the transfers run
            args.ref,
            matcher=matcher,
            limit=limit,
            concurrency=args.concurrency,
            progress=progress,
        )
        referrers = _fetch_referrers(args, ctx, result, progress) if args.referrers else None
    finally:
        progress.close()
    if ctx.json:
        doc = {"name": result.name, **result.target.to_json()}
        if referrers is not None:
            doc["referrers"] = [d.to_json() for d in referrers]
        doc["fetched"] = len(result.fetched)
        doc["fetchedBytes"] = result.fetched_bytes
        doc["existing"] = len(result.skipped)
        ctx.emit("done", doc)
        return 0
    print(f"{result.name} {result.target.digest}")
    if not ctx.quiet:
        print(
            f"fetched {len(result.fetched)} objects ({human_size(result.fetched_bytes)}), "
            f"{len(result.skipped)} already present"
            + (f", {len(referrers)} referrers" if referrers is not None else ""),
            file=sys.stderr,
        )
    return 0


def _fetch_referrers(args: argparse.Namespace, ctx: Context, result: Any, progress: Any) -> Any:
    """Everything that refers to the image (recursively) into the store too;
    each is kept alive by a gc label on what it refers to."""
    from ocidist import reference
    from ocidist.images.handlers import GC_REF
    from ocidist.images.platforms import AllPlatforms
    from ocidist.pull import fetch_image
    from ocidist.referrers import closure

    resolver = ctx.resolver()
    store = ctx.store()
    repository = reference.parse(result.name).repository
    found = closure(resolver, repository, result.target, warn=ctx.warn)
    for parent, desc in found:
        fetch_image(
            resolver,
            store,
            None,
            f"{repository}@{desc.digest}",
            matcher=AllPlatforms(),
            limit=0,
            concurrency=args.concurrency,
            progress=progress,
        )
        key = f"{GC_REF}.referrer.{desc.digest.algorithm}.{desc.digest.encoded}"
        store.update(parent, {key: str(desc.digest)})
    return [d for _, d in found]
