"""The pytest plugin, as a user meets it: installed with imapscope (the ``pytest11`` entry
point, nothing to configure), run in a pytest of its own. The complete example of
docs/receive.md runs as written; the fixtures that point at a running serve take it from the
command line, and say what is missing when it is not given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.serving import Serving
from tests.test_api import account, wait_for

ROOT = Path(__file__).parent.parent


def documented_example() -> str:
    text = (ROOT / "docs" / "receive.md").read_text()
    section = text.split("## In Python, and the pytest plugin", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "docs/receive.md lost its example"
    return found.group(1)


def test_the_documented_example_passes_and_a_failed_wait_names_its_near_misses(
    pytester: pytest.Pytester,
) -> None:
    """One pytest run (one sandbox and serve for its session): the example of docs/receive.md
    as written, and a test whose wait fails, which reads as an assertion with the near miss."""
    pytester.makepyfile(test_example=documented_example(), test_fails="""
        def test_it(imapscope_mailbox):
            expected = imapscope_mailbox.expect(subject="Verify your account")
            imapscope_mailbox.send("Verify your acct", "typo")
            expected.wait(timeout=1)
    """)  # fmt: skip
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=180)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "*NoMessageError: no message matched (subject='Verify your account') in INBOX*",
        "*near misses:*",
        "*INBOX uid * 'Verify your acct': subject 'Verify your acct', not containing "
        "'Verify your account' (close: *% alike)*",
    ])  # fmt: skip


def test_the_serve_fixtures_point_at_a_running_serve(
    pytester: pytest.Pytester, served: Serving, sandbox: Sandbox
) -> None:
    with served.client() as api:
        alice = api.post("/api/v1/accounts", json=account(sandbox)).json()["id"]
        wait_for(api, f"/api/v1/accounts/{alice}", lambda a: a["state"] == "idle")
    pytester.makepyfile(test_remote=f"""
        import smtplib
        from email.message import EmailMessage

        def test_remote(imapscope_serve_mailbox):
            expected = imapscope_serve_mailbox.expect(subject="Order shipped")
            message = EmailMessage()
            message["From"], message["To"] = "shop@acme.test", "alice@example.test"
            message["Subject"] = "Order shipped"
            message.set_content("Track it: https://acme.test/track/42")
            with smtplib.SMTP("127.0.0.1", {sandbox.server.smtp_port}) as smtp:
                smtp.send_message(message)
            assert expected.wait(timeout=10).links == ["https://acme.test/track/42"]
    """)  # fmt: skip
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-q", "--imapscope-url", served.url,
        "--imapscope-token", served.token, "--imapscope-account", str(alice), timeout=120,
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    no_options = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rs", timeout=120)
    no_options.assert_outcomes(skipped=1)
    no_options.stdout.fnmatch_lines(["*needs a running serve: give --imapscope-url*"])
