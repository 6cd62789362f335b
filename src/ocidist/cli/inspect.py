"""`dist inspect SOURCE`: an image's facts in one step, from any transport."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ocidist.cli.context import Context
from ocidist.cli.usercreds import refs

SOURCES_HELP = (
    "REF (a registry), oci:DIR[:TAG], oci-archive:FILE[:TAG], "
    "docker-archive:FILE[:NAME:TAG|:@N] or store:NAME"
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="show an image: an index's platforms, or digest, config, layers and sizes",
        description=(
            "Show what SOURCE is. An index: its platforms with their digests and sizes. "
            "An image: digest, media type, platform, created, labels, env, entrypoint/cmd, "
            "and its layers with their sizes and total. --raw prints the exact manifest "
            f"bytes, --config the exact config bytes. SOURCE is {SOURCES_HELP}."
        ),
        examples=(
            "dist inspect localhost:5000/app:1",
            "dist inspect --platform linux/arm64 localhost:5000/app:1",
            "dist inspect --raw oci-archive:app.tar | jq .",
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="what to inspect (see above)")
    p.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="the platform's manifest of an index, instead of the index",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--raw", action="store_true", help="the manifest's exact bytes")
    what.add_argument("--config", action="store_true", help="the config's exact bytes")
    p.set_defaults(handler=run, registries=refs("source"))


def open_source(ctx: Context, text: str) -> Any:
    """``text`` opened with this command's resolver and store."""
    from ocidist.sources import open_source as open_any

    return open_any(text, resolver=ctx.resolver, store=ctx.store, metadata=ctx.metadata)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.descriptor import Platform
    from ocidist.images.inspect import choose, config_bytes, describe
    from ocidist.images.platforms import only

    matcher = only(Platform.parse(args.platform)) if args.platform else None
    with open_source(ctx, args.source) as source:
        chosen = choose(source, matcher)
        if args.raw:
            sys.stdout.buffer.write(chosen.data)
            return 0
        if args.config:
            sys.stdout.buffer.write(config_bytes(source, chosen)[1])
            return 0
        doc = describe(source, chosen)
    if ctx.json:
        ctx.emit("inspected", doc)
    else:
        sys.stdout.write(render(doc))
    return 0


def render(doc: dict[str, Any]) -> str:
    from ocidist.cli.content import table
    from ocidist.progress import human_size
    from ocidist.text import escape as safe

    lines = [
        f"Name:          {safe(doc['name'])}",
        f"Digest:        {doc['digest']}",
        f"MediaType:     {safe(doc['mediaType'])}",
    ]
    if "index" in doc:
        lines.append(f"Index:         {doc['index']['digest']}")
    if doc.get("artifactType"):
        lines.append(f"ArtifactType:  {safe(doc['artifactType'])}")
    if doc.get("subject"):
        lines.append(f"Subject:       {doc['subject']['digest']}")
    for k, v in sorted((doc.get("annotations") or {}).items()):
        lines.append(f"Annotation:    {safe(k)}={safe(v)}")
    if "manifests" in doc:
        rows = [["PLATFORM", "DIGEST", "SIZE", "IMAGE SIZE"]]
        for m in doc["manifests"]:
            plat = m.get("platform") or {}
            name = "/".join(
                p for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p
            )
            if not name:
                name = safe(m.get("artifactType") or "-")
            size = human_size(m["imageSize"]) if m.get("imageSize") is not None else "-"
            rows.append([safe(name), m["digest"], human_size(m["size"]), size])
        lines.append("Manifests:")
        lines.extend("  " + row for row in table(rows).splitlines())
        return "\n".join(lines) + "\n"
    plat = doc.get("platform")
    if plat:
        parts = (plat.get("os"), plat.get("architecture"), plat.get("variant"))
        lines.append(f"Platform:      {safe('/'.join(p for p in parts if p))}")
    if doc.get("created"):
        lines.append(f"Created:       {safe(doc['created'])}")
    for key, label in (("entrypoint", "Entrypoint"), ("cmd", "Cmd")):
        if doc.get(key) is not None:
            lines.append(f"{label + ':':<15}{safe(json.dumps(doc[key]))}")
    for key, label in (("workingDir", "WorkingDir"), ("user", "User")):
        if doc.get(key):
            lines.append(f"{label + ':':<15}{safe(doc[key])}")
    for env in doc.get("env") or []:
        lines.append(f"Env:           {safe(env)}")
    for k, v in sorted((doc.get("labels") or {}).items()):
        lines.append(f"Label:         {safe(k)}={safe(v)}")
    if doc.get("exposedPorts"):
        lines.append(f"ExposedPorts:  {safe(' '.join(doc['exposedPorts']))}")
    config = doc["config"]
    lines.append(f"Config:        {config['digest']}  {human_size(config['size'])}")
    rows = [["DIGEST", "SIZE", "MEDIA TYPE"]]
    for layer in doc["layers"]:
        title = (layer.get("annotations") or {}).get("org.opencontainers.image.title")
        kind = safe(layer["mediaType"]) + (f"  {safe(title)}" if title else "")
        rows.append([layer["digest"], human_size(layer["size"]), kind])
    lines.append("Layers:")
    lines.extend("  " + row for row in table(rows).splitlines())
    count = len(doc["layers"])
    lines.append(
        f"  total: {count} layer{'s' if count != 1 else ''}, {human_size(doc['layersSize'])}"
    )
    return "\n".join(lines) + "\n"
