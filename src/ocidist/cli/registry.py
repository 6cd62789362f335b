"""`dist tags REPO`, `dist catalog REGISTRY`, `dist rm REF`, `dist tag SRC NEWTAG`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ocidist.cli.context import Context
from ocidist.cli.usercreds import refs

if TYPE_CHECKING:
    from ocidist.remotes.docker.hosts import RegistryHost


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tags",
        examples=(
            "dist tags localhost:5000/demo/hello",
            "dist --json tags ghcr.io/org/app",
        ),
        parents=[common],
        help="list a repository's tags",
        description="List the tags of REPO, following the registry's pagination (Link headers).",
    )
    p.add_argument("repo", metavar="REPO", help="repository, e.g. host:5000/a/b")
    add_page_size(p)
    p.set_defaults(handler=run_tags, registries=refs("repo"))

    p = sub.add_parser(
        "catalog",
        examples=("dist catalog localhost:5000",),
        parents=[common],
        help="list a registry's repositories",
        description="List the repositories of REGISTRY (host[:port]) via /v2/_catalog; "
        "many public registries refuse this.",
    )
    p.add_argument("registry", metavar="REGISTRY", help="registry host[:port]")
    add_page_size(p)
    p.set_defaults(handler=run_catalog, registries=_catalog_registry)

    p = sub.add_parser(
        "rm",
        examples=(
            "dist rm localhost:5000/demo/hello:old",
            "dist rm localhost:5000/demo/hello@sha256:…",
        ),
        parents=[common],
        help="delete a manifest from a registry",
        description="Delete the manifest REF names. A tag is resolved to its digest first, "
        "and deleting by digest removes every tag that points at it. The registry must "
        "allow deletes (Distribution: storage.delete.enabled).",
    )
    p.add_argument("ref", metavar="REF", help="host/repo:tag or host/repo@sha256:…")
    p.set_defaults(handler=run_rm, registries=refs("ref"))

    p = sub.add_parser(
        "tag",
        examples=("dist tag localhost:5000/demo/hello:1.0 stable",),
        parents=[common],
        help="tag a remote image again, without moving any blob",
        description="Put the manifest SRC names under NEWTAG in the same repository, "
        "byte for byte (the digest stays the same).",
    )
    p.add_argument("src", metavar="SRC", help="existing reference")
    p.add_argument("newtag", metavar="NEWTAG", help="the new tag (a tag, not a reference)")
    p.set_defaults(handler=run_tag, registries=refs("src"))


def _catalog_registry(args: argparse.Namespace) -> dict[str, str]:
    """catalog REGISTRY names a host[:port], not a reference."""
    domain = _registry_host(args.registry)
    return {"registry": domain} if domain else {}


def _registry_host(text: str) -> str | None:
    from ocidist import reference
    from ocidist.errors import InvalidReference

    host = text.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    try:
        r = reference.parse(f"{host}/x", default_tag="")
    except InvalidReference:
        return None
    return r.domain if host and r.path == "x" else None


def add_page_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-n",
        "--page-size",
        type=int,
        default=0,
        metavar="N",
        help="ask the registry for N entries per page (default: the registry's choice)",
    )


def _check_page_size(args: argparse.Namespace) -> None:
    from ocidist.errors import InvalidArgument

    if args.page_size < 0:
        raise InvalidArgument("--page-size must not be negative")


def _host(ctx: Context, domain: str) -> RegistryHost:
    from ocidist.remotes.docker.listing import upstream_host

    return upstream_host(ctx.resolver().hosts(domain))


def run_tags(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist import reference
    from ocidist.errors import InvalidArgument
    from ocidist.remotes.docker.listing import list_tags

    _check_page_size(args)
    r = reference.parse(args.repo, default_tag="")
    if r.tag is not None or r.digest is not None:
        raise InvalidArgument(f"tags: {args.repo}: give a repository, without tag or digest")
    rejected: list[str] = []
    tags = list_tags(
        ctx.resolver().session,
        _host(ctx, r.domain),
        r.path,
        page_size=args.page_size,
        rejected=rejected,
    )
    if ctx.json:
        ctx.emit("tags", {"name": r.repository, "tags": list(tags)})
    else:
        for t in tags:
            sys.stdout.write(t + "\n")
    _warn_rejected(ctx, rejected, "tag")
    return 0


def _warn_rejected(ctx: Context, rejected: list[str], kind: str) -> None:
    """One stderr line about names a registry listed that are not names."""
    if not rejected:
        return
    from ocidist.text import quote

    n = len(rejected)
    ctx.warn(
        f"the registry listed {n} invalid {kind} name{'s' if n > 1 else ''} "
        f"(left out), e.g. '{quote(rejected[0], 80)}'"
    )


def run_catalog(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.errors import InvalidArgument
    from ocidist.remotes.docker.listing import catalog

    _check_page_size(args)
    domain = _registry_host(args.registry)
    if domain is None:
        raise InvalidArgument(f"catalog: {args.registry!r} is not a registry host[:port]")
    rejected: list[str] = []
    repos = catalog(
        ctx.resolver().session, _host(ctx, domain), page_size=args.page_size, rejected=rejected
    )
    if ctx.json:
        ctx.emit("catalog", {"registry": domain, "repositories": list(repos)})
    else:
        for name in repos:
            sys.stdout.write(name + "\n")
    _warn_rejected(ctx, rejected, "repository")
    return 0


def run_rm(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist import reference

    name, desc = ctx.resolver().resolve(args.ref)
    r = reference.parse(name)
    ctx.resolver().pusher(name).delete_manifest(desc.digest)
    deleted = f"{r.repository}@{desc.digest}"
    if ctx.json:
        ctx.emit("deleted", {"name": deleted, **desc.to_json(), "deleted": True})
    else:
        print(f"deleted {deleted}")
    return 0


def run_tag(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist import reference
    from ocidist.errors import InvalidArgument
    from ocidist.images.walk import fetch_manifest
    from ocidist.remotes import resolve_to_fetch

    r = reference.parse(args.src)
    try:
        target = r.with_tag(args.newtag)
    except InvalidArgument:
        raise InvalidArgument(
            f"tag: invalid tag {args.newtag!r} (a tag like v1.2, not a reference)"
        ) from None
    _, desc, fetcher = resolve_to_fetch(ctx.resolver(), args.src)
    data = fetch_manifest(fetcher, desc)  # the one capped read, verified
    new_name = f"{target.repository}:{args.newtag}"
    ctx.resolver().pusher(new_name).put_manifest(desc, data)
    if ctx.json:
        ctx.emit("tagged", {"name": new_name, **desc.to_json()})
    else:
        print(f"{new_name} {desc.digest}")
    return 0
