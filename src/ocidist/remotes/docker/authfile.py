"""podman/skopeo/buildah credentials: ``auth.json`` (containers-auth.json(5)).

`dist` reads them after Docker's ``config.json`` (a registry found in both
gets Docker's entry), so someone who logged in with ``podman login`` or
``skopeo login`` is not "unauthorized" with `dist`. The files, in the order
the containers tools read them:

1. the primary file ``$XDG_RUNTIME_DIR/containers/auth.json`` (without
   ``XDG_RUNTIME_DIR``: ``/run/containers/<uid>/auth.json``, as
   containers/image does);
2. ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config/containers/…``).

``$REGISTRY_AUTH_FILE`` is an explicit choice of file, and as podman and
skopeo do since containers/image 5.24 (its PR #1751: "Don't use any default
path fallbacks if the user specified a path"; podman 4.4, skopeo 1.11), it is
then the only file read: neither of the above nor Docker's ``config.json``,
so a job that points it at its own logins gets those and nothing from the
user's home. `dist login` and `dist logout` write it too. (Older skopeo,
Debian's 1.9 among them, still fell back to the other files.)

The format is Docker's ``auths`` (base64 ``auth``, ``identitytoken``) plus
``credHelpers``; podman files Docker Hub as ``docker.io``. Keys that name a
namespace (``quay.io/team/app``) are not used: credentials here are chosen
per registry host, and such a key does not hold for the whole host.
"""

from __future__ import annotations

import binascii
import os
from typing import Any

from ocidist.errors import CredentialError
from ocidist.remotes.docker.auth import Credential, CredentialFunc
from ocidist.remotes.docker.credentials import (
    HUB_NAMES,
    chain,
    from_docker_config,
    from_entry,
    helper_get,
    hostname,
    load_config,
    names_namespace,
    save_config,
)

WHAT = "auth.json"


def override() -> str | None:
    """``$REGISTRY_AUTH_FILE`` when set (and not empty, as in Go's Getenv)."""
    return os.environ.get("REGISTRY_AUTH_FILE") or None


def primary_path() -> str:
    """Where podman login writes: $REGISTRY_AUTH_FILE, else the runtime file."""
    chosen = override()
    if chosen:
        return chosen
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "containers", "auth.json")
    return os.path.join("/run/containers", str(os.getuid()), "auth.json")


def paths() -> list[str]:
    """Every auth.json to read, first match wins; $REGISTRY_AUTH_FILE alone
    when it is set."""
    chosen = override()
    if chosen:
        return [chosen]
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(
        os.path.expanduser("~"), ".config"
    )
    out = [primary_path(), os.path.join(config_home, "containers", "auth.json")]
    return list(dict.fromkeys(out))


def _key(registry: str) -> str:
    """The key podman files a registry under: its host[:port], docker.io for Hub."""
    host = hostname(registry)
    return "docker.io" if host in HUB_NAMES else host


def _same_registry(key: str, registry: str) -> bool:
    if names_namespace(key):
        return False  # quay.io/team/app: not for the whole host
    return _key(key.strip()) == _key(registry)


def lookup(registry: str, path: str) -> Credential | None:
    """Credentials for ``registry`` (a host[:port]) in one auth.json."""
    cfg = load_config(path, WHAT)
    helpers = cfg.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if isinstance(name, str) and name and _same_registry(key, registry):
                cred = helper_get(name, registry)
                if cred is not None:
                    return cred
    auths = cfg.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if isinstance(entry, dict) and _same_registry(key, registry):
            return from_entry(dict(entry), registry)
    return None


def from_auth_files(files: list[str] | None = None) -> CredentialFunc:
    """Look up per host in each auth.json in turn, caching answers."""
    cache: dict[str, Credential | None] = {}

    def get(host: str) -> Credential | None:
        if host not in cache:
            found = None
            for path in files if files is not None else paths():
                found = lookup(host, path)
                if found is not None:
                    break
            cache[host] = found
        return cache[host]

    return get


def stored() -> CredentialFunc:
    """The credentials a command finds besides what it was given: Docker's
    config.json (file, helpers), then the auth.json files; or only
    $REGISTRY_AUTH_FILE's when it is set (see the module doc)."""
    chosen = override()
    if chosen:
        return from_auth_files([chosen])
    return chain(from_docker_config(), from_auth_files())


def store(registry: str, cred: Credential, path: str) -> str:
    """Save like ``podman login --authfile PATH`` (mode 0600); returns PATH."""
    cfg = load_config(path, WHAT)
    auths = cfg.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise CredentialError(f"{path}: 'auths' is not an object")
    raw = f"{cred.username}:{cred.secret}".encode()
    entry: dict[str, Any] = {"auth": binascii.b2a_base64(raw, newline=False).decode()}
    if cred.identity_token:
        entry["identitytoken"] = cred.identity_token
    auths[_key(registry)] = entry
    save_config(cfg, path)
    return path


def erase(registry: str, path: str) -> bool:
    """Forget ``registry`` in ``path``; False when it held nothing for it."""
    cfg = load_config(path, WHAT)
    auths = cfg.get("auths")
    if not isinstance(auths, dict):
        return False
    doomed = [k for k in auths if _same_registry(k, registry)]
    for k in doomed:
        del auths[k]
    if doomed:
        save_config(cfg, path)
    return bool(doomed)
