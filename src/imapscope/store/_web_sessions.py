"""Web UI login sessions: the cookie's SHA-256 (never the cookie), the token it was made with,
its CSRF token and expiry. In the database, so that every worker accepts a login made on any of
them and a restart keeps people logged in; revoking the token ends its sessions (cascade)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, select

from imapscope.store._db import Database
from imapscope.store._models import WebSession, utcnow


@dataclasses.dataclass(frozen=True)
class WebSessionView:
    token_id: int
    csrf: str
    expires: dt.datetime


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class WebSessionsMixin(Database):
    async def start_web_session(
        self, token_id: int, lifetime: dt.timedelta, now: dt.datetime | None = None
    ) -> tuple[str, WebSessionView]:
        """A new session for a valid token: the cookie value (kept only as its digest) and the
        session. Expired sessions are removed on the way."""
        now = now or utcnow()
        cookie = secrets.token_urlsafe(32)
        view = WebSessionView(token_id, secrets.token_urlsafe(32), now + lifetime)
        async with self._session() as s:
            await s.execute(delete(WebSession).where(WebSession.expires < now))
            s.add(WebSession(digest=_digest(cookie), token_id=token_id, csrf=view.csrf,
                             expires=view.expires))  # fmt: skip
            await s.commit()
        return cookie, view

    async def web_session(
        self, cookie: str, now: dt.datetime | None = None
    ) -> WebSessionView | None:
        """The session of this cookie, unless it is unknown, expired or its token revoked."""
        if not cookie:
            return None
        async with self._session() as s:
            row = await s.scalar(select(WebSession).where(WebSession.digest == _digest(cookie)))
            if row is None or row.expires < (now or utcnow()):
                return None
            return WebSessionView(row.token_id, row.csrf, row.expires)

    async def end_web_session(self, cookie: str) -> None:
        async with self._session() as s:
            await s.execute(delete(WebSession).where(WebSession.digest == _digest(cookie)))
            await s.commit()
