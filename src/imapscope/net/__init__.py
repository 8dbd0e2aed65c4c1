"""The connection layer: asyncio TCP, implicit TLS, STARTTLS; the only module that touches
sockets and TLS. Everything it does is emitted as trace events (:mod:`._trace`)."""

from imapscope.net._connection import (
    DEFAULT_STEP_BUDGET,
    BudgetExceededError,
    CertificateError,
    ConnectionClosedError,
    ImapConnection,
    NetError,
    NetTimeoutError,
    Result,
    SecretMask,
    Security,
    WireLine,
    read_banner,
    speaks_tls,
)
from imapscope.net._resolve import (
    Addresses,
    ResolveError,
    check_host,
    parse_nameserver,
    resolve,
)
from imapscope.net._stream import ProxyFailedError, close_stream, open_stream, validate_proxy
from imapscope.net._tls import (
    CertificateInfo,
    TlsInfo,
    certificate_info,
    client_context,
    fetch_certificate,
    shrink_tls_read_buffers,
)
from imapscope.net._trace import TraceEvent, Tracer, ignore, span

__all__ = [
    "DEFAULT_STEP_BUDGET",
    "Addresses",
    "BudgetExceededError",
    "CertificateError",
    "CertificateInfo",
    "ConnectionClosedError",
    "ImapConnection",
    "NetError",
    "NetTimeoutError",
    "ProxyFailedError",
    "ResolveError",
    "Result",
    "SecretMask",
    "Security",
    "TlsInfo",
    "TraceEvent",
    "Tracer",
    "WireLine",
    "certificate_info",
    "check_host",
    "client_context",
    "close_stream",
    "fetch_certificate",
    "ignore",
    "open_stream",
    "parse_nameserver",
    "read_banner",
    "resolve",
    "shrink_tls_read_buffers",
    "span",
    "speaks_tls",
    "validate_proxy",
]  # fmt: skip
