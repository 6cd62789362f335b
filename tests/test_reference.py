"""Reference parsing: Docker's normalisation table, error messages, properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocidist.digest import Digest
from ocidist.errors import InvalidReference
from ocidist.reference import Reference, parse, parse_strict

HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
DGST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("text", "name", "familiar"),
    [
        ("redis", "docker.io/library/redis:latest", "redis:latest"),
        ("redis:7", "docker.io/library/redis:7", "redis:7"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("docker.io/redis", "docker.io/library/redis:latest", "redis:latest"),
        ("docker.io/library/redis", "docker.io/library/redis:latest", "redis:latest"),
        ("index.docker.io/redis", "docker.io/library/redis:latest", "redis:latest"),
        ("index.docker.io/user/app:1", "docker.io/user/app:1", "user/app:1"),
        # Our documented choice: Docker Hub's API host is an alias too.
        ("registry-1.docker.io/user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("docker.io/library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
        ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        ("ghcr.io/org/app:v1.2.3", "ghcr.io/org/app:v1.2.3", "ghcr.io/org/app:v1.2.3"),
        ("example.com:443/a", "example.com:443/a:latest", "example.com:443/a:latest"),
        ("[::1]:5000/a", "[::1]:5000/a:latest", "[::1]:5000/a:latest"),
        ("[fe80::1]/a", "[fe80::1]/a:latest", "[fe80::1]/a:latest"),
        # An uppercase first component is a domain for Docker, not a path.
        ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
        ("a__b/c--d/e.f_g:T_1", "docker.io/a__b/c--d/e.f_g:T_1", "a__b/c--d/e.f_g:T_1"),
        (f"redis@{DGST}", f"docker.io/library/redis@{DGST}", f"redis@{DGST}"),
        (f"redis:7@{DGST}", f"docker.io/library/redis:7@{DGST}", f"redis:7@{DGST}"),
        (f"q.io/a/b:c@{DGST}", f"q.io/a/b:c@{DGST}", f"q.io/a/b:c@{DGST}"),
        # Docker refuses only a *bare* 64-hex string.
        (f"{HEX}:1", f"docker.io/library/{HEX}:1", f"{HEX}:1"),
        # A short form that would read back as a registry host keeps docker.io.
        ("docker.io/a.b/c", "docker.io/a.b/c:latest", "docker.io/a.b/c:latest"),
        ("docker.io/localhost/c", "docker.io/localhost/c:latest", "docker.io/localhost/c:latest"),
    ],
)
def test_normalisation(text: str, name: str, familiar: str) -> None:
    ref = parse(text)
    assert ref.name == name
    assert str(ref) == name
    assert ref.familiar() == familiar
    assert parse(familiar) == ref


def test_fields_of_a_full_reference() -> None:
    ref = parse(f"localhost:5000/team/app:v2@{DGST}")
    assert ref == Reference("localhost:5000", "team/app", "v2", Digest.parse(DGST))
    assert ref.repository == "localhost:5000/team/app"
    # The digest, not the tag, is what gets fetched when both are given.
    assert ref.object == DGST


def test_object_is_the_tag_without_digest() -> None:
    assert parse("redis").object == "latest"
    assert parse("redis:7-alpine").object == "7-alpine"


def test_default_tag() -> None:
    assert parse("redis", default_tag="edge").tag == "edge"
    assert parse(f"redis@{DGST}", default_tag="edge").tag is None
    untagged = parse("redis", default_tag="")
    assert untagged.tag is None and untagged.name == "docker.io/library/redis"
    with pytest.raises(InvalidReference, match="neither tag nor digest"):
        _ = untagged.object
    with pytest.raises(InvalidReference, match="invalid tag"):
        parse("redis", default_tag="-bad")


def test_with_tag_and_digest() -> None:
    ref = parse("redis:7")
    pinned = ref.with_digest(DGST)
    assert pinned.tag == "7" and pinned.digest == Digest.parse(DGST)
    assert pinned.with_tag("8").name == f"docker.io/library/redis:8@{DGST}"
    assert ref.with_digest(Digest.parse(DGST)) == pinned
    with pytest.raises(InvalidReference, match="invalid tag"):
        ref.with_tag("no/slash")
    with pytest.raises(InvalidReference, match="invalid digest"):
        ref.with_digest("sha256:abc")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("Redis", "must be lowercase"),
        ("user/Redis:tag", "must be lowercase"),
        ("docker.io/Library/redis", "must be lowercase"),
        ("redis:", "invalid tag"),
        ("redis:-x", "invalid tag"),
        ("redis:.x", "invalid tag"),
        ("redis:" + "a" * 129, "invalid tag"),
        ("redis:a:b", "invalid tag"),
        ("redis:tαg", "invalid tag"),
        ("redis@sha256:abc", "sha256 needs 64"),
        (f"redis@sha256:{HEX.upper()}", "sha256 needs 64"),
        (f"redis@md5:{HEX[:32]}", "unsupported algorithm"),
        ("redis@", "invalid digest"),
        (f"redis:7@{DGST}\n", "invalid digest"),
        (f"redis@{DGST}@{DGST}", "invalid digest"),
        (HEX, "64-byte hexadecimal"),
        ("host:99999/a", "invalid port"),
        ("host:0/a", "invalid port"),
        ("host:abc/a", "invalid port"),
        ("host:/a", "invalid port"),
        ("host:٣/a", "invalid port"),
        ("[::1]x/a", "invalid port"),
        ("a..b/c", "invalid domain"),
        ("-host.com/a", "invalid domain"),
        ("host-.com/a", "invalid domain"),
        ("[::1/a", "invalid IPv6"),
        ("[zz]:5000/a", "invalid IPv6"),
        # Without "." or ":" a bracketed first component is no domain at all.
        ("[zz]/a", "invalid repository name component"),
        ("foo/bar baz", "invalid repository name component"),
        ("a___b", "invalid repository name component"),
        ("a..b", "invalid repository name component"),
        ("-a", "invalid repository name component"),
        ("a-", "invalid repository name component"),
        ("café", "invalid repository name component"),
        ("foo//bar", "empty path component"),
        ("foo/", "empty path component"),
        ("/foo", "empty path component"),
        (":tag", "empty path component"),
        ("u/" + "a" * 244, "longer than 255"),
    ],
)
def test_errors(text: str, why: str) -> None:
    with pytest.raises(InvalidReference, match=why):
        parse(text)


def test_length_limit_is_inclusive() -> None:
    # "docker.io/u/" is 12 characters: 243 more make exactly 255.
    assert len(parse("u/" + "a" * 243).repository) == 255


@pytest.mark.parametrize(
    ("text", "domain", "path", "name"),
    [
        ("redis", "", "redis", "redis"),
        ("a/b", "a", "b", "a/b"),
        ("docker.io/redis", "docker.io", "redis", "docker.io/redis"),
        ("localhost:5000/x:1", "localhost:5000", "x", "localhost:5000/x:1"),
        (f"a/b/c@{DGST}", "a", "b/c", f"a/b/c@{DGST}"),
    ],
)
def test_parse_strict(text: str, domain: str, path: str, name: str) -> None:
    ref = parse_strict(text)
    assert (ref.domain, ref.path, ref.name) == (domain, path, name)
    assert parse_strict(ref.name) == ref


@pytest.mark.parametrize(
    ("text", "why"), [("Redis", "lowercase"), (":x", "empty path"), ("a/b:-", "invalid tag")]
)
def test_parse_strict_errors(text: str, why: str) -> None:
    with pytest.raises(InvalidReference, match=why):
        parse_strict(text)


# --- properties ---------------------------------------------------------------

_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_separator = st.sampled_from([".", "_", "__", "-", "--"])


@st.composite
def _path_component(draw: st.DrawFn) -> str:
    parts = [draw(_alnum)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(_separator), draw(_alnum)]
    return "".join(parts)


@st.composite
def _domain(draw: st.DrawFn) -> str:
    label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
    host = draw(
        st.one_of(
            st.just("localhost"),
            st.lists(label, min_size=2, max_size=3).map(".".join),
            st.just("[::1]"),
        )
    )
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
    return host + port


@st.composite
def _reference(draw: st.DrawFn) -> tuple[str, str, str | None, str | None]:
    """(text, path as written, tag, digest)."""
    domain = draw(st.one_of(st.none(), _domain()))
    components = draw(st.lists(_path_component(), min_size=1, max_size=3))
    path = "/".join(components)
    if domain is None and len(components) > 1 and "." in components[0]:
        # Docker reads such a first component as a registry host; spell the
        # default domain out so the path stays the path.
        domain = "docker.io"
    tag = draw(st.one_of(st.none(), st.from_regex(r"[\w][\w.-]{0,15}", fullmatch=True)))
    if tag is not None and not tag.isascii():
        tag = None
    digests = st.binary(max_size=8).map(lambda b: str(Digest.from_bytes(b)))
    dgst = draw(st.one_of(st.none(), digests))
    text = (f"{domain}/" if domain else "") + path
    text += f":{tag}" if tag is not None else ""
    text += f"@{dgst}" if dgst is not None else ""
    return text, path, tag, dgst


@given(_reference())
def test_valid_references_round_trip(case: tuple[str, str, str | None, str | None]) -> None:
    text, path, tag, dgst = case
    ref = parse(text)
    assert ref.path.endswith(path)
    assert ref.digest == (Digest.parse(dgst) if dgst else None)
    assert ref.tag == (tag if tag is not None or dgst is not None else "latest")
    assert parse(str(ref)) == ref
    assert parse(ref.name) == ref
    assert parse(ref.name).name == ref.name
    assert parse(ref.familiar()) == ref


_ref_alphabet = st.sampled_from([*"abcXYZ019.:/@_-[]é \n", "sha256:", HEX, "localhost"])


@given(st.one_of(st.text(max_size=60), st.lists(_ref_alphabet, max_size=20).map("".join)))
def test_arbitrary_text_only_raises_invalid_reference(text: str) -> None:
    for parser in (parse, parse_strict):
        try:
            ref = parser(text)
        except InvalidReference:
            continue
        # Whatever is accepted is a fixed point of its own canonical form.
        assert parser(ref.name) == ref
