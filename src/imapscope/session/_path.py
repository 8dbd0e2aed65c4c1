"""One IMAP session path: connect -> TLS or STARTTLS -> greeting -> capabilities -> login, and
select; used by the check ladder, the sync engine and the monitors alike.

Theory of operation
-------------------
Each function here does one step of the way in, with a total deadline and a byte budget (see
:mod:`imapscope.net`), and either succeeds or raises :class:`SessionFailure` carrying the finding
that names what broke (:mod:`._classify`). Callers watch the steps through a :class:`Steps`
observer: the ladder records each step (name, time, detail) in its report and adds its own steps
around these; the sync engine passes :data:`NO_STEPS`. So there is one set of rules for naming a
server's failure, and a fix to the naming is made once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from imapscope.findings import Finding, finding
from imapscope.imap import (
    CapabilityCommand,
    Command,
    Greeting,
    Login,
    Mechanism,
    ProtocolError,
    RemoteProtocolError,
    Select,
)
from imapscope.net import (
    DEFAULT_STEP_BUDGET,
    CertificateError,
    ConnectionClosedError,
    ImapConnection,
    NetError,
    NetTimeoutError,
    ResolveError,
    Result,
    TlsInfo,
    Tracer,
    client_context,
    fetch_certificate,
    ignore,
    resolve,
    speaks_tls,
)
from imapscope.session._classify import (
    classify_accepted_login,
    classify_bye,
    classify_certificate,
    classify_login,
    classify_mailbox,
    classify_net_error,
    classify_tls_failure,
    said,
    what_works,
)
from imapscope.trust import colon_hex

DEFAULT_PORTS = {"tls": 993, "starttls": 143, "plain": 143}
#: A TLS port says nothing to a plaintext client: how long a plaintext greeting is waited for
#: before asking whether the port speaks TLS instead.
PLAINTEXT_GREETING_WAIT = 3.0


@dataclass(slots=True)
class Settings:
    """Where and how to log in. ``security`` is "tls", "starttls" or "plain"."""

    host: str
    port: int
    security: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth2_token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    insecure: bool = False
    timeout: float = 10.0
    ca_pem: str | None = None
    pin_sha256: str | None = None
    proxy: str | None = None
    source_address: str | None = None
    nameserver: str | None = None
    byte_budget: int = DEFAULT_STEP_BUDGET

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.oauth2_token) if s)

    @property
    def source(self) -> tuple[str, int] | None:
        return (self.source_address, 0) if self.source_address else None

    @property
    def context(self) -> ssl.SSLContext:
        return client_context(self.ca_file, self.insecure, self.ca_pem, bool(self.pin_sha256))


class SessionFailure(Exception):  # noqa: N818 - carries a finding, not a bug
    """A step failed; ``finding`` names why. ``also``: findings that come with it (a TLS
    interception product seen on a bad certificate); ``tls``: the certificate read without
    verifying, when verification failed; ``soft``: a failure that only means "this port/mode
    does not work" while alternatives are being explored."""

    def __init__(
        self, found: Finding, *, also: tuple[Finding, ...] = (), tls: TlsInfo | None = None,
        soft: bool = False, working: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        super().__init__(found.summary)
        self.finding = found
        self.also = also
        self.tls = tls
        self.soft = soft
        self.working = working  # port/mode combinations found to answer (for the fix)


class Record(Protocol):
    """What a step observer hands the path to fill in."""

    detail: str


class Steps(Protocol):
    """Watches the path's steps (the ladder records them; the sync engine ignores them)."""

    def step(self, name: str) -> contextlib.AbstractAsyncContextManager[Record]: ...
    def skip(self, name: str, why: str) -> None: ...
    def connected(self, connection: ImapConnection) -> None: ...
    def tls(self, info: TlsInfo) -> None: ...
    def greeted(self, greeting: Greeting) -> None: ...
    def capabilities(self, capabilities: frozenset[str]) -> None: ...


@dataclass(slots=True)
class _Scratch:
    detail: str = ""


class _NoSteps:
    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[Record]:
        yield _Scratch()

    def skip(self, name: str, why: str) -> None:
        pass

    def connected(self, connection: ImapConnection) -> None:
        pass

    def tls(self, info: TlsInfo) -> None:
        pass

    def greeted(self, greeting: Greeting) -> None:
        pass

    def capabilities(self, capabilities: frozenset[str]) -> None:
        pass


NO_STEPS: Steps = _NoSteps()


@contextlib.contextmanager
def guarded(step: str, connection: ImapConnection | None = None) -> Iterator[None]:
    """Turn what the connection layer raises during ``step`` into a :class:`SessionFailure`."""
    try:
        yield
    except (NetError, ProtocolError) as exc:
        transcript = connection.transcript if connection is not None else None
        raise SessionFailure(classify_net_error(exc, step, transcript)) from exc


@dataclass(slots=True)
class Session:
    """A connection through the path: greeted, upgraded, logged in (when a user was given)."""

    connection: ImapConnection
    greeting: Greeting
    capabilities: frozenset[str]
    logged_in: bool


# -- the steps ---------------------------------------------------------------------------------


async def addresses(settings: Settings) -> list[str]:
    """The host's addresses, IPv4 first; HOST_INVALID, DNS_NXDOMAIN or DNS_FAILURE."""
    try:
        found = await resolve(settings.host, nameserver=settings.nameserver,
                              timeout=settings.timeout)  # fmt: skip
    except ResolveError as exc:
        code = {"invalid": "HOST_INVALID", "nxdomain": "DNS_NXDOMAIN"}.get(exc.kind, "DNS_FAILURE")
        raise SessionFailure(finding(code, "dns", evidence=[str(exc)])) from exc
    return list(found.ipv4) + list(found.ipv6)


async def certificate_failure(
    settings: Settings, exc: CertificateError, address: str, *, starttls: bool
) -> SessionFailure:
    """Name a certificate that failed verification, with its details read again unverified."""
    info = await fetch_certificate(
        settings.host, address, settings.port, starttls=starttls, timeout=settings.timeout,
        proxy=settings.proxy,
    )  # fmt: skip
    evidence = [exc.verify_message]
    also: tuple[Finding, ...] = ()
    if info is not None and info.certificate is not None:
        cert = info.certificate
        evidence.append(f"issuer: {cert.issuer}; names: {', '.join(cert.names) or '-'}; "
                        f"expires {cert.not_after.isoformat()}")  # fmt: skip
        if cert.intercepted_by:
            also = (finding("TLS_INTERCEPTED", "certificate", evidence=evidence[1:]),)
    found = finding(classify_certificate(exc), "certificate", evidence=evidence)
    return SessionFailure(found, also=also, tls=info)


async def _with_fix(settings: Settings, address: str, found: Finding) -> SessionFailure:
    """A wrong port/mode: say which combination answers instead (probed without credentials)."""
    fix, working = await what_works(
        settings.host, address, settings.port, source=settings.source, proxy=settings.proxy
    )
    return SessionFailure(dataclasses.replace(found, fix=fix), working=tuple(working))


async def connect(
    settings: Settings, address: str, steps: Steps = NO_STEPS, *, tracer: Tracer = ignore,
    exploring: bool = False,
) -> ImapConnection:  # fmt: skip
    """TCP, and the TLS handshake for implicit TLS (its own step, "tls"; a plaintext connection
    is part of the "greeting" step, see :func:`open_session`). The connection is handed to
    ``steps.connected`` at once, so whoever watches can close it and keep its transcript."""
    if settings.security != "tls":
        return await _open(settings, address, steps, _Scratch(), tracer=tracer, exploring=exploring)
    async with steps.step("tls") as record:
        connection = await _open(
            settings, address, steps, record, tracer=tracer, exploring=exploring
        )
        assert connection.tls is not None
        record.detail = f"{connection.tls.version} {connection.tls.cipher}"
        try:
            check_pin(settings, connection.tls, record)
        except SessionFailure:
            await connection.close()  # not handed back: the caller cannot close it
            raise
    steps.tls(connection.tls)
    return connection


def check_pin(settings: Settings, tls: TlsInfo, record: Record) -> None:
    """With a pinned fingerprint, the server's certificate must be that one: CERT_PIN_MISMATCH."""
    if not settings.pin_sha256:
        return
    got = tls.certificate.sha256 if tls.certificate is not None else "none"
    if got != settings.pin_sha256:
        record.detail = "the certificate is not the pinned one"
        raise SessionFailure(finding(
            "CERT_PIN_MISMATCH", "certificate",
            evidence=[f"server's certificate SHA-256 {colon_hex(got)}",
                      f"pinned SHA-256 {colon_hex(settings.pin_sha256)}"],
        ), tls=tls)  # fmt: skip


async def _open(
    settings: Settings, address: str, steps: Steps, record: Record, *, tracer: Tracer,
    exploring: bool,
) -> ImapConnection:  # fmt: skip
    security = "tls" if settings.security == "tls" else "plain"
    step = "tls" if security == "tls" else "greeting"
    try:
        connection = await ImapConnection.open(
            settings.host, address, settings.port, security=security,  # type: ignore[arg-type]
            context=settings.context if security == "tls" else None,
            timeout=settings.timeout, source_address=settings.source, proxy=settings.proxy,
            tracer=tracer, byte_budget=settings.byte_budget, secrets=settings.secrets,
        )  # fmt: skip
    except CertificateError as exc:
        record.detail = exc.verify_message
        raise await certificate_failure(settings, exc, address, starttls=False) from exc
    except NetError as exc:
        if exploring:  # auto mode: say what happened, then the next mode is tried
            raise SessionFailure(finding(
                "TCP_REFUSED", step, summary=f"No {security.upper()} session on port "
                f"{settings.port}: {exc}.",
            ), soft=True) from exc  # fmt: skip
        if exc.phase == "tcp":
            code = "TCP_TIMEOUT" if isinstance(exc, NetTimeoutError) else "TCP_REFUSED"
            raise SessionFailure(finding(code, step, evidence=[str(exc)])) from exc
        found = await classify_tls_failure(
            exc, address, settings.port, source=settings.source, proxy=settings.proxy
        )
        if found.code == "TLS_ON_PLAINTEXT_PORT":
            raise await _with_fix(settings, address, found) from exc
        raise SessionFailure(found) from exc
    steps.connected(connection)
    return connection


async def greet(
    settings: Settings, connection: ImapConnection, steps: Steps, record: Record, *,
    exploring: bool = False,
) -> Greeting:  # fmt: skip
    """Read the greeting: SERVER_SILENT, PLAINTEXT_ON_TLS_PORT (a TLS port that waits for a
    handshake), NOT_IMAP_SERVICE (another protocol's banner), STEP_DEADLINE_EXCEEDED (a greeting
    trickled too slowly) or GREETING_BYE."""
    plain = connection.tls is None
    wait = min(settings.timeout, PLAINTEXT_GREETING_WAIT) if plain else settings.timeout
    try:
        greeting = await connection.greeting(timeout=wait)
    except NetTimeoutError as exc:
        if exploring:
            raise SessionFailure(finding("SERVER_SILENT", "greeting"), soft=True) from exc
        if exc.received:  # it talks, too slowly to finish a greeting in time
            raise SessionFailure(
                classify_net_error(exc, "greeting", connection.transcript)
            ) from exc
        if plain and await speaks_tls(
            settings.host, connection.address, settings.port, settings.timeout, settings.proxy
        ):
            evidence = [f"port {settings.port} completed a TLS handshake but sent no plaintext "
                        "greeting"]  # fmt: skip
            raise await _with_fix(settings, connection.address, finding(
                "PLAINTEXT_ON_TLS_PORT", "greeting", evidence=evidence
            )) from exc  # fmt: skip
        raise SessionFailure(
            finding("SERVER_SILENT", "greeting", evidence=[f"no greeting within {wait:g}s"])
        ) from exc
    except (RemoteProtocolError, ConnectionClosedError, NetError) as exc:
        if exploring:
            raise SessionFailure(finding("NOT_IMAP_SERVICE", "greeting"), soft=True) from exc
        if not connection.transcript:  # it hung up without a word: not another protocol
            raise SessionFailure(finding(
                "SERVER_TEMPORARY_ERROR", "greeting", evidence=[str(exc)],
                summary="The server closed the connection before greeting.",
                fix="The service refuses this client (a connection limit, an IP block, "
                "tcpwrappers) or is restarting: check the server's logs; retry later.",
            )) from exc  # fmt: skip
        banner = connection.transcript[0].text
        raise SessionFailure(finding("NOT_IMAP_SERVICE", "greeting", evidence=[banner])) from exc
    steps.greeted(greeting)
    record.detail = f"{greeting.status} {greeting.text}"
    if greeting.status == "BYE":
        raise SessionFailure(
            finding("GREETING_BYE", "greeting", evidence=[f"* BYE {greeting.text}"])
        )
    return greeting


async def capabilities(
    connection: ImapConnection, steps: Steps, name: str, *, logged_in: bool
) -> frozenset[str]:
    """The capabilities (from the last response that listed them, or CAPABILITY)."""
    async with steps.step(name) as record:
        if not connection.codec.capabilities:
            with guarded(name, connection):
                result = await connection.run(CapabilityCommand())
            bye = classify_bye(result, name, logged_in=logged_in)
            if bye is not None:
                raise SessionFailure(bye)
        found = connection.codec.capabilities
        record.detail = " ".join(sorted(found))
        steps.capabilities(found)
        return found


async def starttls(
    settings: Settings, connection: ImapConnection, caps: frozenset[str], steps: Steps
) -> None:
    """STARTTLS_NOT_OFFERED (with what works instead), a certificate finding, STARTTLS_FAILED."""
    async with steps.step("starttls") as record:
        if "STARTTLS" not in caps:
            raise await _with_fix(settings, connection.address, finding(
                "STARTTLS_NOT_OFFERED", "starttls", evidence=[" ".join(sorted(caps))]
            ))  # fmt: skip
        try:
            result = await connection.starttls(settings.context)
        except CertificateError as exc:
            record.detail = exc.verify_message
            raise await certificate_failure(settings, exc, connection.address,
                                            starttls=True) from exc  # fmt: skip
        except NetError as exc:
            found = (
                classify_net_error(exc, "starttls", connection.transcript)
                if isinstance(exc, NetTimeoutError) and exc.received
                else finding("STARTTLS_FAILED", "starttls", evidence=[str(exc)])
            )
            raise SessionFailure(found) from exc
        except ProtocolError as exc:
            found = classify_net_error(exc, "starttls", connection.transcript)
            raise SessionFailure(found) from exc
        if not result.ok:
            raise SessionFailure(
                finding("STARTTLS_FAILED", "starttls", evidence=[said(result.tagged)])
            )
        assert connection.tls is not None
        record.detail = f"{connection.tls.version} {connection.tls.cipher}"
        check_pin(settings, connection.tls, record)
    steps.tls(connection.tls)


def credential(settings: Settings, caps: frozenset[str], tls: bool) -> Mechanism | Login:
    """How to log in, by capability: OAUTHBEARER/XOAUTH2 for a token, AUTHENTICATE PLAIN when
    offered, else LOGIN; PLAINTEXT_LOGIN_REFUSED or AUTH_MECH_UNSUPPORTED when nothing fits."""
    user = settings.user or ""
    if "LOGINDISABLED" in caps and not tls and not settings.oauth2_token:
        raise SessionFailure(finding("PLAINTEXT_LOGIN_REFUSED", "authenticate",
                                     evidence=["capability LOGINDISABLED"]))  # fmt: skip
    offered = sorted(c for c in caps if c.startswith("AUTH="))
    unsupported = SessionFailure(finding(
        "AUTH_MECH_UNSUPPORTED", "authenticate",
        evidence=[f"server offers: {' '.join(offered) or 'no AUTH= mechanism'}"],
    ))  # fmt: skip
    if settings.oauth2_token:
        for name in ("OAUTHBEARER", "XOAUTH2"):
            if f"AUTH={name}" in caps:
                return Mechanism(name, user, settings.oauth2_token, host=settings.host)
        raise unsupported
    if "AUTH=PLAIN" in caps:
        return Mechanism("PLAIN", user, settings.password or "")
    if "LOGINDISABLED" in caps:
        raise unsupported
    return Login(user, settings.password or "")


async def login(
    settings: Settings, connection: ImapConnection, caps: frozenset[str], steps: Steps,
    greeting: str = "",
) -> Result:  # fmt: skip
    """Log in as :func:`credential` chooses; a refusal is named by :func:`classify_login`."""
    async with steps.step("authenticate") as record:
        how = credential(settings, caps, connection.tls is not None)
        record.detail = f"AUTHENTICATE {how.name}" if isinstance(how, Mechanism) else "LOGIN"
        try:
            if isinstance(how, Mechanism):
                result = await connection.authenticate(how)
            else:
                result = await connection.run(how)
        except NetTimeoutError as exc:
            found = classify_net_error(exc, "authenticate", connection.transcript)
            raise SessionFailure(dataclasses.replace(
                found, summary=f"The server did not answer the login within "
                f"{settings.timeout:g} s.",
                fix="Servers delay failed logins on purpose (Courier waits 5 s): rerun with a "
                "longer --timeout; if there is still no answer, the server's authentication "
                "backend is hung.",
            )) from exc  # fmt: skip
        except (NetError, ProtocolError) as exc:
            found = classify_net_error(exc, "authenticate", connection.transcript)
            if found.code == "SERVER_TEMPORARY_ERROR":  # not a budget crossed: a dropped line
                found = dataclasses.replace(
                    found, summary="The server closed the connection in the middle of the login."
                )
            raise SessionFailure(found) from exc
        if not result.ok:
            raise SessionFailure(
                classify_login(result, oauth2=bool(settings.oauth2_token), greeting=greeting)
            )
        accepted = classify_accepted_login(result)
        if accepted is not None:
            raise SessionFailure(accepted)
        record.detail += f": {result.tagged.text}"
        return result


async def select(
    connection: ImapConnection, mailbox: str, *, readonly: bool = True, condstore: bool = False,
    step: str = "examine", deadline: float | None = None,
) -> Result:  # fmt: skip
    """SELECT/EXAMINE; a refusal or a BYE named by :func:`classify_mailbox`."""
    command = Select(mailbox, readonly=readonly, condstore=condstore)
    return await mailbox_command(connection, command, step, deadline=deadline)


async def mailbox_command(
    connection: ImapConnection, command: Command, step: str, *, deadline: float | None = None
) -> Result:
    """A command on mailboxes (SELECT, LIST...) that must succeed: a refusal or a BYE named by
    :func:`classify_mailbox` (never an empty answer taken for "no mailbox")."""
    with guarded(step, connection):
        result = await connection.run(command, step, deadline=deadline)
    bye = classify_bye(result, step, logged_in=True)
    if bye is not None:
        raise SessionFailure(bye)
    if not result.ok:
        raise SessionFailure(classify_mailbox(result, step))
    return result


async def open_session(
    settings: Settings, steps: Steps = NO_STEPS, *, address: str | None = None,
    tracer: Tracer = ignore, exploring: bool = False,
) -> Session:  # fmt: skip
    """The whole way in: (DNS,) connect, greeting, capabilities, STARTTLS, login. Without
    ``address`` the host is resolved and its addresses tried in order (the first that takes
    the connection is used). The connection is closed again when a step fails."""
    if address is None:
        candidates = await addresses(settings)
        for index, candidate in enumerate(candidates):
            try:
                return await open_session(settings, steps, address=candidate, tracer=tracer)
            except SessionFailure as exc:
                tcp = exc.finding.code in ("TCP_REFUSED", "TCP_TIMEOUT")
                if not tcp or index == len(candidates) - 1:
                    raise
        raise SessionFailure(finding("DNS_FAILURE", "dns", evidence=["no address"]))
    if settings.security == "tls":
        connection = await connect(settings, address, steps, tracer=tracer, exploring=exploring)
    else:
        connection = None
    try:
        async with steps.step("greeting") as record:
            if connection is None:
                connection = await connect(
                    settings, address, steps, tracer=tracer, exploring=exploring
                )
            greeting = await greet(settings, connection, steps, record, exploring=exploring)
        caps = await capabilities(connection, steps, "capability", logged_in=False)
        if settings.security == "starttls":
            await starttls(settings, connection, caps, steps)
            caps = await capabilities(connection, steps, "capability_tls", logged_in=False)
        else:
            why = "not used (implicit TLS)" if settings.security == "tls" else "plaintext"
            steps.skip("starttls", why)
        if settings.user is None:
            steps.skip("authenticate", "no user given")
            return Session(connection, greeting, caps, logged_in=False)
        await login(settings, connection, caps, steps, greeting.text)
        caps = await capabilities(connection, steps, "capability_auth", logged_in=True)
    except BaseException:
        if connection is not None:
            await connection.close()
        raise
    return Session(connection, greeting, caps, logged_in=True)
