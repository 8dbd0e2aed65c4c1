"""``/metrics`` in the Prometheus text format (prometheus-client), made from the database at each
scrape: with several workers, every one of them answers the same, whichever the scraper reaches.

Labels carry account ids and finding codes, never an address, a host or a secret; the account's
id is what the API and the UI use (``/api/v1/accounts/{id}``). Documented in docs/serve.md.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from imapscope.store import BUCKETS_MS, DELIVERY_STATES, ERRORS_WINDOW
from imapscope.sync import STATES, SyncService

Snapshot = list[Metric]


async def snapshot(service: SyncService, now: dt.datetime) -> Snapshot:
    """Every metric, read from the store in a handful of grouped queries."""
    store = service.store
    since = now - ERRORS_WINDOW
    accounts = await store.accounts()
    summaries = await store.summaries(since)
    by_state = Counter(a.state for a in accounts)
    states = GaugeMetricFamily(
        "imapscope_accounts", "Registered accounts by running state.", labels=["state"]
    )
    for name in sorted(set(STATES) | set(by_state)):
        states.add_metric([name], by_state.get(name, 0))
    state = GaugeMetricFamily(
        "imapscope_account_state",
        "1 for the account's running state (one series per account and state it is in).",
        labels=["account_id", "state"],
    )
    last_sync = GaugeMetricFamily(
        "imapscope_account_last_sync_timestamp_seconds",
        "When the account was last fully synced (Unix time); absent before the first sync.",
        labels=["account_id"],
    )
    lag = GaugeMetricFamily(
        "imapscope_account_sync_lag_seconds",
        "Seconds since the account was last fully synced; absent before the first sync.",
        labels=["account_id"],
    )
    messages = GaugeMetricFamily(
        "imapscope_account_messages", "Messages stored for the account.", labels=["account_id"]
    )
    recent = GaugeMetricFamily(
        "imapscope_account_errors_last_hour", "Sync errors in the last hour.",
        labels=["account_id"],
    )  # fmt: skip
    for account in accounts:
        key = str(account.id)
        state.add_metric([key, account.state], 1)
        summary = summaries.get(account.id)
        messages.add_metric([key], summary.messages if summary else 0)
        recent.add_metric([key], summary.recent_errors if summary else 0)
        if account.last_sync is not None:
            last_sync.add_metric([key], account.last_sync.timestamp())
            lag.add_metric([key], max(0.0, (now - account.last_sync).total_seconds()))
    errors = GaugeMetricFamily(
        "imapscope_errors_last_hour", "Sync errors in the last hour, by finding code.",
        labels=["code"],
    )  # fmt: skip
    for code, count in sorted((await store.error_counts(since)).items()):
        errors.add_metric([code], count)
    owners = Counter(o for o in (await store.lease_owners()).values() if o)
    leases = GaugeMetricFamily(
        "imapscope_worker_accounts", "Accounts each live worker holds the lease of.",
        labels=["worker"],
    )  # fmt: skip
    for worker, count in sorted(owners.items()):
        leases.add_metric([worker], count)
    return [states, state, last_sync, lag, messages, recent, errors, leases,
            *await monitor_metrics(service, now), *await webhook_metrics(service)]  # fmt: skip


async def webhook_metrics(service: SyncService) -> Snapshot:
    """Webhook endpoints: their deliveries by status, and whether each is enabled."""
    store = service.store
    deliveries = GaugeMetricFamily(
        "imapscope_webhook_deliveries",
        "Webhook deliveries kept (finished ones 7 days) by endpoint and status: pending, "
        "delivered, failed.",
        labels=["webhook_id", "status"],
    )  # fmt: skip
    enabled = GaugeMetricFamily(
        "imapscope_webhook_enabled", "1 while the endpoint is enabled, 0 once disabled.",
        labels=["webhook_id"],
    )  # fmt: skip
    counts = await store.delivery_counts()
    for hook in await store.webhooks():
        key = str(hook.id)
        enabled.add_metric([key], 1 if hook.enabled else 0)
        for status in DELIVERY_STATES:
            deliveries.add_metric([key, status], counts.get(hook.id, {}).get(status, 0))
    return [deliveries, enabled]


async def monitor_metrics(service: SyncService, now: dt.datetime) -> Snapshot:
    """Monitors, incidents and notifications. Step times are gauge histograms over the last
    hour's runs (made from the database, like everything here, so not counters since a start):
    ``histogram_quantile(0.95, imapscope_monitor_step_seconds_bucket)`` needs no rate()."""
    store = service.store
    monitors = await store.monitors()
    up = GaugeMetricFamily(
        "imapscope_monitor_up", "1 when the monitor is up, 0 when an incident is open; absent "
        "before its first run and while paused.", labels=["monitor_id"],
    )  # fmt: skip
    for monitor in monitors:
        if monitor.alert and not monitor.paused:
            up.add_metric([str(monitor.id)], 0 if monitor.alert.get("down") else 1)
    last_run = GaugeMetricFamily(
        "imapscope_monitor_last_run_timestamp_seconds", "When the monitor last ran (Unix time).",
        labels=["monitor_id"],
    )  # fmt: skip
    runs = GaugeMetricFamily(
        "imapscope_monitor_runs_last_hour", "Runs in the last hour by status (ok, warning, fail, "
        "maintenance).", labels=["monitor_id", "status"],
    )  # fmt: skip
    steps = GaugeHistogramMetricFamily(
        "imapscope_monitor_step_seconds", "Time each step of the monitor's runs took in the "
        "last hour (total: the whole run).", labels=["monitor_id", "step"],
    )  # fmt: skip
    failures = GaugeMetricFamily(
        "imapscope_monitor_failures_last_hour", "Failed runs in the last hour by headline code "
        "(a round trip's losses are DELIVERY_LOST).", labels=["monitor_id", "code"],
    )  # fmt: skip
    latest: dict[int, dt.datetime] = {}
    counted: Counter[tuple[int, str]] = Counter()
    failed: Counter[tuple[int, str]] = Counter()
    times: dict[tuple[int, str], list[float]] = defaultdict(list)
    for monitor_id, at, status, code, in_maintenance, timed in await store.recent_runs(
        now - dt.timedelta(hours=1)
    ):
        latest[monitor_id] = at
        counted[monitor_id, "maintenance" if in_maintenance else status] += 1
        if status == "fail" and not in_maintenance:
            failed[monitor_id, code or "UNKNOWN"] += 1
        for step, ms in timed:
            times[monitor_id, step].append(ms / 1000)
    for monitor_id, at in sorted(latest.items()):
        last_run.add_metric([str(monitor_id)], at.timestamp())
    for (monitor_id, status), count in sorted(counted.items()):
        runs.add_metric([str(monitor_id), status], count)
    for (monitor_id, code), count in sorted(failed.items()):
        failures.add_metric([str(monitor_id), code], count)
    for (monitor_id, step), seconds in sorted(times.items()):
        cumulative = [(str(ms / 1000), sum(1 for x in seconds if x <= ms / 1000))
                      for ms in BUCKETS_MS]  # fmt: skip
        steps.add_metric([str(monitor_id), step], [*cumulative, ("+Inf", len(seconds))],
                         gsum_value=round(sum(seconds), 6))  # fmt: skip
    incidents = GaugeMetricFamily("imapscope_incidents_open", "Incidents open now.")
    incidents.add_metric([], await store.open_incident_count())
    notes = GaugeMetricFamily(
        "imapscope_notifications", "Notifications kept (90 days) by channel and status: pending "
        "(being retried), sent, failed (given up).", labels=["channel_id", "status"],
    )  # fmt: skip
    for (channel_id, status), count in sorted((await store.notification_counts()).items()):
        notes.add_metric([str(channel_id), status], count)
    return [up, last_run, runs, failures, steps, incidents, notes]


class _Fixed(Collector):
    def __init__(self, metrics: Snapshot) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def exposition(metrics: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(metrics))
    return generate_latest(registry)


def metrics_router(
    service_dependency: Callable[..., SyncService], token_dependency: Callable[..., Any]
) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False, dependencies=[Depends(token_dependency)])
    async def metrics(service: SyncService = Depends(service_dependency)) -> Response:  # noqa: B008
        body = exposition(await snapshot(service, dt.datetime.now(dt.UTC)))
        # The 0.0.4 text format, which every Prometheus reads (the names need no escaping)
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return router
