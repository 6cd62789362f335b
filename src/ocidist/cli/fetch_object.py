"""`dist fetch-object`: one object to stdout, or many (object lines on stdin) to a directory.

Object lines are ``OBJECT [HINT…]``: OBJECT is a digest (or a tag of the
same repository); hints ``mediatype:T`` and ``size:N`` describe it, so no
HEAD is needed when both are given and the right endpoint is tried first.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import IO, Any

from ocidist.cli.context import Context, report_error
from ocidist.cli.usercreds import refs
from ocidist.text import escape


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "fetch-object",
        parents=[common],
        help="write one object (or many, with --stdin) exactly as the registry stores it",
        description="Fetch an object by reference and write it to stdout, byte-identical "
        "to the registry's copy and verified against its digest. With --stdin, read "
        "lines 'OBJECT [HINT…]' and write each object to DIR/<algorithm>/<hex>.",
        examples=(
            "dist fetch-object localhost:5000/demo/hello:1.0 | sha256sum",
            "dist fetch-object localhost:5000/demo/hello:1.0 sha256:6109… > layer.tgz",
            "dist fetch-object --stdin -o objects/ localhost:5000/demo/hello:1.0 < digests",
        ),
    )
    p.add_argument("ref", metavar="REF", help="image reference; names the repository")
    p.add_argument("object", metavar="OBJECT", nargs="?", help="digest (sha256:…) or tag")
    p.add_argument("hints", metavar="HINT", nargs="*", help="mediatype:TYPE or size:N")
    p.add_argument("--stdin", action="store_true", help="read object lines from stdin")
    p.add_argument("-o", "--output", metavar="DIR", help="directory for --stdin objects")
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="N",
        help="parallel fetches with --stdin (default 4)",
    )
    p.set_defaults(handler=run, registries=refs("ref"))


def run(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.errors import InvalidArgument

    if args.stdin:
        if args.object:
            raise InvalidArgument("fetch-object: OBJECT and --stdin exclude each other")
        if not args.output:
            raise InvalidArgument("fetch-object: --stdin needs -o DIR")
        if args.concurrency < 1:
            raise InvalidArgument("fetch-object: --concurrency must be at least 1")
        return _multi(args, ctx)
    if args.output:
        raise InvalidArgument("fetch-object: -o DIR goes with --stdin")
    from ocidist.objects import describe
    from ocidist.stream import copy_stream

    name, desc = describe(ctx.resolver(), args.ref, args.object, args.hints)
    src = ctx.resolver().fetcher(name).fetch(desc)
    try:
        copy_stream(src, sys.stdout.buffer)
    finally:
        src.close()
    sys.stdout.buffer.flush()
    return 0


def _multi(args: argparse.Namespace, ctx: Context) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from ocidist.errors import DistError
    from ocidist.objects import fetch_to_dir, parse_object_line

    lines = [(n, ln) for n, ln in enumerate(sys.stdin, 1) if ln.strip() and not ln.startswith("#")]
    failed = 0
    out_lock = threading.Lock()

    def one(item: tuple[int, str]) -> None:
        nonlocal failed
        lineno, line = item
        try:
            obj, hints = parse_object_line(line)
            desc, path = fetch_to_dir(ctx.resolver(), args.ref, obj, hints, args.output)
        except DistError as e:
            with out_lock:
                failed += 1
                report_error(f"line {lineno}: {line.strip()}: {e}", 1, e, as_json=ctx.json)
            return
        except OSError as e:
            with out_lock:
                failed += 1
                why = os.strerror(e.errno or 0)
                report_error(f"line {lineno}: {why}", 1, e, as_json=ctx.json)
            return
        with out_lock:
            _report(ctx, sys.stdout, desc.to_json() | {"path": path})

    pool = ThreadPoolExecutor(max_workers=args.concurrency)
    try:
        list(pool.map(one, lines))
    except BaseException:
        # Ctrl-C (or --timeout's backstop): what is queued never starts and
        # what runs is not waited for (a stalled transfer may take minutes);
        # `with` would have done both.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    if failed:
        raise DistError(f"fetch-object: {failed} of {len(lines)} objects failed")
    return 0


def _report(ctx: Context, out: IO[str], event: dict[str, Any]) -> None:

    if ctx.json:
        ctx.emit("fetched", event)
    elif not ctx.quiet:
        out.write(f"{event['digest']}  {event['size']:>12}  {escape(event['path'])}\n")
    out.flush()
