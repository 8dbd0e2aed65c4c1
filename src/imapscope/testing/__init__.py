"""imapscope for your own tests: wait for a message and read its links and codes.

With pytest, the plugin (installed with imapscope, registered through the ``pytest11`` entry
point) gives these fixtures:

- ``imapscope_mailbox``: a :class:`Mailbox` of the sandbox, started in the test process on free
  ports with a serve syncing it (once per session): ``send`` to it over SMTP, ``expect`` a
  message, ``wait`` for it;
- ``imapscope_async_mailbox``: the same as an :class:`AsyncMailbox` (awaited methods);
- ``imapscope_serve_mailbox``: a :class:`Mailbox` of an account of a running ``imapscope
  serve``, named by ``--imapscope-url``, ``--imapscope-token`` and ``--imapscope-account`` (or
  $IMAPSCOPE_URL, $IMAPSCOPE_TOKEN, $IMAPSCOPE_ACCOUNT).

::

    def test_welcome_mail(imapscope_mailbox):
        expected = imapscope_mailbox.expect(subject="Welcome")   # register first,
        sign_up(email=imapscope_mailbox.address)                 # then trigger the mail
        msg = expected.wait(timeout=10)
        assert msg.links[0].startswith("https://app.example/verify")

Without pytest: :func:`local_stack` starts the same sandbox and serve; :class:`Mailbox` points at
any serve. docs/receive.md has the whole story.
"""

from imapscope.testing._client import (
    AsyncExpectation,
    AsyncMailbox,
    Attachment,
    Expectation,
    Mailbox,
    Message,
    NoMessageError,
    ReceiveApiError,
    _Target,
)
from imapscope.testing._local import LocalStack, LoopThread, Served, local_stack, serve_in_thread


def mailbox_of(url: str, token: str, account_id: int, address: str = "") -> Mailbox:
    """A :class:`Mailbox` of an account of a running serve (no SMTP: the application under
    test sends the mail)."""
    return Mailbox(_Target(url.rstrip("/"), token, account_id, address))


def async_mailbox_of(url: str, token: str, account_id: int, address: str = "") -> AsyncMailbox:
    return AsyncMailbox(_Target(url.rstrip("/"), token, account_id, address))


__all__ = [
    "AsyncExpectation",
    "AsyncMailbox",
    "Attachment",
    "Expectation",
    "LocalStack",
    "LoopThread",
    "Mailbox",
    "Message",
    "NoMessageError",
    "ReceiveApiError",
    "Served",
    "async_mailbox_of",
    "local_stack",
    "mailbox_of",
    "serve_in_thread",
]
