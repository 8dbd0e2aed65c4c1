"""The incident engine: from a monitor's runs to incidents and notices. Pure: no IO, no clock
(the caller passes ``now``), so every rule is tested with hand-made times.

Theory of operation
-------------------
Each run is ok or failed (a warning is ok). :func:`decide` folds one run into the monitor's
:class:`AlertState` and says which :class:`Notice` s to send:

- ``opened`` after ``fail_after`` failures in a row (default 2), ``resolved`` after
  ``recover_after`` successes in a row (default 2);
- ``code_changed`` when the headline code changes while open (``AUTH_FAILED`` ->
  ``CERT_EXPIRED``): the reason changed, so the person on call hears it;
- ``reminder`` every ``remind_every`` seconds while open (optional);
- ``escalated`` once, ``escalate_after`` seconds after opening (optional): from then on every
  notice of the incident also goes to the escalation channels;
- flapping: when the result changed more than ``flap_changes`` times within ``flap_window``
  seconds, one ``flapping`` notice and silence (the incident still opens and resolves, quietly)
  until the changes in the window fall to half that, then one ``stable`` notice with the state
  as it is;
- a run inside a maintenance window changes nothing and says nothing.

Incidents follow ``down``: the store opens one when a state goes down, records each new code,
and resolves it when the state comes up, whether or not the notices were silenced.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from imapscope.store import StoreError

#: Bounds for the rules, so a typo cannot make a monitor shout every second or never.
RULE_LIMITS: dict[str, tuple[int, int]] = {
    "fail_after": (1, 100),
    "recover_after": (1, 100),
    "remind_every": (60, 30 * 86400),
    "escalate_after": (60, 30 * 86400),
    "flap_changes": (2, 100),
    "flap_window": (60, 7 * 86400),
}


@dataclass(frozen=True, slots=True)
class Rules:
    fail_after: int = 2
    recover_after: int = 2
    remind_every: int | None = None  # seconds; None: no reminders
    escalate_after: int | None = None  # seconds; None: no escalation
    flap_changes: int = 6
    flap_window: int = 3600  # seconds

    @classmethod
    def of(cls, *layers: dict[str, Any]) -> Rules:
        """The rules from these layers of settings (global defaults, then a monitor's own),
        each checked against :data:`RULE_LIMITS`."""
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        check_rules(merged)
        return cls(**merged)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_rules(values: dict[str, Any]) -> None:
    """Refuse unknown names and values outside :data:`RULE_LIMITS`, saying what is allowed."""
    for name, value in values.items():
        if name not in RULE_LIMITS:
            raise StoreError(
                f"unknown alert rule {name!r}: use {', '.join(RULE_LIMITS)}"
            )  # fmt: skip
        if value is None and name in ("remind_every", "escalate_after"):
            continue
        low, high = RULE_LIMITS[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            unit = "" if name in ("fail_after", "recover_after", "flap_changes") else " seconds"
            raise StoreError(f"alert rule {name} = {value!r}: use a whole number {low}-{high}"
                             f"{unit}" + (" (or null for none)" if name in (
                                 "remind_every", "escalate_after") else ""))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Notice:
    """Something to tell the monitor's channels. ``escalation``: the escalation channels too."""

    kind: str  # opened | resolved | code_changed | reminder | escalated | flapping | stable
    code: str | None
    escalation: bool = False


def _time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


@dataclass(slots=True)
class AlertState:
    down: bool = False  # an incident is open
    streak: int = 0  # > 0: that many successes in a row; < 0: failures
    code: str | None = None  # the open incident's latest headline code
    incident: int | None = None  # the open incident's id (the store fills it in)
    opened: dt.datetime | None = None
    last_notice: dt.datetime | None = None
    escalated: bool = False
    changes: list[dt.datetime] = field(default_factory=list)  # result flips in the window
    flapping: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertState:
        return cls(
            down=bool(data.get("down", False)), streak=int(data.get("streak", 0)),
            code=data.get("code"), incident=data.get("incident"),
            opened=_time(data.get("opened")), last_notice=_time(data.get("last_notice")),
            escalated=bool(data.get("escalated", False)),
            changes=[dt.datetime.fromisoformat(t) for t in data.get("changes", [])],
            flapping=bool(data.get("flapping", False)),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        def iso(t: dt.datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "down": self.down, "streak": self.streak, "code": self.code,
            "incident": self.incident, "opened": iso(self.opened),
            "last_notice": iso(self.last_notice), "escalated": self.escalated,
            "changes": [t.isoformat() for t in self.changes], "flapping": self.flapping,
        }  # fmt: skip


def decide(
    before: AlertState, rules: Rules, *, ok: bool, code: str | None, now: dt.datetime,
    maintenance: bool = False,
) -> tuple[AlertState, list[Notice]]:  # fmt: skip
    """Fold one run (``ok``, its headline ``code`` when failed) into the state; the notices."""
    if maintenance:
        return before, []
    state = dataclasses.replace(before, changes=list(before.changes))
    if state.streak and (state.streak > 0) != ok:
        state.changes.append(now)
    window = dt.timedelta(seconds=rules.flap_window)
    state.changes = [t for t in state.changes if now - t < window]
    if ok:
        state.streak = state.streak + 1 if state.streak > 0 else 1
    else:
        state.streak = state.streak - 1 if state.streak < 0 else -1

    said: list[Notice] = []
    if not state.flapping and len(state.changes) > rules.flap_changes:
        state.flapping = True
        said.append(Notice("flapping", state.code or code, state.escalated))
    elif state.flapping and len(state.changes) <= rules.flap_changes // 2:
        state.flapping = False
        stable_code = code if not ok else None
        said.append(Notice("stable", stable_code, state.escalated))

    told: list[Notice] = []
    if not state.down and -state.streak >= rules.fail_after:
        state.down, state.code, state.opened = True, code, now
        state.escalated, state.last_notice = False, now
        told.append(Notice("opened", code))
    elif state.down and state.streak >= rules.recover_after:
        told.append(Notice("resolved", state.code, state.escalated))
        state.down, state.code, state.opened, state.escalated = False, None, None, False
        state.last_notice = now
    elif state.down:
        assert state.opened is not None
        assert state.last_notice is not None
        if not ok and code != state.code:
            told.append(Notice("code_changed", code, state.escalated))
            state.code, state.last_notice = code, now
        elif rules.remind_every and (now - state.last_notice).total_seconds() >= rules.remind_every:
            told.append(Notice("reminder", state.code, state.escalated))
            state.last_notice = now
        if (rules.escalate_after and not state.escalated
                and (now - state.opened).total_seconds() >= rules.escalate_after):  # fmt: skip
            state.escalated = True
            told.append(Notice("escalated", state.code, True))
    if state.flapping:
        told = []  # silence while flapping (the incident opens and resolves all the same)
    return state, said + told
