"""What a client trusts besides the system's CAs: CA certificates given as PEM text, or the
SHA-256 fingerprint of a server's own certificate (a pin). Parsing and checking only; the TLS
contexts are made in :mod:`imapscope.net`."""

from __future__ import annotations

import hashlib
import re

from cryptography import x509

__all__ = ["MAX_CA_PEM", "colon_hex", "describe_cas", "fingerprint", "normalise_pin",
           "parse_ca_pem"]  # fmt: skip

#: The most PEM text an account may carry (a CA bundle of a few dozen certificates).
MAX_CA_PEM = 256 * 1024
_PIN_PREFIXES = re.compile(r"^(sha-?256\s*(fingerprint)?\s*[=:]?\s*)", re.IGNORECASE)


def parse_ca_pem(text: str) -> list[x509.Certificate]:
    """The certificates in ``text`` (PEM); ValueError, saying what to give, when there is none
    or it is not PEM."""
    if len(text.encode()) > MAX_CA_PEM:
        raise ValueError(
            f"the CA file is larger than {MAX_CA_PEM // 1024} KiB; give only the CA "
            "certificates that sign this server's certificate"
        )
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(
            "the CA file holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA's "
            "certificate in PEM form (openssl x509 -in ca.der -inform der -out ca.pem)"
        )
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except ValueError as exc:
        raise ValueError(f"the CA file's certificates cannot be read: {exc}") from None


def describe_cas(text: str) -> list[str]:
    """One line per certificate of a CA bundle: its subject (for forms and reports)."""
    return [cert.subject.rfc4514_string() for cert in parse_ca_pem(text)]


def normalise_pin(text: str) -> str:
    """A SHA-256 fingerprint as 64 lowercase hex digits, from the forms people copy: with or
    without colons or spaces, with a "SHA256 Fingerprint=" prefix (openssl's)."""
    digits = re.sub(r"[\s:]", "", _PIN_PREFIXES.sub("", text.strip()))
    if not re.fullmatch(r"[0-9a-fA-F]{64}", digits):
        raise ValueError(
            "the pinned fingerprint must be the certificate's SHA-256: 64 hex digits, colons "
            "allowed (the check report shows it, or: openssl x509 -noout -fingerprint -sha256)"
        )
    return digits.lower()


def fingerprint(der: bytes) -> str:
    """The SHA-256 of a certificate (DER), as :func:`normalise_pin` writes it."""
    return hashlib.sha256(der).hexdigest()


def colon_hex(digest: str) -> str:
    """``ab12...`` as ``AB:12:...``, as openssl and browsers show fingerprints."""
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()
