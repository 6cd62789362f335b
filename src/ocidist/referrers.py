"""Referrers (OCI distribution-spec 1.1): what is attached to a manifest.

A manifest names another as its ``subject`` (a signature, an SBOM, an
attestation…). Listing uses the referrers API where the registry has it;
where it answers 404 (no API: Distribution 2.8), the *referrers tag schema*
is used instead: the tag ``<alg>-<hex>`` of the subject's digest holds an
image index listing the referrers. Pushing a manifest with a subject to a
registry that does not confirm it with an ``OCI-Subject`` header means
keeping that index up to date ourselves (``record``): read it (404: start
empty), add the new referrer's descriptor once, put it back under the tag.

The tag is a shared read-modify-write and Distribution 2.8 has no
conditional PUT, so two writers at once could drop each other's entry;
``record`` reads the tag again after writing and, while its entry is
missing, does the update again (a bounded number of times). If-Match would
not help: the distribution-spec defines no conditional manifest PUT, and
Distribution 2.8 answers an ``ETag`` but accepted a PUT whose ``If-Match``
named another digest (tested 2026-12).

Following referrers of referrers (``closure``) is a walk of the graph "what
refers to what" on the image walker, with its limits: every referrer is a
level (at most ``MAX_INDEX_DEPTH``), at most ``MAX_CHILDREN`` of one subject.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from ocidist import manifest, reference
from ocidist.descriptor import OCI_INDEX, Descriptor, is_manifest_or_index
from ocidist.digest import Digest
from ocidist.errors import InvalidContent, NotFound, RegistryError
from ocidist.images.walk import (
    MAX_CHILDREN,
    Recorder,
    check_fan_out,
    fetch_manifest,
    index_entries,
    walk,
)
from ocidist.remotes import resolve_to_fetch

if TYPE_CHECKING:
    from ocidist.remotes import Fetcher, Registry, Resolver

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DESCRIPTOR = Descriptor(EMPTY_MEDIA_TYPE, Digest.from_bytes(EMPTY_JSON), len(EMPTY_JSON))
RECORD_ATTEMPTS = 5


def tag_for(subject: Digest) -> str:
    """The referrers tag schema's tag: ``<alg>-<hex>``, the hex cut to 64 characters."""
    return f"{subject.algorithm}-{subject.encoded[:64]}"


def entry_for(desc: Descriptor, data: bytes) -> Descriptor:
    """The descriptor a referrers list holds for manifest ``data``: its
    ``artifactType`` (else its config's media type) and all its annotations."""
    decoded = manifest.decode(data, desc.media_type)
    artifact_type = decoded.artifact_type
    if not artifact_type and isinstance(decoded, manifest.Manifest):
        artifact_type = decoded.config.media_type
    return Descriptor(
        desc.media_type,
        desc.digest,
        desc.size,
        annotations=dict(decoded.annotations),
        artifact_type=artifact_type,
    )


def list_referrers(
    resolver: Registry, repository: str, subject: Digest, artifact_type: str = ""
) -> tuple[list[Descriptor], str]:
    """What refers to ``subject`` in ``repository``, and how it was learnt:
    ``"api"`` or ``"tag"`` (the referrers tag schema)."""
    r = reference.parse(repository, default_tag="")
    try:
        fetcher = resolver.fetcher(r.repository)
        found, filtered = fetcher.referrers(subject, artifact_type, limit=MAX_CHILDREN)
        via = "api"
    except NotFound:
        found, filtered = _from_tag(resolver, r.repository, subject), False
        via = "tag"
    check_fan_out(f"{r.repository}@{subject}", found)  # as any index: however it was learnt
    if artifact_type and not filtered:
        found = [d for d in found if d.artifact_type == artifact_type]
    return found, via


def _from_tag(resolver: Resolver, repository: str, subject: Digest) -> list[Descriptor]:
    entries = _read_tag(resolver, f"{repository}:{tag_for(subject)}")
    return [] if entries is None else entries


def _read_tag(resolver: Resolver, ref: str) -> list[Descriptor] | None:
    """The referrers the tag ``ref`` lists; None when there is no such tag."""
    try:
        _, desc, fetcher = resolve_to_fetch(resolver, ref)
    except NotFound:
        return None
    if desc.media_type != OCI_INDEX:
        raise InvalidContent(f"{ref}: the referrers tag does not hold an OCI image index")
    return index_entries(fetch_manifest(fetcher, desc), f"{ref}: the referrers tag")


def record(resolver: Resolver, repository: str, subject: Digest, entry: Descriptor) -> str:
    """Add ``entry`` to ``subject``'s referrers tag in ``repository`` (the
    referrers tag schema); returns the tag."""
    tag = tag_for(subject)
    ref = f"{repository}:{tag}"
    pusher = resolver.pusher(ref)
    for _ in range(RECORD_ATTEMPTS):
        entries = _read_tag(resolver, ref) or []
        if any(e.digest == entry.digest for e in entries):
            return tag
        if len(entries) >= MAX_CHILDREN:
            raise InvalidContent(f"{ref}: {len(entries)} referrers already; refusing to grow it")
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [e.to_json() for e in [*entries, entry]],
        }
        data = json.dumps(doc, separators=(",", ":")).encode()
        pusher.put_manifest(Descriptor(OCI_INDEX, Digest.from_bytes(data), len(data)), data)
        check = _read_tag(resolver, ref)
        if check is not None and any(e.digest == entry.digest for e in check):
            return tag
    raise RegistryError(f"{ref}: the referrers tag kept changing while it was updated")


def has_api(resolver: Registry, repository: str, subject: Digest) -> bool:
    """Whether ``repository``'s registry answers the referrers API (not 404)."""
    try:
        fetcher = resolver.fetcher(reference.parse(repository, default_tag="").repository)
        fetcher.referrers(subject, limit=MAX_CHILDREN)
    except NotFound:
        return False
    return True


def closure(
    resolver: Registry,
    repository: str,
    subject: Descriptor,
    *,
    warn: Callable[[str], None] | None = None,
) -> list[tuple[Digest, Descriptor]]:
    """Every referrer of ``subject``, and of those referrers, recursively:
    (what it refers to, its descriptor), each subject before its referrers.

    A walk whose handler lists referrers (each digest asked once), bounded
    as an image graph is, every referrer a level deeper than its subject.
    A listing is the registry's word (or that of whoever could push the
    referrers tag): each listed manifest is read, and one that does not
    name the subject as its own ``subject`` is skipped with a warning, so
    an unrelated image is never carried as attached to this one."""
    fetcher = resolver.fetcher(repository)
    say = warn or _log_warning
    seen = {subject.digest}

    def referrers_of(parent: Descriptor) -> list[Descriptor]:
        kept: list[Descriptor] = []
        for desc in list_referrers(resolver, repository, parent.digest)[0]:
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            why = _not_referring(fetcher, desc, parent.digest)
            if why:
                listed = f"{repository}: {desc.digest}, listed as a referrer of {parent.digest}"
                say(f"{listed}, {why}: skipped")
                continue
            kept.append(desc)
        return kept

    recorder = Recorder(referrers_of)
    walk(recorder, [subject], nests=(lambda _: True, "referrers"))
    # Parents were visited before their referrers.
    return [(p.digest, d) for p in recorder.visited for d in recorder.children[str(p.digest)]]


def _not_referring(fetcher: Fetcher, desc: Descriptor, subject: Digest) -> str:
    """Why ``desc`` does not refer to ``subject`` ('' when it does)."""
    if not is_manifest_or_index(desc.media_type):
        return "is not a manifest"
    try:
        decoded = manifest.decode(fetch_manifest(fetcher, desc), desc.media_type)
    except InvalidContent as e:
        return f"cannot be read ({e})"
    if decoded.subject is None or decoded.subject.digest != subject:
        return "does not name it as its subject"
    return ""


def _log_warning(message: str) -> None:
    import logging

    from ocidist.text import escape

    logging.getLogger(__name__).warning("%s", escape(message))


def copy_referrers(
    resolver: Registry,
    src: str,
    dst: str,
    subject: Descriptor,
    copy: Callable[[str, str], Descriptor],
    *,
    warn: Callable[[str], None] | None = None,
) -> list[Descriptor]:
    """Copy what refers to ``subject`` (recursively) from repository ``src``
    to ``dst`` with ``copy(src_ref, dst_ref)`` (an image copy, by digest),
    keeping ``dst``'s referrers tag up to date where it has no API."""
    found = closure(resolver, src, subject, warn=warn)
    api = has_api(resolver, dst, subject.digest) if found else True
    for parent, desc in found:
        copied = copy(f"{src}@{desc.digest}", f"{dst}@{desc.digest}")
        if not api:
            data = fetch_manifest(resolver.fetcher(src), copied)
            record(resolver, dst, parent, entry_for(copied, data))
    return [d for _, d in found]
