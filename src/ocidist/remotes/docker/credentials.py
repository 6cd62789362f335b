"""Where credentials come from: ``--user``, then Docker's ``config.json``.

The file is Docker's own (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``), read and written the way docker, skopeo and crane
do: ``auths`` entries hold ``auth`` (base64 ``user:password``) or an
``identitytoken``; ``credHelpers`` names a helper per registry and
``credsStore`` one for all, run as ``docker-credential-<name> get|store|erase``.
Docker Hub is filed under its legacy key ``https://index.docker.io/v1/``.
No function here puts a secret into an exception message or a log record.
"""

from __future__ import annotations

import binascii  # not base64 (which adds struct): ~0.6 ms of every command
import json
import os
from typing import Any

from ocidist.errors import (
    CredentialError,
    InvalidArgument,
)
from ocidist.remotes.docker.auth import Credential, CredentialFunc

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# Helpers are separate programs that may prompt a keyring; don't hang forever.
HELPER_TIMEOUT = 60.0
# Docker helpers print this (exit 1) when they hold nothing for the server.
_NOT_FOUND = "credentials not found"


def config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def config_key(registry: str) -> str:
    """The ``auths``/helper key for a registry host, as docker login files it."""
    host = hostname(registry)
    return DOCKER_HUB_KEY if host in HUB_NAMES else host


def hostname(key: str) -> str:
    """``https://host:5000/v1/`` → ``host:5000`` (docker's ConvertToHostname)."""
    s = key.strip()
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix) :]
            break
    return s.split("/", 1)[0].lower()


def names_namespace(key: str) -> bool:
    """``quay.io/team/app`` (a podman/skopeo login for part of a registry)
    rather than a host or Docker's URL form (``https://host/v1/``): such a key
    holds for that namespace, not the whole host, and registry credentials
    here are chosen per host, so it is not used (containers-auth.json(5))."""
    bare = key.strip()
    return not bare.startswith(("http://", "https://")) and "/" in bare.rstrip("/")


def load_config(path: str | None = None, what: str = "Docker config") -> dict[str, Any]:
    path = path or config_path()
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, ValueError, RecursionError) as e:
        # A JSON error message quotes the offending text, which may be a secret;
        # RecursionError: nesting deeper than the interpreter's stack.
        raise CredentialError(f"{path}: cannot read {what} ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise CredentialError(f"{path}: {what} is not a JSON object")
    return obj


def save_config(cfg: dict[str, Any], path: str | None = None) -> None:
    """Write atomically with mode 0600; other keys of the file are kept."""
    path = path or config_path()
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    import tempfile  # only when saving (dist login): with shutil ~3 ms of start-up

    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def helper_for(cfg: dict[str, Any], registry: str) -> str | None:
    """The helper name for ``registry``: ``credHelpers`` first, then ``credsStore``."""
    helpers = cfg.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if names_namespace(key) or not (isinstance(name, str) and name):
                continue
            if hostname(key) == hostname(registry):
                return name
    store = cfg.get("credsStore")
    return store if isinstance(store, str) and store else None


def _auth_entry(cfg: dict[str, Any], registry: str) -> dict[str, Any] | None:
    auths = cfg.get("auths")
    if not isinstance(auths, dict):
        return None
    key = config_key(registry)
    if isinstance(auths.get(key), dict):
        return dict(auths[key])
    want = hostname(key)
    for k, v in auths.items():
        # Old files use URLs ("https://host/v1/") as keys; compare host parts.
        if isinstance(v, dict) and not names_namespace(k) and hostname(k) == want:
            return dict(v)
    return None


def from_entry(entry: dict[str, Any], registry: str) -> Credential | None:
    token = entry.get("identitytoken")
    user, secret = "", ""
    raw = entry.get("auth")
    if isinstance(raw, str) and raw:
        try:
            decoded = binascii.a2b_base64(raw).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, a non-ASCII str
            raise CredentialError(f"config.json: bad 'auth' value for {registry}") from None
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise CredentialError(f"config.json: bad 'auth' value for {registry}")
    elif isinstance(entry.get("username"), str):
        user, secret = entry["username"], str(entry.get("password") or "")
    if isinstance(token, str) and token:
        return Credential(username=user, identity_token=token)
    return Credential(username=user, secret=secret) if user else None


def run_helper(name: str, action: str, payload: str) -> str:
    """Run ``docker-credential-<name> <action>`` with ``payload`` on stdin."""
    import subprocess  # only with a credential helper: ~2 ms of every command's start-up

    program = f"docker-credential-{name}"
    try:
        proc = subprocess.run(
            [program, action],
            input=payload.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise CredentialError(f"credential helper {program} not found on PATH") from None
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CredentialError(f"credential helper {program} {action}: {type(e).__name__}") from None
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        # Helpers report errors on stdout; "not found" is a normal answer to get.
        text = (out.strip() or proc.stderr.decode("utf-8", "replace").strip()).splitlines()
        first = text[0][:200] if text else ""
        if _NOT_FOUND in first.lower():
            return ""
        raise CredentialError(
            f"credential helper {program} {action} failed (exit {proc.returncode}): {first}"
        )
    return out


def helper_get(name: str, registry: str) -> Credential | None:
    out = run_helper(name, "get", config_key(registry))
    if not out.strip():
        return None
    try:
        obj = json.loads(out)
        user, secret = obj.get("Username", ""), obj.get("Secret", "")
    except (ValueError, AttributeError, RecursionError):  # nested too deeply: RecursionError
        raise CredentialError(f"credential helper docker-credential-{name}: bad answer") from None
    if not isinstance(user, str) or not isinstance(secret, str) or not secret:
        return None
    # Docker's convention: the user "<token>" means the secret is an identity token.
    if user == "<token>":
        return Credential(identity_token=secret)
    return Credential(username=user, secret=secret)


def lookup(registry: str, path: str | None = None) -> Credential | None:
    """Credentials for ``registry`` (a host[:port]) from Docker's config."""
    cfg = load_config(path)
    helper = helper_for(cfg, registry)
    if helper is not None:
        cred = helper_get(helper, registry)
        if cred is not None:
            return cred
    entry = _auth_entry(cfg, registry)
    return from_entry(entry, registry) if entry else None


def store(registry: str, cred: Credential, path: str | None = None) -> str:
    """Save like ``docker login``; returns where it went (helper name or file)."""
    path = path or config_path()
    cfg = load_config(path)
    key = config_key(registry)
    auths = cfg.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise CredentialError(f"{path}: 'auths' is not an object")
    helper = helper_for(cfg, registry)
    if helper is not None:
        payload = {"ServerURL": key, "Username": cred.username, "Secret": cred.secret}
        if cred.identity_token:
            payload.update(Username="<token>", Secret=cred.identity_token)
        run_helper(helper, "store", json.dumps(payload))
        auths[key] = {}  # docker's marker: "a helper holds this one"
        save_config(cfg, path)
        return f"docker-credential-{helper}"
    raw = f"{cred.username}:{cred.secret}".encode()
    entry: dict[str, Any] = {"auth": binascii.b2a_base64(raw, newline=False).decode()}
    auths[key] = entry
    save_config(cfg, path)
    return path


def erase(registry: str, path: str | None = None) -> bool:
    """Forget ``registry``'s credentials; False when there were none."""
    path = path or config_path()
    cfg = load_config(path)
    key = config_key(registry)
    found = False
    helper = helper_for(cfg, registry)
    if helper is not None:
        try:
            run_helper(helper, "erase", key)
            found = True
        except CredentialError:
            found = False
    auths = cfg.get("auths")
    if isinstance(auths, dict):
        same = [k for k in auths if not names_namespace(k) and hostname(k) == hostname(key)]
        for k in same:
            del auths[k]
            found = True
    if found:
        save_config(cfg, path)
    return found


def parse_user(text: str, option: str = "--user") -> tuple[str, str | None]:
    """``USER[:PASS]`` → (user, password or None)."""
    user, sep, password = text.partition(":")
    if not user:
        raise InvalidArgument(f"{option} needs a user name (USER or USER:PASSWORD)")
    return user, (password if sep else None)


def chain(*sources: CredentialFunc) -> CredentialFunc:
    """The first source that has credentials for a host wins."""

    def get(host: str) -> Credential | None:
        for src in sources:
            cred = src(host)
            if cred is not None:
                return cred
        return None

    return get


def static(cred: Credential) -> CredentialFunc:
    """The same credentials for every host, mirrors and token realms of
    every registry included: only for a resolver that talks to one host
    (``dist login``) or a caller that knows where it points. ``--user`` is
    bound to its registry (``for_registry``, cli/usercreds.py)."""

    def get(host: str) -> Credential | None:
        return cred

    return get


def for_registry(registry: str, cred: Credential) -> CredentialFunc:
    """``cred`` for ``registry`` alone (host[:port]; Docker Hub's names count
    as one), never for another host: not a mirror of it, not a hosts.toml
    ``server`` under another name, not the other registry of a copy. A
    mirror gets credentials from its own entries, as with skopeo, which
    drops ``--creds`` for a mirror; a daemon's ``--user`` goes only to its
    ``--user-registry``."""
    key = config_key(registry)

    def get(host: str) -> Credential | None:
        return cred if config_key(host) == key else None

    return get


def from_docker_config(path: str | None = None) -> CredentialFunc:
    """Look up per host, caching answers: helpers are processes, and a command
    asks for the same host's credentials on every token fetch."""
    cache: dict[str, Credential | None] = {}

    def get(host: str) -> Credential | None:
        if host not in cache:
            cache[host] = lookup(host, path)
        return cache[host]

    return get
