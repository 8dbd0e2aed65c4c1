"""Name resolution: A and AAAA, separately, with the system resolver or a chosen DNS server.

Without ``nameserver`` the system resolver answers (so /etc/hosts and local overrides apply, as
for every other program); with it, every lookup goes to that server (dnspython), which is also how
the tests exercise DNS on loopback. dnspython is imported on first use: serve's start does not
pay for it (~40 ms).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dns.asyncresolver


class ResolveError(Exception):
    """``kind`` is "invalid" (not a host name at all), "nxdomain" (the name does not exist) or
    "failure" (no usable answer)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Addresses:
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.ipv4 + self.ipv6


#: RFC 1035 §2.3.4: 63 octets a label, 253 characters a name (without the final dot).
MAX_LABEL = 63
MAX_NAME = 253


def check_host(host: str) -> str:
    """``host`` if it is an IP address or a host name that can be looked up (IDNA-encodable,
    no empty label, labels of at most 63 octets); ValueError saying what is wrong otherwise."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    name = host[:-1] if host.endswith(".") else host
    if not name:
        raise ValueError("the host name is empty")
    if any(c.isspace() or c in "/\\@:[]?#" for c in name) or not name.isprintable():
        raise ValueError(f"{host!r} is not a host name: it holds spaces or URL characters")
    if len(name) > MAX_NAME:
        raise ValueError(f"the host name is {len(name)} characters long, over {MAX_NAME}")
    for label in name.split("."):
        if not label:
            raise ValueError(f"{host!r} has an empty label (two dots in a row, or a leading dot)")
        try:
            encoded = label.encode("idna") if not label.isascii() else label.encode()
        except UnicodeError as exc:
            raise ValueError(f"{host!r}: the label {label!r} is not valid IDNA ({exc})") from exc
        if len(encoded) > MAX_LABEL:
            raise ValueError(
                f"{host!r}: the label {label[:20]!r}... is {len(encoded)} octets, over {MAX_LABEL}"
            )
    return host


def parse_nameserver(text: str) -> tuple[str, int]:
    """``IP`` or ``IP:PORT`` (``[v6]:PORT`` for IPv6) to (ip, port)."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)  # raises ValueError with a clear message
    return host, port


def make_resolver(nameserver: str | None, timeout: float) -> dns.asyncresolver.Resolver:
    import dns.asyncresolver  # noqa: PLC0415

    if nameserver is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        address, port = parse_nameserver(nameserver)
        resolver.nameservers = [address]
        resolver.port = port
    resolver.lifetime = timeout
    return resolver


async def resolve(host: str, *, nameserver: str | None, timeout: float) -> Addresses:
    """The host's IPv4 and IPv6 addresses; an IP literal resolves to itself."""
    try:
        check_host(host)
    except ValueError as exc:
        raise ResolveError("invalid", str(exc)) from exc
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return Addresses((str(ip),), ()) if ip.version == 4 else Addresses((), (str(ip),))
    if nameserver is None:
        return await _system(host, timeout)
    import dns.exception  # noqa: PLC0415
    import dns.resolver  # noqa: PLC0415

    resolver = make_resolver(nameserver, timeout)
    found: dict[str, tuple[str, ...]] = {}
    missing = 0
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rdtype)
            found[rdtype] = tuple(sorted(r.to_text() for r in answer))
        except dns.resolver.NXDOMAIN as exc:
            raise ResolveError("nxdomain", f"{host} does not exist in DNS") from exc
        except dns.resolver.NoAnswer:
            found[rdtype] = ()
            missing += 1
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise ResolveError("failure", f"DNS lookup of {host} failed: {exc}") from exc
    if missing == 2:
        raise ResolveError("failure", f"{host} has no A or AAAA record")
    return Addresses(found["A"], found["AAAA"])


#: The system lookups under way, by host: the callers asking for one host while its lookup runs
#: share it (serve connects up to 100 accounts at once, often all on one server: each lookup
#: takes a trip through the thread pool). Nothing is kept once a lookup is done.
_lookups: dict[str, asyncio.Future[list[Any]]] = {}


def _lookup(host: str) -> asyncio.Future[list[Any]]:
    loop = asyncio.get_running_loop()
    found = _lookups.get(host)
    if found is not None and found.get_loop() is loop:
        return found
    task = loop.create_task(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM))
    _lookups[host] = task

    def done(finished: asyncio.Future[list[Any]]) -> None:
        if _lookups.get(host) is finished:
            del _lookups[host]
        if not finished.cancelled():
            finished.exception()  # retrieved, even when every caller gave up waiting

    task.add_done_callback(done)
    return task


async def _system(host: str, timeout: float) -> Addresses:
    try:
        async with asyncio.timeout(timeout):
            # Shielded: one caller's timeout or cancellation is not the others'.
            infos = await asyncio.shield(_lookup(host))
    except TimeoutError as exc:
        raise ResolveError("failure", f"DNS lookup of {host} timed out") from exc
    except socket.gaierror as exc:
        kind = "nxdomain" if exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA) else "failure"
        raise ResolveError(kind, f"{host}: {exc.strerror}") from exc
    ipv4 = sorted({str(info[4][0]) for info in infos if info[0] == socket.AF_INET})
    ipv6 = sorted({str(info[4][0]) for info in infos if info[0] == socket.AF_INET6})
    return Addresses(tuple(ipv4), tuple(ipv6))
