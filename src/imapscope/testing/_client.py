"""The receive API from Python: :class:`Mailbox` (blocking) and :class:`AsyncMailbox` (asyncio),
one implementation. What to send and how to read the answers is written once (the ``_*``
functions below); each form only moves the bytes, over ``httpx.Client`` or ``httpx.AsyncClient``.
"""

from __future__ import annotations

import dataclasses
import smtplib
import time
from collections.abc import Generator, Mapping, Sequence
from email.message import EmailMessage
from typing import Any

import httpx

__all__ = [
    "AsyncExpectation",
    "AsyncMailbox",
    "Attachment",
    "Expectation",
    "Mailbox",
    "Message",
    "NoMessageError",
    "ReceiveApiError",
]

#: The longest one held request waits (the server's maximum); longer waits take several.
HELD = 120.0


class ReceiveApiError(Exception):
    """The API refused a request; the message is its ``error`` (what was wrong, what to do)."""


class NoMessageError(AssertionError):
    """No message matched in time: says which expectation, and lists the near misses (which
    messages arrived, and which criterion each failed)."""


@dataclasses.dataclass(frozen=True)
class Attachment:
    index: int
    name: str
    type: str
    size: int
    sha256: str
    url: str


@dataclasses.dataclass(frozen=True)
class Message:
    """A matched message, as the receive API returns it (docs/receive.md)."""

    folder: str
    uid: int
    subject: str
    sender: str  # the first From address
    to: list[str]
    text: str
    html: str
    links: list[str]
    codes: list[str]
    attachments: list[Attachment]
    headers: dict[str, str]
    raw: dict[str, Any]  # the whole answer

    @property
    def code(self) -> str:
        """The one-time code (the first found); an AssertionError when there is none."""
        if not self.codes:
            raise AssertionError(f"no one-time code in the message {self.subject!r}")
        return self.codes[0]


# -- what to send, and how to read the answers: written once --------------------------------


def _criteria(
    *, subject: str | None, sender: str | None, to: str | None, body: str | None,
    header: Mapping[str, str] | None, folders: Sequence[str] | None, exclusive: bool,
    expires_in: int, code_pattern: str | None,
) -> dict[str, Any]:  # fmt: skip
    given: dict[str, Any] = {
        "subject": subject, "from": sender, "to": to, "body": body, "code_pattern": code_pattern,
        "header": dict(header) if header else None, "folders": list(folders) if folders else None,
    }  # fmt: skip
    return {k: v for k, v in given.items() if v is not None} | {
        "exclusive": exclusive, "expires_in": expires_in,
    }  # fmt: skip


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            said = response.json().get("error", response.text)
        except ValueError:
            said = response.text
        raise ReceiveApiError(f"{response.request.method} {response.request.url.path}: "
                              f"{response.status_code} {said}")  # fmt: skip
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return response.json() if response.content and is_json else None


def _message(raw: Mapping[str, Any]) -> Message:
    envelope = raw.get("envelope", {})
    return Message(
        folder=raw["folder"],
        uid=raw["uid"],
        subject=envelope.get("subject") or "",
        sender=(envelope.get("from") or [""])[0],
        to=list(envelope.get("to") or []),
        text=raw.get("text", ""),
        html=raw.get("html", ""),
        links=list(raw.get("links", [])),
        codes=list(raw.get("codes", [])),
        attachments=[
            Attachment(a["index"], a["name"], a["type"], a["size"], a["sha256"], a["url"])
            for a in raw.get("attachments", [])
        ],
        headers=dict(raw.get("headers", {})),
        raw=dict(raw),
    )


def _outcome(answer: Mapping[str, Any], waited: float) -> Message | None:
    """The message once matched; None while it waits; NoMessageError once it cannot be."""
    state = answer["state"]
    if state == "matched":
        return _message(answer["message"])
    if state == "waiting" and waited > 0:
        return None
    raise NoMessageError(_no_message(answer, "it " + state if state != "waiting" else ""))


def _waits(
    expectation: Expectation | AsyncExpectation, timeout: float
) -> Generator[tuple[str, dict[str, Any]], dict[str, Any], Message]:
    """A wait, written once: yields the requests to make (held ones, at most the server's 120 s
    each), is sent their answers, returns the message (or raises NoMessageError)."""
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.0, deadline - time.monotonic())
        answer = yield f"/api/v1/expectations/{expectation.id}", {"wait": min(left, HELD)}
        expectation.answer = answer
        found = _outcome(answer, left)
        if found is not None:
            return found


def _no_message(answer: Mapping[str, Any], why: str) -> str:
    criteria = ", ".join(f"{k}={v!r}" for k, v in answer.get("criteria", {}).items()) or "any"
    lines = [f"no message matched ({criteria}) in {', '.join(answer.get('folders', []))} "
             f"(expectation {answer['id']}{'; ' + why if why else ''})"]  # fmt: skip
    misses = answer.get("near_misses", [])
    lines.append("near misses:" if misses else "no message arrived meanwhile")
    for miss in misses:
        reasons = "; ".join(f["said"] for f in miss["failed"])
        lines.append(f"  - {miss['folder']} uid {miss['uid']} {miss['subject']!r}: {reasons}")
    return "\n".join(lines)


def _composed(
    address: str, subject: str, *, body: str, sender: str, to: str | None, html: str | None,
    attachments: Sequence[tuple[str, str, bytes]],
) -> EmailMessage:  # fmt: skip
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to or address, subject
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, kind, data in attachments:
        maintype, _, subtype = kind.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream",
                               filename=name)  # fmt: skip
    return message


@dataclasses.dataclass(frozen=True)
class _Target:
    """Where a mailbox is: the API (base URL, token), the account, its address, and the SMTP
    server that delivers to it (the sandbox's), if any."""

    url: str
    token: str
    account_id: int
    address: str
    smtp: tuple[str, int] | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def deliver(self, message: EmailMessage) -> None:
        if self.smtp is None:
            raise ReceiveApiError(
                "this mailbox has no SMTP server to send to (it points at a running serve): "
                "have the application under test send the mail"
            )
        with smtplib.SMTP(*self.smtp, timeout=30) as smtp:
            smtp.send_message(message, to_addrs=[self.address])


# -- the blocking form ---------------------------------------------------------------------


class Expectation:
    def __init__(self, mailbox: Mailbox, answer: dict[str, Any]) -> None:
        self.mailbox, self.id, self.answer = mailbox, int(answer["id"]), answer

    def wait(self, timeout: float = 30.0) -> Message:
        """The matching message, as soon as it is there; NoMessageError after ``timeout``."""
        steps = _waits(self, timeout)
        try:
            path, params = next(steps)
            while True:
                path, params = steps.send(self.mailbox._get(path, params))
        except StopIteration as done:
            found: Message = done.value
            return found

    def cancel(self) -> None:
        self.mailbox._request("DELETE", f"/api/v1/expectations/{self.id}")


class Mailbox:
    """A registered account of a running serve, to register expectations on and wait with.
    ``send`` delivers to it over SMTP when it is the sandbox's (the ``imapscope_mailbox``
    fixture)."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.address = target.address
        self._client = httpx.Client(base_url=target.url, headers=target.headers(),
                                    timeout=HELD + 30)  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def expect(
        self, subject: str | None = None, *, sender: str | None = None, to: str | None = None,
        body: str | None = None, header: Mapping[str, str] | None = None,
        folders: Sequence[str] | None = None, exclusive: bool = False, expires_in: int = 600,
        code_pattern: str | None = None,
    ) -> Expectation:  # fmt: skip
        """Register an expectation: only mail the server files from now on can match, so
        register first, then trigger the mail."""
        body_json = _criteria(
            subject=subject, sender=sender, to=to, body=body, header=header, folders=folders,
            exclusive=exclusive, expires_in=expires_in, code_pattern=code_pattern,
        )  # fmt: skip
        path = f"/api/v1/accounts/{self.target.account_id}/expectations"
        return Expectation(self, self._request("POST", path, body_json))

    def send(
        self, subject: str, body: str = "", *, sender: str = "sender@example.test",
        to: str | None = None, html: str | None = None,
        attachments: Sequence[tuple[str, str, bytes]] = (),
    ) -> None:  # fmt: skip
        """Deliver a message to this mailbox over SMTP (``attachments``: name, type, bytes)."""
        self.target.deliver(
            _composed(
                self.address,
                subject,
                body=body,
                sender=sender,
                to=to,
                html=html,
                attachments=attachments,
            )
        )

    def attachment(self, attachment: Attachment) -> bytes:
        response = self._client.get(attachment.url)
        _checked(response)
        return response.content

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = _checked(self._client.get(path, params=params))
        return found

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        return _checked(self._client.request(method, path, json=body))


# -- the asyncio form: the same, awaited ----------------------------------------------------


class AsyncExpectation:
    def __init__(self, mailbox: AsyncMailbox, answer: dict[str, Any]) -> None:
        self.mailbox, self.id, self.answer = mailbox, int(answer["id"]), answer

    async def wait(self, timeout: float = 30.0) -> Message:
        steps = _waits(self, timeout)
        try:
            path, params = next(steps)
            while True:
                path, params = steps.send(await self.mailbox._request("GET", path, params=params))
        except StopIteration as done:
            found: Message = done.value
            return found

    async def cancel(self) -> None:
        await self.mailbox._request("DELETE", f"/api/v1/expectations/{self.id}")


class AsyncMailbox:
    """:class:`Mailbox` for asyncio code: the same methods, awaited. Each call uses its own
    connection, so it works in any event loop (one per test, as pytest-asyncio makes them)."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.address = target.address

    async def expect(
        self, subject: str | None = None, *, sender: str | None = None, to: str | None = None,
        body: str | None = None, header: Mapping[str, str] | None = None,
        folders: Sequence[str] | None = None, exclusive: bool = False, expires_in: int = 600,
        code_pattern: str | None = None,
    ) -> AsyncExpectation:  # fmt: skip
        body_json = _criteria(
            subject=subject, sender=sender, to=to, body=body, header=header, folders=folders,
            exclusive=exclusive, expires_in=expires_in, code_pattern=code_pattern,
        )  # fmt: skip
        path = f"/api/v1/accounts/{self.target.account_id}/expectations"
        return AsyncExpectation(self, await self._request("POST", path, json=body_json))

    async def send(
        self, subject: str, body: str = "", *, sender: str = "sender@example.test",
        to: str | None = None, html: str | None = None,
        attachments: Sequence[tuple[str, str, bytes]] = (),
    ) -> None:  # fmt: skip
        import asyncio  # noqa: PLC0415 - only the asyncio form needs it

        message = _composed(
            self.address,
            subject,
            body=body,
            sender=sender,
            to=to,
            html=html,
            attachments=attachments,
        )
        await asyncio.to_thread(self.target.deliver, message)

    async def attachment(self, attachment: Attachment) -> bytes:
        async with self._client() as client:
            response = await client.get(attachment.url)
        _checked(response)
        return response.content

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.target.url, headers=self.target.headers(),
                                 timeout=HELD + 30)  # fmt: skip

    async def _request(self, method: str, path: str, **given: Any) -> Any:
        async with self._client() as client:
            return _checked(await client.request(method, path, **given))
