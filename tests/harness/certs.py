"""Throw-away PKI for tests: a CA, loopback server certificates, a token
signing certificate and client certificates, written as PEM files.

Everything is ECDSA P-256: fast to generate, and ES256 is what the token
server signs with, so one key type covers TLS and JWTs.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, in memory and on disk."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path

    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(
    dirpath: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    dirpath.mkdir(parents=True, exist_ok=True)
    cert_path = dirpath / f"{stem}.pem"
    key_path = dirpath / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Issued(cert, key, cert_path, key_path)


class CA:
    """A self-signed root that issues leaf certificates into ``dirpath``."""

    def __init__(self, dirpath: Path, cn: str = "ocidist test CA") -> None:
        self.dir = dirpath
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.root = _write(dirpath, "ca", cert, key)

    @property
    def cert_path(self) -> Path:
        return self.root.cert_path

    def _issue(
        self, stem: str, cn: str, eku: list[x509.ObjectIdentifier], sans: list[x509.GeneralName]
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.root.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
        )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.root.key, hashes.SHA256())
        return _write(self.dir, stem, cert, key)

    def server(self, stem: str = "server", host: str = "127.0.0.1") -> Issued:
        """A TLS server certificate for a loopback IP (and ``localhost``)."""
        sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
        return self._issue(stem, host, [ExtendedKeyUsageOID.SERVER_AUTH], sans)

    def client(self, stem: str = "client", cn: str = "ocidist-client") -> Issued:
        return self._issue(stem, cn, [ExtendedKeyUsageOID.CLIENT_AUTH], [])

    def signer(self, stem: str = "token-signer", cn: str = "ocidist token issuer") -> Issued:
        """A certificate for signing JWTs (digital signature, no EKU)."""
        return self._issue(stem, cn, [], [])


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
