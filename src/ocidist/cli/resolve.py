"""`dist resolve REF`: canonical name and descriptor of a reference."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ocidist.cli.context import Context
from ocidist.cli.usercreds import refs


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "resolve",
        parents=[common],
        help="resolve a reference to its name, digest, media type and size",
        description="Resolve REF against its registry (HEAD, GET fallback) and print "
        "the canonical name and descriptor.",
        examples=("dist resolve redis", "dist --json resolve ghcr.io/org/app:1.2"),
    )
    p.add_argument("ref", metavar="REF", help="image reference, e.g. redis or host:5000/a/b:tag")
    p.set_defaults(handler=run, registries=refs("ref"))


def run(args: argparse.Namespace, ctx: Context) -> int:
    name, desc = ctx.resolver().resolve(args.ref)
    if ctx.json:
        ctx.emit("resolved", {"name": name, **desc.to_json()})
        return 0
    from ocidist.text import escape  # the media type is the registry's Content-Type

    out = sys.stdout
    out.write(f"name:      {name}\n")
    out.write(f"digest:    {desc.digest}\n")
    out.write(f"mediaType: {escape(desc.media_type)}\n")
    out.write(f"size:      {desc.size}\n")
    return 0
