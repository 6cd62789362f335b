"""`dist apply DIR [LAYER]`: apply one layer tar (gzip, zstd or plain) to a directory."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, BinaryIO

from ocidist.cli.context import Context

if TYPE_CHECKING:
    from ocidist.archive import ApplyOptions


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "apply",
        examples=(
            "dist apply rootfs/ layer.tar.gz",
            "dist apply --expected-diff-id sha256:… rootfs/ < layer.tar",
        ),
        parents=[common],
        help="apply a layer tar to a directory (OCI whiteouts, confined to DIR)",
        description=(
            "Apply one image layer (gzip, zstd or uncompressed tar, detected from its "
            "bytes) to DIR and print its diff ID (sha256 of the uncompressed tar) and "
            "uncompressed size."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="directory to apply the layer to (must exist)")
    p.add_argument(
        "layer", metavar="LAYER", nargs="?", default="-", help="layer file; stdin if - or absent"
    )
    p.add_argument(
        "--expected-diff-id",
        metavar="DIGEST",
        help="fail with 'digest mismatch' unless the uncompressed tar has this digest",
    )
    add_limit_options(p)
    p.set_defaults(handler=_run)


def add_limit_options(p: argparse.ArgumentParser) -> None:
    """Tar-bomb limits (ApplyOptions); the defaults are far above any real layer."""
    p.add_argument("--max-entries", type=int, metavar="N", help="refuse more entries (5000000)")
    p.add_argument(
        "--max-path-depth", type=int, metavar="N", help="refuse deeper paths (1024 components)"
    )
    p.add_argument(
        "--max-size", type=int, metavar="BYTES", help="refuse a larger uncompressed tar (1 TiB)"
    )


def limit_options(args: argparse.Namespace) -> ApplyOptions:
    """ApplyOptions carrying the limits given on the command line (defaults otherwise)."""
    from ocidist.archive import ApplyOptions
    from ocidist.errors import InvalidArgument

    for flag, value in (
        ("--max-entries", args.max_entries),
        ("--max-path-depth", args.max_path_depth),
        ("--max-size", args.max_size),
    ):
        if value is not None and value <= 0:
            raise InvalidArgument(f"{flag} must be positive")
    d = ApplyOptions()
    return ApplyOptions(
        max_entries=args.max_entries or d.max_entries,
        max_path_depth=args.max_path_depth or d.max_path_depth,
        max_total_size=args.max_size or d.max_total_size,
    )


def _run(args: argparse.Namespace, ctx: Context) -> int:
    # Imported here: `dist --help` must not pay for the archive modules.
    from ocidist.archive import apply_layer
    from ocidist.digest import Digest

    expected = Digest.parse(args.expected_diff_id) if args.expected_diff_id else None
    name = "<stdin>" if args.layer == "-" else args.layer

    # ctx.warn: escaped on a terminal (entry names come from the layer), an
    # event under --json.
    opts = limit_options(args).replace(expected_diff_id=expected, layer_name=name, warn=ctx.warn)
    if args.layer == "-":
        result = apply_layer(args.dir, sys.stdin.buffer, options=opts)
    else:
        with open(args.layer, "rb") as f:
            layer: BinaryIO = f
            result = apply_layer(args.dir, layer, options=opts)
    if ctx.json:
        ctx.emit("applied", {"diffID": str(result.diff_id), "size": result.size})
    else:
        print(f"diffID  {result.diff_id}")
        from ocidist.progress import human_size

        print(f"size    {result.size} ({human_size(result.size)})")
    return 0
