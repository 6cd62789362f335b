"""`dist login REGISTRY` and `dist logout REGISTRY`, in Docker's config.json.

Same file, keys and helpers as `docker login`, so docker, skopeo and crane
read what we write. The credentials are checked against the registry (a
``GET /v2/`` that must pass its auth challenge) before anything is stored.
"""

from __future__ import annotations

import argparse
from typing import Any

from ocidist.cli.context import Context
from ocidist.errors import InvalidArgument


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "login",
        parents=[common],
        help="log in to a registry (stores credentials in Docker's config.json)",
        description="Check credentials against REGISTRY and store them in Docker's "
        "config.json ($DOCKER_CONFIG/config.json or ~/.docker/config.json), or in the "
        "credsStore/credHelpers helper it names. The user comes from -u/--user; the "
        "password from -p, --password-stdin or a prompt. With --authfile (or "
        "$REGISTRY_AUTH_FILE, the only file dist then reads), store them in that "
        "podman/skopeo auth.json instead.",
        examples=(
            "dist login ghcr.io -u alice",
            'dist login quay.io -u bob --authfile "$XDG_RUNTIME_DIR/containers/auth.json"',
            'printf "%s\\n" "$TOKEN" | dist login ghcr.io -u alice --password-stdin',
        ),
    )
    p.add_argument("registry", metavar="REGISTRY", nargs="?", default="docker.io")
    p.add_argument(
        "--password", "-p", metavar="PASS", help="password (insecure: prefer --password-stdin)"
    )
    add_authfile(p, "store the credentials in FILE, an auth.json as podman and skopeo use")
    p.set_defaults(handler=run_login)
    q = sub.add_parser(
        "logout",
        parents=[common],
        help="remove a registry's stored credentials",
        description="Remove REGISTRY's credentials from Docker's config.json or helper "
        "(with --authfile or $REGISTRY_AUTH_FILE, from that auth.json).",
        examples=("dist logout ghcr.io",),
    )
    q.add_argument("registry", metavar="REGISTRY", nargs="?", default="docker.io")
    add_authfile(q, "remove the credentials from FILE, an auth.json")
    q.set_defaults(handler=run_logout)


def add_authfile(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--authfile", metavar="FILE", help=help_text)


def _authfile(args: argparse.Namespace) -> str | None:
    """--authfile, else $REGISTRY_AUTH_FILE: with it set, that file is the
    only one dist reads (authfile.stored), so a login goes there, as podman's."""
    from ocidist.remotes.docker.authfile import override

    return str(args.authfile) if args.authfile else override()


def registry_domain(text: str) -> str:
    """``https://index.docker.io/v1/``, ``registry-1.docker.io`` → ``docker.io``;
    anything else → its host[:port]."""
    from ocidist.remotes.docker.credentials import DOCKER_HUB_KEY, config_key, hostname

    return "docker.io" if config_key(text) == DOCKER_HUB_KEY else hostname(text)


def run_login(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.remotes.docker import credentials as creds
    from ocidist.remotes.docker.auth import Credential
    from ocidist.remotes.docker.listing import upstream_host

    domain = registry_domain(args.registry)
    if args.password is not None:
        if args.password_stdin:
            raise InvalidArgument("--password and --password-stdin exclude each other")
        if not getattr(args, "user", None):
            raise InvalidArgument("--password needs --user")
        ctx.warn("--password on the command line is insecure (other users see it): "
                 "use --password-stdin")  # fmt: skip
        user, _ = creds.parse_user(args.user)
        cred: Credential | None = Credential(username=user, secret=args.password)
    else:
        if args.password_stdin and not getattr(args, "user", None):
            raise InvalidArgument("--password-stdin needs --user")
        cred = ctx.user_credential(prompt_user=True)
    if cred is None or not cred.secret:
        raise InvalidArgument("login needs --user USER (and a password)")
    # For REGISTRY alone, as --user everywhere: a hosts.toml `server` under
    # another name is another host, which must not be sent this password
    # (and would not be given what is stored under REGISTRY's name either).
    resolver = ctx.new_resolver(creds.for_registry(domain, cred))
    try:
        # The upstream server, never a mirror: it is the one that must accept these.
        host = upstream_host(resolver.hosts(domain))
        resp = resolver.session.request(host, "GET", "/", scopes=(), what=f"login to {domain}")
        resp.close()
    finally:
        resolver.close()
    path = _authfile(args)
    if path:
        from ocidist.remotes.docker import authfile

        where = authfile.store(domain, cred, path)
    else:
        where = creds.store(domain, cred)
    if ctx.json:
        ctx.emit("login", {"registry": domain, "stored": where})
    elif not ctx.quiet:
        print("Login Succeeded")
    return 0


def run_logout(args: argparse.Namespace, ctx: Context) -> int:
    from ocidist.remotes.docker import credentials as creds

    domain = registry_domain(args.registry)
    path = _authfile(args)
    if path:
        from ocidist.remotes.docker import authfile

        removed = authfile.erase(domain, path)
    else:
        removed = creds.erase(domain)
    if ctx.json:
        ctx.emit("logout", {"registry": domain, "removed": removed})
    elif not ctx.quiet:
        msg = "Removing login credentials for" if removed else "Not logged in to"
        print(f"{msg} {domain}")
    return 0
