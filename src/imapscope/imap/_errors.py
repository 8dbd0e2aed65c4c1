"""Errors of the IMAP codec.

The tree::

    ProtocolError                 anything that breaks the IMAP protocol; carries a ``hint``
    ├── LocalProtocolError        we misused the protocol (a command in the wrong state, an
    │                             argument that cannot be sent, a literal over our own limit)
    └── RemoteProtocolError       the peer did (unparseable bytes, a response to a tag we never
        │                         sent)
        ├── LimitExceededError    a line, a literal or one line's literals over a named limit
        └── MailboxNameError      a mailbox name that is not valid modified UTF-7

Foreign exceptions (OSError, ssl.SSLError) never come from here: the codec does no IO. The IO edge
translates them.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The IMAP protocol was broken; ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} (hint: {self.hint})" if self.hint else message


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class LimitExceededError(RemoteProtocolError):
    """The peer sent (or announced) more than a named limit allows."""


class MailboxNameError(RemoteProtocolError):
    """A mailbox name that is not valid modified UTF-7 (RFC 3501 §5.1.3)."""
