"""Which registry a password typed on the command line is for.

``--user`` goes to the registry the command names and to no other host: not
to the mirrors hosts.toml lists for it (they get credentials from their own
config.json, auth.json or helper entries, as with skopeo, which drops
``--creds`` for a mirror), not to a hosts.toml ``server`` under another name,
and not to the other registry of a copy. A command that names two
registries (``copy SRC DST``) takes ``--src-user`` and ``--dest-user``, as
skopeo's ``--src-creds``/``--dest-creds``; plain ``--user`` there is refused
when SRC and DST are on different registries, since nothing says whose
password it is (binding it to one side, as crane's keychain would have it,
sends a source password to the destination when the user meant the source).

Each command declares what it names: ``registries`` in its parser's
defaults, a function of its arguments giving ``{argument: registry}`` for
the arguments that are registry references (``refs``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ocidist.errors import InvalidArgument

Named = Callable[[argparse.Namespace], dict[str, str]]

# The arguments --src-user and --dest-user are for (copy's SRC and DST).
SRC, DST = "src", "dst"


def registry_of(text: str | None) -> str | None:
    """The registry domain of a registry reference (``docker.io`` for Docker
    Hub's names), None for anything else (a layout, an archive, ``store:``,
    or text that is no reference: the command reports that itself)."""
    if not text:
        return None
    from ocidist import reference
    from ocidist.errors import InvalidReference
    from ocidist.sources import split_transport

    kind, rest = split_transport(text)
    if kind != "docker":
        return None
    try:
        return reference.parse(rest, default_tag="").domain
    except InvalidReference:
        return None


def refs(*dests: str) -> Named:
    """The registries of the arguments ``dests`` (references, any transport)."""

    def named(args: argparse.Namespace) -> dict[str, str]:
        out = {}
        for dest in dests:
            domain = registry_of(getattr(args, dest, None))
            if domain:
                out[dest] = domain
        return out

    return named


def add_src_dest_options(p: argparse.ArgumentParser) -> None:
    """``--src-user`` and ``--dest-user`` (a command with SRC and DST)."""
    p.add_argument(
        "--src-user",
        metavar="USER[:PASS]",
        help="credentials for SRC's registry alone (without :PASS: --password-stdin or a prompt)",
    )
    p.add_argument(
        "--dest-user",
        metavar="USER[:PASS]",
        help="credentials for DST's registry alone (without :PASS: --password-stdin or a prompt)",
    )


def _same(a: str, b: str) -> bool:
    from ocidist.remotes.docker.credentials import config_key

    return config_key(a) == config_key(b)


def bindings(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """``(option, USER[:PASS], registry)`` for each credential option given:
    the registry it goes to. Raises ``InvalidArgument`` when that is not
    clear (``--user`` with two registries, an option for a side that is no
    registry)."""
    user = getattr(args, "user", None)
    src = getattr(args, "src_user", None)
    dst = getattr(args, "dest_user", None)
    if not (user or src or dst):
        return []
    declared: Named | None = getattr(args, "registries", None)
    if declared is None:
        # A command that made a resolver without saying what it names: a
        # password must not go everywhere by default.
        raise InvalidArgument("--user: this command does not say which registry it is for")
    named = declared(args)
    if user and (src or dst):
        raise InvalidArgument("--user and --src-user/--dest-user exclude each other")
    if user:
        distinct: list[str] = []
        for domain in named.values():
            if not any(_same(domain, d) for d in distinct):
                distinct.append(domain)
        if len(distinct) > 1:
            hint = (
                "give --src-user and/or --dest-user"
                if SRC in named and DST in named
                else "keep each registry's credentials in config.json (dist login)"
            )
            raise InvalidArgument(
                f"--user: this command talks to {distinct[0]} and {distinct[1]}, and a "
                f"password goes to one registry only: {hint}"
            )
        return [("--user", user, d) for d in distinct]
    out = []
    sides = (("--src-user", src, SRC, "SRC"), ("--dest-user", dst, DST, "DST"))
    for option, text, side, what in sides:
        if not text:
            continue
        if side not in named:
            raise InvalidArgument(f"{option}: {what} is not a registry reference")
        out.append((option, text, named[side]))
    if len(out) == 2 and _same(out[0][2], out[1][2]):
        if out[0][1] != out[1][1]:
            raise InvalidArgument(
                f"--src-user and --dest-user: SRC and DST are both on {out[0][2]}, which gets "
                "one set of credentials (give it once, or --user)"
            )
        out = out[:1]
    return out
