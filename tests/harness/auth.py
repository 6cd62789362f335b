"""Credentials material for the registry's htpasswd and TLS modes."""

from __future__ import annotations

import datetime
import ipaddress
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    """An htpasswd file with bcrypt hashes, the only kind Distribution accepts."""
    with warnings.catch_warnings():
        # crypt is deprecated (gone in 3.13) but is the one stdlib bcrypt;
        # cost 4 (rounds=16) keeps logins fast in tests.
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        lines = [
            f"{user}:{crypt.crypt(pw, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}"
            for user, pw in users.items()
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_tls_cert(
    directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost")
) -> tuple[Path, Path]:
    """A self-signed certificate (also its own CA) for ``hosts``: (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocidist test registry")])
    alt: list[x509.GeneralName] = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
