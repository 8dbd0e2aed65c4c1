"""``/api/v1/accounts/{id}/expectations`` and ``/api/v1/expectations``: the receive API for
automated tests (docs/receive.md). Register what you expect, trigger the mail, then wait for it
with one held request; the answer has the message's text, links, codes and attachments, or the
near misses that say why nothing matched."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from imapscope.api._models import MAX_ID
from imapscope.expect import DEFAULT_LIFETIME, MAX_LIFETIME, MAX_WAIT, ExpectService
from imapscope.store import ExpectationView

AccountId = Annotated[int, Path(ge=1, le=MAX_ID, description="the account's id")]
ExpectationId = Annotated[int, Path(ge=1, le=MAX_ID, description="the expectation's id")]
#: A case-insensitive substring, or an RE2 regular expression written /.../.
Criterion = Annotated[str | None, Field(max_length=1000)]


class ExpectationIn(BaseModel):
    """What the message must be like. Every criterion given must hold; none given: the next
    message in the folders matches."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: Criterion = Field(None, alias="from", description="a sender's address or name "
                              "(substring, or /RE2 regex/)")  # fmt: skip
    to: Criterion = Field(None, description="a recipient's address (substring, or /regex/)")
    subject: Criterion = Field(None, description="substring (any case), or /RE2 regex/")
    body: Criterion = Field(None, description="in the text or HTML body: substring or /regex/")
    header: dict[
        Annotated[str, Field(min_length=1, max_length=200)], Annotated[str, Field(max_length=1000)]
    ] = Field(
        default_factory=dict, max_length=20, description="header name -> substring or /regex/"
    )
    folders: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        default_factory=lambda: ["INBOX"], min_length=1, max_length=20,
        description="where the message may land (each must exist on the server)",
    )  # fmt: skip
    exclusive: bool = Field(
        False, description="take the message: no other exclusive expectation can have it"
    )
    expires_in: int = Field(DEFAULT_LIFETIME, ge=1, le=MAX_LIFETIME,
                            description="seconds until it expires")  # fmt: skip
    code_pattern: str | None = Field(
        None, max_length=1000,
        description="RE2 pattern for one-time codes (group 1 if it has one), instead of the "
        "built-in rule",
    )  # fmt: skip

    def criteria(self) -> dict[str, Any]:
        given = {"from": self.sender, "to": self.to, "subject": self.subject, "body": self.body}
        return {k: v for k, v in given.items() if v} | ({"header": self.header} if self.header
                                                         else {})  # fmt: skip


def expectation_out(view: ExpectationView) -> dict[str, Any]:
    found = dataclasses.asdict(view)
    criteria = dict(view.criteria)
    found["code_pattern"] = criteria.pop("code_pattern", None)
    found["criteria"] = criteria
    for key in ("created", "expires", "ended"):
        value = found[key]
        found[key] = value.isoformat() if value is not None else None
    found["near_misses"] = list(view.near_misses)
    message = dict(view.message) or None
    if message is not None:
        message["attachments"] = [
            a | {"url": f"/api/v1/expectations/{view.id}/attachments/{a['index']}"}
            for a in message.get("attachments", [])
        ]
    found["message"] = message
    for key in ("judged", "folder", "uid"):
        found.pop(key)
    return found


def expect_of(request: Request) -> ExpectService:
    expect = request.app.state.expect
    assert isinstance(expect, ExpectService)
    return expect


def expectations_router() -> APIRouter:
    router = APIRouter(tags=["expectations"])

    @router.post("/accounts/{account_id}/expectations", status_code=201)
    async def expect(
        account_id: AccountId, body: ExpectationIn, request: Request
    ) -> dict[str, Any]:
        """Register an expectation. Only messages the server files after this call can match
        (the server's own order: UIDs at or above the UIDNEXT it reported now), so register,
        then trigger the mail: there is no race."""
        view = await expect_of(request).register(
            account_id, body.criteria(), folders=body.folders, exclusive=body.exclusive,
            lifetime=body.expires_in, code_pattern=body.code_pattern,
        )  # fmt: skip
        return expectation_out(view)

    @router.get("/expectations/{expectation_id}")
    async def expectation(
        expectation_id: ExpectationId, request: Request,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT,
                                     description="seconds to hold the request for a match")] = 0,
    ) -> dict[str, Any]:  # fmt: skip
        """The expectation: ``matched`` with its message, or still ``waiting`` (after ``wait``
        seconds at most) with the near misses seen so far; ``expired``, ``cancelled``."""
        return expectation_out(await expect_of(request).wait(expectation_id, wait))

    @router.delete("/expectations/{expectation_id}", status_code=204)
    async def cancel(expectation_id: ExpectationId, request: Request) -> None:
        """Cancel it (a matched one stays matched)."""
        await expect_of(request).store.cancel_expectation(expectation_id)

    @router.get(
        "/expectations/{expectation_id}/attachments/{index}",
        responses={200: {"content": {"application/octet-stream": {}}}},
    )  # fmt: skip
    async def attachment(
        expectation_id: ExpectationId, request: Request,
        index: Annotated[int, Path(ge=0, le=10_000, description="from 0, as listed")],
    ) -> Response:  # fmt: skip
        """One attachment of the matched message, read from the server now."""
        name, kind, data = await expect_of(request).attachment(expectation_id, index)
        quoted = urllib.parse.quote(name)
        return Response(data, media_type=kind, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}",
        })  # fmt: skip

    return router
