"""``/metrics``: Prometheus text made from the database (so any worker answers the same), behind
the API token, with account ids and finding codes as labels and never an address or a secret."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSWORD, Sandbox
from tests.serving import Serving
from tests.test_api import WRONG, account, no_secret, wait_for

pytestmark = pytest.mark.usefixtures("database")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_tell_states_sync_lag_messages_and_errors_by_code(
    served: Serving, sandbox: Sandbox
) -> None:
    with served.client() as api, served.client(token=None) as anonymous:
        assert anonymous.get("/metrics").status_code == 401  # a scrape job sends the token
        good = api.post("/api/v1/accounts", json=account(sandbox)).json()
        bad = api.post(
            "/api/v1/accounts?verify=false",
            json=account(sandbox, email="bad@example.test", username="alice", secret=WRONG),
        ).json()
        synced = wait_for(api, f"/api/v1/accounts/{good['id']}", lambda a: a["state"] == "idle")
        wait_for(api, f"/api/v1/accounts/{bad['id']}", lambda a: a["state"] == "auth_error")
        answer = api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(answer.text)
    good_id, bad_id = str(good["id"]), str(bad["id"])
    assert found["imapscope_accounts", frozenset({("state", "idle")})] == 1
    assert found["imapscope_accounts", frozenset({("state", "auth_error")})] == 1
    assert found["imapscope_accounts", frozenset({("state", "backoff")})] == 0  # every state
    idle = ("imapscope_account_state", frozenset({("account_id", good_id), ("state", "idle")}))
    assert found[idle] == 1
    stored = found["imapscope_account_messages", frozenset({("account_id", good_id)})]
    assert stored == synced["status"]["messages"] >= 12  # as the API says (12 in INBOX)
    lag = found["imapscope_account_sync_lag_seconds", frozenset({("account_id", good_id)})]
    assert 0 <= lag < 60
    assert ("imapscope_account_sync_lag_seconds", frozenset({("account_id", bad_id)})) not in found
    assert found["imapscope_errors_last_hour", frozenset({("code", "AUTH_FAILED")})] >= 1
    assert found["imapscope_account_errors_last_hour", frozenset({("account_id", bad_id)})] >= 1
    workers = [v for (name, _), v in found.items() if name == "imapscope_worker_accounts"]
    assert workers == [2]  # one worker (this process) holds both
    # Labels are ids and codes: no address, host, user name or secret anywhere.
    no_secret(answer.text)
    for word in ("example.test", "localhost", "alice", PASSWORD):
        assert word not in answer.text
