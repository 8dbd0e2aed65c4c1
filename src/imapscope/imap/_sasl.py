"""SASL client mechanisms as generators: no IO, so they run anywhere and test without sockets.

A mechanism is a generator that yields each client response (bytes, before base64) and receives
each server challenge (bytes, after base64). The first ``yield`` is the initial response, sent with
SASL-IR (RFC 4959) when the server allows it. Responses are secrets: the connection never logs
them.

    PLAIN        RFC 4616   authzid NUL authcid NUL password
    LOGIN        draft      username, then password, each on request
    XOAUTH2      Google     "user=" user ^A "auth=Bearer " token ^A ^A; an error challenge is
                            answered with an empty response, after which the server sends NO
    OAUTHBEARER  RFC 7628   gs2 header, ^A auth=Bearer token ^A ^A
    CRAM-MD5     RFC 2195   username SP hex(HMAC-MD5(password, challenge))
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Generator
from dataclasses import dataclass, field

from imapscope.imap._errors import LocalProtocolError

Exchange = Generator[bytes, bytes, None]


@dataclass(frozen=True, slots=True)
class Mechanism:
    """A SASL mechanism with its credentials; :meth:`exchange` starts a fresh conversation."""

    name: str
    user: str
    secret: str = field(repr=False)
    authzid: str = ""
    host: str = ""
    port: int = 0

    def exchange(self) -> Exchange:
        try:
            run = _MECHANISMS[self.name.upper()]
        except KeyError:
            raise LocalProtocolError(
                f"unsupported SASL mechanism {self.name}",
                hint=f"choose one of {', '.join(sorted(_MECHANISMS))}",
            ) from None
        return run(self)

    @property
    def has_initial_response(self) -> bool:
        return self.name.upper() in ("PLAIN", "XOAUTH2", "OAUTHBEARER")


def _plain(mech: Mechanism) -> Exchange:
    yield f"{mech.authzid}\0{mech.user}\0{mech.secret}".encode()


def _login(mech: Mechanism) -> Exchange:
    yield b""  # no initial response: LOGIN waits for the server's prompts
    yield mech.user.encode()
    yield mech.secret.encode()


def _xoauth2(mech: Mechanism) -> Exchange:
    challenge = yield f"user={mech.user}\x01auth=Bearer {mech.secret}\x01\x01".encode()
    if challenge:
        yield b""  # the server sent a JSON error; an empty response ends the exchange with NO


def _oauthbearer(mech: Mechanism) -> Exchange:
    authzid = f"a={mech.user}," if mech.user else ""
    host = f"host={mech.host}\x01" if mech.host else ""
    port = f"port={mech.port}\x01" if mech.port else ""
    challenge = yield f"n,{authzid}\x01{host}{port}auth=Bearer {mech.secret}\x01\x01".encode()
    if challenge:
        yield b"\x01"  # RFC 7628 3.2.3: a failure challenge is answered with %x01


def _cram_md5(mech: Mechanism) -> Exchange:
    challenge = yield b""
    digest = hmac.new(mech.secret.encode(), challenge, hashlib.md5).hexdigest()
    yield f"{mech.user} {digest}".encode()


_MECHANISMS = {
    "PLAIN": _plain,
    "LOGIN": _login,
    "XOAUTH2": _xoauth2,
    "OAUTHBEARER": _oauthbearer,
    "CRAM-MD5": _cram_md5,
}
SUPPORTED = tuple(_MECHANISMS)
