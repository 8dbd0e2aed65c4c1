"""The monitors pages in real Chromium against `serve` on the sandbox: the runs a test made show
on the monitors page (state, strip) and the monitor's charts (one bar per run, the code on
hover, time per step), the incident is listed, a monitor is added from the form (a bad interval
says what to fix), a channel is added and tested; axe-core on every page, both themes, both
widths; no secret in any page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from imapscope.sandbox import FaultRule
from tests.conftest import PASSWORD, Sandbox
from tests.receivers import SmtpSink, smtp_sink
from tests.serving import Serving
from tests.test_api import account
from tests.test_monitors import add_monitor, run_now
from tests.test_web import browser, login, no_secrets, sweep

__all__ = ["browser"]  # the fixture, shared with tests/test_web.py


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as found:
        yield found


def runs_of(api: httpx.Client, monitor_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.get(f"/api/v1/monitors/{monitor_id}/runs").json()
    return found


def test_monitor_pages_show_the_runs_charts_and_incident(
    browser: Browser, served: Serving, sandbox: Sandbox, sink: SmtpSink, tmp_path: Path
) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()
        url = f"mailto://127.0.0.1:{sink.port}?from=alerts@example.com&to=ops@example.com"
        channel = api.post("/api/v1/channels", json={"name": "ops mail", "url": url}).json()
        monitor = add_monitor(api, name="Alice's IMAP", account_id=alice["id"],
                              channels=[channel["id"]],
                              rules={"fail_after": 1, "recover_after": 1})  # fmt: skip
        # Two runs fail (the fault fires twice), then it recovers.
        sandbox.server.faults.add(FaultRule(
            action="no", command="AUTHENTICATE", code="AUTHENTICATIONFAILED",
            text="Authentication failed.", count=2,
        ))  # fmt: skip
        for _ in range(3):
            run_now(api, monitor["id"])
        incidents = api.get(f"/api/v1/monitors/{monitor['id']}/incidents").json()
        assert len(incidents) == 1
        assert incidents[0]["resolved"]
        api.post(f"/api/v1/monitors/{monitor['id']}/pause")
        runs = runs_of(api, monitor["id"])
    failed = [r for r in runs if r["status"] == "fail"]
    assert failed

    page = browser.new_page()
    login(page, served)
    # The accounts page shows the account's monitor as a strip of its last runs.
    strip = page.locator(f"#account-{alice['id']} svg.strip rect")
    expect(strip).to_have_count(min(len(runs), 30))
    page.get_by_role("link", name="Monitors").click()
    row = page.locator(f"#monitor-{monitor['id']}")
    expect(row.locator(".badge")).to_have_text("paused")
    expect(row.locator("svg.strip rect")).to_have_count(min(len(runs), 30))
    row.get_by_role("link", name="Alice's IMAP").click()
    expect(page.get_by_role("heading", name="Alice's IMAP")).to_be_visible()
    bars = page.locator("svg.timeline rect")
    expect(bars).to_have_count(len(runs))
    titles = bars.locator("title").all_text_contents()
    assert sum("fail, AUTH_FAILED" in t for t in titles) == len(failed)
    expect(page.locator("figure.stacked svg rect").first).to_be_attached()
    expect(page.locator(".legend li", has_text="tls")).to_be_visible()
    expect(page.locator("table.incidents tbody tr")).to_have_count(1)
    expect(page.locator("table.incidents")).to_contain_text("AUTH_FAILED")
    no_secrets(page, PASSWORD)

    # Add a monitor from the form: a bad interval is refused with what to fix, nothing saved.
    page.goto(f"{served.url}/monitors/new")
    page.get_by_label("Name").fill("Any server")
    page.get_by_label("Any server").check()
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_label("Port (empty: the usual ones)").fill(str(sandbox.server.tls_port))
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Every (seconds, 5 or more)").fill("2")
    page.get_by_role("button", name="Add the monitor").click()
    expect(page.get_by_role("alert")).to_contain_text("interval 2s is out of range")
    no_secrets(page, PASSWORD)  # the password is not sent back into the form
    page.get_by_label("Every (seconds, 5 or more)").fill("60")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Add the monitor").click()
    expect(page.get_by_role("heading", name="Any server")).to_be_visible()
    added = int(page.url.rsplit("/", 1)[1])

    # The report page: the monitor's row, and the same report as a PDF.
    page.get_by_role("link", name="Reports").click()
    page.get_by_role("button", name="Make the report").click()
    expect(page.locator(f"#report-monitor-{monitor['id']}")).to_contain_text("Alice's IMAP")
    with page.expect_download() as download:
        page.get_by_role("link", name="PDF").click()
    assert download.value.suggested_filename.endswith(".pdf")

    # A channel's test notification from the channels page.
    page.goto(f"{served.url}/channels")
    page.get_by_role("button", name="Send a test notification to ops mail").click()
    expect(page.get_by_role("status").first).to_contain_text("The test notification was sent")
    assert any("test notification" in str(m["Subject"]) for m in sink.wait(1))
    state = page.context.storage_state()
    page.close()

    # A public status page for the group "Mail": no login, no server unless allowed.
    with served.client() as api:
        for member in (monitor["id"], added):
            assert api.patch(f"/api/v1/monitors/{member}", json={"group": "Mail"}).is_success
        published = api.put("/api/v1/status-pages/Mail", json={"title": "Mail status"}).json()
    anonymous = browser.new_page()
    anonymous.goto(served.url + published["path"])
    expect(anonymous.get_by_role("heading", name="Mail status")).to_be_visible()
    expect(anonymous.locator("table.status-page tbody tr")).to_have_count(1)  # one paused
    expect(anonymous.locator("table.status-page")).to_contain_text("Any server")
    html = anonymous.content()
    for hidden in ("127.0.0.1", PASSWORD, "alice", "localhost"):
        assert hidden not in html.replace(served.url, ""), hidden
    assert anonymous.goto(f"{served.url}/status/Sales").status == 404  # never published
    with served.client() as api:
        api.put("/api/v1/status-pages/Mail", json={"title": "Mail status", "show_targets": True})
    anonymous.goto(served.url + published["path"])
    expect(anonymous.locator("table.status-page")).to_contain_text(
        f"127.0.0.1:{sandbox.server.tls_port}"
    )
    anonymous.close()

    pages = {"monitors": "/monitors", "monitor": f"/monitors/{monitor['id']}",
             "new monitor": f"/monitors/{added}", "form": "/monitors/new",
             "channels": "/channels", "channel": f"/channels/{channel['id']}",
             "reports": "/reports", "bad report": "/reports?period=custom",
             "status": "/status/Mail"}  # fmt: skip
    found = sweep(browser, served.url, state, pages, PASSWORD)
    assert found == [], "\n".join(found)
