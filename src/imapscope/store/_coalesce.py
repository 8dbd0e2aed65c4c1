"""Group commit: many callers' small writes in one transaction.

Each store call is a transaction of its own, and most of its cost is not the database's work
but getting there: a session, a connection from the pool, SQLAlchemy's statement handling, one
trip to the driver per statement (on SQLite a hop to aiosqlite's thread, on PostgreSQL a round
trip), the commit. When a thousand accounts connect at once, each writes its state three times
and its last sync once, and those fixed costs are most of what connecting costs
(``bench/accounts_idle.py``).

:class:`Coalescer` lets callers that write at the same moment share one transaction: a call made
while a batch is being written waits for the next one, which takes every call made meanwhile
(up to ``limit``). A lone call goes at once, as before; under load the batches grow by
themselves, with no timer to tune. Each caller gets its own result or its own exception (the
batch function answers per request), so one request's refusal (a lost lease, a removed account)
does not fail the others. When the whole transaction fails, each request of the batch is tried
again alone (the failed transaction wrote nothing), so a failure is only its own request's. A
caller cancelled before its batch starts is left out of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class Coalescer(Generic[Request, Answer]):
    """Runs ``write(requests)`` for the calls made while the previous batch was written.
    ``write`` returns one answer (or exception) per request, in order."""

    def __init__(
        self,
        write: Callable[[Sequence[Request]], Awaitable[Sequence[Answer | BaseException]]],
        limit: int = 500,
    ) -> None:
        self._write = write
        self._limit = limit
        self._waiting: list[tuple[Request, asyncio.Future[Answer]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, request: Request) -> Answer:
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await answer

    async def settled(self) -> None:
        """Until the batch being written (and any waiting) has landed."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])

    async def _drain(self) -> None:
        while True:
            # Those who stopped waiting before their batch started are left out.
            self._waiting = [(r, f) for r, f in self._waiting if not f.done()]
            if not self._waiting:
                return
            batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            try:
                requests = [request for request, _ in batch]
                answers = await self._answers(requests)
                if isinstance(answers, Exception):
                    answers = await self._one_by_one(requests, answers)
            except asyncio.CancelledError:
                for _, future in batch + self._waiting:
                    future.cancel()
                self._waiting = []
                raise
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue  # the caller was cancelled meanwhile; its write is done anyway
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    async def _one_by_one(
        self, requests: list[Request], failed: Exception
    ) -> list[Answer | BaseException]:
        """After a batch's transaction failed (and wrote nothing): each request again on its
        own, so that one request's failure (a row removed meanwhile, a deadlock) is that
        request's alone."""
        if len(requests) == 1:
            return [failed]
        answers: list[Answer | BaseException] = []
        for request in requests:
            alone = await self._answers([request])
            answers.append(alone if isinstance(alone, Exception) else alone[0])
        return answers

    async def _answers(self, requests: list[Request]) -> list[Answer | BaseException] | Exception:
        """``write(requests)``'s answers, or the exception that failed it as a whole."""
        try:
            answers = list(await self._write(requests))
            if len(answers) != len(requests):
                raise RuntimeError(f"{len(answers)} answers for {len(requests)} requests")
        except Exception as exc:
            return exc
        return answers
