"""Discovery: from an email address (or domain) to the IMAP servers that serve it.

Sources, asked at once and reported in this order (every one, with what it answered):

1. autoconfig XML (Thunderbird's format): ``autoconfig.<domain>/mail/config-v1.1.xml`` and
   ``<domain>/.well-known/autoconfig/mail/config-v1.1.xml``, HTTPS first, then HTTP;
2. RFC 6186 SRV records ``_imaps._tcp.<domain>`` (implicit TLS) and ``_imap._tcp.<domain>``
   (STARTTLS); a target of "." means the service is deliberately not offered;
3. an MX-based guess: ``imap.`` + the MX host's parent domain (a domain hosted elsewhere);
4. host guesses: ``imap.<domain>``, ``mail.<domain>``, ``<domain>``, kept only when they resolve.

With ``nameserver`` every lookup, including the name in an autoconfig URL, goes to that server:
the HTTP request is made to the address it returns.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # dnspython is imported on first use (see imapscope.net._resolve)
    import dns.asyncresolver

from imapscope.net import ResolveError, resolve
from imapscope.net._resolve import make_resolver

SOCKET_TYPES = {"SSL": "tls", "STARTTLS": "starttls", "plain": "plain"}


@dataclass(frozen=True, slots=True)
class Candidate:
    source: str  # autoconfig, srv, mx-guess, host-guess
    host: str
    port: int
    security: str  # tls, starttls, plain
    username: str | None = None


@dataclass(slots=True)
class Discovery:
    domain: str
    candidates: list[Candidate] = field(default_factory=list)
    tried: list[tuple[str, str]] = field(default_factory=list)  # (source, what it said)
    # When nothing was found: the resolver itself fails (it denies even the root zone), so the
    # domain is not what is wrong.
    resolver_problem: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "candidates": [
                {
                    "source": c.source,
                    "host": c.host,
                    "port": c.port,
                    "security": c.security,
                    "username": c.username,
                }
                for c in self.candidates
            ],
            "tried": [{"source": s, "result": r} for s, r in self.tried],
            "resolver_problem": self.resolver_problem,
        }


def split_address(address: str) -> tuple[str | None, str]:
    """``alice@example.com`` to (the address, "example.com"); a bare domain to (None, domain)."""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        if not local or not domain or "." not in domain:
            raise ValueError(f"{address!r} is not an email address")
        return address, domain.lower().rstrip(".")
    if "." not in address:
        raise ValueError(f"{address!r} is neither an email address nor a domain")
    return None, address.lower().rstrip(".")


def parse_autoconfig(xml: bytes, email: str | None) -> list[Candidate]:
    """The IMAP incoming servers of a Thunderbird autoconfig document."""
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise ValueError("autoconfig documents must not declare entities")  # billion laughs
    root = ET.fromstring(xml)  # noqa: S314 - entities refused above
    found = []
    local = email.split("@")[0] if email else ""
    for server in root.iter("incomingServer"):
        if server.get("type") != "imap":
            continue
        host = (server.findtext("hostname") or "").strip()
        port = int((server.findtext("port") or "0").strip() or 0)
        security = SOCKET_TYPES.get((server.findtext("socketType") or "").strip(), "tls")
        username = (server.findtext("username") or "").strip() or None
        if username and email:
            username = username.replace("%EMAILADDRESS%", email).replace("%EMAILLOCALPART%", local)
        if host and port:
            found.append(Candidate("autoconfig", host, port, security, username))
    return found


async def _fetch_autoconfig(
    domain: str, email: str | None, nameserver: str | None, timeout: float
) -> tuple[list[Candidate], str]:
    import httpx  # noqa: PLC0415  (here: serve imports this module, and never asks)

    tried = []
    for host, path in (
        (f"autoconfig.{domain}", "/mail/config-v1.1.xml"),
        (domain, "/.well-known/autoconfig/mail/config-v1.1.xml"),
    ):
        try:
            addresses = await resolve(host, nameserver=nameserver, timeout=timeout)
        except ResolveError as exc:
            tried.append(f"{host}: {exc}")
            continue
        address = addresses.all[0]
        literal = f"[{address}]" if ":" in address else address
        query = f"?emailaddress={email}" if email else ""
        for scheme in ("https", "http"):
            url = f"{scheme}://{literal}{path}{query}"
            try:
                async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
                    response = await client.get(
                        url, headers={"Host": host}, extensions={"sni_hostname": host}
                    )
            except httpx.HTTPError as exc:
                tried.append(f"{scheme}://{host}{path}: {type(exc).__name__}")
                continue
            if response.status_code != 200:
                tried.append(f"{scheme}://{host}{path}: HTTP {response.status_code}")
                continue
            try:
                candidates = parse_autoconfig(response.content, email)
            except (ET.ParseError, ValueError) as exc:
                tried.append(f"{scheme}://{host}{path}: unusable XML ({exc})")
                continue
            return candidates, f"{scheme}://{host}{path}: {len(candidates)} IMAP server(s)"
    return [], "; ".join(tried) or "no answer"


async def discover(
    address: str, *, nameserver: str | None = None, timeout: float = 5.0
) -> Discovery:
    """Every source asked at once (each lookup may take ``timeout`` when DNS does not answer:
    one after the other, a dead resolver made this take nine times as long), then reported in
    the order above."""
    email, domain = split_address(address)
    result = Discovery(domain)
    resolver = make_resolver(nameserver, timeout)
    guesses = (f"imap.{domain}", f"mail.{domain}", domain)
    (candidates, said), srv, mx, resolved = await asyncio.gather(
        _fetch_autoconfig(domain, email, nameserver, timeout),
        asyncio.gather(*(
            _srv(resolver, f"{service}.{domain}", security, email)
            for service, security in (("_imaps._tcp", "tls"), ("_imap._tcp", "starttls"))
        )),
        _mx_guess(resolver, domain, email, nameserver, timeout),
        asyncio.gather(*(_resolves(guess, nameserver, timeout) for guess in guesses)),
    )  # fmt: skip
    result.tried.append(("autoconfig", said))
    result.candidates += candidates
    for found, tried in (*srv, mx):
        result.candidates += found
        result.tried += tried
    for guess, resolves in zip(guesses, resolved, strict=True):
        if resolves:
            result.candidates.append(Candidate("host-guess", guess, 993, "tls", email))
            result.tried.append(("host-guess", f"{guess} resolves"))
        else:
            result.tried.append(("host-guess", f"{guess} does not resolve"))
    if not result.candidates:
        result.resolver_problem = await resolver_problem(resolver, nameserver)
        if result.resolver_problem:
            result.tried.append(("resolver", result.resolver_problem))
    return result


_Found = tuple[list[Candidate], list[tuple[str, str]]]


async def _srv(
    resolver: dns.asyncresolver.Resolver, name: str, security: str, email: str | None
) -> _Found:
    """RFC 6186's SRV record for one service: the servers it names, and what it said."""
    import dns.exception  # noqa: PLC0415
    import dns.resolver  # noqa: PLC0415

    found: list[Candidate] = []
    try:
        answer = await resolver.resolve(name, "SRV")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return found, [("srv", f"{name}: no record")]
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        return found, [("srv", f"{name}: lookup failed ({exc})")]
    tried = []
    for record in sorted(answer, key=lambda r: (r.priority, -r.weight)):
        target = record.target.to_text().rstrip(".")
        if not target:  # "." : deliberately not offered (RFC 6186 section 3.4)
            tried.append(("srv", f"{name}: not offered (target '.')"))
            continue
        found.append(Candidate("srv", target, record.port, security, email))
        tried.append(("srv", f"{name}: {target}:{record.port}"))
    return found, tried


async def _mx_guess(
    resolver: dns.asyncresolver.Resolver, domain: str, email: str | None,
    nameserver: str | None, timeout: float,
) -> _Found:  # fmt: skip
    """imap.<the MX's parent domain>, when the mail exchanger is another domain's (a hosted
    mailbox) and that name resolves."""
    import dns.exception  # noqa: PLC0415
    import dns.resolver  # noqa: PLC0415

    try:
        answer = await resolver.resolve(domain, "MX")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return [], [("mx-guess", f"{domain}: no MX")]
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        return [], [("mx-guess", f"MX lookup failed ({exc})")]
    for record in sorted(answer, key=lambda r: r.preference)[:1]:
        labels = record.exchange.to_text().rstrip(".").split(".")
        parent = ".".join(labels[-2:]) if len(labels) >= 2 else ""
        if parent and parent != domain:
            guess = f"imap.{parent}"
            if await _resolves(guess, nameserver, timeout):
                return [Candidate("mx-guess", guess, 993, "tls", email)], [
                    ("mx-guess", f"MX {'.'.join(labels)} -> {guess}")
                ]
            return [], [("mx-guess", f"MX {'.'.join(labels)}: {guess} does not resolve")]
    return [], []


async def resolver_problem(
    resolver: dns.asyncresolver.Resolver, nameserver: str | None
) -> str | None:
    """Whether the resolver works at all: the root zone always exists, so a resolver that denies
    it (an offline machine's, a broken captive portal's) makes every lookup look like a missing
    domain. None when it answers."""
    import dns.exception  # noqa: PLC0415
    import dns.resolver  # noqa: PLC0415

    which = f"the DNS server {nameserver}" if nameserver else "this machine's DNS resolver"
    try:
        await resolver.resolve(".", "NS")
    except dns.resolver.NXDOMAIN:
        said = "says that even the root zone ('.') does not exist"
    except dns.resolver.NoAnswer:
        said = "gives no name servers for the root zone ('.')"
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        said = f"does not answer ({exc})"
    else:
        return None
    return (
        f"{which} {said}: DNS itself is broken here, not the mail domain; check "
        "/etc/resolv.conf and the network, or give --nameserver IP"
    )


async def _resolves(host: str, nameserver: str | None, timeout: float) -> bool:
    try:
        await resolve(host, nameserver=nameserver, timeout=timeout)
    except ResolveError:
        return False
    return True
