"""Listing a registry: a repository's tags and the registry's catalog.

Both answers are paginated the same way (distribution-spec): ``?n=<count>``
asks for a page size, and a ``Link: <…?last=x&n=2>; rel="next"`` header
names the next page, relative or absolute. No Link, no more pages.
Distribution 2.8.2 paginates the catalog but ignores ``n`` on tags/list and
sends every tag, unsorted, in one page (2026-11); that is a valid last page.

Names are checked against their grammar (tags, repository paths): one that
is not a name (a newline, an escape sequence, a slash in a tag) is left out
and handed to the caller's ``rejected`` list, so nobody prints or uses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin

from ocidist import jsondata
from ocidist.errors import InvalidContent, RegistryError
from ocidist.reference import is_repository_path, is_tag
from ocidist.remotes.docker.auth import pull_scope
from ocidist.remotes.docker.hosts import PUSH, RegistryHost
from ocidist.remotes.docker.session import Session

# A tags or catalog page is small; a registry sending more is broken or hostile.
MAX_PAGE_BYTES = 8 * 1024 * 1024
# Stop a registry whose Link headers go round in circles.
MAX_PAGES = 100_000
CATALOG_SCOPE = "registry:catalog:*"

_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")


def next_link(values: list[str]) -> str | None:
    """The ``rel="next"`` target among ``Link`` header values, if any."""
    for value in values:
        for m in _LINK.finditer(value):
            params = m.group(2).replace(" ", "").lower()
            if 'rel="next"' in params or "rel=next" in params:
                return m.group(1)
    return None


def _pages(
    session: Session,
    host: RegistryHost,
    path: str,
    key: str,
    scopes: tuple[str, ...],
    what: str,
    page_size: int,
    valid: Callable[[str], bool],
    rejected: list[str] | None,
) -> Iterator[str]:
    url = host.base + path + (f"?n={page_size}" if page_size > 0 else "")
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        resp = session.request(host, "GET", url, scopes=scopes, what=what)
        body = resp.read_capped(MAX_PAGE_BYTES)
        obj: Any = jsondata.loads(body, f"{what}: the registry's answer") if body.strip() else {}
        items = obj.get(key) if isinstance(obj, dict) else None
        if items is None:
            items = []  # Distribution sends "tags": null for an emptied repository
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise InvalidContent(f"{what}: {key!r} is not a list of names")
        for item in items:
            if valid(item):
                yield item
            elif rejected is not None:
                rejected.append(item)
        link = next_link(resp.header_all("Link"))
        if not link:
            return
        url = urljoin(resp.url, link)
        if url in seen:
            raise RegistryError(f"{what}: the registry's next-page links loop")
        seen.add(url)
    raise RegistryError(f"{what}: more than {MAX_PAGES} pages")


def list_tags(
    session: Session,
    host: RegistryHost,
    path: str,
    *,
    page_size: int = 0,
    rejected: list[str] | None = None,
) -> Iterator[str]:
    """Every tag of repository ``path``, following pagination; listed
    strings that are not tags go to ``rejected``."""
    yield from _pages(
        session,
        host,
        f"/{path}/tags/list",
        "tags",
        (pull_scope(path),),
        f"{path}: tags",
        page_size,
        is_tag,
        rejected,
    )


def catalog(
    session: Session,
    host: RegistryHost,
    *,
    page_size: int = 0,
    rejected: list[str] | None = None,
) -> Iterator[str]:
    """Every repository the registry lists (many public registries refuse);
    listed strings that are not repository names go to ``rejected``."""
    yield from _pages(
        session,
        host,
        "/_catalog",
        "repositories",
        (CATALOG_SCOPE,),
        f"{host.host}: catalog",
        page_size,
        is_repository_path,
        rejected,
    )


def upstream_host(hosts: list[RegistryHost]) -> RegistryHost:
    """The registry itself among its configured hosts: mirrors come first and
    are caches that know nothing of the upstream's tags, so take the first
    host allowed to push, else the last one."""
    for h in hosts:
        if PUSH in h.capabilities:
            return h
    return hosts[-1]
