"""Platform normalisation, containerd's matching rules, and index selection."""

from __future__ import annotations

import platform as host

import pytest

from ocidist.descriptor import OCI_MANIFEST, Descriptor, Platform
from ocidist.digest import Digest
from ocidist.images.platforms import (
    AllPlatforms,
    any_of,
    default_platform,
    host_platform,
    normalize,
    only,
    only_strict,
    select,
)


def P(text: str) -> Platform:
    return Platform.parse(text)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/arm64/8", "linux/arm64/v8"),
        ("linux/arm64/v8.0", "linux/arm64/v8"),
        ("linux/arm64/9", "linux/arm64/v9"),
        ("linux/arm64/v8.2", "linux/arm64/v8.2"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("linux/i686", "linux/386"),
        ("macos/arm64", "darwin/arm64/v8"),
        ("linux/riscv64", "linux/riscv64"),
    ],
)
def test_normalize(given: str, expected: str) -> None:
    assert normalize(P(given)) == P(expected)


def test_normalize_keeps_os_version_and_features() -> None:
    p = Platform("windows", "x86_64", os_version="10.0.17763.1", os_features=("win32k",))
    assert normalize(p) == Platform(
        "windows", "amd64", os_version="10.0.17763.1", os_features=("win32k",)
    )


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("Linux", "x86_64", "linux/amd64"),
        ("Windows", "AMD64", "windows/amd64"),
        ("Linux", "aarch64", "linux/arm64/v8"),
        ("Darwin", "arm64", "darwin/arm64/v8"),
        ("Linux", "armv7l", "linux/arm/v7"),
        ("Linux", "armv6l", "linux/arm/v6"),
        ("Linux", "armv5tel", "linux/arm/v5"),
        ("Linux", "armv8l", "linux/arm/v8"),
        ("Linux", "i686", "linux/386"),
        ("Linux", "ppc64le", "linux/ppc64le"),
        ("Linux", "s390x", "linux/s390x"),
        ("Linux", "loongarch64", "linux/loong64"),
    ],
)
def test_host_platform(system: str, machine: str, expected: str) -> None:
    assert host_platform(system, machine) == P(expected)


def test_default_platform_is_this_host() -> None:
    p = default_platform()
    assert p == host_platform(host.system(), host.machine())
    assert p.os == host.system().lower()
    assert only(p).match(p)


def test_arm64_host_matches_with_and_without_variant() -> None:
    m = only(P("linux/arm64"))
    assert m.match(P("linux/arm64"))
    assert m.match(P("linux/arm64/v8"))
    assert m.match(P("linux/aarch64"))
    assert not m.match(P("linux/amd64"))
    assert not m.match(P("windows/arm64"))
    assert not m.match(P("linux/arm64/v9"))


def test_arm64_host_falls_back_to_32_bit_arm() -> None:
    m = only(P("linux/arm64"))
    for v in ("v8", "v7", "v6", "v5"):
        assert m.match(P(f"linux/arm/{v}"))
    assert m.less(P("linux/arm64"), P("linux/arm/v8"))
    assert m.less(P("linux/arm/v7"), P("linux/arm/v6"))


def test_arm_v7_host_accepts_older_variants_but_prefers_v7() -> None:
    m = only(P("linux/arm/v7"))
    assert m.match(P("linux/arm/v6")) and m.match(P("linux/arm/v5"))
    assert m.match(P("linux/arm"))  # no variant means v7
    assert not m.match(P("linux/arm/v8"))
    assert not m.match(P("linux/arm64"))
    assert m.less(P("linux/arm/v7"), P("linux/arm/v6"))
    assert m.less(P("linux/arm/v6"), P("linux/arm/v5"))
    assert not m.less(P("linux/arm/v5"), P("linux/arm/v7"))


def test_amd64_host_accepts_386_last_like_containerd() -> None:
    m = only(P("linux/amd64"))
    assert m.match(P("linux/amd64")) and m.match(P("linux/x86_64"))
    assert m.match(P("linux/386"))
    assert m.less(P("linux/amd64"), P("linux/386"))
    assert not m.match(P("linux/amd64/v2"))  # a v1 machine cannot run v2 code
    assert not m.match(P("linux/arm64"))


def test_amd64_microarchitecture_levels() -> None:
    m = only(P("linux/amd64/v3"))
    assert [m.match(P(f"linux/amd64/{v}")) for v in ("v4", "v3", "v2", "v1")] == [
        False,
        True,
        True,
        True,
    ]
    assert m.less(P("linux/amd64/v3"), P("linux/amd64/v2"))
    assert m.less(P("linux/amd64/v2"), P("linux/amd64"))


def test_arm64_v9_runs_v8_up_to_five_minors_later() -> None:
    m = only(P("linux/arm64/v9.1"))
    assert m.match(P("linux/arm64/v9")) and m.match(P("linux/arm64/v8.6"))
    assert not m.match(P("linux/arm64/v8.7"))
    assert not m.match(P("linux/arm64/v9.2"))
    assert m.less(P("linux/arm64/v9"), P("linux/arm64/v8.6"))


def test_only_strict_accepts_only_the_platform() -> None:
    m = only_strict(P("linux/arm/v7"))
    assert m.match(P("linux/armhf")) and m.match(P("linux/arm"))
    assert not m.match(P("linux/arm/v6"))
    assert not only_strict(P("linux/amd64")).match(P("linux/386"))


def test_any_of_prefers_the_order_given() -> None:
    m = any_of([P("linux/arm64"), P("linux/amd64")])
    assert m.match(P("linux/amd64")) and m.match(P("linux/aarch64"))
    assert not m.match(P("linux/386"))
    assert m.less(P("linux/arm64"), P("linux/amd64"))
    assert not m.less(P("linux/amd64"), P("linux/arm64"))
    assert not m.less(P("linux/amd64"), P("linux/amd64"))


def test_more_os_features_is_preferred_among_equals() -> None:
    m = only(P("windows/amd64"))
    plain, featured = P("windows/amd64"), Platform("windows", "amd64", os_features=("win32k",))
    assert m.less(featured, plain)
    assert not m.less(plain, featured)


def _entry(platform: str | None, name: str) -> Descriptor:
    return Descriptor(
        OCI_MANIFEST,
        Digest.from_bytes(name.encode()),
        len(name),
        platform=P(platform) if platform else None,
    )


INDEX = [
    _entry("linux/386", "386"),
    _entry("linux/arm/v6", "armv6"),
    _entry(None, "unknown"),
    _entry("linux/amd64", "amd64"),
    _entry("linux/arm/v7", "armv7"),
    _entry("linux/arm64/v8", "arm64"),
    _entry("windows/amd64", "windows"),
]


def _names(descs: list[Descriptor]) -> list[str]:
    by_digest = {d.digest: str(d.platform) if d.platform else "none" for d in INDEX}
    return [by_digest[d.digest] for d in descs]


@pytest.mark.parametrize(
    ("host_platform_text", "expected"),
    [
        ("linux/amd64", ["linux/amd64", "linux/386", "none"]),
        ("linux/arm64", ["linux/arm64/v8", "linux/arm/v7", "linux/arm/v6", "none"]),
        ("linux/arm/v7", ["linux/arm/v7", "linux/arm/v6", "none"]),
        ("linux/arm/v6", ["linux/arm/v6", "none"]),
        ("linux/s390x", ["none"]),
    ],
)
def test_select_best_first(host_platform_text: str, expected: list[str]) -> None:
    assert _names(select(INDEX, only(P(host_platform_text)))) == expected


def test_select_all_platforms_keeps_index_order_unplatformed_last() -> None:
    expected = [d for d in INDEX if d.platform] + [d for d in INDEX if not d.platform]
    assert select(INDEX, AllPlatforms()) == expected


def test_select_equal_entries_keep_index_order() -> None:
    a, b = _entry("linux/arm64", "first"), _entry("linux/arm64/v8", "second")
    assert select([a, b], only(P("linux/arm64"))) == [a, b]
    assert select([b, a], only(P("linux/arm64"))) == [b, a]


def test_selection_rules() -> None:
    from ocidist.errors import InvalidArgument
    from ocidist.images.platforms import AllPlatforms, selection

    m, limit = selection(["linux/arm64"])
    assert limit == 1 and m.match(Platform("linux", "arm64", "v8"))
    assert not m.match(Platform("linux", "amd64"))
    m, limit = selection(["linux/amd64", "linux/arm/v7"])
    assert limit == 0 and m.match(Platform("linux", "arm", "v7"))
    m, limit = selection([], all_platforms=True)
    assert limit == 0 and isinstance(m, AllPlatforms)
    _, limit = selection([])
    assert limit == 1
    with pytest.raises(InvalidArgument, match="exclude"):
        selection(["linux/amd64"], all_platforms=True)
