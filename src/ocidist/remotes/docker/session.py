"""One registry request with authorization and retries; error answers mapped.

``Session.request`` is where the retry policy and the auth state machine meet
the transport: 401 → this request's own challenge → a retry with new auth
(auth.py decides when that can help); 408/429/5xx and broken connections →
backoff and retry, but only for idempotent requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ocidist import jsondata
from ocidist.errors import (
    Denied,
    DistError,
    InvalidContent,
    NotFound,
    RegistryError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from ocidist.remotes.docker.auth import Authorizer
from ocidist.remotes.docker.hosts import RegistryHost
from ocidist.remotes.docker.origin import answered_by, origin_of
from ocidist.remotes.docker.retry import (
    RETRYABLE_STATUS,
    Attempts,
    RetryPolicy,
    parse_retry_after,
)
from ocidist.remotes.docker.transport import IDEMPOTENT, Deadline, Response, Transport
from ocidist.text import quote

_LOGGER = "ocidist.remotes"

MAX_ERROR_BODY = 64 * 1024
# distribution-spec error codes: BLOB_UNKNOWN, DENIED, TOOMANYREQUESTS …
_ERROR_CODE = re.compile(r"[A-Z0-9_]{1,64}", re.ASCII)


class Session:
    def __init__(
        self,
        transport: Transport,
        authorizer: Authorizer,
        *,
        retry: RetryPolicy | None = None,
        deadline: Deadline | None = None,
        user_agent: str = "ocidist/0.1",
    ) -> None:
        self.transport = transport
        self.authorizer = authorizer
        self.retry = retry or RetryPolicy()
        self.deadline = deadline or Deadline(None)
        self.user_agent = user_agent

    def request(
        self,
        host: RegistryHost,
        method: str,
        path: str,
        *,
        scopes: Iterable[str],
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        what: str = "",
        idempotent: bool | None = None,
        ok: Iterable[int] = (200,),
        attempts: Attempts | None = None,
    ) -> Response:
        """Send, retrying as the policy allows; non-``ok`` answers raise mapped errors.

        ``path`` is relative to the host's API base (``/<name>/manifests/<ref>``)
        or an absolute URL (upload locations). ``attempts`` is the caller's
        budget for the object this request is part of (a body resumed by
        the fetcher); by default the request has its own. A request that may
        not be replayed raises its first failure (the caller resumes)."""
        scopes = tuple(scopes)
        ok_set = frozenset(ok)
        url = path if "://" in path else host.base + path
        what = what or f"{method} {url}"
        replay = method in IDEMPOTENT if idempotent is None else idempotent
        tries = attempts if attempts is not None else self.retry.begin(what, self.deadline)
        # This request's own auth state: its 401s decide its retries, never
        # another request's (see auth.py).
        auth = self.authorizer.request(host.host, scopes, scheme=host.scheme, tls=host.tls)
        while True:
            hdrs = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
            hdrs.update(headers or {})
            # hosts.toml [header] values and the credential: this host's origin only.
            bound = dict(host.headers)
            authorization = auth.header()
            if authorization:
                bound["Authorization"] = authorization
            try:
                resp = self.transport.request(
                    method,
                    url,
                    headers=hdrs,
                    body=body,
                    tls=host.tls,
                    deadline=self.deadline,
                    what=what,
                    bound=bound,
                    bound_origin=host.origin,
                )
            except Unavailable as e:
                if not replay:
                    raise
                tries.failed(e)
                continue
            if resp.status in ok_set:
                return resp
            if resp.status == 401:
                if not answered_by(resp.url, host.origin):
                    raise _not_ours(resp, host, what)
                challenges = resp.header_all("WWW-Authenticate")
                err = error_for(resp, what)
                if auth.unauthorized(challenges):
                    continue  # an auth round trip is not a failed attempt
                raise err
            err = error_for(resp, what)
            if resp.status in RETRYABLE_STATUS and replay:
                ra = err.retry_after if isinstance(err, TooManyRequests) else None
                tries.failed(err, retry_after=ra)
                continue
            raise err


def _not_ours(resp: Response, host: RegistryHost, what: str) -> Unauthorized:
    """A redirect target's 401 (origin.py, rule 5): its challenge is not
    answered, and it is not remembered as the registry's."""
    resp.close()
    return Unauthorized(
        f"{what}: unauthorized by {quote(str(origin_of(resp.url)))}, where {host.origin} "
        "redirected; the registry's credentials go to the registry only",
        status=401,
    )


def _error_details(body: bytes) -> tuple[list[str], list[str]]:
    """The codes and messages of a distribution-spec error body, as far as
    it is one. Codes must look like codes (``NAME_UNKNOWN``); messages are
    the registry's words, escaped and shortened when shown."""
    try:
        obj = jsondata.loads(body, "error") if body else None
    except InvalidContent:
        return [], []
    errs = obj.get("errors") if isinstance(obj, dict) else None
    codes: list[str] = []
    messages: list[str] = []
    for e in errs if isinstance(errs, list) else []:
        if not isinstance(e, dict):
            continue
        code = e.get("code")
        if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
            codes.append(code)
        message = e.get("message")
        if isinstance(message, str) and message:
            messages.append(message)
    return codes, messages


def error_for(resp: Response, what: str) -> DistError:
    """Map an error answer to the hierarchy, with the registry's own codes."""
    try:
        body = resp.read_capped(MAX_ERROR_BODY)
    except DistError:
        body = b""
    codes, messages = _error_details(body)
    detail = f" ({quote(', '.join(messages))})" if messages else ""
    s = resp.status
    if s == 404:
        return NotFound(f"{what}: not found{detail}")
    if s == 401:
        return Unauthorized(f"{what}: unauthorized{detail}", status=s, codes=codes, body=body)
    if s == 403:
        return Denied(f"{what}: denied{detail}", status=s, codes=codes, body=body)
    if s == 429:
        ra = parse_retry_after(resp.headers.get("Retry-After"))
        return TooManyRequests(
            f"{what}: too many requests (429){detail}",
            retry_after=ra,
            codes=codes,
            body=body,
        )
    if (
        s == 400
        and resp.url.startswith("http://")
        and (not body or b"HTTP request to an HTTPS server" in body)
    ):
        # Go's TLS listener answering plain HTTP with a bare 400 (no body to a
        # HEAD): we speak plain HTTP to loopback registries unless a hosts
        # file says otherwise.
        return RegistryError(
            f"{what}: registry answered 400 to plain HTTP; if it speaks HTTPS, say so "
            'in its hosts.toml (server = "https://HOST")',
            status=s,
            body=body,
        )
    code = f" {codes[0]}" if codes else ""
    return RegistryError(
        f"{what}: registry answered {s}{code}{detail}", status=s, codes=codes, body=body
    )
