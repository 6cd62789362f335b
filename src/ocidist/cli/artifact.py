"""`dist artifact push|pull`, `dist attach` and `dist referrers`: OCI 1.1 artifacts."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ocidist.cli.context import Context
from ocidist.cli.push import add_push_options, push_options
from ocidist.cli.transfer import add_transfer_options, progress_for
from ocidist.cli.usercreds import refs

if TYPE_CHECKING:
    from ocidist.artifact import ArtifactPush


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "artifact",
        parents=[common],
        help="push and pull OCI artifacts (files)",
        examples=(
            "dist artifact push localhost:5000/models/bert:1 model.onnx",
            "dist artifact pull localhost:5000/models/bert:1 ./model",
        ),
    )
    cs = p.add_subparsers(dest="artifact_command", metavar="SUBCOMMAND", required=True)
    sp = cs.add_parser(
        "push",
        parents=[common],
        help="push files as one artifact manifest",
        description=(
            "Push FILEs as one OCI artifact: a manifest with artifactType, the empty config "
            "(application/vnd.oci.empty.v1+json) unless --config is given, and each file a "
            "layer titled with its name (org.opencontainers.image.title). A directory is "
            "packed as tar+gzip the way oras does. Big files are uploaded in chunks and a "
            "dropped chunk resumes. REF without a tag pushes by digest only."
        ),
        examples=(
            "dist artifact push localhost:5000/models/bert:1 model.onnx:application/vnd.onnx "
            "--artifact-type application/vnd.example.model.v1",
            "dist artifact push localhost:5000/charts/app:1 chart/ -a org.example.team=infra",
        ),
    )
    sp.add_argument("ref", metavar="REF", help="where to push, e.g. host:5000/models/bert:1")
    sp.add_argument("files", metavar="FILE[:MEDIATYPE]", nargs="*", help="files or directories")
    _add_artifact_options(sp)
    sp.add_argument("--subject", metavar="REF", help="the manifest this artifact refers to")
    sp.set_defaults(handler=run_push, registries=refs("ref", "subject"))

    sp = cs.add_parser(
        "pull",
        parents=[common],
        help="write an artifact's files under a directory",
        description=(
            "Write every titled layer of artifact REF under DIR by its title, each verified "
            "against its digest before it takes its name (until then it is "
            ".dist-partial-<hex>, which a later pull resumes from). Titles that are absolute, "
            "contain .., or would be written through a link are refused. Directories packed "
            "by oras (io.deis.oras.content.unpack) are unpacked, confined to DIR."
        ),
        examples=(
            "dist artifact pull localhost:5000/models/bert:1 ./model",
            "dist artifact pull --media-type application/vnd.onnx localhost:5000/models/bert:1 .",
        ),
    )
    sp.add_argument("ref", metavar="REF", help="the artifact")
    sp.add_argument("dest", metavar="DIR", help="directory to write into (created if missing)")
    sp.add_argument(
        "--media-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="only layers of this media type (repeatable)",
    )
    add_transfer_options(sp)
    sp.set_defaults(handler=run_pull, registries=refs("ref"))

    p = sub.add_parser(
        "attach",
        parents=[common],
        help="attach files to an image (a referrer: signature, SBOM, …)",
        description=(
            "Push FILEs as an artifact whose subject is SUBJECT, by digest, into SUBJECT's "
            "repository. Registries with the OCI 1.1 referrers API index it themselves; "
            "for others the referrers tag (<alg>-<hex> of SUBJECT's digest) is updated."
        ),
        examples=(
            "dist attach localhost:5000/app:1 sbom.spdx.json --artifact-type application/spdx+json",
        ),
    )
    p.add_argument("subject", metavar="SUBJECT", help="the image to attach to")
    p.add_argument("files", metavar="FILE[:MEDIATYPE]", nargs="*", help="files or directories")
    _add_artifact_options(p, required_type=True)
    p.set_defaults(handler=run_attach, registries=refs("subject"))

    p = sub.add_parser(
        "referrers",
        parents=[common],
        help="list what is attached to an image",
        description=(
            "List the manifests whose subject is REF: artifact type, digest, size and "
            "annotations. Uses the referrers API, or the referrers tag where the registry "
            "has no API."
        ),
        examples=(
            "dist referrers localhost:5000/app:1",
            "dist --json referrers localhost:5000/app:1 --artifact-type application/spdx+json",
        ),
    )
    p.add_argument("ref", metavar="REF", help="the subject")
    p.add_argument("--artifact-type", metavar="TYPE", default="", help="only this artifact type")
    p.set_defaults(handler=run_referrers, registries=refs("ref"))


def _add_artifact_options(p: argparse.ArgumentParser, *, required_type: bool = False) -> None:
    p.add_argument(
        "--artifact-type",
        metavar="TYPE",
        required=required_type,
        default="",
        help="the manifest's artifactType"
        + ("" if required_type else " (default application/vnd.unknown.artifact.v1)"),
    )
    p.add_argument(
        "--annotation",
        "-a",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a manifest annotation (repeatable)",
    )
    p.add_argument(
        "--config",
        metavar="FILE[:MEDIATYPE]",
        help="a config blob instead of the empty one",
    )
    add_push_options(p)


def _annotations(items: list[str]) -> dict[str, str]:
    from ocidist.errors import InvalidArgument

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--annotation {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _push(
    args: argparse.Namespace, ctx: Context, ref: str, subject_ref: str | None
) -> ArtifactPush:
    from ocidist.artifact import parse_file_arg, push_artifact
    from ocidist.errors import InvalidArgument

    ctx.push_options = push_options(args)  # the resolver's, for every pusher it makes
    resolver = ctx.resolver()
    subject = None
    if subject_ref:
        _, subject = resolver.resolve(subject_ref)
    config = None
    if args.config:
        path, media_type = parse_file_arg(args.config)
        if media_type is None:
            raise InvalidArgument("--config FILE:MEDIATYPE needs the config's media type")
        config = (path, media_type)
    progress = progress_for(ctx, args)
    try:
        return push_artifact(
            resolver,
            ref,
            [parse_file_arg(f) for f in args.files],
            artifact_type=args.artifact_type,
            annotations=_annotations(args.annotation),
            subject=subject,
            config=config,
            progress=progress,
            concurrency=args.concurrency,
        )
    finally:
        progress.close()


def _report(ctx: Context, pushed: ArtifactPush) -> None:
    from ocidist.progress import human_size

    result = pushed.result
    if ctx.json:
        doc = {"name": result.name, **pushed.desc.to_json()}
        doc |= {"pushed": len(result.pushed), "pushedBytes": result.pushed_bytes}
        doc |= {"existing": len(result.existing) + len(result.mounted)}
        if pushed.referrers_tag:
            doc["referrersTag"] = pushed.referrers_tag
        ctx.emit("done", doc)
        return
    print(f"{result.name} {pushed.desc.digest}")
    if not ctx.quiet:
        extra = f"; referrers tag {pushed.referrers_tag} updated" if pushed.referrers_tag else ""
        print(
            f"pushed {len(result.pushed)} objects ({human_size(result.pushed_bytes)}), "
            f"{len(result.existing) + len(result.mounted)} already present{extra}",
            file=sys.stderr,
        )


def run_push(args: argparse.Namespace, ctx: Context) -> int:
    _report(ctx, _push(args, ctx, args.ref, args.subject))
    return 0


def run_attach(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist import reference

    subject = reference.parse(args.subject)
    # Into the subject's repository, by digest: referrers live beside their subject.
    _report(ctx, _push(args, ctx, subject.repository, args.subject))
    return 0


def run_pull(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.artifact import pull_artifact
    from ocidist.progress import human_size
    from ocidist.text import escape as safe

    progress = progress_for(ctx, args)
    try:
        name, desc, pulled = pull_artifact(
            ctx.resolver(),
            args.ref,
            args.dest,
            media_types=args.media_type,
            progress=progress,
            warn=ctx.warn,
        )
    finally:
        progress.close()
    if ctx.json:
        doc = {"name": name, **desc.to_json()}
        doc["files"] = [
            {"title": p.title, "path": p.path, "unpacked": p.unpacked, **p.desc.to_json()}
            for p in pulled
        ]
        ctx.emit("done", doc)
        return 0
    for p in pulled:
        print(f"{safe(p.path)}{'/' if p.unpacked else ''}")
    if not ctx.quiet:
        total = sum(p.desc.size for p in pulled)
        files = f"{len(pulled)} file{'s' if len(pulled) != 1 else ''}"
        print(f"pulled {files} ({human_size(total)}) from {safe(name)}", file=sys.stderr)
    return 0


def run_referrers(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist import reference
    from ocidist.cli.content import table
    from ocidist.progress import human_size
    from ocidist.referrers import list_referrers
    from ocidist.text import escape as safe

    resolver = ctx.resolver()
    name, subject = resolver.resolve(args.ref)
    repository = reference.parse(name).repository
    found, via = list_referrers(resolver, repository, subject.digest, args.artifact_type)
    if ctx.json:
        ctx.emit(
            "referrers",
            {"name": name, "subject": subject.to_json(), "via": via,
             "referrers": [d.to_json() for d in found]},
        )  # fmt: skip
        return 0
    if not found:
        if not ctx.quiet:
            print(f"nothing refers to {name} ({subject.digest})", file=sys.stderr)
        return 0
    rows = [["ARTIFACT TYPE", "DIGEST", "SIZE", "ANNOTATIONS"]]
    for d in found:
        notes = ",".join(f"{safe(k)}={safe(v)}" for k, v in sorted(d.annotations.items()))
        rows.append([safe(d.artifact_type or "-"), str(d.digest), human_size(d.size), notes])
    sys.stdout.write(table(rows))
    return 0
