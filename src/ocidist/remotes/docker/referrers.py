"""The OCI 1.1 referrers API: ``GET /v2/<name>/referrers/<digest>[?artifactType=…]``.

The answer is an image index whose ``manifests`` describe the manifests that
name ``<digest>`` as their ``subject``; big lists are paginated with ``Link``
headers like tag lists. A registry with the API never answers 404 here (an
unknown subject has an empty list); a 404 means the registry has no such
API — Distribution 2.8, for one (2026-11) — and the caller falls back to
the referrers tag schema (``ocidist.referrers``). ``OCI-Filters-Applied:
artifactType`` says the registry filtered; otherwise the caller must.
"""

from __future__ import annotations

from urllib.parse import quote, urljoin

from ocidist import manifest
from ocidist.descriptor import MAX_MANIFEST_SIZE, OCI_INDEX, Descriptor
from ocidist.digest import Digest
from ocidist.errors import GraphLimit, InvalidContent, NotFound, RegistryError
from ocidist.remotes.docker.auth import pull_scope
from ocidist.remotes.docker.hosts import RegistryHost
from ocidist.remotes.docker.listing import next_link
from ocidist.remotes.docker.session import Session

MAX_PAGES = 1000
FILTERS_HEADER = "OCI-Filters-Applied"


def fetch_referrers(
    session: Session,
    host: RegistryHost,
    path: str,
    subject: Digest,
    artifact_type: str = "",
    *,
    limit: int,
) -> tuple[list[Descriptor], bool]:
    """Every referrer the API lists (following pages, at most ``limit`` in
    all), and whether the registry applied the artifactType filter.
    NotFound: no API here (only the first page can say so)."""
    what = f"{path}@{subject}: referrers"
    url = f"{host.base}/{path}/referrers/{subject}"
    if artifact_type:
        url += "?artifactType=" + quote(artifact_type, safe="")
    out: list[Descriptor] = []
    filtered = True
    seen: set[str] = set()
    for page in range(MAX_PAGES):
        try:
            resp = session.request(
                host,
                "GET",
                url,
                scopes=(pull_scope(path),),
                headers={"Accept": OCI_INDEX},
                what=what,
            )
        except NotFound:
            if page == 0:
                raise
            raise RegistryError(f"{what}: a next page the registry linked is not found") from None
        body = resp.read_capped(MAX_MANIFEST_SIZE)
        applied = (resp.header(FILTERS_HEADER) or "").replace(" ", "").split(",")
        filtered = filtered and "artifactType" in applied
        decoded = manifest.decode(body, OCI_INDEX)
        if not isinstance(decoded, manifest.Index):
            raise InvalidContent(f"{what}: the answer is not an image index")
        out.extend(decoded.manifests)
        if len(out) > limit:
            # Pages are capped one by one; their number times their size is not.
            # In the walker's words (images/walk.py check_fan_out): one limit, one text.
            raise GraphLimit(f"{what}: more than {limit} children is too many")
        link = next_link(resp.header_all("Link"))
        if not link:
            return out, filtered and bool(artifact_type)
        url = urljoin(resp.url, link)
        if url in seen:
            raise RegistryError(f"{what}: the registry's next-page links loop")
        seen.add(url)
    raise RegistryError(f"{what}: more than {MAX_PAGES} pages")
