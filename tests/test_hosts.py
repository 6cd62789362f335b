"""hosts.toml parsing: containerd's certs.d layout and keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocidist.remotes.docker.hosts import ALL_CAPABILITIES
from ocidist.remotes.docker.hostsconfig import HostsConfigError, configure_hosts


def write(root: Path, host: str, text: str) -> Path:
    d = root / host
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(text)
    return d


def test_mirrors_in_file_order_then_server_with_all_keys(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        "reg.example:5000",
        """
server = "https://upstream.example:5000"
ca = "up-ca.pem"

[host."http://127.0.0.1:6000"]
  capabilities = ["pull", "resolve"]

[host."mirror.example/some/prefix"]
  capabilities = ["pull"]
  ca = ["/abs/ca.pem", "rel/ca.pem"]
  client = [["client.cert", "client.key"]]
  skip_verify = true
  [host."mirror.example/some/prefix".header]
    x-one = "1"
    x-many = ["a", "b"]

[host."https://raw.example/custom/api"]
  override_path = true
""",
    )
    hosts = configure_hosts("reg.example:5000", hosts_dir=str(tmp_path))
    assert [(h.scheme, h.host, h.path) for h in hosts] == [
        ("http", "127.0.0.1:6000", "/v2"),
        ("https", "mirror.example", "/some/prefix/v2"),
        ("https", "raw.example", "/custom/api"),
        ("https", "upstream.example:5000", "/v2"),
    ]
    assert hosts[0].capabilities == {"pull", "resolve"}
    m = hosts[1]
    assert m.capabilities == {"pull"}
    assert m.tls.ca_files == ("/abs/ca.pem", str(d / "rel/ca.pem"))
    assert (m.tls.client_cert, m.tls.client_key) == (str(d / "client.cert"), str(d / "client.key"))
    assert m.tls.insecure
    assert dict(m.headers) == {"x-one": "1", "x-many": "a, b"}
    assert hosts[2].capabilities == ALL_CAPABILITIES
    assert hosts[3].tls.ca_files == (str(d / "up-ca.pem"),)


def test_default_dir_applies_to_unconfigured_hosts(tmp_path: Path) -> None:
    write(
        tmp_path, "_default", '[host."https://cache.example"]\ncapabilities = ["pull", "resolve"]\n'
    )
    hosts = configure_hosts("any.example", hosts_dir=str(tmp_path))
    assert [h.host for h in hosts] == ["cache.example", "any.example"]


def test_docker_hub_upstream_unless_the_file_says_otherwise(tmp_path: Path) -> None:
    assert [h.host for h in configure_hosts("docker.io", hosts_dir=str(tmp_path))] == [
        "registry-1.docker.io"
    ]
    write(tmp_path, "docker.io", '[host."https://mirror.gcr.example"]\n')
    hosts = configure_hosts("docker.io", hosts_dir=str(tmp_path))
    assert [h.base for h in hosts] == [
        "https://mirror.gcr.example/v2",
        "https://registry-1.docker.io/v2",
    ]
    write(tmp_path, "docker.io", 'server = "https://hub-proxy.example"\n')
    assert [h.host for h in configure_hosts("docker.io", hosts_dir=str(tmp_path))] == [
        "hub-proxy.example"
    ]


def test_loopback_is_plain_http_unless_tls_material_is_given(tmp_path: Path) -> None:
    assert configure_hosts("127.0.0.1:5000", hosts_dir=str(tmp_path))[0].scheme == "http"
    write(tmp_path, "127.0.0.1:5000", 'ca = "ca.pem"\n')
    h = configure_hosts("127.0.0.1:5000", hosts_dir=str(tmp_path))[-1]
    assert (h.scheme, h.host) == ("https", "127.0.0.1:5000")


def test_insecure_flag_beats_every_file(tmp_path: Path) -> None:
    write(tmp_path, "r.example", 'server = "https://r.example"\nca = "x.pem"\n[host."m.example"]\n')
    hosts = configure_hosts("r.example", hosts_dir=str(tmp_path), insecure=True)
    assert all(h.tls.insecure for h in hosts)


def test_legacy_certs_d_files(tmp_path: Path) -> None:
    d = tmp_path / "r.example"
    d.mkdir()
    for name in ("ca.crt", "me.cert", "me.key"):
        (d / name).write_text("x")
    [h] = configure_hosts("r.example", hosts_dir=str(tmp_path))
    assert h.tls.ca_files == (str(d / "ca.crt"),)
    assert (h.tls.client_cert, h.tls.client_key) == (str(d / "me.cert"), str(d / "me.key"))


@pytest.mark.parametrize(
    "text, words",
    [
        ("server = [", "invalid TOML"),
        ('server = "ftp://x"', "not an http(s) URL"),
        ('[host."m"]\ncapabilities = ["pull", "fly"]', "unknown capabilities"),
        ('[host."m"]\nskip_verify = "yes"', "true or false"),
        ('[host."m"]\nclient = [1]', "'client'"),
        # tomllib recursed past the interpreter's stack: a traceback.
        ("a = " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_bad_files_are_named_with_the_reason(tmp_path: Path, text: str, words: str) -> None:
    write(tmp_path, "r.example", text)
    with pytest.raises(HostsConfigError, match=r"hosts\.toml") as ei:
        configure_hosts("r.example", hosts_dir=str(tmp_path))
    assert words in str(ei.value)
