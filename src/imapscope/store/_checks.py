"""Check runs started from the web UI: the report as it fills (its JSON, docs/check.md), so
that whichever worker a browser's next request reaches can show a check another worker runs.
The newest :data:`CHECK_RUNS_KEPT` are kept."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import delete, select

from imapscope.store._db import Database
from imapscope.store._models import CheckRun

CHECK_RUNS_KEPT = 200


@dataclasses.dataclass(frozen=True)
class CheckRunView:
    id: str
    report: dict[str, Any]  # the check report's JSON
    done: bool
    back: str  # where the page's "back" link goes ("" for none)


class ChecksMixin(Database):
    async def save_check_run(
        self, run_id: str, report: dict[str, Any], *, done: bool, back: str = ""
    ) -> None:
        """Write (or overwrite) a run's report; a new run removes the oldest beyond the kept."""
        async with self._session() as s:
            row = await s.get(CheckRun, run_id)
            if row is None:
                s.add(CheckRun(id=run_id, report=report, done=done, back=back))
                await s.flush()
                newest = select(CheckRun.id).order_by(CheckRun.created.desc(), CheckRun.id)
                await s.execute(
                    delete(CheckRun).where(CheckRun.id.not_in(newest.limit(CHECK_RUNS_KEPT)))
                )
            else:
                row.report, row.done = report, done
            await s.commit()

    async def check_run(self, run_id: str) -> CheckRunView | None:
        async with self._session() as s:
            row = await s.get(CheckRun, run_id)
            if row is None:
                return None
            return CheckRunView(row.id, dict(row.report), row.done, row.back)
