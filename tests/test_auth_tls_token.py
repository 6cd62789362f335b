"""A private registry whose token server sits behind the same private CA.

The token realm is trusted the way the registry host is (its hosts.toml
``ca``), as containerd does: without that, the first token request of an
anonymous pull fails certificate verification.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dist_cli import one_error_line, run_dist
from tests.harness import push_image, simple_image
from tests.harness.authfixtures import pki
from tests.harness.certs import CA
from tests.harness.registry import Registry, TokenAuth
from tests.harness.tokenserver import TokenServer

__all__ = ["pki"]


@pytest.fixture(scope="module")
def tls_token_registry(
    tmp_path_factory: pytest.TempPathFactory, pki: CA
) -> Iterator[tuple[Registry, TokenServer]]:
    ts = TokenServer(
        signer=pki.signer(), tls=pki.server("token-tls"), users={"alice": "pw-tls-token"}
    ).start()
    server = pki.server("registry-tls-token")
    auth = TokenAuth(
        realm=ts.realm, service=ts.service, issuer=ts.issuer, rootcertbundle=pki.cert_path
    )
    reg = Registry(
        tmp_path_factory.mktemp("tls-token-registry"),
        token=auth,
        tls_cert=server.cert_path,
        tls_key=server.key_path,
    )
    try:
        reg.start()
        yield reg, ts
    finally:
        reg.stop()
        ts.stop()


def test_token_realm_trusted_through_hosts_ca(
    tls_token_registry: tuple[Registry, TokenServer], pki: CA, tmp_path: Path
) -> None:
    reg, ts = tls_token_registry
    assert ts.realm.startswith("https://")
    img = simple_image(tag="tls-token")
    push_image(reg, "public/tlstoken/app", "v1", img, creds="alice:pw-tls-token")
    ref = f"{reg.host}/public/tlstoken/app:v1"
    d = tmp_path / "certs.d" / reg.host
    d.mkdir(parents=True)
    shutil.copy(pki.cert_path, d / "ca.pem")
    (d / "hosts.toml").write_text(f'server = "https://{reg.host}"\nca = "ca.pem"\n')
    hosts = str(tmp_path / "certs.d")
    out = run_dist("--hosts-dir", hosts, "--json", "resolve", ref)
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout)["digest"] == img.digest
    assert ts.count(grant="anonymous") >= 1
    # Without the CA the registry itself is refused, in words.
    (d / "hosts.toml").write_text(f'server = "https://{reg.host}"\n')
    out = run_dist("--hosts-dir", hosts, "resolve", ref)
    assert out.returncode == 1
    assert "certificate" in one_error_line(out)
