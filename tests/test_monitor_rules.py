"""The incident engine's rules with hand-made times (no clock, no sleeping): N failures open,
M successes resolve, reminders, escalation, a new code while open, flapping, maintenance."""

from __future__ import annotations

import datetime as dt

import pytest

from imapscope.monitor import AlertState, Rules, decide, next_due
from imapscope.store import StoreError

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def play(
    results: list[str | None], rules: Rules | None = None, *, every: float = 60,
    maintenance: set[int] = frozenset(),  # type: ignore[assignment]
    state: AlertState | None = None,
) -> tuple[AlertState, list[tuple[int, str, str | None, bool]]]:  # fmt: skip
    """Feed runs (None: ok; a code: failed with it), one every ``every`` seconds; the final
    state and every notice as (run index, kind, code, escalation)."""
    state = state or AlertState()
    said = []
    for index, code in enumerate(results):
        state, notices = decide(
            state, rules or Rules(), ok=code is None, code=code,
            now=T0 + dt.timedelta(seconds=every * index), maintenance=index in maintenance,
        )  # fmt: skip
        said += [(index, n.kind, n.code, n.escalation) for n in notices]
    return state, said


def test_an_incident_opens_after_n_failures_and_resolves_after_m_successes() -> None:
    state, said = play([None, "AUTH_FAILED", None, "AUTH_FAILED", "AUTH_FAILED", None,
                        "AUTH_FAILED", None, None])  # fmt: skip
    # One failure (index 1) is not an incident; two in a row (3, 4) are; one success between
    # failures (5) does not resolve it; two in a row (7, 8) do.
    assert said == [(4, "opened", "AUTH_FAILED", False), (8, "resolved", "AUTH_FAILED", False)]
    assert not state.down
    assert state.streak == 2


@pytest.mark.parametrize(("fail_after", "opened_at"), [(1, 0), (3, 2), (5, 4)])
def test_the_thresholds_are_the_rules(fail_after: int, opened_at: int) -> None:
    _, said = play(["TCP_REFUSED"] * 6, Rules(fail_after=fail_after))
    assert said == [(opened_at, "opened", "TCP_REFUSED", False)]


def test_a_new_code_while_open_is_told_once() -> None:
    _, said = play(["AUTH_FAILED", "AUTH_FAILED", "AUTH_FAILED", "CERT_EXPIRED",
                    "CERT_EXPIRED", None, None])  # fmt: skip
    assert said == [
        (1, "opened", "AUTH_FAILED", False),
        (3, "code_changed", "CERT_EXPIRED", False),
        (6, "resolved", "CERT_EXPIRED", False),
    ]


def test_reminders_come_every_r_while_open() -> None:
    # Runs every minute; reminders every 5 minutes, counted from the last notice.
    _, said = play(["TCP_TIMEOUT"] * 14, Rules(remind_every=300))
    assert [(i, kind) for i, kind, _, _ in said] == [(1, "opened"), (6, "reminder"),
                                                     (11, "reminder")]  # fmt: skip


def test_escalation_once_after_t_then_every_notice_goes_to_both() -> None:
    _, said = play(["AUTH_FAILED"] * 12 + ["DNS_NXDOMAIN"] + [None, None],
                   Rules(escalate_after=600))  # fmt: skip
    assert said == [
        (1, "opened", "AUTH_FAILED", False),
        (11, "escalated", "AUTH_FAILED", True),  # 10 minutes after opening at run 1
        (12, "code_changed", "DNS_NXDOMAIN", True),
        (14, "resolved", "DNS_NXDOMAIN", True),
    ]


def test_flapping_says_so_once_then_is_silent_until_it_settles() -> None:
    rules = Rules(fail_after=1, recover_after=1, flap_changes=4, flap_window=600)
    flapping = ["TCP_REFUSED", None] * 5  # a change every minute
    settled = [None] * 10  # changes age out of the 10-minute window
    state, said = play(flapping + settled, rules)
    kinds = [(i, kind) for i, kind, _, _ in said]
    # Opened, resolved, opened, resolved (4 changes are allowed), then the 5th change
    # (index 5) is flapping: one notice and quiet. The changes happened at runs 1-9; settled
    # means at most 2 of them in the last 10 minutes: at run 17 (those of runs 8 and 9). It
    # gives one notice with the state as it is: up.
    assert kinds == [(0, "opened"), (1, "resolved"), (2, "opened"), (3, "resolved"),
                     (4, "opened"), (5, "flapping"), (17, "stable")]  # fmt: skip
    assert said[-1][2] is None  # settled up
    assert not state.flapping
    assert not state.down


def test_settled_down_names_the_code() -> None:
    rules = Rules(fail_after=1, recover_after=1, flap_changes=2, flap_window=300)
    state, said = play([None, "AUTH_FAILED", None, "AUTH_FAILED"] + ["AUTH_FAILED"] * 6, rules)
    assert [kind for _, kind, _, _ in said] == ["opened", "resolved", "flapping", "stable"]
    assert said[-1][1:3] == ("stable", "AUTH_FAILED")
    assert state.down  # the incident opened while quiet, and is open


def test_maintenance_runs_change_nothing_and_say_nothing() -> None:
    results = [None, "TCP_REFUSED", "TCP_REFUSED", "TCP_REFUSED", None]
    state, said = play(results, maintenance={1, 2, 3})
    assert said == []
    assert state.streak == 2  # the two ok runs around the window, as if it had not happened


def test_the_state_survives_its_json() -> None:
    state, _ = play(["AUTH_FAILED"] * 3 + [None, "AUTH_FAILED"], Rules(remind_every=60))
    assert AlertState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    ("given", "said"),
    [({"fail_after": 0}, "fail_after = 0: use a whole number 1-100"),
     ({"remind_every": 5}, "remind_every = 5: use a whole number 60-2592000 seconds"),
     ({"flap_window": "1h"}, "flap_window = '1h'"),
     ({"fail_afer": 2}, "unknown alert rule 'fail_afer'")],
)  # fmt: skip
def test_rules_out_of_bounds_say_what_is_allowed(given: dict[str, object], said: str) -> None:
    with pytest.raises(StoreError, match=said):
        Rules.of(given)


def test_a_monitor_keeps_its_phase_and_skips_missed_runs() -> None:
    due = T0
    assert next_due(due, 60, T0 + dt.timedelta(seconds=1)) == T0 + dt.timedelta(seconds=60)
    # Ran late (a busy worker): the next is still on the minute, not a minute after the start.
    assert next_due(due, 60, T0 + dt.timedelta(seconds=30)) == T0 + dt.timedelta(seconds=60)
    # Nobody ran it for 5 minutes: the next is the first one still ahead, not five at once.
    assert next_due(due, 60, T0 + dt.timedelta(seconds=301)) == T0 + dt.timedelta(seconds=360)
    assert next_due(due, 60, T0 + dt.timedelta(seconds=300)) == T0 + dt.timedelta(seconds=360)


def test_maintenance_windows_one_off_and_weekly() -> None:
    from imapscope.store import MaintenanceView  # noqa: PLC0415
    from imapscope.store._maintenance import check_window  # noqa: PLC0415

    sunday_night = dt.datetime(2026, 12, 6, 22, 0, tzinfo=dt.UTC)
    once = MaintenanceView(1, None, sunday_night, sunday_night + dt.timedelta(hours=2), False, "")
    weekly = MaintenanceView(2, 3, sunday_night, sunday_night + dt.timedelta(hours=2), True, "")
    week = dt.timedelta(days=7)
    inside, after = sunday_night + dt.timedelta(hours=1), sunday_night + dt.timedelta(hours=2)
    assert once.covers(inside)
    assert not once.covers(after)  # the end is not in it
    assert not once.covers(inside + week)
    assert weekly.covers(inside + 3 * week)
    assert not weekly.covers(after + 3 * week)
    assert not weekly.covers(inside - week)  # not before it first starts
    assert not weekly.covers(inside + dt.timedelta(days=3))
    with pytest.raises(StoreError, match="before it starts"):
        check_window(after, inside, False)
    with pytest.raises(StoreError, match="at most 7 days"):
        check_window(sunday_night, sunday_night + 2 * week, True)
