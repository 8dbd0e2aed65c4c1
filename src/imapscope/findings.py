"""The findings catalogue, one for ``check``, the sync engine, monitors and the UI: stable codes
(a public contract), each with the layer it belongs to, its severity, a one-line summary and the
fix a person should apply.

The order of ``LAYERS`` is the order of the troubleshooting ladder: when several findings fire,
the most severe one from the lowest layer is the headline, because a higher layer's failure is
usually a consequence of a lower one (a wrong TLS mode looks like a wrong password).

docs/findings.md is generated from this table (``python -m imapscope.probe.catalogue``) and a
test keeps the two identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning", "info"]

LAYERS = (
    "discovery", "dns", "tcp", "service", "tls", "greeting", "starttls", "certificate",
    "authenticate", "mailstore", "folders", "push", "write", "submission", "delivery",
    "performance", "internal",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Spec:
    code: str
    layer: str
    severity: Severity
    summary: str
    fix: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding of one check. ``summary`` and ``fix`` may be made specific to the case."""

    code: str
    severity: Severity
    step: str
    summary: str
    fix: str
    evidence: tuple[str, ...] = field(default=())

    @property
    def rank(self) -> tuple[int, int]:
        severity = {"error": 0, "warning": 1, "info": 2}[self.severity]
        return severity, LAYERS.index(CATALOGUE[self.code].layer)


def _specs(*rows: tuple[str, str, Severity, str, str]) -> dict[str, Spec]:
    return {row[0]: Spec(*row) for row in rows}


CATALOGUE: dict[str, Spec] = _specs(
    ("DISCOVERY_NONE", "discovery", "error",
     "No IMAP server could be found for this address.",
     "Enter the IMAP server name by hand (your provider's help pages list it), or publish "
     "_imaps._tcp SRV records or an autoconfig file for the domain."),
    ("HOST_INVALID", "dns", "error",
     "The server name is not a valid host name.",
     "Check the server name for typos: empty labels (two dots), labels over 63 characters, "
     "spaces or characters IDNA does not allow."),
    ("DNS_NXDOMAIN", "dns", "error",
     "The server name does not exist in DNS.",
     "Check the spelling of the server name; if it is right, the domain's DNS is missing the "
     "record (ask whoever runs the domain)."),
    ("DNS_FAILURE", "dns", "error",
     "The server name could not be resolved (DNS failed or returned no address).",
     "Check the network's DNS resolver (try another network or resolver); if only this name "
     "fails, its A/AAAA records are missing."),
    ("IPV6_PATH_BROKEN", "tcp", "warning",
     "The server's IPv6 address does not answer, but IPv4 works.",
     "Clients that prefer IPv6 will stall or fail: fix IPv6 routing or firewalling, or remove the "
     "AAAA record until IPv6 works."),
    ("TCP_REFUSED", "tcp", "error",
     "The server refused the connection: nothing listens on this port.",
     "Check the port (993 for SSL/TLS, 143 for STARTTLS) and that the IMAP service is running; a "
     "firewall may also reject the port."),
    ("TCP_TIMEOUT", "tcp", "error",
     "No answer to the connection attempt: a firewall drops it, or the host is down.",
     "Check that the host is up and that firewalls (yours, the network's, the server's) allow "
     "this port."),
    ("TLS_ON_PLAINTEXT_PORT", "service", "error",
     "TLS was spoken to a port that expects plaintext IMAP (with STARTTLS).",
     "Choose STARTTLS for this port, or use SSL/TLS on port 993."),
    ("PLAINTEXT_ON_TLS_PORT", "service", "error",
     "Plaintext was spoken to a port that expects TLS from the first byte.",
     "Choose SSL/TLS (implicit TLS) for this port, or STARTTLS on port 143."),
    ("NOT_IMAP_SERVICE", "service", "error",
     "Something other than IMAP answers on this port.",
     "This is the wrong port or host for IMAP: use 993 (SSL/TLS) or 143 (STARTTLS) on the IMAP "
     "server."),
    ("SERVER_SILENT", "service", "error",
     "The server accepts connections but never greets, in any mode.",
     "The IMAP service is hung or overloaded, or a proxy swallows the traffic: check the server's "
     "logs and load."),
    ("STEP_DEADLINE_EXCEEDED", "service", "error",
     "The server did not complete a step within its deadline (it answers too slowly, or keeps "
     "talking without finishing).",
     "The server or the path to it is overloaded or broken (or deliberately slow): check its load "
     "and logs; rerun with a longer --timeout only if the server is known to be slow."),
    ("RESPONSE_TOO_LARGE", "service", "error",
     "The server sent more data for one step than the client accepts.",
     "The server announced or sent an implausibly large response (a broken or hostile server, or "
     "a huge mailbox item): check the server; the limit is named in the evidence."),
    ("TLS_PROTOCOL_MISMATCH", "tls", "error",
     "Client and server share no TLS version or cipher.",
     "The server only offers outdated TLS (before 1.2) or the client is too old: upgrade the "
     "server's TLS configuration."),
    ("GREETING_BYE", "greeting", "error",
     "The server greeted with BYE: it refuses connections right now.",
     "Read the server's text below; usually the service is shutting down, overloaded or blocks "
     "your address."),
    ("STARTTLS_NOT_OFFERED", "starttls", "error",
     "The server does not offer STARTTLS on this port.",
     "Use SSL/TLS on port 993, or enable STARTTLS on the server; never send the password in "
     "plaintext."),
    ("STARTTLS_FAILED", "starttls", "error",
     "The server offered STARTTLS, but the upgrade to TLS failed.",
     "Check the server's TLS configuration (certificate files, protocols); meanwhile use SSL/TLS "
     "on port 993 if it works."),
    ("CERT_UNTRUSTED", "certificate", "error",
     "The server's certificate is not issued by a trusted authority (self-signed or unknown CA).",
     "Install a certificate from a public CA (e.g. Let's Encrypt) on the server, or trust the "
     "server's CA (check --ca-file; an account's CA certificate in serve), or pin this "
     "certificate's SHA-256 fingerprint (the report's tls.certificate.sha256) with --pin."),
    ("CERT_PIN_MISMATCH", "certificate", "error",
     "The server's certificate is not the one pinned for it.",
     "The server's certificate was replaced (a renewal) or something between here and the "
     "server presents its own: compare the fingerprints in the evidence with the server's "
     "administrator, then pin the new one (or trust its CA instead of a pin)."),
    ("CERT_MALFORMED", "certificate", "error",
     "The server sent a certificate (chain) that cannot be parsed.",
     "The certificate file on the server is corrupt or in the wrong format: reinstall the "
     "certificate and its intermediate chain (PEM) and restart the IMAP service."),
    ("CERT_HOSTNAME_MISMATCH", "certificate", "error",
     "The certificate is not valid for the server name that was used.",
     "Connect with a name the certificate lists (see evidence), or get a certificate that "
     "includes this name."),
    ("CERT_EXPIRED", "certificate", "error",
     "The server's certificate has expired (or is not valid yet).",
     "Renew the certificate on the server, and check the server's clock."),
    ("CERT_EXPIRING_SOON", "certificate", "warning",
     "The server's certificate expires within 14 days.",
     "Renew the certificate now; check that automatic renewal works."),
    ("TLS_INTERCEPTED", "certificate", "warning",
     "The certificate was issued by a TLS-inspection product: traffic is decrypted in between.",
     "A firewall or antivirus inspects TLS; exempt the mail server from inspection, or use a "
     "network without it."),
    ("PLAINTEXT_LOGIN_REFUSED", "authenticate", "error",
     "The server refuses logins over an unencrypted connection.",
     "Use SSL/TLS (port 993) or STARTTLS (port 143)."),
    ("AUTH_MECH_UNSUPPORTED", "authenticate", "error",
     "Client and server share no authentication method.",
     "Use the kind of credential the server supports (password or OAuth2 token), as listed in "
     "its capabilities."),
    ("AUTH_FAILED", "authenticate", "error",
     "The server rejected the user name or password.",
     "Check the user name (often the full email address) and the password; providers with "
     "2-step verification need an app password."),
    ("APP_PASSWORD_REQUIRED", "authenticate", "error",
     "The account needs an app-specific password, not the normal password.",
     "Create an app password in the account's security settings and use it here."),
    ("WEB_LOGIN_REQUIRED", "authenticate", "error",
     "The provider wants a sign-in through its website before it allows this client.",
     "Sign in to webmail from this network, confirm the security prompt, then retry (or use an "
     "app password / OAuth2)."),
    ("BASIC_AUTH_DISABLED", "authenticate", "error",
     "The provider has disabled password (basic) authentication for IMAP.",
     "Use OAuth2 (XOAUTH2) with an access token; passwords no longer work for this account."),
    ("OAUTH_TOKEN_REJECTED", "authenticate", "error",
     "The server rejected the OAuth2 access token.",
     "Get a fresh access token with the IMAP scope for this user; tokens expire after about an "
     "hour."),
    ("IMAP_DISABLED_FOR_ACCOUNT", "authenticate", "error",
     "IMAP access is disabled for this account.",
     "Enable IMAP in the account's mail settings (or ask the administrator)."),
    ("CREDENTIAL_EXPIRED_OR_LOCKED", "authenticate", "error",
     "The password has expired or the account is locked.",
     "Reset the password or unlock the account (administrator), then retry."),
    ("STORED_SECRET_UNREADABLE", "authenticate", "error",
     "imapscope cannot decrypt this account's stored password: the data directory's key changed "
     "(serve only).",
     "Restore the original key (IMAPSCOPE_SECRET_KEY or secret.key in the data directory), or "
     "edit the account and enter its password again."),
    ("TOO_MANY_CONNECTIONS", "authenticate", "error",
     "The server refuses more connections for this user.",
     "Close other mail clients or devices using this account, or raise the server's per-user "
     "connection limit."),
    ("SERVER_TEMPORARY_ERROR", "authenticate", "error",
     "The server reported a temporary failure.",
     "Retry later; if it persists, the server's authentication backend is down."),
    ("MAILSTORE_UNAVAILABLE", "mailstore", "error",
     "Login was accepted, but the server cannot open the mailbox store.",
     "A server-side problem: check the mail directory's owner, permissions and path for this "
     "user (uid/gid/home) in the server's logs."),
    ("MAILBOX_NOT_FOUND", "folders", "error",
     "The mailbox does not exist.",
     "Check the folder name and its namespace prefix (e.g. INBOX.Sent vs Sent)."),
    ("MAILBOX_ACCESS_DENIED", "folders", "error",
     "The server denies access to the mailbox.",
     "Ask the mailbox owner or administrator for read rights (ACL)."),
    ("OVER_QUOTA", "folders", "error",
     "The account is over its storage quota.",
     "Delete or archive mail (and empty Trash), or raise the quota."),
    ("FOLDER_MAPPING_AMBIGUOUS", "folders", "warning",
     "Special folders (Sent, Drafts, Trash, Junk, Archive) are missing or duplicated.",
     "Clients will guess folder roles differently: mark each role on exactly one folder "
     "(SPECIAL-USE) on the server."),
    ("IDLE_UNSUPPORTED", "push", "warning",
     "The server does not support IDLE: new mail is not pushed.",
     "Clients must poll; set a polling interval, or enable IDLE on the server."),
    ("IDLE_PUSH_MISSING", "push", "warning",
     "IDLE does not push changes made by other sessions; only polling (NOOP) shows them.",
     "Clients relying on IDLE see new mail and flag changes late: enable the server's change "
     "notification (Dovecot: inotify; Courier: FAM/gamin with IMAP_ENHANCEDIDLE=1; Cyrus: "
     "idled)."),
    ("IDLE_DROPPED", "push", "error",
     "The connection dropped while waiting for pushed mail (IDLE).",
     "A firewall or NAT drops idle connections: lower the client's IDLE refresh interval or fix "
     "the middlebox's idle timeout."),
    ("FLAG_SYNC_BROKEN", "write", "error",
     "A flag set on one connection did not show up on another.",
     "Flag changes are not shared between sessions: the server's index is broken or replicas "
     "lag; check the server."),
    # A round-trip monitor's send leg (SMTP submission) and receive leg (delivery).
    ("SMTP_CONNECT_FAILED", "submission", "error",
     "The SMTP submission server could not be reached.",
     "Check the SMTP host and port (587 with STARTTLS, 465 with implicit TLS, 25 between "
     "servers) and that no firewall blocks it."),
    ("SMTP_TIMEOUT", "submission", "error",
     "The SMTP server did not answer in time.",
     "The server is overloaded or a firewall drops the traffic; try again, and check the "
     "server's load and the path to it."),
    ("SMTP_TLS_FAILED", "submission", "error",
     "TLS with the SMTP server failed (the handshake or the certificate).",
     "Check the security mode for the port (465: TLS, 587: STARTTLS) and that the server's "
     "certificate is valid for its name and trusted."),
    ("SMTP_STARTTLS_UNSUPPORTED", "submission", "error",
     "The SMTP server does not offer STARTTLS on this port.",
     "Use the port that offers STARTTLS (587) or implicit TLS (465), or enable STARTTLS on the "
     "server; sending a password without TLS is refused."),
    ("SMTP_AUTH_UNSUPPORTED", "submission", "error",
     "The SMTP server offers no login (AUTH PLAIN or LOGIN) here.",
     "Use the submission port (587 or 465) rather than 25, after TLS; on Microsoft 365, SMTP AUTH "
     "must be enabled for the mailbox."),
    ("SMTP_AUTH_FAILED", "submission", "error",
     "The SMTP server refused the login.",
     "Check the user name and password (an app password where the provider asks for one) and "
     "that SMTP AUTH is allowed for this account."),
    ("SMTP_SENDER_REFUSED", "submission", "error",
     "The SMTP server refused the sender address.",
     "Send from an address this login is allowed to send as (often the login's own address)."),
    ("SMTP_RECIPIENT_REFUSED", "submission", "error",
     "The SMTP server refused the recipient address.",
     "Check the monitored account's address; the server may also refuse relaying for this "
     "login."),
    ("SMTP_MESSAGE_REFUSED", "submission", "error",
     "The SMTP server refused the message itself.",
     "Its reply (in the evidence) says why: a content filter, a size limit or a policy; check "
     "the server's log."),
    ("DELIVERY_LOST", "delivery", "error",
     "The message was accepted for delivery but did not arrive in time.",
     "Look for it in the server's mail log by its Message-ID (in the evidence): a full queue, a "
     "filter or forwarding rule, or a delivery agent that fails."),
    ("DELIVERY_JUNK", "delivery", "warning",
     "The message arrived, but in the Junk folder.",
     "The receiving server's filter distrusts the sender: publish SPF, DKIM and DMARC for the "
     "sending domain, or allow-list it."),
    ("DELIVERY_UNWATCHED", "delivery", "error",
     "The receiving account is not being synced, so the message's arrival cannot be seen.",
     "Resume the account (or fix what its own error says): the round trip watches the mailbox "
     "through the account's sync."),
    ("SLOW_SERVER", "performance", "warning",
     "A step took longer than expected.",
     "The server or the network is slow; see the timings to see which layer."),
    ("INTERNAL_ERROR", "internal", "error",
     "imapscope itself failed unexpectedly (a bug), not the server.",
     "Retrying with backoff; report it with the error id from the evidence, which also appears "
     "in imapscope's log next to the traceback."),
)  # fmt: skip


def finding(
    code: str,
    step: str,
    *,
    evidence: tuple[str, ...] | list[str] = (),
    summary: str | None = None,
    fix: str | None = None,
    severity: Severity | None = None,
) -> Finding:
    spec = CATALOGUE[code]
    return Finding(
        code=code,
        severity=severity or spec.severity,
        step=step,
        summary=summary or spec.summary,
        fix=fix or spec.fix,
        evidence=tuple(evidence),
    )


def headline(findings: list[Finding]) -> Finding | None:
    """The most severe finding of the lowest layer (info findings are never the headline)."""
    serious = [f for f in findings if f.severity != "info"]
    return min(serious, key=lambda f: f.rank) if serious else None


ALL_GOOD = (
    "Every step passed: the server's major functions work. If a mail client still fails, the "
    "problem is in that client's settings (server name, port, security mode, user name)."
)


def catalogue_markdown() -> str:
    """docs/findings.md's table, generated from the catalogue."""
    lines = [
        "| code | layer | severity | summary | fix |",
        "|---|---|---|---|---|",
    ]
    for spec in sorted(CATALOGUE.values(), key=lambda s: (LAYERS.index(s.layer), s.code)):
        lines.append(
            f"| `{spec.code}` | {spec.layer} | {spec.severity} | {spec.summary} | {spec.fix} |"
        )
    return "\n".join(lines)
