"""`dist export NAME DIR|FILE.tar` and `dist import DIR|FILE.tar`: OCI image
layouts, and `docker save` archives (``--format docker``; import detects them)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ocidist.cli.context import Context


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export",
        examples=(
            "dist export localhost:5000/demo/hello:1.0 hello.tar",
            "dist export localhost:5000/demo/multi:1.0 layout/ --platform linux/amd64",
            "dist export --format docker localhost:5000/app:1 app.tar",
        ),
        parents=[common],
        help="write an image from the store as an OCI image layout or a docker-archive",
        description=(
            "Write image NAME as an OCI image layout: a directory (an existing layout gets "
            "the image added, replacing an entry with the same tag) or, for a path ending "
            "in .tar or -, a tar streamed there. index.json names it with "
            "org.opencontainers.image.ref.name (the tag: skopeo's oci:DIR:TAG) and "
            "io.containerd.image.name (the full name). Only blobs in the store are "
            "written: an index pulled for one platform keeps only that platform. "
            "With --format docker, write FILE as `docker save` does (what `docker load` "
            "and skopeo's docker-archive: read): one platform of an index (--platform, "
            "default this machine's), layers as plain tars checked against the config's "
            "diff_ids."
        ),
    )
    p.add_argument("name", metavar="NAME", help="image name in the store")
    p.add_argument("dest", metavar="DIR|FILE.tar", help="layout directory, or tar file (- stdout)")
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="only these platforms of an index (repeatable; default: all in the store)",
    )
    p.add_argument(
        "--tag", metavar="TAG", help="ref.name (or RepoTag) to record (default: the name's tag)"
    )
    p.add_argument(
        "--format",
        choices=("oci", "docker"),
        default="oci",
        metavar="FORMAT",
        help="oci: an OCI image layout (default); docker: a `docker save` archive",
    )
    p.set_defaults(handler=run_export)

    p = sub.add_parser(
        "import",
        examples=(
            "dist import hello.tar --name localhost:5000/demo/hello",
            "dist import layout/ --name example/alpine",
            "docker save alpine | dist import -",
        ),
        parents=[common],
        help="read an OCI image layout or a docker-archive into the store",
        description=(
            "Read an OCI image layout (directory or tar) into the store, verifying every "
            "blob against its digest; nothing is committed unless all of it verifies. Each "
            "index.json entry is named BASE:<ref.name> with --name BASE, else by its "
            "io.containerd.image.name annotation. A `docker save` archive (manifest.json, "
            "gzip-compressed or not, as docker and skopeo write it) is read too: each image "
            "becomes an OCI manifest of its config and layers, named by its RepoTags "
            "(or BASE:<tag>)."
        ),
    )
    p.add_argument(
        "src", metavar="DIR|FILE", help="layout directory, layout tar or docker-archive (- stdin)"
    )
    p.add_argument(
        "--name",
        metavar="BASE",
        help="repository to name the images, e.g. localhost:5000/app (tags from ref.name)",
    )
    p.set_defaults(handler=run_import)


def run_export(args: argparse.Namespace, ctx: Context) -> int:
    if args.format == "docker":
        return _export_docker(args, ctx)
    from ocidist.descriptor import Platform
    from ocidist.images.platforms import any_of
    from ocidist.layout import export_image
    from ocidist.progress import human_size

    matcher = any_of(Platform.parse(p) for p in args.platform) if args.platform else None
    result = export_image(
        ctx.store(), ctx.metadata(), args.name, args.dest, platforms=matcher, tag=args.tag
    )
    if ctx.json:
        if args.dest != "-":
            ctx.emit(
                "exported",
                {
                    "name": result.name,
                    **result.target.to_json(),
                    "dest": result.dest,
                    "blobs": len(result.blobs),
                    "blobBytes": result.size,
                },
            )
        return 0
    if not ctx.quiet:
        # stderr: with `-` the tar itself is on stdout.
        print(
            f"exported {result.name} ({len(result.blobs)} blobs, {human_size(result.size)}) "
            f"to {result.dest}",
            file=sys.stderr,
        )
    return 0


def _export_docker(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.descriptor import Platform
    from ocidist.dockerarchive import export_docker
    from ocidist.errors import InvalidArgument
    from ocidist.images.platforms import only
    from ocidist.progress import human_size

    if len(args.platform) > 1:
        raise InvalidArgument("export --format docker: a docker-archive holds one platform")
    matcher = only(Platform.parse(args.platform[0])) if args.platform else None
    result = export_docker(
        ctx.store(), ctx.metadata(), args.name, args.dest, platforms=matcher, tag=args.tag
    )
    if ctx.json:
        if args.dest != "-":
            doc = {"name": result.name, **result.target.to_json(), "dest": result.dest}
            ctx.emit("exported", {**doc, "format": "docker", "archiveBytes": result.size})
        return 0
    if not ctx.quiet:
        print(
            f"exported {result.name} ({human_size(result.size)}) to {result.dest} (docker-archive)",
            file=sys.stderr,
        )
    return 0


def run_import(args: argparse.Namespace, ctx: Context) -> int:
    import os

    from ocidist.layout import import_layout

    if args.src != "-" and os.path.isdir(args.src):
        images = import_layout(ctx.store(), ctx.metadata(), args.src, name=args.name)
    else:
        from ocidist.dockerarchive import import_docker, is_docker_archive
        from ocidist.tarindex import TarIndex

        with TarIndex(args.src, what=args.src if args.src != "-" else "stdin") as tar:
            if is_docker_archive(tar):
                images = import_docker(ctx.store(), ctx.metadata(), tar, name=args.name)
            else:
                images = import_layout(
                    ctx.store(), ctx.metadata(), args.src, name=args.name, fileobj=tar.rewound()
                )
    if ctx.json:
        for i in images:
            ctx.emit("imported", {"name": i.name, **i.target.to_json()})
        return 0
    for image in images:
        print(f"{image.name} {image.target.digest}")
    return 0
