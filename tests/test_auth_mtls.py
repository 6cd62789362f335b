"""Mutual TLS: a registry that demands a client certificate (``http.tls.clientcas``).

The client certificate and key come from the hosts file's ``client`` key,
relative to the file's directory, as in containerd's certs.d.
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
from tests.harness.registry import Registry

__all__ = ["pki"]


@pytest.fixture(scope="module")
def mtls_registry(tmp_path_factory: pytest.TempPathFactory, pki: CA) -> Iterator[Registry]:
    server = pki.server("registry-mtls")
    reg = Registry(
        tmp_path_factory.mktemp("mtls-registry"),
        tls_cert=server.cert_path,
        tls_key=server.key_path,
        extra={"http": {"tls": {"clientcas": [str(pki.cert_path)]}}},
    )
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()


def _hosts(tmp_path: Path, reg: Registry, pki: CA, *, client: bool) -> str:
    d = tmp_path / "certs.d" / reg.host
    d.mkdir(parents=True)
    shutil.copy(pki.cert_path, d / "ca.pem")
    text = f'server = "https://{reg.host}"\nca = "ca.pem"\n'
    if client:
        issued = pki.client("dist-client")
        shutil.copy(issued.cert_path, d / "client.pem")
        shutil.copy(issued.key_path, d / "client-key.pem")
        text += 'client = [["client.pem", "client-key.pem"]]\n'
    (d / "hosts.toml").write_text(text)
    return str(tmp_path / "certs.d")


def test_client_certificate_from_hosts_file(
    mtls_registry: Registry, pki: CA, tmp_path: Path
) -> None:
    img = simple_image(tag="mtls")
    client = pki.client("skopeo-client")
    certs = tmp_path / "skopeo-certs"
    certs.mkdir()
    shutil.copy(client.cert_path, certs / "client.cert")
    shutil.copy(client.key_path, certs / "client.key")
    push_image(mtls_registry, "mtls/app", "v1", img, extra_args=("--dest-cert-dir", str(certs)))
    ref = f"{mtls_registry.host}/mtls/app:v1"
    out = run_dist("--hosts-dir", _hosts(tmp_path / "a", mtls_registry, pki, client=True),
                   "--json", "resolve", ref)  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout)["digest"] == img.digest
    # Without the client certificate the TLS handshake is refused.
    out = run_dist("--hosts-dir", _hosts(tmp_path / "b", mtls_registry, pki, client=False),
                   "resolve", ref)  # fmt: skip
    assert out.returncode == 1
    line = one_error_line(out)
    assert "TLS" in line or "connection" in line, line
