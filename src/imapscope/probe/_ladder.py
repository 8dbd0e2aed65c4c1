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
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from imapscope import __version__
from imapscope.findings import Finding, finding
from imapscope.imap import (
    Append,
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
    Logout,
    MyRights,
    MyRightsResponse,
    Namespace,
    NamespaceResponse,
    Noop,
    ProtocolError,
    Recent,
    Response,
    Select,
    Store,
    TaggedResponse,
    Unselect,
    UntaggedStatus,
)
from imapscope.net import (
    ConnectionClosedError,
    ImapConnection,
    NetError,
    NetTimeoutError,
    ResolveError,
    Result,
    TlsInfo,
    TraceEvent,
    close_stream,
    open_stream,
    resolve,
)
from imapscope.probe._discover import discover
from imapscope.probe._report import Report, Step, Target
from imapscope.session import (
    DEFAULT_PORTS,
    NO_STEPS,
    SessionFailure,
    Settings,
    addresses,
    classify_bye,
    classify_mailbox,
    classify_net_error,
    open_session,
    said,
    select,
)

EXPIRY_WARNING_DAYS = 14
RECENT_COUNT = 5
#: Steps slower than this (ms) raise SLOW_SERVER; generous, since networks vary.
SLOW_MS = {"greeting": 3000, "authenticate": 5000, "examine": 5000, "list": 5000}
SPECIAL_USE = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")
#: Folder names clients guess a role from when the server marks none (SPECIAL-USE).
ROLE_NAMES = {
    "\\Sent": ("sent", "sent items", "sent messages", "sent mail", "gesendet",
                 "gesendete objekte", "envoyés", "enviados", "inviata", "отправленные"),
    "\\Drafts": ("drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze",
                   "черновики"),
    "\\Trash": ("trash", "deleted items", "deleted messages", "bin", "papierkorb",
                  "gelöschte elemente", "corbeille", "papelera", "cestino", "удаленные"),
    "\\Junk": ("junk", "spam", "junk e-mail", "junk email", "bulk mail", "spamverdacht",
                 "indésirables", "correo no deseado", "спам"),
    "\\Archive": ("archive", "archives", "archiv", "all mail"),
}  # fmt: skip
#: Bytes one step of a check may bring (the check reads metadata only; a server sending more
#: is broken or hostile, and the check's memory stays bounded).
CHECK_STEP_BUDGET = 16 * 1024 * 1024


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
    ca_pem: str | None = None  # CA certificates (PEM) trusted besides the system's
    pin_sha256: str | None = None  # the server certificate's SHA-256: then nothing else counts
    mailbox: str = "INBOX"
    nameserver: str | None = None
    allow_plaintext: bool = False
    source_address: str | None = None
    write_tests: bool = False
    proxy: str | None = None
    # Asked for the password once the server is known (after discovery and DNS), when a user
    # is given without one: the CLI's prompt ("alice@example.com at imap.example.com").
    ask_password: Callable[[str], str | None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # "none" is what accounts, the UI and the API call plaintext: choosing it is the
        # permission (the CLI asks for --allow-plaintext before it gets here).
        if self.security == "none":
            self.security, self.allow_plaintext = "plain", True

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.oauth2_token) if s)

    def settings(self, security: str, port: int) -> Settings:
        """The session path's settings for one port and mode."""
        return Settings(
            host=self.host, port=port, security=security, user=self.user,
            password=self.password, oauth2_token=self.oauth2_token, ca_file=self.ca_file,
            ca_pem=self.ca_pem, pin_sha256=self.pin_sha256,
            insecure=self.insecure, timeout=self.timeout, proxy=self.proxy,
            source_address=self.source_address, nameserver=self.nameserver,
            byte_budget=CHECK_STEP_BUDGET,
        )  # fmt: skip


class Stop(Exception):  # noqa: N818 - control flow, not an error
    """The ladder cannot go on; the finding that says why is already recorded."""


class Ladder:
    def __init__(self, options: CheckOptions, report: Report) -> None:
        self.options = options
        self.report = report
        self.connection: ImapConnection | None = None
        self.capability_set: frozenset[str] = frozenset()
        self.mode = ""  # in auto mode, which mode a tcp step is for

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
        except SessionFailure as exc:
            if exc.soft:  # auto mode: this port/mode does not answer; the next is tried
                record.status = "skip"
                record.detail = f"{exc.finding.summary} Trying the next mode (auto)."
                raise _TryNext from exc
            self.report.working.extend(w for w in exc.working if w not in self.report.working)
            if exc.tls is not None or exc.finding.step == "certificate":
                raise self.certificate_failed(record, exc) from exc
            raise self.fail(record, exc.finding) from exc
        except (NetError, ProtocolError) as exc:
            # Anything a step did not expect (a deadline passed, the connection dropped, the
            # server broke the protocol) still ends as a finding, never as a crash.
            transcript = self.connection.transcript if self.connection else None
            raise self.fail(record, classify_net_error(exc, name, transcript)) from exc
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

    # -- the ladder ---------------------------------------------------------------------------

    async def run(self) -> None:
        if "@" in self.options.host:
            await self.discovery()
        addresses = await self.dns()
        await self.ask_password()
        modes = self.modes()
        for index, (security, port) in enumerate(modes):
            last = index == len(modes) - 1
            self.mode = f"for {security}: " if len(modes) > 1 else ""
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

    async def ask_password(self) -> None:
        """Ask for the password now that the server is known, when it is wanted and missing."""
        o = self.options
        if o.ask_password is None or not o.user or o.password or o.oauth2_token:
            return
        where = o.host + (f":{o.port}" if o.port else "")
        o.password = await asyncio.to_thread(o.ask_password, f"{o.user} at {where}") or None

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
                none = finding("DISCOVERY_NONE", "discovery", evidence=evidence)
                if found.resolver_problem:  # the domain is not what is wrong
                    none = dataclasses.replace(none, fix=found.resolver_problem)
                raise self.fail(record, none)
            chosen = None
            for candidate in found.candidates:
                try:
                    addresses = await resolve(candidate.host, nameserver=self.options.nameserver,
                                              timeout=self.options.timeout)  # fmt: skip
                    _, writer = await open_stream(
                        addresses.all[0], candidate.port, timeout=2.0, proxy=self.options.proxy
                    )
                    await close_stream(writer)
                except (ResolveError, OSError, TimeoutError) as exc:
                    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                    evidence.append(f"{candidate.source}: {candidate.host}:{candidate.port} "
                                    f"does not answer ({reason})")  # fmt: skip
                    continue
                chosen = candidate
                break
            if chosen is None:
                if all(c.source.endswith("guess") for c in found.candidates):
                    # Nothing was published, and no guessed host answers: the truth is that no
                    # server was found, not that one refused.
                    raise self.fail(
                        record, finding("DISCOVERY_NONE", "discovery", evidence=evidence)
                    )
                chosen = found.candidates[0]  # published: its failure is named by the ladder
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
            found = await addresses(self.options.settings(self.options.security, 0))
            record.detail = ", ".join(found)
            return found

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
            record.detail = self.mode + "; ".join(f"{a}:{port} {r}" for a, r in results.items())
            working = [a for a, r in results.items() if r.startswith("ok")]
            broken_v6 = [a for a in results if ":" in a and a not in working]
            if working and broken_v6 and any(":" not in a for a in working):
                record.status = "warn"
                self.add(finding("IPV6_PATH_BROKEN", "tcp", evidence=[record.detail]))
            if working:
                return working[0]
            if quiet:  # auto mode: the next port is tried
                record.status = "skip"
                record.detail += "; trying the next mode (auto)"
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
        """The session path (shared with the sync engine), watched step by step, then the
        ladder's own steps."""
        self.connection = None
        try:
            opened = await open_session(
                self.options.settings(security, port), self, address=address,
                tracer=self.trace, exploring=exploring,
            )  # fmt: skip
            if opened.logged_in:
                await self.mailbox_steps(opened.connection, security, address, port)
            await self.logout(opened.connection)
        finally:
            # The connection is recorded as soon as it exists, so a failure at any step (a BYE
            # greeting included) still closes it and keeps its transcript.
            if self.connection is not None:
                self.report.transcript = [
                    f"{line.direction}: {line.text}" for line in self.connection.transcript
                ]
                await self.connection.close()

    # -- what the session path tells us (the Steps protocol) ------------------------------------

    def connected(self, connection: ImapConnection) -> None:
        self.connection = connection

    def greeted(self, greeting: Greeting) -> None:
        self.report.server["greeting"] = greeting.text
        if greeting.code is not None and greeting.code.name == "ALERT":
            self.report.server.setdefault("alerts", []).append(greeting.text)

    def capabilities(self, capabilities: frozenset[str]) -> None:
        self.capability_set = capabilities
        self.report.server["capabilities"] = sorted(capabilities)

    def tls(self, info: TlsInfo) -> None:
        self.certificate(info)

    # -- certificate --------------------------------------------------------------------------

    def certificate(self, tls: TlsInfo) -> None:
        cert = tls.certificate
        self.report.tls = {
            "version": tls.version,
            "cipher": tls.cipher,
            "verified": not self.options.insecure,
            "certificate": None,
        }
        if self.options.pin_sha256:
            # Compared with the pin (a mismatch has already stopped the ladder): the chain,
            # name and dates are not what decides.
            self.report.tls["pinned"] = self.options.pin_sha256
        if cert is None:
            return
        days = cert.days_left()
        self.report.tls["certificate"] = _certificate_json(tls)["certificate"]
        record = Step("certificate", "pass", 0.0, f"{cert.issuer}; {days} days left")
        self.report.steps.append(record)
        if self.options.insecure and not self.options.pin_sha256:
            # Not verified on request; still say what verification would have found.
            problems = []
            if days < 0:
                problems.append(("CERT_EXPIRED", f"expired on {cert.not_after.isoformat()}"))
            if cert.self_signed:
                problems.append(("CERT_UNTRUSTED", f"self-signed: issuer {cert.issuer}"))
            if not _names_match(self.options.host, cert.names):
                problems.append(
                    (
                        "CERT_HOSTNAME_MISMATCH",
                        f"{self.options.host} not in {', '.join(cert.names) or '-'}",
                    )
                )
            for code, evidence in problems:
                record.status = "warn"
                self.add(finding(
                    code, "certificate", severity="warning", evidence=[evidence],
                    summary=f"{finding(code, 'certificate').summary} (not verified: --insecure "
                    "was given)",
                ))  # fmt: skip
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

    def certificate_failed(self, record: Step, exc: SessionFailure) -> Stop:
        """Fail the handshake's step and add a failed certificate step with the finding (and
        the certificate's details, read again without verifying)."""
        record.status = "fail"
        record.detail = exc.finding.evidence[0] if exc.finding.evidence else exc.finding.summary
        if exc.tls is not None and exc.tls.certificate is not None:
            self.report.tls = {**_certificate_json(exc.tls), "verified": False}
        for extra in exc.also:
            self.add(extra)
        self.report.steps.append(Step("certificate", "fail", 0.0, record.detail))
        self.add(exc.finding)
        return Stop(exc.finding.code)

    # -- after the login ------------------------------------------------------------------------

    async def mailbox_steps(
        self, connection: ImapConnection, security: str, address: str, port: int
    ) -> None:
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

    def check_bye(self, result: Result, record: Step) -> None:
        found = classify_bye(result, record.name, logged_in=True)
        if found is not None:
            raise self.fail(record, found)

    async def identify(self, connection: ImapConnection) -> None:
        if "ID" not in self.capability_set:
            self.skip("id", "unsupported")
            return
        async with self.step("id") as record:
            result = await connection.run(Id({"name": "imapscope", "version": __version__}))
            for event in result.untagged:
                if isinstance(event, IdResponse) and event.params:
                    self.report.server["id"] = event.params
                    record.detail = ", ".join(f"{k}={v}" for k, v in event.params.items())

    async def namespace(self, connection: ImapConnection) -> None:
        if "NAMESPACE" not in self.capability_set:
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
                raise self.fail(record, classify_mailbox(result, "list"))
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
                # No SPECIAL-USE at all: clients guess by name. Several candidates for one role
                # means clients will disagree (one files Sent mail where another never looks).
                guesses = {
                    role: [f.name for f in folders if _leaf(f) in ROLE_NAMES[role]]
                    for role in SPECIAL_USE
                }
                ambiguous = {r: n for r, n in guesses.items() if len(n) > 1}
                if ambiguous:
                    record.status = "warn"
                    self.add(finding(
                        "FOLDER_MAPPING_AMBIGUOUS", "list",
                        summary="The server marks no special folders (SPECIAL-USE), and "
                        "several folders could be the same role: clients will pick different "
                        "ones.",
                        evidence=[f"{role[1:]} could be any of: {', '.join(names)}"
                                  for role, names in ambiguous.items()],
                    ))  # fmt: skip
                else:
                    self.add(finding(
                        "FOLDER_MAPPING_AMBIGUOUS", "list", severity="info",
                        summary="The server marks no special folders (SPECIAL-USE); clients "
                        "guess Sent, Drafts and Trash by name.",
                    ))  # fmt: skip

    async def examine(self, connection: ImapConnection) -> int:
        async with self.step("examine") as record:
            mailbox = self.options.mailbox
            result = await select(connection, mailbox, readonly=True, step="examine")
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
            if "ACL" in self.capability_set:
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
        if "IDLE" not in self.capability_set:
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
                                                        evidence=[said(response)]))  # fmt: skip
                    response = await connection.next_response("idle")
                connection.codec.done()
                done = await connection.wait(tag, "idle")
            except (ConnectionClosedError, NetError) as exc:
                raise self.fail(
                    record, finding("IDLE_DROPPED", "idle", evidence=[str(exc)])
                ) from exc
            if not done.ok:
                raise self.fail(
                    record, finding("IDLE_DROPPED", "idle", evidence=[said(done.tagged)])
                )
            record.detail = "entered IDLE, got the continuation, left with DONE"

    # -- opt-in write tests ---------------------------------------------------------------------

    async def second_session(self, security: str, address: str, port: int) -> ImapConnection:
        """Another logged-in connection, the way the first one was made (the session path's own
        steps are not recorded)."""
        opened = await open_session(
            self.options.settings(security, port), NO_STEPS, address=address
        )
        return opened.connection

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
                raise self.fail(record, classify_mailbox(created, "write_setup"))
            appended = await connection.run(Append(scratch, _PROBE_MESSAGE))
            if not appended.ok:
                await connection.run(Delete(scratch))
                raise self.fail(record, classify_mailbox(appended, "write_setup"))
            try:
                # In the step: a server that breaks the protocol here is a finding of
                # write_setup (it escaped the ladder as an exception), and the folder goes.
                await connection.run(Select(scratch))
            except (NetError, ProtocolError):
                with suppress(NetError, ProtocolError):
                    await connection.run(Delete(scratch))
                raise
            record.detail = f"created {scratch!r}, appended a message and selected it"
        watcher: ImapConnection | None = None
        try:
            async with self.step("second_login") as record:
                watcher = await self.second_session(security, address, port)
                await watcher.run(Select(scratch))
                record.detail = "a second connection logged in and selected the scratch folder"
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
                await connection.run(Unselect() if "UNSELECT" in self.capability_set else Close())
                deleted = await connection.run(Delete(scratch))
                record.detail = f"deleted {scratch!r}: {said(deleted.tagged)}"
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
            push = "IDLE" in self.capability_set
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
            record.detail = said(result.tagged)


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


def _leaf(folder: ListResponse) -> str:
    """A folder's own name, lowered (``INBOX.Sent Items`` -> ``sent items``)."""
    name = folder.name
    if folder.delimiter:
        name = name.rsplit(folder.delimiter, 1)[-1]
    return name.lower()


def _names_match(host: str, names: tuple[str, ...]) -> bool:
    """Whether a certificate's names cover ``host`` (one-label wildcards, RFC 6125)."""
    host = host.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _certificate_json(tls: TlsInfo) -> dict[str, Any]:
    cert = tls.certificate
    return {
        "version": tls.version, "cipher": tls.cipher,
        "certificate": None if cert is None else {
            "subject": cert.subject, "issuer": cert.issuer, "names": list(cert.names),
            "not_after": cert.not_after.isoformat(), "days_left": cert.days_left(),
            "self_signed": cert.self_signed, "sha256": cert.sha256,
        },
    }  # fmt: skip


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
