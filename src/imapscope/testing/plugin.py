"""The pytest plugin (entry point ``pytest11: imapscope``): fixtures for tests that wait for
mail. See :mod:`imapscope.testing`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from imapscope.testing import (
    AsyncMailbox,
    LocalStack,
    Mailbox,
    async_mailbox_of,
    local_stack,
    mailbox_of,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("imapscope", "imapscope: wait for mail in tests")
    group.addoption("--imapscope-url", default=None,
                    help="a running imapscope serve, for imapscope_serve_mailbox "
                         "(default: $IMAPSCOPE_URL)")  # fmt: skip
    group.addoption("--imapscope-token", default=None,
                    help="its API token (default: $IMAPSCOPE_TOKEN)")  # fmt: skip
    group.addoption("--imapscope-account", default=None, type=int,
                    help="the account to watch, by id (default: $IMAPSCOPE_ACCOUNT)")  # fmt: skip


@pytest.fixture(scope="session")
def imapscope_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The sandbox and a serve syncing its mailbox, in this process (once per session)."""
    with local_stack(tmp_path_factory.mktemp("imapscope")) as stack:
        yield stack


@pytest.fixture
def imapscope_mailbox(imapscope_stack: LocalStack) -> Iterator[Mailbox]:
    """The sandbox's mailbox: ``send``, ``expect``, ``wait``. Only mail filed after an
    ``expect`` can match it, so tests do not see each other's mail."""
    mailbox = imapscope_stack.mailbox()
    try:
        yield mailbox
    finally:
        mailbox.close()


@pytest.fixture
def imapscope_async_mailbox(imapscope_stack: LocalStack) -> AsyncMailbox:
    """The sandbox's mailbox for asyncio tests: the same methods, awaited."""
    return imapscope_stack.async_mailbox()


def _remote(config: pytest.Config) -> tuple[str, str, int]:
    url = config.getoption("imapscope_url") or os.environ.get("IMAPSCOPE_URL")
    token = config.getoption("imapscope_token") or os.environ.get("IMAPSCOPE_TOKEN")
    account = config.getoption("imapscope_account") or os.environ.get("IMAPSCOPE_ACCOUNT")
    if not (url and token and account):
        pytest.skip("imapscope_serve_mailbox needs a running serve: give --imapscope-url, "
                    "--imapscope-token and --imapscope-account (or $IMAPSCOPE_URL, "
                    "$IMAPSCOPE_TOKEN, $IMAPSCOPE_ACCOUNT)")  # fmt: skip
    try:
        return url, token, int(account)
    except ValueError:
        raise pytest.UsageError(f"--imapscope-account must be an account id (a number), "
                                f"not {account!r}") from None  # fmt: skip


@pytest.fixture
def imapscope_serve_mailbox(request: pytest.FixtureRequest) -> Iterator[Mailbox]:
    """A mailbox of an account of a running serve (no ``send``: the application sends)."""
    mailbox = mailbox_of(*_remote(request.config))
    try:
        yield mailbox
    finally:
        mailbox.close()


@pytest.fixture
def imapscope_serve_async_mailbox(request: pytest.FixtureRequest) -> AsyncMailbox:
    return async_mailbox_of(*_remote(request.config))
