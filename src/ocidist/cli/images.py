"""`dist images …`: the names recorded in the metadata store."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ocidist.cli.content import human_size, table, timestamp
from ocidist.cli.context import Context
from ocidist.errors import NotFound

if TYPE_CHECKING:
    from ocidist.content import Store
    from ocidist.descriptor import Descriptor
    from ocidist.metadata import Image


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "images",
        examples=(
            "dist images ls",
            "dist images inspect localhost:5000/demo/hello:1.0",
            "dist images rm localhost:5000/demo/hello:1.0",
        ),
        parents=[common],
        help="list, inspect and remove image names",
    )
    cs = p.add_subparsers(dest="images_command", metavar="SUBCOMMAND", required=True)
    sp = cs.add_parser("ls", parents=[common], help="list images: name, digest, size, platforms")
    sp.set_defaults(handler=run_ls)
    sp = cs.add_parser(
        "rm",
        parents=[common],
        help="remove image names (several names: lists them unless --force)",
        description="Remove names from the metadata store; content stays until "
        "`dist content prune`.",
    )
    sp.add_argument("names", metavar="NAME", nargs="+")
    sp.add_argument("--force", "-f", action="store_true", help="remove several names")
    sp.set_defaults(handler=run_rm)
    sp = cs.add_parser("inspect", parents=[common], help="show an image's manifest tree")
    sp.add_argument("name", metavar="NAME")
    sp.set_defaults(handler=run_inspect)


def _tree(store: Store, desc: Descriptor, path: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A descriptor with ``present`` and its ``children``, as far as the store knows."""
    from ocidist.gc import children_in_store

    present = store.exists(desc.digest)
    node: dict[str, Any] = {**desc.to_json(), "present": present, "children": []}
    key = str(desc.digest)
    if present and key not in path:  # a digest cycle is impossible, but cheap to refuse
        node["children"] = [
            _tree(store, child, path | {key}) for child in children_in_store(store, desc)
        ]
    return node


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node["children"]:
        out += _walk(child)
    return out


def _platforms(store: Store, tree: dict[str, Any]) -> list[str]:
    """From the index entries, or for a lone manifest from its config."""
    plats = []
    for child in tree["children"]:
        p = child.get("platform")
        if p:
            plats.append(_plat_text(p))
        elif child["present"] and _kind_of(child) == "config" and child["size"] < 1 << 20:
            plats += _config_platform(store, child["digest"])
    return sorted(set(plats))


def _plat_text(p: dict[str, Any]) -> str:
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def _kind_of(node: dict[str, Any]) -> str:
    from ocidist.descriptor import Descriptor, object_kind

    return object_kind(Descriptor.from_json(node).media_type)


def _config_platform(store: Store, digest: str) -> list[str]:
    from ocidist import jsondata
    from ocidist.digest import Digest
    from ocidist.errors import InvalidContent

    try:
        with store.reader(Digest.parse(digest)) as f:
            cfg = jsondata.loads(f.read(), f"config {digest}")
    except (InvalidContent, NotFound):
        return []
    if not isinstance(cfg, dict) or not cfg.get("os"):
        return []
    parts = (cfg.get("os"), cfg.get("architecture"), cfg.get("variant"))
    return ["/".join(str(x) for x in parts if x)]


def _summary(store: Store, image: Image) -> dict[str, Any]:
    tree = _tree(store, image.target)
    held = {n["digest"]: n["size"] for n in _walk(tree) if n["present"]}
    return {
        "name": image.name,
        **image.target.to_json(),
        "platforms": _platforms(store, tree),
        "contentSize": sum(held.values()),
        "createdAt": timestamp(image.created_at),
        "updatedAt": timestamp(image.updated_at),
        "labels": dict(image.labels),
    }


def run_ls(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    summaries = [_summary(store, image) for image in ctx.metadata().list_images()]
    if ctx.json:
        for summary in summaries:
            ctx.emit("image", summary)
        return 0
    rows = [["NAME", "DIGEST", "SIZE", "PLATFORMS"]]
    rows += [
        [s["name"], s["digest"], human_size(s["contentSize"]), ",".join(s["platforms"]) or "-"]
        for s in summaries
    ]
    sys.stdout.write(table(rows))
    return 0


def run_rm(args: argparse.Namespace, ctx: Context) -> int:
    md = ctx.metadata()
    names: list[str] = list(dict.fromkeys(args.names))
    if len(names) > 1 and not args.force:
        # CLI.md: a destructive command on many names first shows what it would do.
        for name in names:
            md.get_image(name)  # an unknown name fails now, not after --force
            if ctx.json:
                ctx.emit("removed", {"name": name, "dryRun": True})
            else:
                print(f"would remove {name}")
        if not ctx.quiet and not ctx.json:
            print("use --force to remove them", file=sys.stderr)
        return 0
    missing = []
    for name in names:
        try:
            md.delete_image(name)
        except NotFound:
            missing.append(name)
            continue
        if ctx.json:
            ctx.emit("removed", {"name": name, "dryRun": False})
        elif not ctx.quiet:
            print(name)
    if missing:
        raise NotFound(f"image {', '.join(missing)}: not found")
    return 0


def run_inspect(args: argparse.Namespace, ctx: Context) -> int:
    image = ctx.metadata().get_image(args.name)
    tree = _tree(ctx.store(), image.target)
    if ctx.json:
        ctx.emit(
            "image",
            {
                "name": image.name,
                "target": image.target.to_json(),
                "createdAt": timestamp(image.created_at),
                "updatedAt": timestamp(image.updated_at),
                "labels": dict(image.labels),
                "tree": tree,
            },
        )
        return 0
    out = sys.stdout
    out.write(f"{image.name}\n")
    _print_node(tree, "", "", out)
    return 0


def _print_node(node: dict[str, Any], lead: str, child_lead: str, out: Any) -> None:
    from ocidist.text import escape  # platforms come from the image

    plat = node.get("platform")
    bits = [lead + node["digest"], _kind_of(node)]
    if plat:
        bits.append(_plat_text(plat))
    bits.append(human_size(node["size"]))
    if not node["present"]:
        bits.append("(not in store)")
    out.write(escape(" ".join(bits)) + "\n")
    kids = node["children"]
    for i, child in enumerate(kids):
        last = i == len(kids) - 1
        _print_node(
            child,
            child_lead + ("└── " if last else "├── "),
            child_lead + ("    " if last else "│   "),
            out,
        )
