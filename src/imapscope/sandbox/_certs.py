"""The sandbox's own certificate authority and server certificate, made on first start.

Clients trust the CA file (printed at start) instead of turning verification off; the server
certificate names localhost, 127.0.0.1 and ::1 (mbsync and offlineimap check DNS names only,
shared/FACTS.md). Keys are written 0600.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NAMES = ("localhost", "127.0.0.1", "::1")
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


TLS_VARIANTS = ("expired", "self-signed", "wrong-host")


@dataclass(frozen=True, slots=True)
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self, variant: str | None = None) -> ssl.SSLContext:
        """The TLS context to serve; a ``variant`` swaps in a certificate that fails on purpose
        (expired, self-signed, or for another host name), made next to the good one."""
        cert, key = self.cert_file, self.key_file
        if variant is not None:
            cert, key = _variant(self, variant)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def ensure_certificates(directory: Path) -> Certificates:
    """Reuse the CA and certificate in ``directory``, or make them."""
    found = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files = (found.ca_file, found.cert_file, found.key_file, directory / "ca.key")
    if all(p.exists() for p in files):
        return found
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imapscope sandbox CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key, leaf = _leaf(ca_name, ca_key, NAMES, now, now + timedelta(days=825))
    found.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "ca.key", ca_key)
    found.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    _write_key(found.key_file, key)
    return found


def _leaf(
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    names: tuple[str, ...],
    not_before: datetime,
    not_after: datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return key, certificate


def _variant(certificates: Certificates, variant: str) -> tuple[Path, Path]:
    if variant not in TLS_VARIANTS:
        raise ValueError(f"TLS variant must be one of {', '.join(TLS_VARIANTS)}, not {variant!r}")
    directory = certificates.cert_file.parent
    cert_file, key_file = directory / f"{variant}.pem", directory / f"{variant}.key"
    if cert_file.exists() and key_file.exists():
        return cert_file, key_file
    now = datetime.now(UTC)
    ca_key_file = directory / "ca.key"
    ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate(certificates.ca_file.read_bytes())
    if variant == "expired":
        key, leaf = _leaf(
            ca.subject, ca_key, NAMES, now - timedelta(days=400), now - timedelta(days=30)
        )
    elif variant == "wrong-host":
        key, leaf = _leaf(ca.subject, ca_key, ("mail.other.test",), now, now + timedelta(days=90))
    else:  # self-signed: issued by a key of its own, which nobody trusts
        stranger = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        key, leaf = _leaf(name, stranger, NAMES, now, now + timedelta(days=90))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    _write_key(key_file, key)
    return cert_file, key_file
