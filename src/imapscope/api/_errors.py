"""The API's own error: an HTTP status and what was wrong (and what to do), answered as
``{"error": message, **extra}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra
