"""A stress mix for IMAP servers: sessions on one mailbox, each checking every untagged response
against its own model of the mailbox (RFC 3501 §5.5, §7.4.1): no EXPUNGE or FETCH for a message
number it was not told about, no message number whose UID changed, no keyword outside the last
FLAGS. Used by tests/test_sandbox_stress.py and bench/sandbox_stress.py; bounded by a deadline."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from imapscope.imap import (
    Append,
    Exists,
    Expunge,
    ExpungeResponse,
    Fetch,
    FetchResponse,
    Flags,
    Login,
    Noop,
    Search,
    Select,
    Store,
)
from imapscope.net import ImapConnection

KEYWORDS = ("$Work", "$Later", "$Important", "Project-X")


@dataclass
class Model:
    """What one session knows: message number -> UID (None until a FETCH told it)."""

    uids: list[int | None] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    commands: int = 0

    def check(self, responses: list[object], command: str) -> None:
        for r in responses:
            if isinstance(r, Flags):
                self.flags = set(r.flags)
            elif isinstance(r, Exists):
                if r.count < len(self.uids):
                    self.errors.append(f"{command}: EXISTS {r.count} below {len(self.uids)}")
                self.uids += [None] * (r.count - len(self.uids))
            elif isinstance(r, ExpungeResponse):
                if not 1 <= r.seq <= len(self.uids):
                    self.errors.append(f"{command}: EXPUNGE {r.seq} of {len(self.uids)}")
                else:
                    del self.uids[r.seq - 1]
            elif isinstance(r, FetchResponse):
                if not 1 <= r.seq <= len(self.uids):
                    self.errors.append(f"{command}: FETCH {r.seq} of {len(self.uids)}")
                    continue
                known = self.uids[r.seq - 1]
                if r.uid is not None:
                    if known is not None and known != r.uid:
                        self.errors.append(f"{command}: message {r.seq} was UID {known}, "
                                           f"now {r.uid}")  # fmt: skip
                    self.uids[r.seq - 1] = r.uid
                for flag in r.flags or ():
                    if not flag.startswith("\\") and flag not in self.flags:
                        self.errors.append(f"{command}: keyword {flag} not in FLAGS")


async def session(port: int, user: str, password: str, deadline: float, seed: int) -> Model:
    rng = random.Random(seed)
    model = Model()
    conn = await ImapConnection.open("127.0.0.1", "127.0.0.1", port, security="plain",
                                     context=None, timeout=10)  # fmt: skip
    try:
        await conn.greeting()
        await conn.run(Login(user, password))
        selected = await conn.run(Select("INBOX"))
        model.check(selected.untagged, "SELECT")
        while time.monotonic() < deadline:
            count = len(model.uids)
            pick = rng.random()
            if pick < 0.2 or not count:
                command: object = Append("INBOX", b"Subject: stress\r\n\r\nbody\r\n")
            elif pick < 0.35:
                command = Noop()
            elif pick < 0.5:
                command = Fetch(f"1:{count}", "(UID FLAGS)")
            elif pick < 0.6:
                command = Fetch("1:*", "(UID FLAGS)", uid=True)
            elif pick < 0.75:
                n = rng.randint(1, count)
                flag = rng.choice((*KEYWORDS, "\\Seen", "\\Flagged"))
                command = Store(str(n), (flag,), rng.choice("+-"))
            elif pick < 0.85:
                command = Store(str(rng.randint(1, count)), ("\\Deleted",), "+")
            elif pick < 0.92:
                command = Expunge()
            else:
                command = Search("ALL")
            result = await conn.run(command)  # type: ignore[arg-type]
            model.commands += 1
            model.check(result.untagged, type(command).__name__)
    finally:
        await conn.close()
    return model
