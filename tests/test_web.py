"""The web UI in real headless Chromium (Debian's package, driven by Playwright), against a real
`serve` whose accounts sync from the rig's Dovecot: live updates that keep focus, the modal's
focus handling, messages, tokens, per-account trust, times in the browser's zone, and axe-core
on every page in both colour schemes at 1280 and 390 px."""

from __future__ import annotations

import asyncio
import datetime as dt
import imaplib
import re
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from imapscope.store import DB_FILE, AccountSpec, Store
from imapscope.sync import Backoff, SyncOptions
from tests.conftest import Sandbox
from tests.servers.rig import free_port
from tests.serving import Serving, serving

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's notes say: without the background-networking flags Chromium keeps trying to
# reach Google's hosts, which this closed network refuses.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
WRONG = "not-dovecots-password-31"
WIDE, NARROW = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
#: What axe-core may not find on any page.
BLOCKING = ("serious", "critical")


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
    # Refusals at once: these tests are about what the UI shows after them, not their delay.
    dovecot = start_dovecot(messages=8, fast_refusals=True)
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


def add_account(s: Serving, dovecot: Any, *, email: str, password: str, force: bool = False,
                **extra: Any) -> int:  # fmt: skip
    user = next(iter(dovecot.users))
    body = {"email": email, "name": extra.pop("name", ""), "host": "localhost",
            "port": dovecot.tls_port, "security": "tls", "username": user, "secret": password,
            **extra}  # fmt: skip
    with s.client() as client:
        added = client.post("/api/v1/accounts", json=body, params={"force": force})
        assert added.status_code == 201, added.text
        return int(added.json()["id"])


def append(dovecot: Any, raw: bytes) -> None:
    user, password = next(iter(dovecot.users.items()))
    client = imaplib.IMAP4(dovecot.host, dovecot.port)
    client.login(user, password)
    client.append("INBOX", None, None, raw)
    client.logout()


def html_mail() -> bytes:
    message = EmailMessage()
    message["From"] = "Bob Smïth <bob@example.test>"
    message["To"] = "alice@example.test"
    message["Subject"] = "Quarterly report"
    message["Date"] = "Mon, 01 Jan 2024 09:00:00 +0000"
    message.set_content("Hello in plain text.")
    message.add_alternative(
        "<p id=hello>Hello in <b>HTML</b>.</p>"
        "<script>document.body.innerHTML = 'PWNED'</script>"
        "<img src='http://127.0.0.9/pixel.png' alt=''>",
        subtype="html",
    )
    message.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf",
                           filename="report.pdf")  # fmt: skip
    return message.as_bytes()


def focused_id(page: Page) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def polls(page: Page, path: str, count: int) -> None:
    """Wait until the page has fetched ``path`` ``count`` more times (live updates)."""
    for _ in range(count):
        with page.expect_response(lambda r: path in r.url, timeout=10_000):
            pass


# -- the everyday path -------------------------------------------------------------------------


def test_add_watch_modal_focus_break_and_fix_the_password_live(
    browser: Browser, served: tuple[Serving, Any]
) -> None:
    s, dovecot = served
    user, password = next(iter(dovecot.users.items()))
    page = browser.new_page()
    login(page, s)
    no_secrets(page, s.token)

    # Add the Dovecot account through the form; it is verified, saved, and synced.
    page.click("nav >> text=Add account")
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
    expect(page.locator(".verify .fingerprint")).to_have_text(re.compile(r"^([0-9A-F]{2}:){31}"))
    no_secrets(page, password)
    page.fill("input[name=secret]", password)
    page.click("button[value=save]")
    expect(page).to_have_url(re.compile(r"/accounts/\d+$"))
    account_id = int(page.url.rsplit("/", 1)[1])
    # The new account's page becomes idle by itself (it was "connecting" when it opened).
    expect(page.locator("#account-state .badge")).to_have_attribute(
        "data-state", "idle", timeout=15_000
    )
    expect(page.locator("#account-live .folders")).to_contain_text("INBOX")
    no_secrets(page, password)

    page.click("nav >> text=Email Accounts")
    expect(badge(page, "idle")).to_be_visible(timeout=15_000)
    row = page.locator("tr[data-account]")
    expect(row).to_contain_text("Rig Dovecot")
    expect(row.locator("td.num").first).to_have_text("8")

    # The sync modal is a modal dialog: focus goes into it, stays in it, Escape closes it, and
    # focus goes back to the button that opened it.
    state_button = page.locator(f"#state-{account_id}")
    state_button.focus()
    page.keyboard.press("Enter")
    modal = page.get_by_role("dialog")
    expect(modal).to_be_visible()
    assert focused_id(page) == "modal-close"
    for _ in range(6):
        page.keyboard.press("Tab")
        assert page.evaluate("document.getElementById('modal').contains(document.activeElement)")
    expect(modal.locator(".sync-status")).to_contain_text("idle")
    expect(modal.locator(".sync-status")).to_contain_text("ok")
    expect(modal.locator(".sync-status dd").nth(6)).to_have_text("8")  # messages
    expect(modal.locator(".error-log")).to_contain_text("No errors recorded.")
    page.locator("#modal-close").focus()
    polls(page, f"/ui/accounts/{account_id}/modal", 2)  # refreshed twice: focus stays
    assert focused_id(page) == "modal-close"
    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()
    assert focused_id(page) == f"state-{account_id}"

    # Focus survives the table's live refresh.
    polls(page, "/ui/accounts/rows", 2)
    assert focused_id(page) == f"state-{account_id}"

    # Break the password: verification refuses it, showing the steps; save anyway.
    page.goto(f"{s.url}/accounts/{account_id}/edit")
    page.fill("input[name=secret]", WRONG)
    page.click("button[value=save]")
    expect(page.get_by_role("alert")).to_contain_text("AUTH_FAILED")
    expect(page.locator(".verify tr[data-step=authenticate]")).to_contain_text("fail")
    expect(page.locator(".verify .findings")).to_contain_text("AUTH_FAILED")
    no_secrets(page, WRONG, password)
    page.fill("input[name=secret]", WRONG)
    page.check("input[name=force]")
    page.click("button[value=save]")
    expect(page).to_have_url(f"{s.url}/accounts/{account_id}")

    # The account page follows: auth_error, the state change announced, the error with its fix
    # and evidence, and (after 3 refusals) no more attempts, with a button to retry.
    expect(page.locator("#account-state .badge")).to_have_attribute(
        "data-state", "auth_error", timeout=15_000
    )
    expect(page.locator("#announce")).to_contain_text("is now auth error")
    expect(page.locator("#account-live .next-attempt")).to_contain_text(
        "refused logins in a row", timeout=20_000
    )
    entry = page.locator("#account-live .error-entry").first
    expect(entry.locator(".code")).to_have_text("AUTH_FAILED")
    expect(entry.locator(".fix")).to_contain_text("Fix:")
    entry = page.locator(f"#{entry.get_attribute('id')}")
    entry.locator("details summary").click()
    expect(entry.locator("details")).to_have_attribute("open", "")
    polls(page, f"/ui/accounts/{account_id}/live", 2)
    expect(entry.locator("details")).to_have_attribute("open", "")  # the reader's choice stays
    expect(page.locator(f"#retry-{account_id}")).to_have_text("Retry now")
    no_secrets(page, WRONG, password, s.token)

    # Fix it: the page (not reloaded) goes back to idle.
    page.click("text=Edit")
    page.fill("input[name=secret]", password)
    page.click("button[value=save]")
    expect(page).to_have_url(f"{s.url}/accounts/{account_id}")
    expect(page.locator("#account-state .badge")).to_have_attribute(
        "data-state", "idle", timeout=15_000
    )
    # New mail appears on the page by itself.
    append(dovecot, b"From: Carol <carol@example.test>\r\nSubject: fresh mail\r\n\r\nhi\r\n")
    expect(page.locator("#account-live .messages")).to_contain_text("fresh mail", timeout=20_000)
    expect(page.locator("#account-live .messages")).to_contain_text("Carol")
    page.close()


def test_a_halted_account_can_be_retried_from_the_ui(
    browser: Browser, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The sandbox refuses at once (Dovecot's growing auth penalty would make this slow)."""
    options = SyncOptions(ca_file=str(sandbox.ca_file), timeout=5,
                          backoff=Backoff(first=0.05, cap=0.3))  # fmt: skip
    with serving(tmp_path / "data", options) as s:
        body = {"email": "halt@example.test", "host": "localhost",
                "port": sandbox.server.tls_port, "username": "alice", "secret": WRONG}  # fmt: skip
        with s.client() as client:
            added = client.post("/api/v1/accounts", json=body, params={"force": True})
            account_id = added.json()["id"]
        page = browser.new_page()
        login(page, s)
        page.goto(f"{s.url}/accounts/{account_id}")
        expect(page.locator("#account-live .next-attempt")).to_contain_text(
            "refused logins in a row", timeout=20_000
        )
        tried = len(sandbox.logins)
        page.click(f"#retry-{account_id}")
        # It tries again at once, without an edit or a pause, and stops again.
        expect(page.locator("#account-live .next-attempt")).to_contain_text(
            "refused logins in a row", timeout=20_000
        )
        assert len(sandbox.logins) > tried
        page.close()


def test_verify_stored_settings_and_trust_a_private_ca_from_the_form(
    browser: Browser, start_dovecot: Any, tmp_path: Path
) -> None:
    """serve is given no CA: the rig's private CA is uploaded in the form, kept with the
    account, and used by the verify step and the running account alike."""
    dovecot = start_dovecot(messages=3)
    user, password = next(iter(dovecot.users.items()))
    options = SyncOptions(timeout=5, backoff=Backoff(first=0.05, cap=0.3))
    with serving(tmp_path / "data", options) as s:
        page = browser.new_page()
        login(page, s)
        page.goto(f"{s.url}/accounts/new")
        fields = {"email": f"{user}@example.test", "host": "localhost",
                  "port": str(dovecot.tls_port), "username": user, "secret": password}  # fmt: skip
        for name, value in fields.items():
            page.fill(f"input[name={name}]", value)
        page.click("button[value=save]")
        expect(page.get_by_role("alert")).to_contain_text("CERT_UNTRUSTED")
        page.fill("input[name=secret]", password)
        page.set_input_files("input[name=ca_upload]", str(dovecot.ca_file))
        page.click("button[value=save]")
        expect(page).to_have_url(re.compile(r"/accounts/\d+$"))
        expect(page.locator("main")).to_contain_text("Also trusts the CA")
        expect(page.locator("#account-state .badge")).to_have_attribute(
            "data-state", "idle", timeout=15_000
        )
        page.click("text=Verify stored settings")
        expect(page.locator("#check")).to_have_attribute("data-done", "yes", timeout=15_000)
        expect(page.locator(".verdict")).to_have_attribute("data-status", "ok")
        expect(page.get_by_role("link", name="Back to the account")).to_be_visible()
        # A garbage "CA" is refused with what to give, and what was typed is kept.
        page.goto(page.url.split("/check")[0] + "/accounts/new")
        for name, value in {**fields, "email": "other@example.test"}.items():
            page.fill(f"input[name={name}]", value)
        page.fill("textarea[name=ca_pem]", "not a certificate")
        page.click("button[value=verify]")
        expect(page.get_by_role("alert")).to_contain_text("no PEM certificate")
        expect(page.locator("input[name=email]")).to_have_value("other@example.test")
        page.close()


def test_messages_page_pages_searches_and_opens_a_message_safely(
    browser: Browser, start_dovecot: Any, tmp_path: Path
) -> None:
    dovecot = start_dovecot(messages=60)
    append(dovecot, html_mail())
    _user, password = next(iter(dovecot.users.items()))
    options = SyncOptions(ca_file=str(dovecot.ca_file), timeout=5)
    with serving(tmp_path / "data", options) as s:
        account_id = add_account(s, dovecot, email="m@example.test", password=password)
        page = browser.new_page()
        login(page, s)
        page.goto(f"{s.url}/accounts/{account_id}")
        expect(page.locator("#recent-heading")).to_contain_text("61 in all", timeout=20_000)
        page.click("text=All 61 messages")
        expect(page.locator("#shown")).to_have_text("1\N{EN DASH}50 of 61")
        page.click("nav.pager >> text=Older")
        expect(page.locator("#shown")).to_have_text("51\N{EN DASH}61 of 61")
        expect(page.locator("table.messages tbody tr")).to_have_count(11)
        page.fill("input[name=q]", "smïth")  # the sender's display name is searchable
        page.click("form.search button")
        expect(page.locator("#shown")).to_have_text("1\N{EN DASH}1 of 1")
        row = page.locator("table.messages tbody tr")
        expect(row).to_contain_text("Bob Smïth")
        expect(row).to_contain_text("bob@example.test")
        page.select_option("select[name=folder]", "INBOX")
        page.check("input[name=unseen]")
        page.click("form.search button")
        expect(page.locator("#shown")).to_have_text("1\N{EN DASH}1 of 1")
        row.get_by_role("link", name="Quarterly report", exact=True).click()

        expect(page.get_by_role("heading", name="Quarterly report")).to_be_visible()
        expect(page.locator("dl.headers")).to_contain_text("Bob Smïth <bob@example.test>")
        expect(page.locator("pre.body-text")).to_contain_text("Hello in plain text.")
        expect(page.locator(".attachments")).to_contain_text("report.pdf")
        expect(page.locator(".attachments")).to_contain_text("application/pdf")
        frame = page.locator("iframe.body-html")
        expect(frame).to_have_attribute("sandbox", "")
        body = page.frame_locator("iframe.body-html").locator("body")
        expect(body.locator("#hello")).to_have_text("Hello in HTML.")
        expect(body).not_to_contain_text("PWNED")  # its script did not run
        # The frame's own policy: nothing runs, nothing loads from the network.
        with httpx.Client(base_url=s.url) as client:
            for cookie in page.context.cookies():
                client.cookies.set(cookie["name"], cookie["value"])
            src = frame.get_attribute("src")
            assert src is not None
            html = client.get(src)
            policy = html.headers["content-security-policy"]
            assert "default-src 'none'" in policy
            assert "sandbox" in policy
            assert "script-src" not in policy
            assert html.headers["x-frame-options"] == "SAMEORIGIN"
        page.close()


def test_the_accounts_page_pages_and_filters_many_accounts(
    browser: Browser, tmp_path: Path
) -> None:
    """105 accounts (paused: nothing to connect to): the page shows 100 and a link to the
    next ones; the filter finds by e-mail and by state, and the live rows keep the filter."""
    data = tmp_path / "data"

    async def register() -> None:
        store = await Store.open(data)
        try:
            for n in range(105):
                added = await store.add_account(AccountSpec(
                    email=f"acct-{n}@example.test", host="127.0.0.1", port=free_port(),
                    security="tls", username=f"acct-{n}"), "pw")  # fmt: skip
                await store.set_paused(added.id, True)
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
        pool.submit(asyncio.run, register()).result(60)
    with serving(data, SyncOptions(timeout=5)) as s:
        page = browser.new_page()
        login(page, s)
        rows = page.locator("#rows tr[data-account]")
        expect(rows).to_have_count(100)
        expect(page.locator("#shown")).to_have_text("100 of 105 accounts")
        page.click("#next-page")
        expect(rows).to_have_count(5)
        expect(page.locator("#shown")).to_have_text("5 of 105 accounts, after account 100")
        expect(page.locator("#next-page")).to_have_count(0)
        page.click("nav.pager >> text=First page")
        expect(rows).to_have_count(100)

        page.fill("input[name=q]", "ACCT-10")
        page.click("form.search button")
        expect(rows).to_have_count(6)  # acct-10 and acct-100 to acct-104
        expect(page.locator("#shown")).to_have_text("6 of 6 accounts matching")
        polls(page, "/ui/accounts/rows?q=ACCT-10", 1)  # the live rows keep the filter
        expect(rows).to_have_count(6)
        page.select_option("select[name=state]", "idle")
        page.click("form.search button")
        expect(page.locator("#shown")).to_have_text("No account matches.")
        expect(page.locator("#no-accounts")).to_contain_text("No account on this page matches")
        page.goto(f"{s.url}/accounts?state=paused&after=nonsense")  # a bad bookmark still shows
        expect(rows).to_have_count(100)
        page.close()


def test_tokens_page_makes_one_shown_once_and_revokes(
    browser: Browser, served: tuple[Serving, Any]
) -> None:
    s, _dovecot = served
    page = browser.new_page()
    login(page, s)
    page.click("nav >> text=Tokens")
    page.fill("input[name=name]", "ci pipeline")
    page.click("text=Make a token")
    token = page.locator("#new-token").inner_text()
    assert token.startswith("isk_")
    with httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.get("/api/v1/accounts").status_code == 200
        page.goto(f"{s.url}/tokens")  # shown once: not on the page again
        expect(page.locator("main")).not_to_contain_text(token)
        page.once("dialog", lambda d: d.accept())
        page.locator("tr", has_text="ci pipeline").get_by_role("button", name="Revoke").click()
        expect(page.locator("main")).not_to_contain_text("ci pipeline")
        assert api.get("/api/v1/accounts").status_code == 401
    # Revoking the token this session was made with logs it out.
    page.once("dialog", lambda d: d.accept())
    page.locator("tr", has_text="this session").get_by_role("button", name="Revoke").click()
    expect(page).to_have_url(f"{s.url}/login")
    page.goto(f"{s.url}/accounts")
    expect(page).to_have_url(f"{s.url}/login")
    page.close()


def test_times_show_in_the_browsers_zone_with_utc_on_hover(
    browser: Browser, served: tuple[Serving, Any]
) -> None:
    s, dovecot = served
    _user, password = next(iter(dovecot.users.items()))
    account_id = add_account(s, dovecot, email="t@example.test", password=password)
    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    page = context.new_page()
    login(page, s)
    last_sync = page.locator(f"#account-{account_id} time")
    expect(last_sync).to_have_text(re.compile(r"(second|now|minute)"), timeout=15_000)
    assert "UTC" in (last_sync.get_attribute("title") or "")
    page.goto(f"{s.url}/accounts/{account_id}/messages")
    date = page.locator("table.messages time").first
    stamp = dt.datetime.fromisoformat(str(date.get_attribute("datetime")))
    tokyo = stamp.astimezone(dt.timezone(dt.timedelta(hours=9)))
    expect(date).to_contain_text(tokyo.strftime("%H:%M"))
    assert (date.get_attribute("title") or "").endswith("UTC")
    context.close()


# -- accessibility and layout ------------------------------------------------------------------


def test_every_page_passes_axe_in_both_themes_at_both_widths(
    browser: Browser, served: tuple[Serving, Any], tmp_path: Path
) -> None:
    s, dovecot = served
    _user, password = next(iter(dovecot.users.items()))
    append(dovecot, html_mail())
    good = add_account(s, dovecot, email="good@example.test", password=password,
                       name="A rather long display name for a narrow phone screen")  # fmt: skip
    bad = add_account(s, dovecot, email="bad@example.test", password=WRONG, force=True)
    first = browser.new_page()
    login(first, s)
    expect(first.locator(f'#account-{bad} .badge[data-state="auth_error"]')).to_be_visible(
        timeout=15_000
    )
    expect(first.locator(f"#account-{good} .badge")).to_have_attribute(
        "data-state", "idle", timeout=15_000
    )
    first.goto(f"{s.url}/accounts/{good}/messages?q=Sm%C3%AFth")
    first.get_by_role("link", name="Quarterly report", exact=True).click()
    message_url = first.url
    first.goto(f"{s.url}/accounts/{bad}")
    first.click("text=Verify stored settings")
    expect(first.locator("#check")).to_have_attribute("data-done", "yes", timeout=40_000)
    check_url = first.url
    state = first.context.storage_state()
    first.close()

    pages = {
        "accounts": "/accounts", "account": f"/accounts/{good}", "failing": f"/accounts/{bad}",
        "messages": f"/accounts/{good}/messages", "message": message_url.replace(s.url, ""),
        "add": "/accounts/new", "edit": f"/accounts/{bad}/edit",
        "check": check_url.replace(s.url, ""), "check-form": "/check", "tokens": "/tokens",
        "not-found": "/no/such/page",
    }  # fmt: skip
    axe = Axe()
    found: list[str] = []
    screens = tmp_path / "screens"
    screens.mkdir()
    for scheme in ("light", "dark"):
        for name_of_width, viewport in (("1280", WIDE), ("390", NARROW)):
            context: BrowserContext = browser.new_context(
                viewport=viewport,
                color_scheme=scheme,
                storage_state=state,  # type: ignore[arg-type]
            )
            page = context.new_page()
            views = {**pages, "modal": "/accounts"}
            for name, path in views.items():
                page.goto(s.url + path)
                if name == "modal":
                    page.locator(f"#state-{bad}").click()
                    expect(page.get_by_role("dialog")).to_be_visible()
                    expect(page.locator("#modal .error-entry").first).to_be_visible()
                found += violations(axe, page, f"{name} {scheme} {name_of_width}")
                if viewport is NARROW:
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= NARROW["width"], (
                        f"{name} ({scheme}) is {width} px wide: " + ", ".join(overflowing(page))
                    )
                shot = screens / f"{name}-{scheme}-{name_of_width}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 5_000
            context.close()
    # The login page, logged out.
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=NARROW, color_scheme=scheme)  # type: ignore[arg-type]
        page = context.new_page()
        page.goto(f"{s.url}/login")
        found += violations(axe, page, f"login {scheme}")
        context.close()
    assert found == [], "\n".join(found)


def overflowing(page: Page) -> list[str]:
    """The elements that stick out to the right of the viewport (for the failure message)."""
    found: list[str] = page.evaluate(
        """() => Array.from(document.querySelectorAll("body *"))
            .filter(e => e.getBoundingClientRect().right > document.body.clientWidth + 1)
            .slice(0, 8).map(e => e.tagName + "." + e.className + "#" + e.id)"""
    )
    return found


def sweep(
    browser: Browser, base: str, state: Any, pages: dict[str, str], *secrets: str
) -> list[str]:
    """Every page, logged in (``state``), in both themes at both widths: axe-core's blocking
    violations, and no page wider than a phone; no page holds any of ``secrets``."""
    axe, found = Axe(), []
    for scheme in ("light", "dark"):
        for width_name, viewport in (("1280", WIDE), ("390", NARROW)):
            context: BrowserContext = browser.new_context(
                viewport=viewport, color_scheme=scheme,  # type: ignore[arg-type]
                storage_state=state,
            )  # fmt: skip
            view = context.new_page()
            for name, path in pages.items():
                view.goto(base + path)
                found += violations(axe, view, f"{name} {scheme} {width_name}")
                if viewport is NARROW:
                    wide = view.evaluate("document.documentElement.scrollWidth")
                    assert wide <= NARROW["width"], f"{name}: {wide} px: " + ", ".join(
                        overflowing(view)
                    )
                no_secrets(view, *secrets)
            context.close()
    return found


def violations(axe: Axe, page: Page, where: str) -> list[str]:
    results = axe.run(page)
    return [
        f"{where}: {v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in results.response["violations"]
        if v.get("impact") in BLOCKING
    ]


# -- without a browser -------------------------------------------------------------------------


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
        # A missing account, or an address that is not one, is an HTML page that says so; the
        # API stays JSON.
        for path, said in (("/accounts/999", "no account with id 999"),
                           ("/accounts/abc", "not valid here"),
                           ("/nope", "no such page")):  # fmt: skip
            missing = client.get(path)
            assert missing.status_code == 404
            assert "text/html" in missing.headers["content-type"]
            assert said in missing.text
        api = client.get("/api/v1/accounts/999", headers={"Authorization": f"Bearer {s.token}"})
        assert api.json() == {"error": api.json()["error"]}
        favicon = client.get("/favicon.ico")
        assert favicon.status_code == 200
        assert favicon.headers["content-type"].startswith("image/svg+xml")


def test_a_login_lives_in_the_database_across_restarts_and_workers(
    served: tuple[Serving, Any], tmp_path: Path
) -> None:
    s, dovecot = served
    with httpx.Client(base_url=s.url, follow_redirects=False) as client:
        assert client.post("/login", data={"token": s.token}).status_code == 303
        cookie = dict(client.cookies)
    options = SyncOptions(ca_file=str(dovecot.ca_file), timeout=5)
    # Another process on the same database (a second worker, or serve after a restart).
    with (
        serving(tmp_path / "data", options) as other,
        httpx.Client(base_url=other.url, cookies=cookie, follow_redirects=False) as client,
    ):
        assert client.get("/accounts").status_code == 200
        stored = other.call(lambda store: store.tokens())
        other.call(lambda store: store.revoke_token(stored[0].id))
        assert client.get("/accounts").headers["location"] == "/login"  # revoked: logged out
    db = sqlite3.connect(tmp_path / "data" / DB_FILE)
    try:
        rows = db.execute("SELECT digest FROM web_sessions").fetchall()
    finally:
        db.close()
    assert cookie["imapscope_session"] not in str(rows)  # only its digest is kept
