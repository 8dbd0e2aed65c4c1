"""Webhooks: endpoints that receive the store's events as signed JSON (Standard Webhooks),
delivered at least once from the outbox (:mod:`imapscope.store._webhooks`) by whichever worker
claims each delivery; docs/webhooks.md."""

from imapscope.webhooks._http import check_url, new_secret, post, redact, sign
from imapscope.webhooks._service import WebhookService, send_test

__all__ = ["WebhookService", "check_url", "new_secret", "post", "redact", "send_test", "sign"]
