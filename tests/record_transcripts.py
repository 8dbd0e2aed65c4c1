"""Record what Dovecot, Courier-IMAP and Cyrus say to a fixed session, for the codec's tables.

    .venv/bin/python -m tests.record_transcripts

Writes tests/fixtures/transcripts/<server>.txt: each line is ``C: `` (sent, secrets redacted) or
``S: `` (received) followed by the line as Python bytes literal text. Re-run when the servers'
versions change; test_codec_transcripts.py parses every recorded server line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from imapscope.imap import (
    Append,
    CapabilityCommand,
    Create,
    Delete,
    Enable,
    Expunge,
    Fetch,
    Id,
    List,
    Login,
    Logout,
    MyRights,
    Namespace,
    NamespaceResponse,
    Noop,
    Search,
    Select,
    Status,
    Store,
)
from tests.imap_driver import Driver
from tests.servers.courier import start_courier
from tests.servers.cyrus import start_cyrus
from tests.servers.dovecot import start_dovecot
from tests.servers.rig import RunningServer, TestCA

OUT = Path(__file__).parent / "fixtures" / "transcripts"
MESSAGE = b"From: a@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nhello\r\n"


def session(server: RunningServer, ca: TestCA) -> list[tuple[str, bytes]]:
    driver = Driver(server.host, server.port)
    driver.run(CapabilityCommand())
    driver.starttls(ca.client_context())
    driver.run(CapabilityCommand())
    driver.run(Login("alice", server.users["alice"]))
    _, untagged = driver.run(Namespace())
    prefix = next(e for e in untagged if isinstance(e, NamespaceResponse)).personal[0][0]
    scratch = f"{prefix}Scratch Ü"
    for command in (
        CapabilityCommand(),
        Id({"name": "imapscope-recorder"}),
        Enable(("CONDSTORE",)),
        List("", "*"),
        Status("INBOX", ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN")),
        Create(scratch),
        Append(scratch, MESSAGE, ("\\Seen",)),
        Select(scratch),
        Fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)"),
        Fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])"),
        Store("1", ("\\Flagged",)),
        Search("ALL"),
        Search("UNSEEN"),
        MyRights("INBOX"),
        Store("1", ("\\Deleted",), silent=True),
        Expunge(),
        Select("INBOX", readonly=True),
        Fetch("1:3", "(UID FLAGS ENVELOPE)"),
        Noop(),
        Delete(scratch),
        Logout(),
    ):
        driver.run(command)
    driver.close()
    return driver.log


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    ca = TestCA(Path(tempfile.mkdtemp(prefix="imapscope-record-")))
    starters = (("dovecot", start_dovecot), ("courier", start_courier), ("cyrus", start_cyrus))
    for name, start in starters:
        server = start(ca, messages=3)
        try:
            log = session(server, ca)
        finally:
            server.stop()
        lines = [f"{'C' if d == 'C' else 'S'}: {line!r}" for d, line in log]
        (OUT / f"{name}.txt").write_text("\n".join(lines) + "\n")
        print(f"{name}: {len(lines)} lines")


if __name__ == "__main__":
    main()
