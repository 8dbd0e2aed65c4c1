"""The store's errors: each message says what was wrong and what to do."""

from __future__ import annotations


class StoreError(Exception):
    """Bad input or a conflict; the message says what to change."""


class NotFoundError(StoreError):
    """No such account, message or token."""


class ConflictError(StoreError):
    """The change clashes with what is stored (an address registered twice)."""


class SecretKeyError(ConflictError):
    """The encryption key is missing, malformed, exposed, or does not match the store."""
