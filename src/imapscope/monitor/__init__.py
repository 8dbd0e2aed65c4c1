"""Watching over time: monitors run on schedule (once across workers), their history, the
incident engine (rules, reminders, escalation, flapping, maintenance) and the channels that
carry its notifications (Apprise, signed webhooks). docs/monitors.md is the reference."""

from imapscope.monitor._channels import ChannelError, prepare, send
from imapscope.monitor._message import EVENT_TYPES, compose, test_message
from imapscope.monitor._rules import RULE_LIMITS, AlertState, Notice, Rules, check_rules, decide
from imapscope.monitor._service import MonitorService, next_due, outcome, send_test
from imapscope.webhooks._http import redact, sign

__all__ = [
    "EVENT_TYPES",
    "RULE_LIMITS",
    "AlertState",
    "ChannelError",
    "MonitorService",
    "Notice",
    "Rules",
    "check_rules",
    "compose",
    "decide",
    "next_due",
    "outcome",
    "prepare",
    "redact",
    "send",
    "send_test",
    "sign",
    "test_message",
]  # fmt: skip
