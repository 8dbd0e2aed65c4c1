"""Fault injection: rules that make the sandbox fail the way real servers and providers do.

A rule matches a command verb (or ``*``), optionally only for one user or one mailbox, and acts:

=================  ==========================================================================
``no`` / ``bad``   answer the command NO/BAD with ``code`` and ``text`` instead of running it
                   (``close``: then say BYE and close, as Microsoft 365 does)
``bye``            send ``* BYE text`` and close the connection
``delay``          wait ``delay_ms`` before running the command normally
``disconnect``     close the connection without a reply (``when``: ``before`` the reply,
                   ``mid-reply``: after half of its bytes, ``mid-literal``: halfway through the
                   first literal in it, e.g. a BODY[])
``throttle``       from this command on, send at most ``bytes_per_second``
``drop``           (``SMTP-DATA`` only) accept the message with 250 and never deliver it
``junk``           (``SMTP-DATA`` only) deliver it into the recipient's Junk, as a spam filter
=================  ==========================================================================

SMTP commands are named ``SMTP-AUTH``, ``SMTP-MAIL``, ``SMTP-RCPT``, ``SMTP-DATA`` (with ``no``,
``delay``, ``drop``, ``junk``; see :mod:`._smtp`).

Session-wide rules (``command`` is ignored): ``hide-capability`` (``capability``: e.g. IDLE,
STARTTLS) and ``logindisabled`` (advertise LOGINDISABLED and refuse LOGIN with PRIVACYREQUIRED).
Greeting rules (``command`` = ``GREETING``): ``bye``, ``silence`` (never greet) and ``banner``
(send ``text`` as a non-IMAP banner, e.g. an SMTP one).

``probability`` (0-1) and ``count`` (how many times it may fire; None = always) bound every rule.
Personas are ready-made rule sets with the providers' real wording.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

ACTIONS = ("no", "bad", "bye", "delay", "disconnect", "throttle", "hide-capability",
           "logindisabled", "silence", "banner", "drop", "junk")  # fmt: skip
#: The SMTP commands a rule can name (see imapscope.sandbox._smtp); ``*`` never matches them.
SMTP_COMMANDS = ("SMTP-AUTH", "SMTP-MAIL", "SMTP-RCPT", "SMTP-DATA")
#: What a rule may do to an SMTP command.
SMTP_ACTIONS = ("no", "delay", "drop", "junk")
_ids = itertools.count(1)


class FaultError(ValueError):
    """A rule that cannot work; the message says which field and what is allowed."""


@dataclass
class FaultRule:
    action: str
    command: str = "*"
    user: str | None = None
    mailbox: str | None = None
    code: str | None = None
    text: str = ""
    delay_ms: int = 0
    when: str = "before"
    bytes_per_second: int = 0
    capability: str | None = None
    close: bool = False  # after a no/bad reply, also say BYE and close (as Microsoft 365 does)
    probability: float = 1.0
    count: int | None = None
    id: int = field(default_factory=lambda: next(_ids))

    def __post_init__(self) -> None:
        self.command = self.command.upper()
        if self.action not in ACTIONS:
            raise FaultError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if not 0 <= self.probability <= 1:
            raise FaultError("probability must be between 0 and 1")
        if self.when not in ("before", "mid-reply", "mid-literal"):
            raise FaultError("when must be 'before', 'mid-reply' or 'mid-literal'")
        if self.action == "throttle" and self.bytes_per_second <= 0:
            raise FaultError("throttle needs bytes_per_second > 0")
        if self.action == "hide-capability" and not self.capability:
            raise FaultError("hide-capability needs capability (e.g. IDLE)")
        if self.action in ("silence", "banner"):
            self.command = "GREETING"
        if "\r" in self.text or "\n" in self.text:
            raise FaultError("text must be one line")
        if self.command.startswith("SMTP-"):
            if self.command not in SMTP_COMMANDS:
                raise FaultError(f"SMTP command must be one of {', '.join(SMTP_COMMANDS)}")
            if self.action not in SMTP_ACTIONS:
                raise FaultError(f"an SMTP rule's action is {', '.join(SMTP_ACTIONS)}")
        if self.action in ("drop", "junk") and self.command != "SMTP-DATA":
            raise FaultError(f"{self.action} applies to SMTP-DATA (what becomes of a message)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Faults:
    rules: list[FaultRule] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def add(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def clear(self, rule_id: int | None = None) -> int:
        before = len(self.rules)
        self.rules = [r for r in self.rules if rule_id is not None and r.id != rule_id]
        return before - len(self.rules)

    def _fires(self, rule: FaultRule) -> bool:
        if rule.count is not None and rule.count <= 0:
            return False
        if rule.probability < 1 and self.rng.random() >= rule.probability:
            return False
        if rule.count is not None:
            rule.count -= 1
        return True

    def for_command(self, verb: str, user: str | None, mailbox: str | None) -> FaultRule | None:
        for rule in self.rules:
            if rule.action in ("hide-capability", "logindisabled") or rule.command == "GREETING":
                continue
            if rule.command not in ("*", verb):
                continue
            if rule.user is not None and (user is None or rule.user.lower() != user.lower()):
                continue
            if rule.mailbox is not None and rule.mailbox != mailbox:
                continue
            if self._fires(rule):
                return rule
        return None

    def for_smtp(self, verb: str) -> FaultRule | None:
        """The rule for an SMTP command (named exactly: ``*`` is for IMAP)."""
        for rule in self.rules:
            if rule.command == verb and self._fires(rule):
                return rule
        return None

    def greeting(self) -> FaultRule | None:
        for rule in self.rules:
            if rule.command == "GREETING" and self._fires(rule):
                return rule
        return None

    def hidden_capabilities(self) -> set[str]:
        return {r.capability.upper() for r in self.rules
                if r.action == "hide-capability" and r.capability}  # fmt: skip

    @property
    def login_disabled(self) -> bool:
        return any(r.action == "logindisabled" for r in self.rules)


GMAIL_APP_SPECIFIC_ALERT = (
    "[ALERT] Application-specific password required: "
    "https://support.google.com/accounts/answer/185833 (Failure)"
)
GMAIL_WEB_LOGIN = (
    "[ALERT] Please log in via your web browser: "
    "https://support.google.com/mail/accounts/answer/78754 (Failure)"
)

PERSONAS: dict[str, list[FaultRule]] = {
    # What Gmail says to a password login on an account with 2-step verification.
    "gmail-app-password": [
        FaultRule("no", command, text=GMAIL_APP_SPECIFIC_ALERT)
        for command in ("LOGIN", "AUTHENTICATE")
    ],
    "gmail-web-login": [
        FaultRule("no", command, text=GMAIL_WEB_LOGIN) for command in ("LOGIN", "AUTHENTICATE")
    ],
    # Microsoft 365 with basic authentication off: NO, then BYE.
    "microsoft-basic-auth-disabled": [
        FaultRule("no", command, text="Basic authentication is disabled.", close=True)
        for command in ("LOGIN", "AUTHENTICATE")
    ],
    "too-many-connections": [
        FaultRule(
            "no",
            command,
            code="LIMIT",
            text="Maximum number of connections from user+IP exceeded "
            "(mail_max_userip_connections=10)",
        )
        for command in ("LOGIN", "AUTHENTICATE")
    ],
}


def persona(name: str) -> list[FaultRule]:
    try:
        rules = PERSONAS[name]
    except KeyError:
        raise FaultError(f"unknown persona {name!r}; choose {', '.join(PERSONAS)}") from None
    return [replace(rule, id=next(_ids)) for rule in rules]


def parse_rule(spec: str) -> FaultRule:
    """``COMMAND:ACTION[:key=value,key=value]``, e.g. ``LOGIN:no:code=UNAVAILABLE,text=Later``
    or ``FETCH:disconnect:when=mid-reply``; ``*`` matches every command."""
    parts = spec.split(":", 2)
    if len(parts) < 2:
        raise FaultError(f"fault {spec!r}: expected COMMAND:ACTION[:key=value,...]")
    fields: dict[str, Any] = {"command": parts[0], "action": parts[1]}
    if len(parts) == 3 and parts[2]:
        for pair in parts[2].split(","):
            key, sep, value = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in FaultRule.__dataclass_fields__ or key in ("id", "action"):
                raise FaultError(f"fault {spec!r}: unknown setting {key!r}")
            kind = FaultRule.__dataclass_fields__[key].type
            if "int" in str(kind):
                fields[key] = int(value)
            elif "float" in str(kind):
                fields[key] = float(value)
            elif "bool" in str(kind):
                fields[key] = value.lower() in ("1", "true", "yes")
            else:
                fields[key] = value
    return FaultRule(**fields)
