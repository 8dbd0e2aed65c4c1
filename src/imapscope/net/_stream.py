"""Opening a stream: directly, or through a SOCKS5/SOCKS4/HTTP CONNECT proxy (python-socks).

Every connection the check makes goes through :func:`open_stream`, probes included, so a proxy
applies to all of them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
from python_socks.async_.asyncio import Proxy

PROXY_SCHEMES = ("socks5://", "socks5h://", "socks4://", "http://")


class ProxyFailedError(OSError):
    """The proxy refused or failed to connect us (its reply is in the message)."""


def validate_proxy(url: str) -> str:
    if not url.startswith(PROXY_SCHEMES):
        raise ValueError(f"proxy URL must start with one of {', '.join(PROXY_SCHEMES)}")
    Proxy.from_url(url.replace("socks5h://", "socks5://"))
    return url


async def open_stream(
    address: str,
    port: int,
    *,
    timeout: float,
    proxy: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    source_address: tuple[str, int] | None = None,
    limit: int = 1 << 20,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A (TLS) stream to ``address``:``port``; TimeoutError or OSError when it cannot be had."""
    hostname = server_hostname if ssl_context is not None else None
    if proxy is None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        async with asyncio.timeout(timeout):
            return await asyncio.open_connection(
                address, port, family=family, local_addr=source_address, limit=limit,
                ssl=ssl_context, server_hostname=hostname,
            )  # fmt: skip
    try:
        sock = await Proxy.from_url(proxy.replace("socks5h://", "socks5://")).connect(
            address, port, timeout=timeout
        )
    except ProxyTimeoutError as exc:
        raise TimeoutError(f"proxy timed out: {exc}") from exc
    except (ProxyError, ProxyConnectionError) as exc:
        raise ProxyFailedError(f"proxy {proxy.split('@')[-1]}: {exc}") from exc
    async with asyncio.timeout(timeout):
        return await asyncio.open_connection(
            sock=sock, limit=limit, ssl=ssl_context, server_hostname=hostname
        )


async def close_stream(writer: asyncio.StreamWriter, timeout: float = 1.0) -> None:
    """Close and wait (briefly) until closed: a TLS close needs a few loop turns, and a stream
    dropped half-closed leaks its transport."""
    writer.close()
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except Exception:
        # The peer did not finish the close in time (Cyrus leaves our TLS close_notify
        # unanswered past the timeout): the socket is dropped now, not left open until the
        # garbage collector finds it.
        writer.transport.abort()
