"""`dist content …`: look at and manage the local content store."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from ocidist.cli.context import Context, parse_duration
from ocidist.errors import DigestMismatch, InvalidArgument, NotFound

if TYPE_CHECKING:
    from ocidist.digest import Digest


def human_size(n: int) -> str:
    """Decimal units, as docker prints them (``1.2 MB``)."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def human_age(then: float, now: float | None = None) -> str:
    secs = max(0, int((now or time.time()) - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def timestamp(t: float) -> str:
    """RFC 3339 in UTC, for --json."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def table(rows: list[list[str]]) -> str:
    """Aligned columns; every cell escaped (names, platforms, labels and
    annotations come from registries and images)."""
    from ocidist.text import escape

    rows = [[escape(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


def labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def parse_digest(text: str) -> Digest:
    from ocidist.digest import Digest

    return Digest.parse(text)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "content",
        examples=(
            "dist content ls",
            "dist content get sha256:… > blob",
            "dist content prune --force",
        ),
        parents=[common],
        help="manage the local content store",
    )
    cs = p.add_subparsers(dest="content_command", metavar="SUBCOMMAND", required=True)

    def add(name: str, help: str, handler: Any) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = cs.add_parser(name, parents=[common], help=help)
        sp.set_defaults(handler=handler)
        return sp

    add("ls", "list blobs: digest, size, age, labels", run_ls)
    sp = add("get", "write a blob to stdout (verified)", run_get)
    sp.add_argument("digest", metavar="DIGEST")
    sp = add("ingest", "store stdin under KEY (rerun with the same KEY to resume)", run_ingest)
    sp.add_argument("key", metavar="KEY")
    sp.add_argument("--expected-digest", metavar="DIGEST")
    sp.add_argument("--expected-size", metavar="N", type=int, default=-1)
    add("active", "list ingests in progress with offset and total", run_active)
    sp = add("rm", "delete blobs", run_rm)
    sp.add_argument("digests", metavar="DIGEST", nargs="+")
    sp = add("label", "set labels on a blob (k= deletes k)", run_label)
    sp.add_argument("digest", metavar="DIGEST")
    sp.add_argument("labels", metavar="KEY=VALUE", nargs="+")
    sp = add("prune", "remove blobs no image needs (lists them unless --force)", run_prune)
    sp.add_argument("--force", "-f", action="store_true", help="really delete")
    sp.add_argument(
        "--min-age",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="spare blobs committed less than this long ago (e.g. 10m)",
    )
    sp.add_argument(
        "--ingests", action="store_true", help="also abort unlocked in-progress ingests"
    )
    sp = add("verify", "re-hash every blob; exit 1 if any is corrupt", run_verify)
    sp.add_argument("--remove", action="store_true", help="delete corrupt blobs")


def run_ls(args: argparse.Namespace, ctx: Context) -> int:
    infos = list(ctx.store().walk())
    if ctx.json:
        for i in infos:
            ctx.emit(
                "blob",
                {
                    "digest": str(i.digest),
                    "size": i.size,
                    "labels": dict(i.labels),
                    "createdAt": timestamp(i.created_at),
                    "updatedAt": timestamp(i.updated_at),
                },
            )
        return 0
    now = time.time()
    rows = [["DIGEST", "SIZE", "AGE", "LABELS"]]
    rows += [
        [str(i.digest), human_size(i.size), human_age(i.created_at, now), labels_text(i.labels)]
        for i in infos
    ]
    sys.stdout.write(table(rows))
    return 0


def run_get(args: argparse.Namespace, ctx: Context) -> int:
    dgst = parse_digest(args.digest)
    store = ctx.store()
    size = store.info(dgst).size
    # Verified on the way out, the last bytes held back until they check: a
    # blob corrupted on disk ends in an error (exit 1), so
    # `dist content get D > f && use f` never uses bad bytes.
    from ocidist.digest import VerifyingReader
    from ocidist.stream import Readable, copy_stream

    with store.reader(dgst) as src:
        verified = VerifyingReader(cast(Readable, src), dgst, size, what=f"content {dgst}")
        copy_stream(verified, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


def run_ingest(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.content.copy import copy_to_writer, drop_ingest
    from ocidist.errors import AlreadyExists

    expected = parse_digest(args.expected_digest) if args.expected_digest else None
    size = int(args.expected_size)
    if size < -1:
        raise InvalidArgument(f"invalid --expected-size {size}")
    store = ctx.store()
    try:
        writer = store.writer(args.key, total=size, expected=expected)
    except AlreadyExists:
        assert expected is not None  # only an expected digest can exist already
        if ctx.json:
            ctx.emit("ingested", {"digest": str(expected), "existed": True})
            return 0
        if not ctx.quiet:
            print(f"dist: content {expected} already exists", file=sys.stderr)
        print(expected)
        return 0
    try:
        # stdin carries the whole object on every run; a resumed run skips
        # the bytes the ingest already holds (like `ctr content ingest`).
        copy_to_writer(writer, sys.stdin.buffer, size, expected)
        dgst = expected or writer.digest()
    except DigestMismatch:
        # The store keeps a failed commit's bytes; a rerun with the same
        # input would resume into the same mismatch.
        writer.close()
        drop_ingest(store, args.key)
        raise
    finally:
        writer.close()
    if ctx.json:
        ctx.emit("ingested", {"digest": str(dgst), "existed": False})
    else:
        print(dgst)
    return 0


def run_active(args: argparse.Namespace, ctx: Context) -> int:
    statuses = ctx.store().list_statuses()
    if ctx.json:
        for s in statuses:
            ctx.emit(
                "ingest",
                {
                    "key": s.key,
                    "offset": s.offset,
                    "total": s.total,
                    "expected": str(s.expected) if s.expected else None,
                    "startedAt": timestamp(s.started_at),
                    "updatedAt": timestamp(s.updated_at),
                },
            )
        return 0
    now = time.time()
    rows = [["KEY", "OFFSET", "TOTAL", "STARTED", "UPDATED"]]
    rows += [
        [
            s.key,
            str(s.offset),
            str(s.total) if s.total >= 0 else "?",
            human_age(s.started_at, now),
            human_age(s.updated_at, now),
        ]
        for s in statuses
    ]
    sys.stdout.write(table(rows))
    return 0


def run_rm(args: argparse.Namespace, ctx: Context) -> int:
    dgsts = [parse_digest(d) for d in args.digests]  # all valid before deleting any
    store = ctx.store()
    missing = []
    for dgst in dgsts:
        try:
            store.delete(dgst)
        except NotFound:
            missing.append(str(dgst))
            continue
        if ctx.json:
            ctx.emit("removed", {"digest": str(dgst)})
        elif not ctx.quiet:
            print(dgst)
    if missing:
        raise NotFound(f"content {', '.join(missing)}: not found")
    return 0


def parse_labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"invalid label {item!r}: expected KEY=VALUE (KEY= deletes)")
        out[key] = value
    return out


def run_label(args: argparse.Namespace, ctx: Context) -> int:
    dgst = parse_digest(args.digest)
    info = ctx.store().update(dgst, parse_labels(args.labels))
    if ctx.json:
        ctx.emit("labeled", {"digest": str(info.digest), "labels": dict(info.labels)})
    elif not ctx.quiet:
        from ocidist.text import escape  # other clients (the daemon's) label too

        for k, v in sorted(info.labels.items()):
            print(escape(f"{k}={v}"))
    return 0


def run_prune(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist import gc

    dry_run = not args.force
    store = ctx.store()
    doomed = gc.prune(store, ctx.metadata(), dry_run, min_age=args.min_age)
    ingests = gc.prune_ingests(store, dry_run) if args.ingests else []
    total = sum(i.size for i in doomed)
    if ctx.json:
        ctx.emit(
            "pruned",
            {
                "dryRun": dry_run,
                "blobs": [{"digest": str(i.digest), "size": i.size} for i in doomed],
                "bytes": total,
                "ingests": [{"key": s.key, "offset": s.offset} for s in ingests],
            },
        )
        return 0
    verb = "would remove" if dry_run else "removed"
    for i in doomed:
        print(f"{verb} {i.digest} {human_size(i.size)}")
    for s in ingests:
        print(f"{verb} ingest {s.key} ({human_size(s.offset)})")
    if not ctx.quiet:
        summary = f"{verb} {len(doomed)} blobs, {human_size(total)}"
        if dry_run and (doomed or ingests):
            summary += "; use --force to remove them"
        print(summary, file=sys.stderr)
    return 0


def run_verify(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.content import verify

    store = ctx.store()
    checked, bad = 0, []
    for info in store.walk():
        checked += 1
        if not verify(store, info.digest):
            bad.append(info.digest)
            if not ctx.json:
                print(f"bad {info.digest}")  # (with --json, listed in the closing event)
            if args.remove:
                store.delete(info.digest)
    if ctx.json:
        ctx.emit(
            "verified", {"checked": checked, "bad": [str(d) for d in bad], "removed": args.remove}
        )
    elif not ctx.quiet:
        print(f"verified {checked} blobs, {len(bad)} bad", file=sys.stderr)
    if bad:
        done = ", removed" if args.remove else ""
        raise DigestMismatch(f"verify: {len(bad)} of {checked} blobs: digest mismatch{done}")
    return 0
