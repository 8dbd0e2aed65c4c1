"""The one classifier: from what a server did to a finding of the catalogue.

Shared by the check ladder, the sync engine and (later) the monitors, so the same server is named
the same way wherever it is met. Each function takes the evidence as the connection layer gives
it (exceptions, results, banners) and returns a :class:`~imapscope.findings.Finding`; none of
them raises for a server problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from imapscope.findings import Finding, finding
from imapscope.imap import Bye, ProtocolError, ResponseCode, TaggedResponse, UntaggedStatus
from imapscope.net import (
    BudgetExceededError,
    CertificateError,
    NetError,
    NetTimeoutError,
    Result,
    WireLine,
    read_banner,
    speaks_tls,
)

# Provider wording, matched on the lowered text of the failed login (evidence keeps the original).
# Sources: each provider's own replies as users and its help pages quote them (Gmail, Microsoft
# 365/Outlook.com, Yahoo, iCloud, Fastmail, Zoho, GMX/web.de, Yandex, Exchange on-premises).
AUTH_PATTERNS: list[tuple[str, str]] = [
    (r"application-specific password required", "APP_PASSWORD_REQUIRED"),  # Gmail
    (r"app(lication)? password", "APP_PASSWORD_REQUIRED"),  # Zoho, iCloud, Yandex wording
    (r"log ?in via your web browser|web login required|via a web browser|"
     r"web browser to verify|verify your identity|please log in to webmail",
     "WEB_LOGIN_REQUIRED"),  # Gmail (WEBALERT), Microsoft "Login to your account via a web browser"
    (r"basic authentication is disabled|basicauthblocked", "BASIC_AUTH_DISABLED"),  # Microsoft
    (r"not enabled for imap|imap (access )?is disabled|imap.*not enabled|"
     r"imap access (is )?(not )?(allowed|permitted)|enable imap",
     "IMAP_DISABLED_FOR_ACCOUNT"),  # Zoho "You are yet to enable IMAP", GMX, Yandex
    (r"too many simultaneous connections|maximum number of connections|too many connections|"
     r"too many login", "TOO_MANY_CONNECTIONS"),
    (r"password (has )?expired|account (is )?locked|account (is )?disabled|"
     r"account (has been )?(suspended|blocked)|user is disabled", "CREDENTIAL_EXPIRED_OR_LOCKED"),
    (r"\"status\"\s*:\s*\"40[01]\"|invalid_token|invalid_request", "OAUTH_TOKEN_REJECTED"),
    (r"temporar(y|ily)|try again later|internal error|service unavailable|"
     r"server unavailable", "SERVER_TEMPORARY_ERROR"),
]  # fmt: skip

#: Response codes (RFC 5530) that name the cause of a refused login by themselves.
AUTH_CODES = {
    "EXPIRED": "CREDENTIAL_EXPIRED_OR_LOCKED",
    "CONTACTADMIN": "CREDENTIAL_EXPIRED_OR_LOCKED",
    "LIMIT": "TOO_MANY_CONNECTIONS",
    "UNAVAILABLE": "SERVER_TEMPORARY_ERROR",
    "PRIVACYREQUIRED": "PLAINTEXT_LOGIN_REFUSED",
    "WEBALERT": "WEB_LOGIN_REQUIRED",
}


def text(line: bytes) -> str:
    return line.decode("utf-8", "replace").strip()


def code_text(code: ResponseCode | None) -> str:
    return "" if code is None else f"[{code.name}] "


def said(tagged: TaggedResponse) -> str:
    """A tagged response as a person reads it: ``NO [CODE] text``."""
    return f"{tagged.status} {code_text(tagged.code)}{tagged.text}".strip()


def classify_login(result: Result, *, oauth2: bool, greeting: str = "") -> Finding:
    """Name a refused login from the server's words (provider wording first, then the response
    code)."""
    texts = [said(result.tagged)] + [
        f"* {e.status} {code_text(e.code)}{e.text}"
        for e in result.untagged
        if isinstance(e, UntaggedStatus)
    ] + [f"* BYE {e.text}" for e in result.untagged if isinstance(e, Bye)]  # fmt: skip
    lowered = " ".join(texts).lower()
    for words, fix in AMBIGUOUS_REFUSALS:  # the reply itself says it could be either
        if any(w in lowered for w in words):
            return finding("AUTH_FAILED", "authenticate", evidence=texts, fix=fix)
    codes = [result.tagged.code.name if result.tagged.code else ""] + [
        e.code.name for e in result.untagged if isinstance(e, UntaggedStatus) and e.code
    ]
    for pattern, found in AUTH_PATTERNS:
        if re.search(pattern, lowered):
            return finding(found, "authenticate", evidence=texts)
    for code in codes:
        if code in AUTH_CODES:
            return finding(AUTH_CODES[code], "authenticate", evidence=texts)
    if any(isinstance(e, Bye) for e in result.untagged):
        # No refusal was given: the server hung up instead of answering the login.
        return finding(
            "SERVER_TEMPORARY_ERROR", "authenticate", evidence=texts,
            summary="The server ended the session (BYE) instead of answering the login.",
        )  # fmt: skip
    if oauth2:
        return finding("OAUTH_TOKEN_REJECTED", "authenticate", evidence=texts)
    said_and_greeting = f"{lowered} {greeting.lower()}"
    for words, fix in AMBIGUOUS_REFUSALS:
        if any(w in said_and_greeting for w in words):
            return finding("AUTH_FAILED", "authenticate", evidence=texts, fix=fix)
    return finding("AUTH_FAILED", "authenticate", evidence=texts)


#: Refusals that do not say which of several causes it is; the fix names each (matched on the
#: reply and the greeting, which names the provider).
AMBIGUOUS_REFUSALS: list[tuple[tuple[str, ...], str]] = [
    (("microsoft exchange", "outlook"),
     "Microsoft 365 answers 'LOGIN failed' both for a wrong password and when password (basic) "
     "authentication is off: check the password, then use OAuth2."),
    (("invalid credentials or imap is disabled",),  # Yandex
     "Yandex says this both for a wrong password and when IMAP access is off: enable 'Access by "
     "IMAP' in Yandex Mail settings, and use an app password if the account has 2-step "
     "verification."),
    (("iscream", "imap.mail.me.com", "icloud"),  # iCloud greets as "iSCREAM ready to rumble"
     "iCloud accepts only an app-specific password for IMAP (appleid.apple.com -> Sign-In and "
     "Security -> App-Specific Passwords), with the full @icloud.com address as user name."),
]  # fmt: skip


def classify_accepted_login(result: Result) -> Finding | None:
    """A login the server accepted but cannot serve (the mail store failed), or None."""
    answer = said(result.tagged)
    lowered = answer.lower()
    if "initialization failed" in lowered or "not connected" in lowered:
        return finding("MAILSTORE_UNAVAILABLE", "authenticate", evidence=[answer])
    byes = [e for e in result.untagged if isinstance(e, Bye)]
    if byes:
        return finding("MAILSTORE_UNAVAILABLE", "authenticate", evidence=[f"* BYE {byes[0].text}"])
    return None


def classify_bye(result: Result, step: str, *, logged_in: bool) -> Finding | None:
    """A BYE that came with a command's answer: the mail store failed (after login), or the
    server ended the session (before it); None when there was no BYE."""
    byes = [e for e in result.untagged if isinstance(e, Bye)]
    if not byes:
        return None
    evidence = [f"* BYE {byes[0].text}", said(result.tagged)]
    if logged_in:
        return finding("MAILSTORE_UNAVAILABLE", step, evidence=evidence)
    return finding(
        "SERVER_TEMPORARY_ERROR", step, evidence=evidence,
        summary=f"The server ended the session (BYE) at the {step} step, before any login.",
    )  # fmt: skip


def classify_mailbox(result: Result, step: str) -> Finding:
    """A refused SELECT/EXAMINE/LIST/CREATE/APPEND."""
    answer = said(result.tagged)
    code = result.tagged.code.name if result.tagged.code else ""
    lowered = answer.lower()
    missing = ("doesn't exist", "does not exist", "no such", "unknown mailbox")
    if code == "NONEXISTENT" or any(words in lowered for words in missing):
        return finding("MAILBOX_NOT_FOUND", step, evidence=[answer])
    if code in ("NOPERM", "NOT-ALLOWED") or "permission" in lowered or "denied" in lowered:
        return finding("MAILBOX_ACCESS_DENIED", step, evidence=[answer])
    if code == "OVERQUOTA" or "quota" in lowered:
        return finding("OVER_QUOTA", step, evidence=[answer])
    if code in ("UNAVAILABLE", "SERVERBUG", "CORRUPTION"):
        return finding("MAILSTORE_UNAVAILABLE", step, evidence=[answer])
    return finding("MAILSTORE_UNAVAILABLE", step, evidence=[answer],
                   summary=f"The server could not complete {step.upper()}.")  # fmt: skip


def classify_net_error(
    exc: NetError | ProtocolError, step: str, transcript: Iterable[WireLine] | None = None
) -> Finding:
    """Anything a step did not expect: a deadline passed, a byte budget was crossed, the
    connection dropped, or the server broke the protocol."""
    last = [w.text for w in (transcript or []) if w.direction == "S"][-2:]
    if isinstance(exc, NetTimeoutError):
        return finding(
            "STEP_DEADLINE_EXCEEDED", step, evidence=[str(exc), *last],
            summary=f"The server did not complete the {step} step in time.",
        )  # fmt: skip
    if isinstance(exc, BudgetExceededError):
        return finding("RESPONSE_TOO_LARGE", step, evidence=[str(exc)],
                       summary=f"The server sent more than the client accepts for the {step} "
                       "step.")  # fmt: skip
    return finding(
        "SERVER_TEMPORARY_ERROR", step, evidence=[str(exc), *last],
        summary=f"The connection failed during the {step} step.",
    )  # fmt: skip


def classify_certificate(exc: CertificateError) -> str:
    """The code for a certificate that failed verification (OpenSSL's verify code first)."""
    message = exc.verify_message.lower()
    if exc.code == 10 or "expired" in message or "not yet valid" in message:
        return "CERT_EXPIRED"
    if exc.code == 62 or "hostname" in message or "ip address mismatch" in message:
        return "CERT_HOSTNAME_MISMATCH"
    return "CERT_UNTRUSTED"


async def classify_tls_failure(
    exc: NetError, address: str, port: int, *, source: tuple[str, int] | None = None,
    proxy: str | None = None,
) -> Finding:  # fmt: skip
    """Name a failed TLS handshake: a plaintext IMAP port, not IMAP at all, a silent server, a
    certificate that cannot be parsed, or no common protocol."""
    reason = str(exc)
    lowered = reason.lower()
    if isinstance(exc, NetTimeoutError):
        banner = await read_banner(address, port, 2.0, source, proxy)
        if banner is None:
            return finding("SERVER_SILENT", "tls", evidence=[reason])
    if any(word in lowered for word in ("asn1", "bad certificate", "certificate parse",
                                         "pem lib", "x509 lib", "bad ecpoint")):  # fmt: skip
        return finding("CERT_MALFORMED", "tls", evidence=[reason])
    if any(word in lowered for word in ("unsupported protocol", "no protocols available",
                                         "protocol version", "no shared cipher",
                                         "handshake failure")):  # fmt: skip
        return finding("TLS_PROTOCOL_MISMATCH", "tls", evidence=[reason])
    banner = await read_banner(address, port, 2.0, source, proxy)
    if banner is not None and banner.startswith(b"* "):
        return finding(
            "TLS_ON_PLAINTEXT_PORT", "tls",
            evidence=[reason, f"port {port} greets in plaintext: {text(banner)}"],
        )  # fmt: skip
    if banner:
        return finding("NOT_IMAP_SERVICE", "tls", evidence=[text(banner)])
    return finding("TLS_PROTOCOL_MISMATCH", "tls", evidence=[reason])


async def what_works(
    host: str, address: str, port: int, *, source: tuple[str, int] | None = None,
    proxy: str | None = None,
) -> tuple[str, list[str]]:  # fmt: skip
    """Probe the other port/mode combinations without credentials: the fix to give, and the
    combinations that answered."""
    found: list[str] = []
    for security, candidate in (("tls", port), ("starttls", port), ("tls", 993),
                                ("starttls", 143)):  # fmt: skip
        label = f"{'SSL/TLS' if security == 'tls' else 'STARTTLS'} on port {candidate}"
        if label in found:
            continue
        if security == "tls":
            works = await speaks_tls(host, address, candidate, 2.0, proxy)
        else:
            banner = await read_banner(address, candidate, 2.0, source, proxy)
            works = banner is not None and banner.startswith(b"* OK")
        if works:
            found.append(label)
    if not found:
        return "No other port or mode answered either; check the server name.", found
    fix = f"Use {found[0]} (checked: it answers)." + (
        f" Also working: {', '.join(found[1:])}." if len(found) > 1 else ""
    )
    return fix, found
