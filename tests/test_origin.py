"""The origin policy (remotes/docker/origin.py), table by table: what is an
origin, which headers may go where, which redirects are followed and how."""

from __future__ import annotations

import pytest

from ocidist.remotes.docker.origin import (
    HTTPSHosts,
    Origin,
    Redirect,
    Refused,
    answered_by,
    bound_for,
    may_carry_secret,
    origin_of,
    redirect,
    split_bound,
)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://r.example/v2/", ("https", "r.example", 443)),
        ("https://R.Example:443/v2/", ("https", "r.example", 443)),
        ("http://r.example/v2/", ("http", "r.example", 80)),
        ("http://r.example:80", ("http", "r.example", 80)),
        ("https://r.example:5000/x?y#z", ("https", "r.example", 5000)),
        ("HTTPS://r.example", ("https", "r.example", 443)),
        ("http://127.0.0.1:5000/v2/", ("http", "127.0.0.1", 5000)),
        ("https://[::1]:5000/v2/", ("https", "::1", 5000)),
        ("https://[::1]/", ("https", "::1", 443)),
        ("https://r.example?q=1", ("https", "r.example", 443)),
    ],
)
def test_origin_of(url: str, origin: tuple[str, str, int]) -> None:
    assert origin_of(url) == Origin(*origin)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://r.example/",
        "file:///etc/passwd",
        "r.example/v2/",
        "//r.example/",
        "https://",
        "https://:443/",
        "https://user:pw@r.example/",
        "https://r.example:0/",
        "https://r.example:65536/",
        "https://r.example:x/",
        "https://r.example:²/",
        "https://[::1/",
        "https://[::1]x/",
    ],
)
def test_not_an_origin(url: str) -> None:
    with pytest.raises(ValueError):
        origin_of(url)


def test_origin_text() -> None:
    assert str(Origin("https", "r.example", 443)) == "https://r.example"
    assert str(Origin("http", "r.example", 5000)) == "http://r.example:5000"
    assert str(Origin("https", "::1", 5000)) == "https://[::1]:5000"


REG = Origin("https", "r.example", 443)


@pytest.mark.parametrize(
    ("target", "known_https", "sent"),
    [
        ("https://r.example/v2/x", (), True),
        ("https://r.example:443/other", (), True),
        ("https://R.EXAMPLE/v2/x", (), True),
        # Another scheme, host or port is another origin.
        ("http://r.example/v2/x", (), False),
        ("http://r.example:443/v2/x", (), False),
        ("https://r.example:5000/v2/x", (), False),
        ("https://cdn.example/blob", (), False),
        ("https://sub.r.example/v2/x", (), False),
        ("https://example/v2/x", (), False),
        ("https://r.example.evil/v2/x", (), False),
    ],
)
def test_bound_headers_go_to_their_origin_only(
    target: str, known_https: tuple[str, ...], sent: bool
) -> None:
    assert bound_for(origin_of(target), REG) is sent


def test_nothing_bound_over_plain_http_to_a_name_known_as_https() -> None:
    plain = Origin("http", "mirror.example", 80)
    https = HTTPSHosts()
    assert bound_for(plain, plain, https)
    https.add("Mirror.Example")
    assert not bound_for(plain, plain, https)
    assert bound_for(
        Origin("https", "mirror.example", 443), Origin("https", "mirror.example", 443), https
    )


def test_credential_names_are_bound_whoever_passes_them() -> None:
    public, bound = split_bound(
        {"Accept": "*/*", "authorization": "Basic x", "Cookie": "c=1", "Proxy-Authorization": "p"},
        {"X-Api-Key": "k"},
    )
    assert public == {"Accept": "*/*"}
    assert bound == {"X-Api-Key": "k", "authorization": "Basic x", "Cookie": "c=1",
                     "Proxy-Authorization": "p"}  # fmt: skip


@pytest.mark.parametrize(
    ("secret_origin", "url", "ok"),
    [
        (REG, "https://auth.example/token", True),
        (REG, "http://auth.example/token", False),
        (REG, "http://r.example/token", False),
        (Origin("http", "127.0.0.1", 5000), "http://127.0.0.1:5001/token", True),
        (REG, "file:///token", False),
        (REG, "https://[::1/token", False),
    ],
)
def test_may_carry_secret(secret_origin: Origin, url: str, ok: bool) -> None:
    assert may_carry_secret(secret_origin, url) is ok


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://r.example/v2/a/blobs/sha256:1", True),
        ("https://R.example:443/elsewhere?x=1", True),
        ("https://cdn.example/blob", False),
        ("http://r.example/v2/", False),
        ("https://r.example:5000/v2/", False),
        ("not a url", False),
    ],
)
def test_answered_by(url: str, ok: bool) -> None:
    """Rule 5: a 401's challenge counts only from the origin it is for."""
    assert answered_by(url, REG) is ok


HERE = "https://r.example/v2/a/blobs/uploads/1"
FORM = b"grant_type=password&username=u&password=p"


@pytest.mark.parametrize(
    ("status", "method", "body", "location", "expected"),
    [
        # Without a body: followed anywhere, method kept (303: GET).
        (307, "GET", None, "https://cdn.example/b?sig=1", ("https://cdn.example/b?sig=1", "GET")),
        (302, "HEAD", None, "/v2/a/manifests/b", ("https://r.example/v2/a/manifests/b", "HEAD")),
        (301, "GET", None, "http://r.example/x", ("http://r.example/x", "GET")),
        (303, "POST", None, "https://other.example/", ("https://other.example/", "GET")),
        (303, "HEAD", None, "/x", ("https://r.example/x", "HEAD")),
        # A body to the same origin: re-sent (307/308, and 301/302 of our own server).
        (307, "POST", FORM, "/token2", ("https://r.example/token2", "POST")),
        (308, "PUT", b"x", "https://r.example:443/y", ("https://r.example:443/y", "PUT")),
        (301, "POST", FORM, "/token2", ("https://r.example/token2", "POST")),
        (302, "PATCH", b"x", "/z", ("https://r.example/z", "PATCH")),
        # 303 drops the body, anywhere.
        (303, "POST", FORM, "https://other.example/t", ("https://other.example/t", "GET")),
    ],
)
def test_redirects_followed(
    status: int, method: str, body: bytes | None, location: str, expected: tuple[str, str]
) -> None:
    r = redirect(status, method, body, HERE, location)
    assert (r.url, r.method) == expected
    assert r.body == (body if status != 303 else None)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize(
    "location",
    [
        "https://other.example/token",
        "http://r.example/token",
        "http://r.example:443/token",
        "https://r.example:8443/token",
        "//other.example/token",
    ],
)
def test_a_body_never_goes_to_another_origin(status: int, location: str) -> None:
    with pytest.raises(Refused, match="another origin"):
        redirect(status, "POST", FORM, HERE, location)


def test_a_streamed_body_is_not_replayed() -> None:
    with pytest.raises(Refused, match="streaming"):
        redirect(307, "PUT", iter([b"x"]), HERE, "/same-origin")


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "ftp://r.example/x", "http://[::1/x", "https://u:p@r.example/x",
     "gopher://x"],
)  # fmt: skip
def test_only_http_urls_are_followed(location: str) -> None:
    with pytest.raises(Refused, match="invalid URL"):
        redirect(302, "GET", None, HERE, location)


def test_redirect_is_a_value() -> None:
    assert redirect(307, "GET", None, HERE, "/x") == Redirect("https://r.example/x", "GET", None)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize(
    ("method", "body"), [("POST", FORM), ("GET", None)]
)  # fmt: skip
@pytest.mark.parametrize(
    "location",
    ["https://other.example/token", "http://r.example/token", "https://r.example:8443/t"],
)
def test_a_confined_request_stays_at_its_origin(
    status: int, method: str, body: bytes | None, location: str
) -> None:
    """Rule 5 (the token request): refused even where rules 1-3 would follow
    the redirect without its credentials (a 303, a GET with Basic)."""
    with pytest.raises(Refused, match="another origin"):
        redirect(status, method, body, HERE, location, confined=REG)
    moved = redirect(status, method, body, HERE, "/token-moved", confined=REG)
    assert moved.url == "https://r.example/token-moved"
