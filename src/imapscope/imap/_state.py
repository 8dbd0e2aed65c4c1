"""The IMAP connection states, as tables (RFC 9051 section 3).

::

                  +----------------------+
                  |connection established|
                  +----------------------+
                             |
                     (greeting: OK)  (greeting: PREAUTH)
                             v                 \\
     +--------------------------+               \\
     |    NOT_AUTHENTICATED     |                \\
     +--------------------------+                 \\
        | LOGIN / AUTHENTICATE OK                  \\
        v                                           v
     +--------------------------+  SELECT/EXAMINE OK  +--------------------------+
     |      AUTHENTICATED       |-------------------->|        SELECTED          |
     |                          |<--------------------|                          |
     +--------------------------+ CLOSE/UNSELECT OK,  +--------------------------+
                  |               failed SELECT/EXAMINE             |
                  +------------- LOGOUT, BYE -----------------------+
                                     v
                               +-----------+
                               |  LOGOUT   |
                               +-----------+

``ALLOWED`` says in which states a command may be sent (client) or accepted (server);
``ON_OK`` says where a tagged OK moves; ``ON_NO`` covers the one failure that moves (a failed
SELECT/EXAMINE leaves no mailbox selected, RFC 9051 6.3.2).
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset(State) - {State.LOGOUT}
_AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
_NONAUTH = frozenset({State.NOT_AUTHENTICATED})
_SELECTED = frozenset({State.SELECTED})

ALLOWED: dict[str, frozenset[State]] = {
    # any state
    "CAPABILITY": _ANY, "NOOP": _ANY, "LOGOUT": _ANY, "ID": _ANY,
    # not authenticated
    "STARTTLS": _NONAUTH, "LOGIN": _NONAUTH, "AUTHENTICATE": _NONAUTH,
    # authenticated (and selected)
    "ENABLE": _AUTH, "SELECT": _AUTH, "EXAMINE": _AUTH, "CREATE": _AUTH, "DELETE": _AUTH,
    "RENAME": _AUTH, "SUBSCRIBE": _AUTH, "UNSUBSCRIBE": _AUTH, "LIST": _AUTH, "LSUB": _AUTH,
    "NAMESPACE": _AUTH, "STATUS": _AUTH, "APPEND": _AUTH, "IDLE": _AUTH,
    "GETQUOTAROOT": _AUTH, "GETQUOTA": _AUTH, "GETACL": _AUTH, "MYRIGHTS": _AUTH,
    # selected
    "CHECK": _SELECTED, "CLOSE": _SELECTED, "UNSELECT": _SELECTED, "EXPUNGE": _SELECTED,
    "SEARCH": _SELECTED, "FETCH": _SELECTED, "STORE": _SELECTED, "COPY": _SELECTED,
    "MOVE": _SELECTED, "UID": _SELECTED, "SORT": _SELECTED, "THREAD": _SELECTED,
}  # fmt: skip

ON_OK: dict[str, State] = {
    "LOGIN": State.AUTHENTICATED,
    "AUTHENTICATE": State.AUTHENTICATED,
    "SELECT": State.SELECTED,
    "EXAMINE": State.SELECTED,
    "CLOSE": State.AUTHENTICATED,
    "UNSELECT": State.AUTHENTICATED,
    "LOGOUT": State.LOGOUT,
}

ON_NO: dict[str, State] = {"SELECT": State.AUTHENTICATED, "EXAMINE": State.AUTHENTICATED}


def first_word(verb: str) -> str:
    """The word the tables are keyed on: ``"UID FETCH"`` is checked as ``"UID"``."""
    return verb.split(" ", 1)[0].upper()


def state_diagram() -> str:
    """The ALLOWED table as text, for the docs (generated, so it cannot drift)."""
    rows = []
    for state in State:
        if state is State.LOGOUT:
            continue
        verbs = sorted(v for v, states in ALLOWED.items() if state in states)
        rows.append(f"{state.value}: {' '.join(verbs)}")
    moves = [f"{verb} OK -> {target.value}" for verb, target in ON_OK.items()]
    moves += [f"{verb} NO -> {target.value}" for verb, target in ON_NO.items()]
    return "\n".join(rows + moves)
