"""Reports from one data model in four formats: the JSON's numbers come from a history built by
hand; the CSV parses and says the same; the PDF renders (its text read back) with the
accounting rule printed; a scheduled report goes out through a channel with the PDF attached."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pytest
from pypdf import PdfReader

from imapscope.store import MonitorSpec, RunRecord, Store
from tests.receivers import SmtpSink, smtp_sink
from tests.serving import Serving

pytestmark = pytest.mark.usefixtures("database")

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday
END = START + dt.timedelta(days=7)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as found:
        yield found


def at(hours: float) -> dt.datetime:
    return START + dt.timedelta(hours=hours)


async def history(store: Store) -> tuple[int, int]:
    """Two monitors with a week of runs and incidents made by hand."""
    from imapscope.store._models import Incident  # noqa: PLC0415

    imap = await store.add_monitor(MonitorSpec("Support IMAP", host="imap.example.test"), now=START)
    other = await store.add_monitor(MonitorSpec("Sales IMAP", host="mx.example.test"), now=START)

    def hourly(h: int) -> RunRecord:
        bad = 10 <= h < 13
        steps = (("tls", "pass", 50.0), ("login", "fail" if bad else "pass", 100.0))
        return RunRecord(at=at(h), status="fail" if bad else "ok",
                         code="AUTH_FAILED" if bad else None, total_ms=200.0 + h,
                         steps=steps)  # fmt: skip

    runs = [hourly(h) for h in range(100)]
    runs.append(RunRecord(at=at(120), status="fail", code="TCP_REFUSED", maintenance=True))
    await store.import_runs(imap.id, runs)
    await store.import_runs(other.id, [RunRecord(at=at(h), status="ok", total_ms=80.0)
                                       for h in range(50)])  # fmt: skip
    async with store._session() as s:
        s.add(Incident(monitor_id=imap.id, opened=at(11), resolved=at(13), codes=["AUTH_FAILED"]))
        s.add(Incident(monitor_id=imap.id, opened=at(50), resolved=at(51),
                       codes=["AUTH_FAILED", "CERT_EXPIRED"]))  # fmt: skip
        await s.commit()
    return imap.id, other.id


def test_one_report_four_formats_with_the_same_numbers(served: Serving) -> None:
    imap_id, other_id = served.call(history)
    window = {"period": "custom", "since": START.isoformat(), "until": END.isoformat()}
    with served.client() as api:
        report = api.get("/api/v1/reports", params=window).json()
        answer_csv = api.get("/api/v1/reports", params=window | {"format": "csv"})
        html = api.get("/api/v1/reports", params=window | {"format": "html"}).text
        pdf = api.get("/api/v1/reports", params=window | {"format": "pdf"})
        only = api.get("/api/v1/reports", params=window | {"monitor": other_id}).json()
    imap = next(m for m in report["monitors"] if m["id"] == imap_id)
    # 100 runs, 3 failed (hours 10-12); the run in maintenance is not counted.
    assert (imap["runs"], imap["failures"], imap["maintenance_runs"]) == (100, 3, 1)
    assert imap["uptime"] == 97.0
    assert imap["codes"] == {"AUTH_FAILED": 3}
    assert [i["codes"] for i in imap["incidents"]] == [["AUTH_FAILED"],
                                                       ["AUTH_FAILED", "CERT_EXPIRED"]]  # fmt: skip
    assert imap["downtime_s"] == 3 * 3600
    assert imap["mttr_s"] == 1.5 * 3600  # (2 h + 1 h) / 2
    assert imap["steps"]["tls"]["p50"] == 50.0
    assert imap["steps"]["total"]["max"] == 299.0
    assert "maintenance windows" in report["rule"]
    assert [m["id"] for m in only["monitors"]] == [other_id]

    assert answer_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer_csv.headers["content-disposition"]
    rows = {int(r["monitor_id"]): r for r in csv.DictReader(io.StringIO(answer_csv.text))}
    for monitor in report["monitors"]:
        row = rows[monitor["id"]]
        assert float(row["uptime_percent"]) == monitor["uptime"]
        assert int(row["runs"]) == monitor["runs"]
        assert int(row["failures"]) == monitor["failures"]
        assert int(row["incidents"]) == len(monitor["incidents"])
        assert float(row["downtime_s"]) == monitor["downtime_s"]
        assert float(row["total_p95_ms"]) == monitor["steps"]["total"]["p95"]

    assert report["rule"] in html
    assert pdf.headers["content-type"] == "application/pdf"
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    words = " ".join(text.split())
    for expected in ("Service report", "Support IMAP", "Sales IMAP", "97.000 %", "CERT_EXPIRED",
                     "How uptime is counted", "maintenance windows"):  # fmt: skip
        assert expected in words, expected


@pytest.mark.parametrize(
    ("params", "said"),
    [({"period": "custom", "since": "2026-11-09T00:00:00Z", "until": "2026-11-02T00:00:00Z"},
      "before it starts"),
     ({"period": "custom", "since": "2026-11-02T00:00:00Z"}, "needs since and until"),
     ({"period": "custom", "since": "2024-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
      "at most 400 days"),
     ({"monitor": 99}, "no monitor with id 99"),
     ({"format": "docx"}, "format")],
)  # fmt: skip
def test_a_bad_report_request_says_what_to_fix(
    served: Serving, params: dict[str, Any], said: str
) -> None:
    with served.client() as api:
        answer = api.get("/api/v1/reports", params=params)
    assert 400 <= answer.status_code < 500
    assert said in answer.json()["error"]


def test_a_scheduled_report_is_mailed_with_its_pdf(served: Serving, sink: SmtpSink) -> None:
    served.call(history)
    with served.client() as api:
        url = f"mailto://127.0.0.1:{sink.port}?from=reports@example.com&to=boss@example.com"
        channel = api.post("/api/v1/channels", json={"name": "boss", "url": url}).json()
        schedule = api.post("/api/v1/report-schedules", json={
            "name": "weekly", "every": "week", "channels": [channel["id"]],
        }).json()  # fmt: skip
        assert schedule["next_send"] is not None
        due = dt.datetime.fromisoformat(schedule["next_send"])
        assert due.weekday() == 0  # a Monday
        assert (due.hour, due.minute) == (6, 0)
        bad = api.post("/api/v1/report-schedules", json={"name": "x", "every": "week",
                                                         "channels": [99]})  # fmt: skip
        assert "no channel with id 99" in bad.json()["error"]
    served.call(_due_now)
    served.call(_wake(served))
    (mail,) = sink.wait(1, timeout=60)
    assert mail["Subject"].startswith("imapscope report weekly: ")
    (attached,) = list(mail.iter_attachments())
    assert attached.get_filename().endswith(".pdf")
    pdf = PdfReader(io.BytesIO(attached.get_content()))
    assert "How uptime is counted" in " ".join(
        " ".join(p.extract_text().split()) for p in pdf.pages
    )


async def _due_now(store: Store) -> None:
    from sqlalchemy import update  # noqa: PLC0415

    from imapscope.store._models import Job  # noqa: PLC0415

    async with store._session() as s:
        await s.execute(update(Job).where(Job.kind == "report.send")
                        .values(run_at=dt.datetime.now(dt.UTC)))  # fmt: skip
        await s.commit()


def _wake(served: Serving) -> Any:
    async def wake(_store: Store) -> None:
        served.monitors.wake()

    return wake
