"""Ready-made images the product tests share."""

from __future__ import annotations

import random
from collections.abc import Sequence

from tests.harness.blobs import Compression
from tests.harness.images import BuiltImage, Format, build_image, build_index, build_layer
from tests.harness.tarspec import Dir, Entry, File, Hardlink, LayerSpec, Symlink, Whiteout

PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")


def base_layer(tag: str = "simple") -> LayerSpec:
    return {
        "bin": Dir(),
        "bin/sh": File(b"#!/bin/true\n", mode=0o755),
        "etc": Dir(),
        "etc/motd": b"welcome\n",
        "etc/os-release": f'ID=ocidist-test\nVARIANT="{tag}"\n'.encode(),
        "tmp": Dir(mode=0o1777),
    }


def simple_image(
    fmt: Format = "oci", compression: Compression = "gzip", tag: str = "simple"
) -> BuiltImage:
    """Three layers exercising files, dirs, a symlink, a hardlink and a whiteout:
    the unpacked rootfs has /bin/sh, /etc/os-release, /app/{main.py,current,
    same-as-main.py} and no /etc/motd. ``tag`` varies the content (and digests)."""
    app: dict[str, Entry] = {
        "app": Dir(),
        "app/main.py": File(f"print({tag!r})\n".encode(), mode=0o755),
        "app/current": Symlink("main.py"),
        "app/same-as-main.py": Hardlink("app/main.py"),
    }
    cleanup: dict[str, Entry] = {"etc/motd": Whiteout()}
    return build_image([base_layer(tag), app, cleanup], fmt=fmt, compression=compression)


def docker_image(tag: str = "docker") -> BuiltImage:
    """``simple_image`` with Docker schema2 media types."""
    return simple_image(fmt="docker", tag=tag)


def multiplatform_index(
    fmt: Format = "oci", platforms: Sequence[str] = PLATFORMS, tag: str = "multi"
) -> BuiltImage:
    """One image per platform: a shared base layer plus a layer of its own."""
    shared = build_layer(base_layer(tag), fmt=fmt)
    images = []
    for plat in platforms:
        own = build_layer({"etc/platform": f"{plat}\n".encode()}, fmt=fmt)
        images.append(build_image([shared, own], fmt=fmt, platform=plat))
    return build_index(images, fmt=fmt)


def many_small_layers(
    count: int = 40, file_size: int = 16 * 1024, seed: int = 0, fmt: Format = "oci"
) -> BuiltImage:
    """``count`` small layers of text-like content (distinct per layer and seed)."""
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9)))
             for _ in range(512)]  # fmt: skip
    layers: list[LayerSpec] = []
    for i in range(count):
        text = b" ".join(rng.choices(words, k=file_size // 5))[:file_size]
        layers.append({f"data/layer{i:03d}.txt": text})
    return build_image(layers, fmt=fmt)
