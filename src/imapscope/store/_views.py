"""What the store hands out and takes in: frozen views of each aggregate (no ORM rows leave the
store), and the one JSON conversion for them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from imapscope.store._errors import StoreError
from imapscope.trust import normalise_pin, parse_ca_pem

SECURITY_MODES = ("tls", "starttls", "none")
AUTH_KINDS = ("password", "oauth2")


@dataclasses.dataclass(frozen=True)
class AccountSpec:
    """What a user registers. The secret (password, app password or token) travels separately."""

    email: str
    host: str
    port: int
    security: str
    username: str
    auth: str = "password"
    name: str = ""
    proxy: str | None = None
    include_folders: tuple[str, ...] = ()
    exclude_folders: tuple[str, ...] = ()
    poll_interval: int = 300
    # Trust besides the system's CAs: CA certificates (PEM text), or the SHA-256 of the
    # server's own certificate (then the chain and name are not checked, only that).
    ca_pem: str | None = None
    pin_sha256: str | None = None

    def validate(self) -> None:
        if "@" not in self.email:
            raise StoreError(f"email {self.email!r} has no '@'; give the mailbox address")
        if not self.host:
            raise StoreError("host is empty; give the IMAP server's name or address")
        if not 1 <= self.port <= 65535:
            raise StoreError(
                f"port {self.port} is out of range; use 1-65535 (993 TLS, 143 STARTTLS)"
            )
        if self.security not in SECURITY_MODES:
            raise StoreError(
                f"security {self.security!r} is unknown; use one of {', '.join(SECURITY_MODES)}"
            )
        if self.auth not in AUTH_KINDS:
            raise StoreError(f"auth {self.auth!r} is unknown; use one of {', '.join(AUTH_KINDS)}")
        if not self.username:
            raise StoreError("username is empty; most servers want the full address")
        if self.poll_interval < 10:
            raise StoreError(
                f"poll interval {self.poll_interval}s is too short; use 10 seconds or more"
            )
        try:
            if self.ca_pem is not None:
                parse_ca_pem(self.ca_pem)
            if self.pin_sha256 is not None and normalise_pin(self.pin_sha256) != self.pin_sha256:
                raise ValueError(
                    "the pinned fingerprint must be 64 lowercase hex digits (normalise_pin)"
                )
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        if self.ca_pem and self.pin_sha256:
            raise StoreError(
                "give a CA certificate or a pinned fingerprint, not both: with a pin only the "
                "server's own certificate counts"
            )
        if self.security == "none" and (self.ca_pem or self.pin_sha256):
            raise StoreError("a CA certificate or pin means nothing with security 'none'")

    def trusting(self, ca_pem: str | None, pin: str | None) -> AccountSpec:
        """This spec with the trust given as people type it (empty means none; a pin in any of
        the forms :func:`normalise_pin` reads); ValueError says what is wrong."""
        ca = (ca_pem or "").strip() or None
        if ca is not None:
            parse_ca_pem(ca)
        pinned = normalise_pin(pin) if pin and pin.strip() else None
        return dataclasses.replace(self, ca_pem=ca, pin_sha256=pinned)


@dataclasses.dataclass(frozen=True)
class AccountView:
    """An account as the rest of imapscope sees it: everything but the secret."""

    id: int
    spec: AccountSpec
    paused: bool
    state: str
    state_since: dt.datetime
    last_sync: dt.datetime | None
    revision: int = 1
    next_attempt: dt.datetime | None = None  # when the worker syncing it tries again
    halted: str | None = None  # why it does not try again by itself, when it does not


@dataclasses.dataclass(frozen=True)
class FolderView:
    id: int
    name: str
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    complete: bool = False  # the first full sync has finished
    #: The server's message count when UIDNEXT and HIGHESTMODSEQ were stored (None: unknown, or
    #: the store held fewer: the next round must not take the folder as unchanged).
    messages: int | None = None


@dataclasses.dataclass(frozen=True)
class MessageMeta:
    """What the sync engine keeps of a message."""

    uid: int
    flags: tuple[str, ...]
    internaldate: dt.datetime | None
    size: int | None
    envelope: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class MessageView(MessageMeta):
    """A stored message's metadata, with the folder it is in."""

    folder: str


@dataclasses.dataclass(frozen=True)
class Summary:
    """An account's counts, for lists and health."""

    folders: int = 0
    messages: int = 0
    errors: int = 0  # kept (at most 20)
    recent_errors: int = 0  # at or after the ``since`` asked for
    last_error: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class TokenView:
    id: int
    name: str
    created: dt.datetime
    last_used: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class ErrorView:
    id: int
    at: dt.datetime
    state: str
    step: str
    code: str
    message: str
    server_text: str
    fix: str = ""
    evidence: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class EventView:
    id: int
    account_id: int | None  # None: an incident of a monitor of any server
    at: dt.datetime
    kind: str
    data: dict[str, Any]


def jsonable(view: Any) -> dict[str, Any]:
    """A view (any dataclass here) as JSON values: datetimes in ISO 8601, tuples as lists."""

    def value(v: Any) -> Any:
        if isinstance(v, dt.datetime):
            return v.isoformat()
        if isinstance(v, tuple):
            return [value(x) for x in v]
        return v

    return {f.name: value(getattr(view, f.name)) for f in dataclasses.fields(view)}
