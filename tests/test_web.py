"""The web UI in real headless Chromium (Debian's package, driven by Playwright), against a real
`serve` whose account syncs from the rig's Dovecot."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from imapscope.sync import Backoff, SyncOptions
from tests.serving import Serving, serving

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's notes say: without the background-networking flags Chromium keeps trying to
# reach Google's hosts, which this closed network refuses.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
WRONG = "not-dovecots-password-31"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run scripts/install-system (as root)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def served(start_dovecot: Any, tmp_path: Path) -> Iterator[tuple[Serving, Any]]:
    dovecot = start_dovecot(messages=8)
    options = SyncOptions(
        ca_file=str(dovecot.ca_file), timeout=5, backoff=Backoff(first=0.05, cap=0.3)
    )
    with serving(tmp_path / "data", options) as s:
        yield s, dovecot


def login(page: Page, s: Serving) -> None:
    page.goto(f"{s.url}/accounts")
    expect(page).to_have_url(f"{s.url}/login")
    page.fill("#token", "isk_wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("That token is not valid")
    page.fill("#token", s.token)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{s.url}/accounts")
    expect(page.get_by_role("heading", name="Email Accounts")).to_be_visible()


def no_secrets(page: Page, *secrets: str) -> None:
    html = page.content()
    for secret in secrets:
        assert secret not in html


def badge(page: Page, state: str) -> Any:
    return page.locator(f"tr[data-account] .badge[data-state={state}]")


def test_add_account_watch_idle_open_modal_break_password(
    browser: Browser, served: tuple[Serving, Any]
) -> None:
    s, dovecot = served
    user, password = next(iter(dovecot.users.items()))
    page = browser.new_page()
    login(page, s)
    no_secrets(page, s.token)

    # Add the Dovecot account through the form; it is verified, saved, and synced.
    page.click("text=Add account")
    page.fill("input[name=email]", f"{user}@example.test")
    page.fill("input[name=name]", "Rig Dovecot")
    page.fill("input[name=host]", "localhost")
    page.fill("input[name=port]", str(dovecot.tls_port))
    page.select_option("select[name=security]", "tls")
    page.fill("input[name=username]", user)
    page.fill("input[name=secret]", password)
    page.click("button[value=verify]")  # verify only: the steps, nothing saved
    expect(page.locator(".verify .verdict")).to_have_attribute("data-status", "ok")
    expect(page.locator(".verify tr[data-step=authenticate]")).to_contain_text("pass")
    no_secrets(page, password)
    page.fill("input[name=secret]", password)
    page.click("button[value=save]")
    expect(page).to_have_url(re.compile(r"/accounts/\d+$"))
    no_secrets(page, password)

    page.click("text=Email Accounts")
    expect(badge(page, "idle")).to_be_visible(timeout=15_000)  # the rows refresh by themselves
    row = page.locator("tr[data-account]")
    expect(row).to_contain_text("Rig Dovecot")
    expect(row.locator("td.num").first).to_have_text("8")

    # The sync modal: status on the left, the error log on the right.
    badge(page, "idle").click()
    modal = page.get_by_role("dialog")
    expect(modal).to_be_visible()
    expect(modal.locator(".sync-status")).to_contain_text("idle")
    expect(modal.locator(".sync-status")).to_contain_text("ok")
    expect(modal.locator(".sync-status dd").nth(6)).to_have_text("8")  # messages
    expect(modal.locator(".error-log")).to_contain_text("No errors recorded.")
    modal.get_by_role("button", name="Close").click()
    expect(modal).to_be_hidden()

    # Break the password: verification refuses it, showing the steps; save anyway.
    page.locator("tr[data-account] a").first.click()
    page.click("text=Edit")
    page.fill("input[name=secret]", WRONG)
    page.click("button[value=save]")
    expect(page.get_by_role("alert")).to_contain_text("AUTH_FAILED")
    expect(page.locator(".verify tr[data-step=authenticate]")).to_contain_text("fail")
    expect(page.locator(".verify .findings")).to_contain_text("AUTH_FAILED")
    no_secrets(page, WRONG, password)
    page.fill("input[name=secret]", WRONG)
    page.check("input[name=force]")
    page.click("button[value=save]")
    expect(page).to_have_url(re.compile(r"/accounts/\d+$"))

    page.click("text=Email Accounts")
    expect(badge(page, "auth_error")).to_be_visible(timeout=15_000)
    badge(page, "auth_error").click()
    modal = page.get_by_role("dialog")
    expect(modal.locator(".sync-status")).to_contain_text("auth_error")
    expect(modal.locator(".sync-status")).to_contain_text("failing")
    expect(modal.locator(".next-attempt")).to_contain_text(
        "refused logins in a row", timeout=15_000
    )  # after 3 refusals; Dovecot delays each by 2 s
    entry = modal.locator(".error-entry").first
    expect(entry.locator(".code")).to_have_text("AUTH_FAILED")
    expect(entry).to_contain_text("rejected the user name or password")
    no_secrets(page, WRONG, password, s.token)
    page.close()


def test_check_page_shows_the_steps_and_the_verdict(
    browser: Browser, served: tuple[Serving, Any]
) -> None:
    s, dovecot = served
    user, _password = next(iter(dovecot.users.items()))
    page = browser.new_page()
    login(page, s)
    page.click("nav >> text=Check")
    page.fill("input[name=host]", "localhost")
    page.fill("input[name=port]", str(dovecot.tls_port))
    page.select_option("select[name=security]", "tls")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", WRONG)
    page.click("button[type=submit]")
    expect(page.locator("#check")).to_have_attribute("data-done", "yes", timeout=15_000)
    expect(page.locator("tr[data-step=tcp]")).to_contain_text("pass")
    expect(page.locator(".verdict")).to_contain_text("AUTH_FAILED")
    expect(page.locator(".findings")).to_contain_text("Fix:")
    no_secrets(page, WRONG)
    page.close()


def test_forms_need_the_csrf_token_and_pages_need_a_login(served: tuple[Serving, Any]) -> None:
    s, _dovecot = served
    with httpx.Client(base_url=s.url, follow_redirects=False) as client:
        assert client.get("/accounts").headers["location"] == "/login"
        assert client.get("/ui/accounts/rows", headers={"HX-Request": "true"}).status_code == 401
        assert client.post("/login", data={"token": s.token}).status_code == 303
        assert client.get("/accounts").status_code == 200
        # A cross-site form post carries the cookie but not the token: refused.
        refused = client.post("/accounts/new", data={"email": "x@y.z"})
        assert refused.status_code == 403
        assert "security token did not match" in refused.text
        assert s.call(lambda store: store.accounts()) == []
        # Verify-only without a password says so instead of checking half the ladder.
        form = client.get("/accounts/new").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        fields = {
            "csrf": csrf.group(1), "action": "verify", "email": "a@b.test",
            "host": "localhost", "port": "993", "security": "tls", "username": "a",
        }  # fmt: skip
        half = client.post("/accounts/new", data=fields)
        assert half.status_code == 422
        assert "enter the password" in half.text
        assert 'value="a@b.test"' in half.text  # what was typed is kept
        # A missing account on the UI's pages is an HTML page that says so; the API stays JSON.
        missing = client.get("/accounts/999")
        assert missing.status_code == 404
        assert "text/html" in missing.headers["content-type"]
        assert "no account with id 999" in missing.text
        api = client.get("/api/v1/accounts/999", headers={"Authorization": f"Bearer {s.token}"})
        assert api.json() == {"error": api.json()["error"]}
