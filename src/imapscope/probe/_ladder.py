"""The troubleshooting ladder: the steps an expert runs by hand, in order, each timed.

Theory of operation
-------------------
dns -> tcp (every address, IPv4 and IPv6 apart) -> tls or greeting -> certificate -> capability
-> starttls -> capability after TLS -> authenticate -> capability after login -> id -> namespace
-> list -> examine -> recent -> idle -> logout. A step the server cannot do is ``skip``; a step
that fails ends the ladder (what comes after would only fail as a consequence) and leaves a
finding from the catalogue.

Modes: "tls" (implicit TLS, port 993), "starttls" (port 143), "plain" (only with
``allow_plaintext``), "auto" (tls, then starttls, then plain if allowed; the first that connects is
used and named in ``working``). When the chosen port and mode do not match, the ladder probes the
alternatives without sending credentials and says which combination works.

Nothing here changes the mailbox: EXAMINE is read-only and FETCH uses BODY.PEEK semantics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from imapscope import __version__
from imapscope.imap import (
    Append,
    Bye,
    CapabilityCommand,
    Close,
    Command,
    ContinuationRequest,
    Create,
    Delete,
    Exists,
    Fetch,
    FetchResponse,
    Flags,
    Greeting,
    Id,
    Idle,
    IdResponse,
    List,
    ListResponse,
    Login,
    Logout,
    Mechanism,
    MyRights,
    MyRightsResponse,
    Namespace,
    NamespaceResponse,
    Noop,
    ProtocolError,
    Recent,
    RemoteProtocolError,
    Response,
    ResponseCode,
    Select,
    Store,
    TaggedResponse,
    Unselect,
    UntaggedStatus,
)
from imapscope.net import (
    CertificateError,
    ConnectionClosedError,
    ImapConnection,
    NetError,
    NetTimeoutError,
    ResolveError,
    Result,
    TlsInfo,
    TraceEvent,
    client_context,
    close_stream,
    fetch_certificate,
    open_stream,
    read_banner,
    resolve,
    speaks_tls,
)
from imapscope.probe._discover import discover
from imapscope.probe._findings import Finding, finding
from imapscope.probe._report import Report, Step, Target

DEFAULT_PORTS = {"tls": 993, "starttls": 143, "plain": 143}
EXPIRY_WARNING_DAYS = 14
RECENT_COUNT = 5
#: Steps slower than this (ms) raise SLOW_SERVER; generous, since networks vary.
SLOW_MS = {"greeting": 3000, "authenticate": 5000, "examine": 5000, "list": 5000}
SPECIAL_USE = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")


@dataclass(slots=True)
class CheckOptions:
    host: str
    port: int | None = None
    security: str = "auto"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth2_token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    insecure: bool = False
    timeout: float = 10.0
    mailbox: str = "INBOX"
    nameserver: str | None = None
    allow_plaintext: bool = False
    source_address: str | None = None
    write_tests: bool = False
    proxy: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.oauth2_token) if s)


class Stop(Exception):  # noqa: N818 - control flow, not an error
    """The ladder cannot go on; the finding that says why is already recorded."""


class Ladder:
    def __init__(self, options: CheckOptions, report: Report) -> None:
        self.options = options
        self.report = report
        self.connection: ImapConnection | None = None
        self.capabilities: frozenset[str] = frozenset()

    # -- bookkeeping --------------------------------------------------------------------------

    def add(self, found: Finding) -> None:
        self.report.findings.append(found)

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[Step]:
        record = Step(name)
        self.report.steps.append(record)
        started = time.perf_counter()
        try:
            yield record
        except (NetError, ProtocolError) as exc:
            # Anything a step did not expect (the connection dropped, the server broke the
            # protocol) still ends as a finding, never as a crash of the check.
            transcript = self.connection.transcript if self.connection else []
            last = [w.text for w in transcript if w.direction == "S"][-2:]
            raise self.fail(record, finding(
                "SERVER_TEMPORARY_ERROR", name,
                summary=f"The connection failed during the {name} step.",
                evidence=[str(exc), *last],
            )) from exc  # fmt: skip
        finally:
            record.elapsed_ms = (time.perf_counter() - started) * 1000
            limit = SLOW_MS.get(name)
            if limit is not None and record.elapsed_ms > limit and record.status == "pass":
                record.status = "warn"
                self.add(
                    finding(
                        "SLOW_SERVER",
                        name,
                        summary=f"The {name} step took {record.elapsed_ms:.0f} ms "
                        f"(over {limit} ms).",
                    )
                )

    def skip(self, name: str, why: str) -> None:
        self.report.steps.append(Step(name, "skip", 0.0, why))

    def fail(self, record: Step, found: Finding) -> Stop:
        record.status = "fail"
        record.detail = found.summary
        self.add(found)
        return Stop(found.code)

    @property
    def context(self) -> ssl.SSLContext:
        return client_context(self.options.ca_file, self.options.insecure)

    # -- the ladder ---------------------------------------------------------------------------

    async def run(self) -> None:
        if "@" in self.options.host:
            await self.discovery()
        addresses = await self.dns()
        modes = self.modes()
        for index, (security, port) in enumerate(modes):
            last = index == len(modes) - 1
            address = await self.tcp(addresses, port, quiet=not last)
            if address is None:
                continue
            try:
                await self.session(address, security, port, exploring=not last)
            except _TryNext:
                continue
            self.report.target.security = security
            self.report.target.port = port
            self.report.target.address = address
            if len(modes) > 1:
                self.report.working.append(f"{security} on port {port}")
            return

    async def discovery(self) -> None:
        """From an email address to a server: the first candidate whose port answers."""
        async with self.step("discovery") as record:
            address = self.options.host
            try:
                found = await discover(
                    address, nameserver=self.options.nameserver, timeout=self.options.timeout
                )
            except ValueError as exc:
                raise self.fail(
                    record, finding("DISCOVERY_NONE", "discovery", evidence=[str(exc)])
                ) from exc
            self.report.discovery = found.to_json()
            evidence = [f"{source}: {said}" for source, said in found.tried]
            if not found.candidates:
                raise self.fail(record, finding("DISCOVERY_NONE", "discovery", evidence=evidence))
            chosen = found.candidates[0]
            for candidate in found.candidates:
                try:
                    addresses = await resolve(candidate.host, nameserver=self.options.nameserver,
                                              timeout=self.options.timeout)  # fmt: skip
                    _, writer = await open_stream(
                        addresses.all[0], candidate.port, timeout=2.0, proxy=self.options.proxy
                    )
                    await close_stream(writer)
                except (ResolveError, OSError, TimeoutError):
                    continue
                chosen = candidate
                break
            record.detail = (
                f"{chosen.source}: {chosen.host}:{chosen.port} {chosen.security} "
                f"({len(found.candidates)} candidate(s))"
            )
            self.options.host = chosen.host
            self.options.port = chosen.port
            self.options.security = chosen.security
            if self.options.user is None and self.options.password is not None:
                self.options.user = chosen.username or address
            self.report.target.host = chosen.host
            self.report.target.port = chosen.port
            self.report.target.security = chosen.security
            self.report.target.user = self.options.user

    async def dns(self) -> list[str]:
        async with self.step("dns") as record:
            try:
                found = await resolve(
                    self.options.host,
                    nameserver=self.options.nameserver,
                    timeout=self.options.timeout,
                )
            except ResolveError as exc:
                code = "DNS_NXDOMAIN" if exc.kind == "nxdomain" else "DNS_FAILURE"
                raise self.fail(record, finding(code, "dns", evidence=[str(exc)])) from exc
            record.detail = ", ".join(found.all)
            return list(found.ipv4) + list(found.ipv6)

    def modes(self) -> list[tuple[str, int]]:
        security, port = self.options.security, self.options.port
        if security != "auto":
            return [(security, port or DEFAULT_PORTS[security])]
        candidates = [("tls", port or 993), ("starttls", port or 143)]
        if self.options.allow_plaintext:
            candidates.append(("plain", port or 143))
        return candidates

    async def tcp(self, addresses: list[str], port: int, *, quiet: bool) -> str | None:
        """Connect to every address; return the first that answers."""
        async with self.step("tcp") as record:
            results: dict[str, str] = {}
            for address in addresses:
                started = time.perf_counter()
                try:
                    _, writer = await open_stream(
                        address, port, timeout=self.options.timeout, proxy=self.options.proxy,
                        source_address=self.source,
                    )  # fmt: skip
                    await close_stream(writer)
                    results[address] = f"ok {(time.perf_counter() - started) * 1000:.1f} ms"
                except TimeoutError:
                    results[address] = "timeout"
                except OSError as exc:
                    results[address] = exc.strerror or str(exc)
            record.detail = "; ".join(f"{a}:{port} {r}" for a, r in results.items())
            working = [a for a, r in results.items() if r.startswith("ok")]
            broken_v6 = [a for a in results if ":" in a and a not in working]
            if working and broken_v6 and any(":" not in a for a in working):
                record.status = "warn"
                self.add(finding("IPV6_PATH_BROKEN", "tcp", evidence=[record.detail]))
            if working:
                return working[0]
            if quiet:
                self.report.steps.pop()
                return None
            code = "TCP_TIMEOUT" if all(r == "timeout" for r in results.values()) else "TCP_REFUSED"
            raise self.fail(record, finding(code, "tcp", evidence=[record.detail]))

    def trace(self, event: TraceEvent) -> None:
        """Keep the connection layer's trace events (completed and failed ones) in the report."""
        if event.phase != "started":
            elapsed = None if event.elapsed_ms is None else round(event.elapsed_ms, 2)
            self.report.trace.append(
                {"event": event.full_name, "elapsed_ms": elapsed, **dict(event.details)}
            )

    @property
    def source(self) -> tuple[str, int] | None:
        return (self.options.source_address, 0) if self.options.source_address else None

    # -- one session --------------------------------------------------------------------------

    async def session(self, address: str, security: str, port: int, *, exploring: bool) -> None:
        self.connection = None
        try:
            connection = await self.connect(address, security, port, exploring=exploring)
            await self.after_greeting(connection, security, address, port)
        finally:
            # connect() records the connection as soon as it exists, so a failure at any step
            # (a BYE greeting included) still closes it and keeps its transcript.
            if self.connection is not None:
                self.report.transcript = [
                    f"{line.direction}: {line.text}" for line in self.connection.transcript
                ]
                await self.connection.close()

    async def connect(
        self, address: str, security: str, port: int, *, exploring: bool
    ) -> ImapConnection:
        host, timeout = self.options.host, self.options.timeout
        if security == "tls":
            async with self.step("tls") as record:
                try:
                    connection = await ImapConnection.open(
                        host, address, port, security="tls", context=self.context,
                        timeout=timeout, source_address=self.source, proxy=self.options.proxy,
                        tracer=self.trace,
                    )  # fmt: skip
                except CertificateError as exc:
                    raise await self.certificate_failure(
                        record, exc, address, port, starttls=False
                    ) from exc
                except NetError as exc:
                    if exploring:
                        self.report.steps.pop()
                        raise _TryNext from exc
                    raise self.fail(record, await self.tls_failure(exc, address, port)) from exc
                self.connection = connection
                assert connection.tls is not None
                record.detail = f"{connection.tls.version} {connection.tls.cipher}"
            self.certificate(connection.tls)
        else:
            async with self.step("greeting") as record:
                try:
                    connection = await ImapConnection.open(
                        host, address, port, security="plain", context=None, timeout=timeout,
                        source_address=self.source, proxy=self.options.proxy, tracer=self.trace,
                    )  # fmt: skip
                except NetError as exc:
                    raise self.fail(
                        record, finding("TCP_REFUSED", "greeting", evidence=[str(exc)])
                    ) from exc
                self.connection = connection
                greeting = await self.read_greeting(connection, record, address, port, exploring)
                self.greeting(greeting, record)
            return connection
        async with self.step("greeting") as record:
            greeting = await self.read_greeting(connection, record, address, port, exploring)
            self.greeting(greeting, record)
        return connection

    async def read_greeting(
        self,
        connection: ImapConnection,
        record: Step,
        address: str,
        port: int,
        exploring: bool,
    ) -> Greeting:
        # A TLS port says nothing to a plaintext client: do not wait the full step timeout.
        wait = min(self.options.timeout, 3.0) if connection.tls is None else self.options.timeout
        try:
            return await connection.greeting(timeout=wait)
        except NetTimeoutError as exc:
            if exploring:
                self.report.steps.pop()
                raise _TryNext from exc
            if connection.tls is None and await speaks_tls(
                self.options.host, address, port, self.options.timeout, self.options.proxy
            ):
                raise self.fail(
                    record,
                    finding(
                        "PLAINTEXT_ON_TLS_PORT",
                        "greeting",
                        evidence=[f"port {port} completed a TLS handshake but sent no "
                                  "plaintext greeting"],
                        fix=await self.what_works(address, port),
                    ),
                ) from exc  # fmt: skip
            raise self.fail(
                record,
                finding("SERVER_SILENT", "greeting", evidence=[f"no greeting within {wait:g}s"]),
            ) from exc
        except (RemoteProtocolError, ConnectionClosedError, NetError) as exc:
            if exploring:
                self.report.steps.pop()
                raise _TryNext from exc
            banner = connection.transcript[0].text if connection.transcript else str(exc)
            raise self.fail(
                record, finding("NOT_IMAP_SERVICE", "greeting", evidence=[banner])
            ) from exc

    def greeting(self, greeting: Greeting, record: Step) -> None:
        self.report.server["greeting"] = greeting.text
        record.detail = f"{greeting.status} {greeting.text}"
        if greeting.status == "BYE":
            raise self.fail(
                record, finding("GREETING_BYE", "greeting", evidence=[f"* BYE {greeting.text}"])
            )
        if greeting.code is not None and greeting.code.name == "ALERT":
            self.report.server.setdefault("alerts", []).append(greeting.text)

    async def tls_failure(self, exc: NetError, address: str, port: int) -> Finding:
        found = await classify_tls_failure(
            exc, address, port, source=self.source, proxy=self.options.proxy
        )
        if found.code == "TLS_ON_PLAINTEXT_PORT":
            found = dataclasses.replace(found, fix=await self.what_works(address, port))
        return found

    async def what_works(self, address: str, port: int) -> str:
        """Probe the other combinations without credentials; say which one works."""
        found = []
        for security, candidate in (("tls", port), ("starttls", port), ("tls", 993),
                                    ("starttls", 143)):  # fmt: skip
            label = f"{'SSL/TLS' if security == 'tls' else 'STARTTLS'} on port {candidate}"
            if label in found:
                continue
            if security == "tls":
                works = await speaks_tls(
                    self.options.host, address, candidate, 2.0, self.options.proxy
                )
            else:
                banner = await read_banner(address, candidate, 2.0, self.source, self.options.proxy)
                works = banner is not None and banner.startswith(b"* OK")
            if works:
                found.append(label)
        self.report.working.extend(found)
        if not found:
            return "No other port or mode answered either; check the server name."
        return f"Use {found[0]} (checked: it answers)." + (
            f" Also working: {', '.join(found[1:])}." if len(found) > 1 else ""
        )

    # -- certificate --------------------------------------------------------------------------

    def certificate(self, tls: TlsInfo) -> None:
        cert = tls.certificate
        self.report.tls = {
            "version": tls.version,
            "cipher": tls.cipher,
            "verified": not self.options.insecure,
            "certificate": None,
        }
        if cert is None:
            return
        days = cert.days_left()
        self.report.tls["certificate"] = {
            "subject": cert.subject, "issuer": cert.issuer, "names": list(cert.names),
            "not_after": cert.not_after.isoformat(), "days_left": days,
            "self_signed": cert.self_signed,
        }  # fmt: skip
        record = Step("certificate", "pass", 0.0, f"{cert.issuer}; {days} days left")
        self.report.steps.append(record)
        if 0 <= days < EXPIRY_WARNING_DAYS:
            record.status = "warn"
            self.add(
                finding(
                    "CERT_EXPIRING_SOON",
                    "certificate",
                    summary=f"The server's certificate expires in {days} days.",
                    evidence=[f"notAfter {cert.not_after.isoformat()}"],
                )
            )
        if cert.intercepted_by:
            record.status = "warn"
            self.add(finding("TLS_INTERCEPTED", "certificate", evidence=[f"issuer: {cert.issuer}"]))

    async def certificate_failure(
        self, record: Step, exc: CertificateError, address: str, port: int, *, starttls: bool
    ) -> Stop:
        """Fail the handshake's step, name the certificate problem (with the certificate's
        details, fetched again without verifying); return the Stop to raise."""
        record.status = "fail"
        record.detail = exc.verify_message
        info = await fetch_certificate(
            self.options.host, address, port, starttls=starttls, timeout=self.options.timeout,
            proxy=self.options.proxy,
        )  # fmt: skip
        evidence = [exc.verify_message]
        if info is not None and info.certificate is not None:
            cert = info.certificate
            evidence.append(f"issuer: {cert.issuer}; names: {', '.join(cert.names) or '-'}; "
                            f"expires {cert.not_after.isoformat()}")  # fmt: skip
            self.report.tls = {"version": info.version, "cipher": info.cipher, "verified": False,
                               "certificate": {"subject": cert.subject, "issuer": cert.issuer,
                                               "names": list(cert.names),
                                               "not_after": cert.not_after.isoformat(),
                                               "days_left": cert.days_left(),
                                               "self_signed": cert.self_signed}}  # fmt: skip
        message = exc.verify_message.lower()
        if exc.code == 10 or "expired" in message or "not yet valid" in message:
            code = "CERT_EXPIRED"
        elif exc.code == 62 or "hostname" in message or "ip address mismatch" in message:
            code = "CERT_HOSTNAME_MISMATCH"
        else:
            code = "CERT_UNTRUSTED"
        if info is not None and info.certificate is not None and info.certificate.intercepted_by:
            self.add(finding("TLS_INTERCEPTED", "certificate", evidence=evidence[1:]))
        self.report.steps.append(Step("certificate", "fail", 0.0, exc.verify_message))
        self.add(finding(code, "certificate", evidence=evidence))
        return Stop(code)

    # -- after the greeting -------------------------------------------------------------------

    async def capability(self, connection: ImapConnection, name: str) -> None:
        async with self.step(name) as record:
            if connection.codec.capabilities:
                self.capabilities = connection.codec.capabilities
            else:
                result = await connection.run(CapabilityCommand())
                self.check_bye(result, record)
                self.capabilities = connection.codec.capabilities
            record.detail = " ".join(sorted(self.capabilities))
            self.report.server["capabilities"] = sorted(self.capabilities)

    def check_bye(self, result: Result, record: Step) -> None:
        byes = [e for e in result.untagged if isinstance(e, Bye)]
        if byes:
            raise self.fail(
                record,
                finding("MAILSTORE_UNAVAILABLE", record.name, evidence=[f"* BYE {byes[0].text}"]),
            )

    async def after_greeting(
        self, connection: ImapConnection, security: str, address: str, port: int
    ) -> None:
        await self.capability(connection, "capability")
        if security == "starttls":
            await self.starttls(connection, address, port)
            await self.capability(connection, "capability_tls")
        else:
            self.skip("starttls", "not used (implicit TLS)" if security == "tls" else "plaintext")
        if self.options.user is None:
            self.skip("authenticate", "no user given")
            await self.logout(connection)
            return
        await self.authenticate(connection)
        await self.capability(connection, "capability_auth")
        await self.identify(connection)
        await self.namespace(connection)
        await self.list(connection)
        exists = await self.examine(connection)
        await self.recent(connection, exists)
        await self.idle(connection)
        if self.options.write_tests:
            await self.write_tests(connection, security, address, port)
        else:
            self.skip("write_tests", "opt-in (--write-tests)")
        await self.logout(connection)

    async def starttls(self, connection: ImapConnection, address: str, port: int) -> None:
        async with self.step("starttls") as record:
            if "STARTTLS" not in self.capabilities:
                raise self.fail(
                    record,
                    finding("STARTTLS_NOT_OFFERED", "starttls",
                            evidence=[" ".join(sorted(self.capabilities))],
                            fix=await self.what_works(address, port)),
                )  # fmt: skip
            try:
                result = await connection.starttls(self.context)
            except CertificateError as exc:
                raise await self.certificate_failure(
                    record, exc, address, port, starttls=True
                ) from exc
            except NetError as exc:
                raise self.fail(
                    record, finding("STARTTLS_FAILED", "starttls", evidence=[str(exc)])
                ) from exc
            if not result.ok:
                raise self.fail(
                    record,
                    finding("STARTTLS_FAILED", "starttls", evidence=[_said(result.tagged)]),
                )
            assert connection.tls is not None
            record.detail = f"{connection.tls.version} {connection.tls.cipher}"
        self.certificate(connection.tls)

    # -- authentication -----------------------------------------------------------------------

    def mechanism(self) -> Mechanism | None:
        options, caps = self.options, self.capabilities
        user = options.user or ""
        if options.oauth2_token:
            for name in ("OAUTHBEARER", "XOAUTH2"):
                if f"AUTH={name}" in caps:
                    return Mechanism(name, user, options.oauth2_token, host=options.host)
            return None
        if "AUTH=PLAIN" in caps:
            return Mechanism("PLAIN", user, options.password or "")
        return None

    async def authenticate(self, connection: ImapConnection) -> None:
        async with self.step("authenticate") as record:
            caps = self.capabilities
            if "LOGINDISABLED" in caps and connection.tls is None:
                raise self.fail(record, finding("PLAINTEXT_LOGIN_REFUSED", "authenticate",
                                                evidence=["capability LOGINDISABLED"]))  # fmt: skip
            mechanism = self.mechanism()
            if mechanism is not None:
                record.detail = f"AUTHENTICATE {mechanism.name}"
                result = await self.guarded(connection.authenticate(mechanism), record)
            elif self.options.oauth2_token or "LOGINDISABLED" in caps:
                offered = sorted(c for c in caps if c.startswith("AUTH="))
                raise self.fail(record, finding(
                    "AUTH_MECH_UNSUPPORTED", "authenticate",
                    evidence=[f"server offers: {' '.join(offered) or 'no AUTH= mechanism'}"],
                ))  # fmt: skip
            else:
                record.detail = "LOGIN"
                result = await self.guarded(
                    connection.run(Login(self.options.user or "", self.options.password or "")),
                    record,
                )
            if not result.ok:
                raise self.fail(record, self.classify_auth(result))
            said = _said(result.tagged)
            if "initialization failed" in said.lower() or "not connected" in said.lower():
                raise self.fail(record, finding("MAILSTORE_UNAVAILABLE", "authenticate",
                                                evidence=[said]))  # fmt: skip
            self.check_bye(result, record)
            record.detail += f": {result.tagged.text}"

    async def guarded(self, pending: Awaitable[Result], record: Step) -> Result:
        try:
            return await pending
        except NetTimeoutError as exc:
            raise self.fail(
                record,
                finding(
                    "SERVER_TEMPORARY_ERROR", record.name,
                    summary=f"The server did not answer the login within "
                    f"{self.options.timeout:g} s.",
                    fix="Servers delay failed logins on purpose (Courier waits 5 s): rerun with "
                    "a longer --timeout; if there is still no answer, the server's "
                    "authentication backend is hung.",
                    evidence=[str(exc)],
                ),
            ) from exc  # fmt: skip
        except (ConnectionClosedError, NetError) as exc:
            transcript = self.connection.transcript if self.connection else []
            last = [w.text for w in transcript if w.direction == "S"][-2:]
            raise self.fail(
                record,
                finding("SERVER_TEMPORARY_ERROR", record.name,
                        summary="The server closed the connection in the middle of the step.",
                        evidence=[str(exc), *last]),
            ) from exc  # fmt: skip

    def classify_auth(self, result: Result) -> Finding:
        greeting = str(self.report.server.get("greeting", ""))
        return classify_login(result, oauth2=bool(self.options.oauth2_token), greeting=greeting)

    # -- the mailbox --------------------------------------------------------------------------

    async def identify(self, connection: ImapConnection) -> None:
        if "ID" not in self.capabilities:
            self.skip("id", "unsupported")
            return
        async with self.step("id") as record:
            result = await connection.run(Id({"name": "imapscope", "version": __version__}))
            for event in result.untagged:
                if isinstance(event, IdResponse) and event.params:
                    self.report.server["id"] = event.params
                    record.detail = ", ".join(f"{k}={v}" for k, v in event.params.items())

    async def namespace(self, connection: ImapConnection) -> None:
        if "NAMESPACE" not in self.capabilities:
            self.skip("namespace", "unsupported")
            return
        async with self.step("namespace") as record:
            result = await connection.run(Namespace())
            self.check_bye(result, record)
            for event in result.untagged:
                if isinstance(event, NamespaceResponse):
                    groups = {"personal": event.personal, "other_users": event.other_users,
                              "shared": event.shared}  # fmt: skip
                    self.report.namespaces = {
                        kind: [{"prefix": p, "delimiter": d} for p, d in entries]
                        for kind, entries in groups.items()
                    }
                    record.detail = "; ".join(
                        f"{kind}: {', '.join(repr(p) for p, _ in entries) or '-'}"
                        for kind, entries in groups.items()
                    )

    async def list(self, connection: ImapConnection) -> None:
        async with self.step("list") as record:
            result = await connection.run(List("", "*"))
            self.check_bye(result, record)
            if not result.ok:
                raise self.fail(record, self.classify_mailbox(result, "list"))
            folders = [e for e in result.untagged if isinstance(e, ListResponse)]
            # Other users' and shared namespaces are not under "*" of the personal one.
            for kind in ("other_users", "shared"):
                for entry in self.report.namespaces.get(kind, []):
                    prefix = entry["prefix"] or ""
                    extra = await connection.run(List("", f"{prefix}*"))
                    folders += [e for e in extra.untagged if isinstance(e, ListResponse)]
            self.report.mailboxes = [
                {"name": f.name, "delimiter": f.delimiter, "attributes": list(f.attributes)}
                for f in folders
            ]
            roles: dict[str, list[str]] = {role: [] for role in SPECIAL_USE}
            for folder in folders:
                for attribute in folder.attributes:
                    for role in SPECIAL_USE:
                        if attribute.lower() == role.lower():
                            roles[role].append(folder.name)
            delimiter = folders[0].delimiter if folders else None
            record.detail = f"{len(folders)} folders, delimiter {delimiter!r}; roles: " + (
                ", ".join(f"{r[1:]}={'/'.join(n)}" for r, n in roles.items() if n) or "none"
            )
            duplicated = {r: n for r, n in roles.items() if len(n) > 1}
            missing = [r for r, n in roles.items() if not n]
            if duplicated:
                record.status = "warn"
                evidence = [f"{role} on {', '.join(names)}" for role, names in duplicated.items()]
                self.add(finding("FOLDER_MAPPING_AMBIGUOUS", "list", evidence=evidence))
            elif missing and len(missing) < len(SPECIAL_USE):
                record.status = "warn"
                self.add(finding("FOLDER_MAPPING_AMBIGUOUS", "list",
                                 evidence=[f"no folder marked {', '.join(missing)}"]))  # fmt: skip
            elif missing:
                self.add(finding(
                    "FOLDER_MAPPING_AMBIGUOUS", "list", severity="info",
                    summary="The server marks no special folders (SPECIAL-USE); clients guess "
                    "Sent, Drafts and Trash by name.",
                ))  # fmt: skip

    def classify_mailbox(self, result: Result, step: str) -> Finding:
        said = _said(result.tagged)
        code = result.tagged.code.name if result.tagged.code else ""
        lowered = said.lower()
        if (
            code == "NONEXISTENT"
            or "doesn't exist" in lowered
            or "does not exist" in lowered
            or ("no such" in lowered)
        ):
            return finding("MAILBOX_NOT_FOUND", step, evidence=[said])
        if code in ("NOPERM", "NOT-ALLOWED") or "permission" in lowered or "denied" in lowered:
            return finding("MAILBOX_ACCESS_DENIED", step, evidence=[said])
        if code == "OVERQUOTA" or "quota" in lowered:
            return finding("OVER_QUOTA", step, evidence=[said])
        if code in ("UNAVAILABLE", "SERVERBUG", "CORRUPTION"):
            return finding("MAILSTORE_UNAVAILABLE", step, evidence=[said])
        return finding("MAILSTORE_UNAVAILABLE", step, evidence=[said],
                       summary=f"The server could not complete {step.upper()}.")  # fmt: skip

    async def examine(self, connection: ImapConnection) -> int:
        async with self.step("examine") as record:
            mailbox = self.options.mailbox
            result = await connection.run(Select(mailbox, readonly=True))
            self.check_bye(result, record)
            if not result.ok:
                raise self.fail(record, self.classify_mailbox(result, "examine"))
            facts: dict[str, object] = {"mailbox": mailbox}
            for event in result.untagged:
                if isinstance(event, Exists):
                    facts["exists"] = event.count
                elif isinstance(event, Recent):
                    facts["recent"] = event.count
                elif isinstance(event, Flags):
                    facts["flags"] = list(event.flags)
                elif isinstance(event, UntaggedStatus) and event.code is not None:
                    name, value = event.code.name, event.code.value
                    if name in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ", "UNSEEN"):
                        facts[name.lower()] = value
                    elif name == "PERMANENTFLAGS":
                        facts["permanentflags"] = list(value or ())  # type: ignore[arg-type]
                    elif name == "NOMODSEQ":
                        facts["highestmodseq"] = None
            if "ACL" in self.capabilities:
                rights = await connection.run(MyRights(mailbox))
                for event in rights.untagged:
                    if isinstance(event, MyRightsResponse):
                        facts["myrights"] = event.rights
            self.report.selected = facts
            record.detail = ", ".join(f"{k}={v}" for k, v in facts.items() if k != "flags")
            exists = facts.get("exists", 0)
            return exists if isinstance(exists, int) else 0

    async def recent(self, connection: ImapConnection, exists: int) -> None:
        if exists == 0:
            self.skip("recent", "the mailbox is empty")
            return
        async with self.step("recent") as record:
            first = max(1, exists - RECENT_COUNT + 1)
            result = await connection.run(
                Fetch(f"{first}:{exists}", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")
            )
            self.check_bye(result, record)
            for event in result.untagged:
                if isinstance(event, FetchResponse):
                    envelope = event.envelope
                    sender = envelope.from_[0] if envelope and envelope.from_ else None
                    self.report.recent.append({
                        "uid": event.uid, "size": event.size, "flags": list(event.flags or ()),
                        "date": event.internaldate_raw,
                        "subject": envelope.subject if envelope else None,
                        "from": sender.email if sender else None,
                    })  # fmt: skip
            record.detail = f"{len(self.report.recent)} newest messages read"

    async def idle(self, connection: ImapConnection) -> None:
        if "IDLE" not in self.capabilities:
            self.skip("idle", "unsupported")
            self.add(finding("IDLE_UNSUPPORTED", "idle"))
            return
        async with self.step("idle") as record:
            tag = connection.codec.send(Idle())
            try:
                response = await connection.next_response("idle")
                while not isinstance(response, ContinuationRequest):
                    if isinstance(response, TaggedResponse):
                        raise self.fail(record, finding("IDLE_UNSUPPORTED", "idle",
                                                        evidence=[_said(response)]))  # fmt: skip
                    response = await connection.next_response("idle")
                connection.codec.done()
                done = await connection.wait(tag, "idle")
            except (ConnectionClosedError, NetError) as exc:
                raise self.fail(
                    record, finding("IDLE_DROPPED", "idle", evidence=[str(exc)])
                ) from exc
            if not done.ok:
                raise self.fail(
                    record, finding("IDLE_DROPPED", "idle", evidence=[_said(done.tagged)])
                )
            record.detail = "entered IDLE, got the continuation, left with DONE"

    # -- opt-in write tests ---------------------------------------------------------------------

    async def second_session(self, security: str, address: str, port: int) -> ImapConnection:
        """Another logged-in connection, the way the first one was made (no steps recorded)."""
        connection = await ImapConnection.open(
            self.options.host, address, port, security="tls" if security == "tls" else "plain",
            context=self.context if security == "tls" else None, timeout=self.options.timeout,
            source_address=self.source, proxy=self.options.proxy,
        )  # fmt: skip
        await connection.greeting()
        if security == "starttls":
            await connection.starttls(self.context)
        mechanism = self.mechanism()
        if mechanism is not None:
            result = await connection.authenticate(mechanism)
        else:
            result = await connection.run(
                Login(self.options.user or "", self.options.password or "")
            )
        if not result.ok:
            await connection.close()
            raise NetError("authenticate", f"second login failed: {_said(result.tagged)}")
        return connection

    async def write_tests(
        self, connection: ImapConnection, security: str, address: str, port: int
    ) -> None:
        """Create a scratch folder, APPEND, watch a flag change and an APPEND arrive on a second
        connection, then delete the folder: the account is left as it was."""
        prefix = ""
        personal = self.report.namespaces.get("personal") or []
        if personal:
            prefix = personal[0]["prefix"] or ""
        scratch = f"{prefix}imapscope-check-{int(time.time() * 1000) % 10**9}"
        async with self.step("write_setup") as record:
            created = await connection.run(Create(scratch))
            if not created.ok:
                raise self.fail(record, self.classify_mailbox(created, "write_setup"))
            appended = await connection.run(Append(scratch, _PROBE_MESSAGE))
            if not appended.ok:
                await connection.run(Delete(scratch))
                raise self.fail(record, self.classify_mailbox(appended, "write_setup"))
            record.detail = f"created {scratch!r} and appended a message"
        watcher: ImapConnection | None = None
        try:
            await connection.run(Select(scratch))
            watcher = await self.second_session(security, address, port)
            await watcher.run(Select(scratch))
            await self.watch(
                "flag_roundtrip", connection, watcher,
                Store("1", (r"\Flagged",)), _saw_flag, "FLAG_SYNC_BROKEN",
            )  # fmt: skip
            await self.watch(
                "append_push", connection, watcher,
                Append(scratch, _PROBE_MESSAGE), _saw_new_message, None,
            )  # fmt: skip
        finally:
            if watcher is not None:
                await watcher.close()
            async with self.step("write_cleanup") as record:
                await connection.run(Unselect() if "UNSELECT" in self.capabilities else Close())
                deleted = await connection.run(Delete(scratch))
                record.detail = f"deleted {scratch!r}: {_said(deleted.tagged)}"
                if not deleted.ok:
                    record.status = "warn"

    async def watch(  # noqa: PLR0917 - one call site per write test, each argument named there
        self,
        name: str,
        actor: ImapConnection,
        watcher: ImapConnection,
        action: Command,
        seen: Callable[[Response], bool],
        code: str | None,
    ) -> None:
        """Do ``action`` on one connection; time until the other sees it (IDLE push, or NOOP
        polling every 100 ms when IDLE is not offered)."""
        async with self.step(name) as record:
            push = "IDLE" in self.capabilities
            tag = None
            if push:
                tag = watcher.codec.send(Idle())
                while not isinstance(await watcher.next_response(name), ContinuationRequest):
                    pass
            started = time.perf_counter()
            await actor.run(action)
            deadline = started + self.options.timeout
            noticed = False
            while time.perf_counter() < deadline and not noticed:
                left = max(0.05, deadline - time.perf_counter())
                try:
                    if push:
                        noticed = seen(await watcher.next_response(name, timeout=left))
                    else:
                        result = await watcher.run(Noop())
                        noticed = any(seen(e) for e in result.untagged)
                        if not noticed:
                            await asyncio.sleep(0.1)
                except NetTimeoutError:
                    break
            latency = (time.perf_counter() - started) * 1000
            how = "IDLE push" if push else "NOOP polling"
            if push and tag is not None:
                watcher.codec.done()
                done = await watcher.wait(tag, name)
                if not noticed:
                    # Did the change reach the other session at all? Ask once more by polling.
                    polled = await watcher.run(Noop())
                    if any(seen(e) for e in done.untagged + polled.untagged):
                        record.status = "warn"
                        missed = f"IDLE pushed nothing within {self.options.timeout:g}s"
                        record.detail = f"{missed}; a NOOP then saw the change"
                        self.add(finding("IDLE_PUSH_MISSING", name, evidence=[missed]))
                        return
            if noticed:
                record.detail = f"seen by the other connection after {latency:.0f} ms ({how})"
                self.report.server.setdefault("write_tests", {})[name] = {
                    "latency_ms": round(latency, 1), "via": how}  # fmt: skip
            elif code is not None:
                missed = f"not seen by another connection within {self.options.timeout:g}s ({how})"
                raise self.fail(record, finding(code, name, evidence=[missed]))
            else:
                record.status = "warn"
                record.detail = f"not seen within {self.options.timeout:g}s ({how})"

    async def logout(self, connection: ImapConnection) -> None:
        async with self.step("logout") as record:
            try:
                result = await connection.run(Logout())
            except (ConnectionClosedError, NetError) as exc:
                record.status = "warn"
                record.detail = f"the server closed the connection without completing: {exc}"
                return
            record.detail = _said(result.tagged)


class _TryNext(Exception):  # noqa: N818 - control flow in auto mode
    """This mode does not connect; try the next one."""


_PROBE_MESSAGE = (
    b"From: imapscope <imapscope@localhost>\r\nSubject: imapscope write test\r\n"
    b"Message-ID: <write-test@imapscope>\r\n\r\nThis message is deleted by the check.\r\n"
)


def _saw_flag(event: Response) -> bool:
    return isinstance(event, FetchResponse) and "\\Flagged" in (event.flags or ())


def _saw_new_message(event: Response) -> bool:
    return isinstance(event, Exists) and event.count >= 2


# Provider wording, matched on the lowered text of the failed login (evidence keeps the original).
AUTH_PATTERNS: list[tuple[str, str]] = [
    (r"application-specific password required", "APP_PASSWORD_REQUIRED"),
    (r"app password", "APP_PASSWORD_REQUIRED"),
    (r"log ?in via your web browser|web login required", "WEB_LOGIN_REQUIRED"),
    (r"basic authentication is disabled", "BASIC_AUTH_DISABLED"),
    (r"not enabled for imap|imap (access )?is disabled|imap.*not enabled",
     "IMAP_DISABLED_FOR_ACCOUNT"),
    (r"too many simultaneous connections|maximum number of connections|too many connections",
     "TOO_MANY_CONNECTIONS"),
    (r"password (has )?expired|account (is )?locked|account (is )?disabled",
     "CREDENTIAL_EXPIRED_OR_LOCKED"),
    (r"\"status\"\s*:\s*\"40[01]\"|invalid_token|invalid_request", "OAUTH_TOKEN_REJECTED"),
    (r"temporar(y|ily)|try again later|internal error", "SERVER_TEMPORARY_ERROR"),
]  # fmt: skip


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace").strip()


def _code_text(code: ResponseCode | None) -> str:
    return "" if code is None else f"[{code.name}] "


def _said(tagged: TaggedResponse) -> str:
    return f"{tagged.status} {_code_text(tagged.code)}{tagged.text}".strip()


def classify_login(result: Result, *, oauth2: bool, greeting: str = "") -> Finding:
    """Name a refused login from the server's words (provider wording first, then the response
    code); shared by the check ladder and the sync engine."""
    texts = [_said(result.tagged)] + [
        f"* {e.status} {_code_text(e.code)}{e.text}"
        for e in result.untagged
        if isinstance(e, UntaggedStatus)
    ] + [f"* BYE {e.text}" for e in result.untagged if isinstance(e, Bye)]  # fmt: skip
    text = " ".join(texts).lower()
    code = result.tagged.code.name if result.tagged.code else ""
    for pattern, found in AUTH_PATTERNS:
        if re.search(pattern, text):
            return finding(found, "authenticate", evidence=texts)
    by_code = {
        "EXPIRED": "CREDENTIAL_EXPIRED_OR_LOCKED",
        "CONTACTADMIN": "CREDENTIAL_EXPIRED_OR_LOCKED",
        "LIMIT": "TOO_MANY_CONNECTIONS", "UNAVAILABLE": "SERVER_TEMPORARY_ERROR",
        "PRIVACYREQUIRED": "PLAINTEXT_LOGIN_REFUSED",
    }  # fmt: skip
    if code in by_code:
        return finding(by_code[code], "authenticate", evidence=texts)
    if oauth2:
        return finding("OAUTH_TOKEN_REJECTED", "authenticate", evidence=texts)
    if "microsoft exchange" in greeting.lower() or "outlook" in greeting.lower():
        return finding(
            "AUTH_FAILED", "authenticate", evidence=texts,
            fix="Microsoft 365 answers 'LOGIN failed' both for a wrong password and when "
            "password (basic) authentication is off: check the password, then use OAuth2.",
        )  # fmt: skip
    return finding("AUTH_FAILED", "authenticate", evidence=texts)


async def classify_tls_failure(
    exc: NetError, address: str, port: int, *, source: tuple[str, int] | None = None,
    proxy: str | None = None,
) -> Finding:  # fmt: skip
    """Name a failed TLS handshake: a plaintext IMAP port, not IMAP at all, a silent server, or
    no common protocol (shared by the check ladder and the sync engine)."""
    reason = str(exc)
    if isinstance(exc, NetTimeoutError):
        banner = await read_banner(address, port, 2.0, source, proxy)
        if banner is None:
            return finding("SERVER_SILENT", "tls", evidence=[reason])
    if any(word in reason for word in ("unsupported protocol", "no protocols available",
                                        "protocol version", "no shared cipher",
                                        "handshake failure")):  # fmt: skip
        return finding("TLS_PROTOCOL_MISMATCH", "tls", evidence=[reason])
    banner = await read_banner(address, port, 2.0, source, proxy)
    if banner is not None and banner.startswith(b"* "):
        return finding(
            "TLS_ON_PLAINTEXT_PORT", "tls",
            evidence=[reason, f"port {port} greets in plaintext: {_text(banner)}"],
        )  # fmt: skip
    if banner:
        return finding("NOT_IMAP_SERVICE", "tls", evidence=[_text(banner)])
    return finding("TLS_PROTOCOL_MISMATCH", "tls", evidence=[reason])


def new_report(options: CheckOptions) -> Report:
    return Report(Target(options.host, options.port, options.security, options.user))


async def run_check(options: CheckOptions, report: Report | None = None) -> Report:
    """Run the ladder and return the report (it never raises for a server problem).

    Pass an empty ``report`` to watch it fill: each step is appended when it starts and gets
    its status and time when it ends (the web UI's Check page shows them as they complete).
    """
    report = report or new_report(options)
    started = time.perf_counter()
    ladder = Ladder(options, report)
    try:
        await ladder.run()
    except Stop:
        pass
    finally:
        report.total_ms = (time.perf_counter() - started) * 1000
    return report
