"""TLS: one client context per configuration, and what the handshake and certificate say."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache

from cryptography import x509
from cryptography.x509.oid import NameOID

from imapscope.net._stream import close_stream, open_stream
from imapscope.trust import fingerprint

# Issuers of certificates minted by TLS-inspecting middleboxes and antivirus products. A server
# certificate issued by one of these means something between the client and the server decrypts
# the traffic.
INTERCEPTION_ISSUERS = (
    "fortinet", "fortigate", "zscaler", "blue coat", "bluecoat", "palo alto", "sophos",
    "kaspersky", "avast", "avg technologies", "eset", "bitdefender", "cisco umbrella",
    "netskope", "forcepoint", "websense", "barracuda", "mcafee web gateway", "checkpoint",
    "check point", "untangle", "smoothwall", "lightspeed", "securly", "mitmproxy",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    subject: str
    issuer: str
    issuer_organization: str
    names: tuple[str, ...]  # DNS and IP subject alternative names
    not_before: datetime
    not_after: datetime
    serial: str
    self_signed: bool
    sha256: str = ""  # the fingerprint a pin compares (hex)

    def days_left(self, now: datetime | None = None) -> int:
        return (self.not_after - (now or datetime.now(UTC))).days

    @property
    def intercepted_by(self) -> str | None:
        issuer = f"{self.issuer_organization} {self.issuer}".lower()
        return next((name for name in INTERCEPTION_ISSUERS if name in issuer), None)


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str
    cipher: str
    certificate: CertificateInfo | None


TLS_READ_BUFFER = 8 * 1024


def shrink_tls_read_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Lower asyncio's per-connection TLS read buffer for this process.

    asyncio's SSLProtocol (CPython 3.11, 3.12) gives every TLS connection a 256 KiB read buffer,
    zero-filled when the connection is made, so it is all resident (cpython#109534). `serve`
    keeps one TLS connection per account: with 1,000 accounts that is 250 MiB of buffers that
    hold nothing. A smaller buffer only means more, smaller reads of ciphertext (a TLS record is
    at most 16 KiB). Measured by bench/accounts_idle.py (docs/serve.md).
    """
    import asyncio.sslproto  # noqa: PLC0415

    protocol = asyncio.sslproto.SSLProtocol
    if getattr(protocol, "max_size", 0) > size:
        protocol.max_size = size


@cache
def client_context(
    ca_file: str | None = None, insecure: bool = False, ca_pem: str | None = None,
    pinned: bool = False,
) -> ssl.SSLContext:  # fmt: skip
    """A shared client context per configuration: a thousand accounts share one, and its CA
    store, instead of loading one each. Callers must not change it.

    TLS 1.2+; the system's CAs, plus ``ca_file`` and ``ca_pem`` (PEM text) when given: a
    private CA is added to the public ones, never instead of them, so one process can watch a
    company server and a public provider. ``insecure`` and ``pinned`` verify nothing here: a pin
    is compared with the server's certificate after the handshake (the session path).
    """
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure or pinned:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@lru_cache(maxsize=256)
def certificate_info(der: bytes) -> CertificateInfo:
    """What a certificate says (remembered: the accounts on one server are all shown the same
    certificate, parsed once instead of at each connection)."""
    cert = x509.load_der_x509_certificate(der)
    names: list[str] = []
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += alt.get_values_for_type(x509.DNSName)
        names += [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    organizations = cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        issuer_organization=str(organizations[0].value) if organizations else "",
        names=tuple(names),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=format(cert.serial_number, "x"),
        self_signed=cert.issuer == cert.subject,
        sha256=fingerprint(der),
    )


def tls_info(ssl_object: ssl.SSLObject | None) -> TlsInfo:
    if ssl_object is None:
        return TlsInfo("", "", None)
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return TlsInfo(
        version=ssl_object.version() or "",
        cipher=cipher[0] if cipher else "",
        certificate=certificate_info(der) if der else None,
    )


async def fetch_certificate(
    host: str,
    address: str,
    port: int,
    *,
    starttls: bool,
    timeout: float,
    proxy: str | None = None,
) -> TlsInfo | None:
    """Handshake without verifying, only to read the certificate (no credentials follow)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await open_stream(address, port, timeout=timeout, proxy=proxy)
    except (TimeoutError, OSError):
        return None
    try:
        async with asyncio.timeout(timeout * (3 if starttls else 1)):
            if starttls:
                await reader.readline()
                writer.write(b"S1 STARTTLS\r\n")
                while not (await reader.readline()).startswith(b"S1 "):
                    pass
            await writer.start_tls(context, server_hostname=host)
        return tls_info(writer.get_extra_info("ssl_object"))
    except (TimeoutError, OSError, ssl.SSLError, ValueError):
        return None
    finally:
        await close_stream(writer)
