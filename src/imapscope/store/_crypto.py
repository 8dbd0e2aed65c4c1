"""Credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) with one key per data directory.

The key comes from ``IMAPSCOPE_SECRET_KEY`` when set, otherwise from ``<data dir>/secret.key``,
created with mode 0600 on first start. A key file that others can read is refused: the
encrypted passwords would be as good as plaintext.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from imapscope.store._errors import SecretKeyError

KEY_ENV = "IMAPSCOPE_SECRET_KEY"
KEY_FILE = "secret.key"


def _fernet(key: bytes, origin: str) -> Fernet:
    try:
        return Fernet(key.strip())
    except ValueError:
        raise SecretKeyError(
            f"the secret key from {origin} is not a Fernet key (32 url-safe base64-encoded bytes); "
            "generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None


def load_or_create_key(data_dir: Path) -> Fernet:
    """The data directory's key: from the environment, the key file, or a new key file."""
    env = os.environ.get(KEY_ENV)
    if env:
        return _fernet(env.encode(), f"${KEY_ENV}")
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecretKeyError(
                f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            ) from None
        return _fernet(path.read_bytes(), str(path))
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return Fernet(key)


class SecretBox:
    """Encrypts and decrypts account secrets; the plaintext never reaches the database."""

    def __init__(self, fernet: Fernet) -> None:
        self._fernet = fernet

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored credential does not decrypt with this key: the data directory was "
                f"encrypted with another key (check ${KEY_ENV} and {KEY_FILE})"
            ) from None
