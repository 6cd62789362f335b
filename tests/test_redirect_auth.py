"""Registry credentials never follow a redirect to another host.

Blob GETs are often redirected to object storage with signed URLs; the
Authorization header meant for the registry must not be sent there. The fault
proxy redirects blob GETs to a listener on another address (127.0.0.2).
"""

from __future__ import annotations

import hashlib

from tests.dist_cli import run_dist
from tests.harness import FaultProxy, push_image, simple_image
from tests.harness.authfixtures import TokenEnv, pki, token_env

__all__ = ["pki", "token_env"]


def test_bearer_token_not_forwarded_to_redirect_host(token_env: TokenEnv) -> None:
    img = simple_image(tag="redirect")
    push_image(token_env.registry, "public/redirect/app", "v1", img, creds=token_env.creds)
    layer = img.manifest["layers"][0]
    with FaultProxy(token_env.registry) as proxy:
        proxy.redirect("/blobs/sha256:")
        out = run_dist(
            "-u", token_env.creds, "fetch-object", f"{proxy.host}/public/redirect/app:v1",
            layer["digest"],
        )  # fmt: skip
        assert out.returncode == 0, out.stderr.decode()
        assert "sha256:" + hashlib.sha256(out.stdout).hexdigest() == layer["digest"]
        originals = [e for e in proxy.log if e.method == "GET" and layer["digest"] in e.path]
        assert originals and all(
            (e.header("Authorization") or "").startswith("Bearer ") for e in originals
        )
        served = [e for e in proxy.redirect_log if layer["digest"] in e.path]
        assert served, "the blob was not fetched from the redirect host"
        assert all(e.header("Authorization") is None for e in served)
        # The secret appears nowhere in what the other host received.
        assert all(token_env.password not in str(e.headers) for e in served)
