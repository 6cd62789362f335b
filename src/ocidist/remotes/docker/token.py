"""Bearer token fetching (Docker registry token spec and its OAuth2 variant).

With credentials we POST the OAuth2 form first (``grant_type=password`` or
``refresh_token``) and fall back to GET with Basic credentials when the token
server answers 400/401/404/405 — some servers only implement GET. Anonymous
requests use GET. Error text never includes the credential or the token.

A token request that carries credentials (the form, or Basic) is sent
through the transport's one redirect policy *confined* to the realm's origin
(origin.py, rule 5): a redirect within it (scheme, host, port) is followed,
anything else is refused in words, so neither the password nor the form ever
reaches another host or crosses plain HTTP. An anonymous GET carries no
secret and follows redirects like any other request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from ocidist import jsondata
from ocidist.errors import Denied, InvalidContent, RegistryError, Unauthorized
from ocidist.remotes.docker.auth import DEFAULT_TOKEN_TTL, Credential, Token, basic_header
from ocidist.remotes.docker.challenge import Challenge
from ocidist.remotes.docker.origin import origin_of
from ocidist.remotes.docker.transport import Deadline, Response, TLSConfig, Transport
from ocidist.text import quote

CLIENT_ID = "ocidist"
MAX_TOKEN_RESPONSE = 1 << 20


class HTTPTokenSource:
    def __init__(
        self,
        transport: Transport,
        *,
        tls: TLSConfig | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self._transport = transport
        self._tls = tls or TLSConfig()
        self._deadline = deadline
        self.requests = 0  # counted for tests and --debug summaries

    def fetch_token(
        self,
        challenge: Challenge,
        scopes: tuple[str, ...],
        cred: Credential | None,
        tls: TLSConfig | None = None,
    ) -> Token:
        tls = tls or self._tls
        if cred is not None and (cred.identity_token or (cred.username and cred.secret)):
            try:
                return self._post(challenge, scopes, cred, tls)
            except _FallBack:
                pass
        return self._get(challenge, scopes, cred, tls)

    def _post(
        self, ch: Challenge, scopes: tuple[str, ...], cred: Credential, tls: TLSConfig
    ) -> Token:
        form: dict[str, str] = {"client_id": CLIENT_ID, "service": ch.service}
        if scopes:
            form["scope"] = " ".join(scopes)
        if cred.identity_token:
            form.update(grant_type="refresh_token", refresh_token=cred.identity_token)
        else:
            form.update(grant_type="password", username=cred.username, password=cred.secret)
        self.requests += 1
        resp = self._with_secret(
            "POST",
            ch.realm,
            _urlencode(form).encode(),
            tls,
            _what(ch),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        body = resp.read_capped(MAX_TOKEN_RESPONSE)
        if resp.status in (400, 401, 404, 405) and not cred.identity_token:
            raise _FallBack()
        return self._decode(resp.status, body, ch)

    def _get(
        self, ch: Challenge, scopes: tuple[str, ...], cred: Credential | None, tls: TLSConfig
    ) -> Token:
        query: list[tuple[str, str]] = []
        if ch.service:
            query.append(("service", ch.service))
        query.extend(("scope", s) for s in scopes)
        sep = "&" if "?" in ch.realm else "?"
        url = ch.realm + (sep + _urlencode(query) if query else "")
        self.requests += 1
        if cred is not None and cred.username and cred.secret:
            basic = {"Authorization": basic_header(cred)}
            resp = self._with_secret("GET", url, None, tls, _what(ch), bound=basic)
        else:
            # Anonymous: no secret to keep, redirects followed like any other.
            resp = self._transport.request(
                "GET", url, headers={}, tls=tls, deadline=self._deadline, what=_what(ch)
            )
        return self._decode(resp.status, resp.read_capped(MAX_TOKEN_RESPONSE), ch)

    def _with_secret(
        self,
        method: str,
        url: str,
        body: bytes | None,
        tls: TLSConfig,
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
        bound: Mapping[str, str] | None = None,
    ) -> Response:
        """A request carrying credentials (the form in ``body``, Basic in
        ``bound``), sent confined to the realm's origin (origin.py, rule 5):
        a redirect anywhere else is refused in words, never followed with or
        without the secret."""
        try:
            realm = origin_of(url)
        except ValueError:
            raise InvalidContent(f"{what}: invalid URL") from None
        return self._transport.request(
            method,
            url,
            headers=headers or {},
            body=body,
            tls=tls,
            deadline=self._deadline,
            what=what,
            bound=bound,
            bound_origin=realm,
            confined=True,
        )

    def _decode(self, status: int, body: bytes, ch: Challenge) -> Token:
        what = _what(ch)
        if status == 401:
            raise Unauthorized(f"{what}: unauthorized (credentials rejected)", status=status)
        if status == 403:
            raise Denied(f"{what}: denied", status=status)
        if status != 200:
            raise RegistryError(f"{what}: token server answered {status}", status=status)
        try:
            obj = jsondata.load_object(body, "token response")
        except InvalidContent as e:
            raise RegistryError(f"{what}: {e}", status=status) from None
        tok = obj.get("token") or obj.get("access_token")
        if not isinstance(tok, str) or not tok:
            raise RegistryError(f"{what}: token response has no token", status=status)
        ttl = obj.get("expires_in")
        if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
            ttl = DEFAULT_TOKEN_TTL
        refresh = obj.get("refresh_token")
        return Token(
            token=tok,
            expires_at=time.monotonic() + float(ttl),
            refresh_token=refresh if isinstance(refresh, str) else "",
            ttl=float(ttl),
        )


class _FallBack(Exception):
    """The POST form was refused in a way that says: try GET instead."""


def _what(ch: Challenge) -> str:
    return f"token from {quote(ch.realm)}"


def _urlencode(fields: dict[str, str] | list[tuple[str, str]]) -> str:
    # urllib.parse (with ipaddress) is ~3 ms of start-up; only token auth needs it.
    from urllib.parse import urlencode

    return urlencode(fields)
