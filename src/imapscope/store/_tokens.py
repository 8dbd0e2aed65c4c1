"""API tokens, kept as SHA-256 digests: a token is shown once, when it is created."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select

from imapscope.store._db import Database
from imapscope.store._errors import NotFoundError, StoreError
from imapscope.store._models import ApiToken, utcnow
from imapscope.store._views import TokenView


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokensMixin(Database):
    async def create_token(self, name: str) -> tuple[TokenView, str]:
        """A new token: the view, and the token itself (shown once; only its digest is kept)."""
        name = name.strip()
        if not name or len(name) > 200:
            raise StoreError("a token needs a name of 1-200 characters (who or what uses it)")
        token = "isk_" + secrets.token_urlsafe(32)
        row = ApiToken(name=name, digest=_digest(token))
        async with self._session() as s:
            s.add(row)
            await s.commit()
            return TokenView(row.id, row.name, row.created, None), token

    async def tokens(self) -> list[TokenView]:
        async with self._session() as s:
            rows = await s.scalars(select(ApiToken).order_by(ApiToken.id))
            return [TokenView(r.id, r.name, r.created, r.last_used) for r in rows]

    async def check_token(self, token: str) -> TokenView | None:
        """The token's view when it is valid (and note its use), else None."""
        async with self._session() as s:
            row = await s.scalar(select(ApiToken).where(ApiToken.digest == _digest(token)))
            if row is None:
                return None
            now = utcnow()
            if row.last_used is None or now - row.last_used > dt.timedelta(minutes=1):
                row.last_used = now
                await s.commit()
            return TokenView(row.id, row.name, row.created, now)

    async def revoke_token(self, token_id: int) -> None:
        async with self._session() as s:
            row = await s.get(ApiToken, token_id)
            if row is None:
                raise NotFoundError(f"no token with id {token_id}")
            await s.delete(row)
            await s.commit()
