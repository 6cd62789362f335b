"""Platform matching: which entries of an index this host (or a user) wants.

The rules follow containerd's ``platforms`` package so that ``dist`` picks the
same image containerd or Docker would:

- ``normalize`` maps aliases to Go's names (``x86_64`` -> ``amd64``,
  ``aarch64`` -> ``arm64``, ``armhf`` -> ``arm/v7``, ``i686`` -> ``386``) and
  fills default variants. One difference: containerd normalises arm64's
  default variant to empty, we make it explicit ``v8``; matching is the same
  (``arm64`` and ``arm64/v8`` are one platform either way) and it reads better.
- ``only(p)`` also accepts what ``p`` can run, best first, exactly as
  containerd's ``Only``: ``amd64/vN`` runs ``amd64/v(N-1)``…``amd64`` and then
  ``386``; ``arm/vN`` runs ``arm/v(N-1)``…``arm/v5``; ``arm64`` runs older
  arm64 variants and then 32-bit ``arm/v8``…``arm/v5``. So an amd64 host *does*
  accept a 386-only image (last), as containerd does. ``only_strict(p)``
  accepts ``p`` alone.
- OS versions (Windows build matching) are not compared; only os,
  architecture and variant are.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from typing import Protocol

from ocidist.descriptor import Descriptor, Platform

_X86_32 = frozenset({"i386", "i486", "i586", "i686", "x86", "386"})
_AMD64 = frozenset({"x86_64", "x86-64", "amd64"})
_ARM64 = frozenset({"aarch64", "arm64"})

# platform.machine() spellings (uname -m, Windows' PROCESSOR_ARCHITECTURE) that
# normalize() does not already know, as (GOARCH, variant).
_MACHINES = {
    "armv8l": ("arm", "v8"),  # 32-bit userland on an ARMv8 CPU
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5tejl": ("arm", "v5"),
    "loongarch64": ("loong64", ""),
}


def normalize(p: Platform) -> Platform:
    """The canonical spelling of ``p`` (lowercase, Go names, default variants)."""
    os = p.os.lower()
    if os == "macos":
        os = "darwin"
    arch, variant = _normalize_arch(p.architecture.lower(), p.variant.lower())
    return p.replace(os=os, architecture=arch, variant=variant)


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    if arch in _X86_32:
        return "386", ""
    if arch in _AMD64:
        # v1 is the baseline every amd64 image targets, so it is no variant.
        return "amd64", "" if variant == "v1" else variant
    if arch in _ARM64:
        if variant in ("", "8", "v8", "v8.0"):
            return "arm64", "v8"
        if variant in ("9", "9.0", "v9.0"):
            return "arm64", "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def host_platform(system: str, machine: str) -> Platform:
    """The platform for ``platform.system()`` / ``platform.machine()`` values."""
    os = system.lower()
    arch, variant = _MACHINES.get(machine.lower(), (machine.lower(), ""))
    return normalize(Platform(os=os, architecture=arch, variant=variant))


def default_platform() -> Platform:
    """This host's platform, e.g. ``linux/amd64`` or ``linux/arm64/v8``."""
    # os.uname() gives what platform.system()/machine() would, without
    # importing `platform` (~1.5 ms of every command's start-up).
    uname = getattr(os, "uname", None)
    if uname is not None:
        u = uname()
        return host_platform(u.sysname, u.machine)
    import platform

    return host_platform(platform.system(), platform.machine())


class MatchComparer(Protocol):
    """Anything ``select`` can filter and order with."""

    def match(self, p: Platform) -> bool: ...

    def less(self, a: Platform, b: Platform) -> bool: ...

    def wanted(self) -> str:
        """The platform(s) asked for, for an error message."""
        ...


class Matcher:
    """Matches any of ``platforms``, preferring earlier ones."""

    def __init__(self, platforms: Iterable[Platform], *, asked: int = 0) -> None:
        self._wanted = tuple(_key(normalize(p)) for p in platforms)
        # How many of ``platforms`` were asked for (the rest: what they also run).
        self._asked = asked or len(self._wanted)

    def _rank(self, p: Platform) -> int:
        """Index of the first wanted platform ``p`` is; ``len`` when none."""
        want = _key(normalize(p))
        for i, candidate in enumerate(self._wanted):
            if candidate == want:
                return i
        return len(self._wanted)

    def match(self, p: Platform) -> bool:
        return self._rank(p) < len(self._wanted)

    def less(self, a: Platform, b: Platform) -> bool:
        """Whether ``a`` is preferred to ``b``."""
        ra, rb = self._rank(a), self._rank(b)
        if ra != rb:
            return ra < rb
        # Same platform: like containerd, the entry declaring more OS features
        # is the more specific build.
        return ra < len(self._wanted) and len(a.os_features) > len(b.os_features)

    def wanted(self) -> str:
        return " or ".join("/".join(filter(None, k)) for k in self._wanted[: self._asked])

    def __repr__(self) -> str:
        return f"Matcher({['/'.join(filter(None, k)) for k in self._wanted]})"


class AllPlatforms:
    """Matches every platform, with no preference (``--all-platforms``)."""

    def match(self, p: Platform) -> bool:
        return True

    def less(self, a: Platform, b: Platform) -> bool:
        return False

    def wanted(self) -> str:
        return "any platform"


def _key(p: Platform) -> tuple[str, str, str]:
    return (p.os, p.architecture, p.variant)


def only(p: Platform) -> Matcher:
    """``p`` and, after it, the platforms a ``p`` machine also runs."""
    return Matcher(_compatible(normalize(p)), asked=1)


def only_strict(p: Platform) -> Matcher:
    """``p`` alone (in any spelling that normalises to it)."""
    return Matcher([p])


def any_of(platforms: Iterable[Platform]) -> Matcher:
    """Any of ``platforms``, preferring them in the order given."""
    return Matcher(platforms)


def default_matcher() -> Matcher:
    return only(default_platform())


def _version(variant: str) -> tuple[int, int] | None:
    """``v8`` -> (8, 0), ``v8.2`` -> (8, 2); None when not of that form."""
    major, _, minor = variant.removeprefix("v").partition(".")
    # ASCII digits only: "²" passes isdigit() and fails int().
    if len(variant) > 8 or not variant.isascii():
        return None
    if not major.isdigit() or (minor and not minor.isdigit()):
        return None
    return int(major), int(minor or 0)


def _compatible(p: Platform) -> list[Platform]:
    out = [p]
    version = _version(p.variant)
    if p.architecture == "amd64":
        if version is not None and version[0] > 1:
            # Microarchitecture levels: v3 runs v2 and baseline images.
            out += [p.replace(variant=f"v{n}") for n in range(version[0] - 1, 1, -1)]
            out.append(p.replace(variant=""))
        out.append(p.replace(architecture="386", variant=""))
    elif p.architecture == "arm" and version is not None:
        out += [p.replace(variant=f"v{n}") for n in range(version[0] - 1, 4, -1)]
    elif p.architecture == "arm64" and version is not None:
        major, minor = version
        if major == 9:
            out += [p.replace(variant=_arm64_variant(9, m)) for m in range(minor - 1, -1, -1)]
            # v9.x is a superset of v8.(x+5), capped at v8.9.
            major, minor = 8, min(minor + 5, 9)
            out.append(p.replace(variant=_arm64_variant(8, minor)))
        if major == 8:
            out += [p.replace(variant=_arm64_variant(8, m)) for m in range(minor - 1, -1, -1)]
            # Every arm64 CPU containerd knows also runs 32-bit arm code.
            out += _compatible(p.replace(architecture="arm", variant="v8"))
    return out


def _arm64_variant(major: int, minor: int) -> str:
    return f"v{major}" if minor == 0 else f"v{major}.{minor}"


def select(manifests: Sequence[Descriptor], matcher: MatchComparer) -> list[Descriptor]:
    """The entries of an index that ``matcher`` accepts, best first.

    Entries without a platform are kept, after all others, as containerd does:
    a single-platform index often omits it, and skipping them would find nothing.
    """

    def compare(a: Descriptor, b: Descriptor) -> int:
        if a.platform is None or b.platform is None:
            return (a.platform is None) - (b.platform is None)
        if matcher.less(a.platform, b.platform):
            return -1
        return 1 if matcher.less(b.platform, a.platform) else 0

    kept = [d for d in manifests if d.platform is None or matcher.match(d.platform)]
    # sorted() is stable, so equally good entries keep the index's order.
    return sorted(kept, key=functools.cmp_to_key(compare))


def selection(platforms: Sequence[str], all_platforms: bool = False) -> tuple[MatchComparer, int]:
    """(matcher, per-index limit) for `--platform P…` / `--all-platforms`.

    One platform keeps only its best match in an index (limit 1); several, or
    all, keep every match (limit 0); none means this machine's platform.
    """
    from ocidist.errors import InvalidArgument

    if all_platforms and platforms:
        raise InvalidArgument("--platform and --all-platforms exclude each other")
    if all_platforms:
        return AllPlatforms(), 0
    if len(platforms) == 1:
        return only(Platform.parse(platforms[0])), 1
    if platforms:
        return any_of(Platform.parse(p) for p in platforms), 0
    return default_matcher(), 1
