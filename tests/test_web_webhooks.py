"""The webhooks pages in real Chromium against `serve`: add an endpoint from the form (a bad URL
says what to fix; the signing secret is shown once), send a test, see a delivery and its
attempts in the log and send it again; axe-core on both pages, both themes, both widths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Sandbox
from tests.receivers import WebhookReceiver, webhook_receiver
from tests.serving import Serving
from tests.test_api import account, wait_for
from tests.test_expect import send
from tests.test_web import browser, login, no_secrets, sweep

__all__ = ["browser"]  # the fixture, shared with tests/test_web.py


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as found:
        yield found


def test_webhook_pages_add_test_log_and_redeliver(
    browser: Browser, served: Serving, sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()["id"]
        wait_for(api, f"/api/v1/accounts/{alice}", lambda a: a["state"] == "idle", timeout=20)
    page = browser.new_page()
    login(page, served)
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill("ftp://example.test/hook")
    page.get_by_role("button", name="Add the webhook").click()
    expect(page.get_by_role("alert")).to_contain_text("is http:// or https:// with a host")
    page.get_by_label("URL").fill(receiver.url + "?token=hook-token-123")
    page.get_by_label("message.new").check()
    page.get_by_role("button", name="Add the webhook").click()
    secret = page.locator("#signing-secret").text_content() or ""
    assert secret.startswith("whsec_")
    row = page.locator("table.webhooks tbody tr").first
    expect(row).to_contain_text("message.new")
    expect(row).to_contain_text("?***")  # the URL's query is masked
    page.goto(f"{served.url}/webhooks")
    no_secrets(page, secret, "hook-token-123")  # shown once, then never again

    page.get_by_role("button", name="Send a test message to").click()
    expect(page.get_by_role("status").first).to_contain_text("The test message was taken (204")
    send(sandbox, "seen by the page")
    receiver.wait(2)  # the test and the message
    page.locator("table.webhooks a").first.click()
    expect(page.locator("table.attempts tbody tr")).to_have_count(1)
    expect(page.locator("table.deliveries")).to_contain_text("message.new")
    page.get_by_role("button", name="Send delivery").first.click()
    receiver.wait(3)
    page.reload()  # the log is not live: the page as it is now
    expect(page.locator("table.attempts tbody tr")).to_have_count(2)
    state = page.context.storage_state()
    hook_path = page.url.removeprefix(served.url)
    page.close()

    pages = {"webhooks": "/webhooks", "webhook": hook_path}
    found = sweep(browser, served.url, state, pages, secret, "hook-token-123")
    assert found == [], "\n".join(found)
