"""Failed web logins are limited per client address: a token cannot be guessed by trying.

After :data:`MAX_FAILURES` failures within :data:`WINDOW`, further attempts from that address
are refused (429, with when to retry) until the oldest failure leaves the window. The clock is
injectable, so the rule is tested without sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

#: Failed logins allowed per address within the window (a person mistyping does not get near).
MAX_FAILURES = 5
#: The window, in seconds.
WINDOW = 300.0
#: Addresses remembered at most (oldest forgotten first), so a scan cannot grow memory.
MAX_ADDRESSES = 10_000


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: now)."""
        failures = self._recent(address)
        if len(failures) < MAX_FAILURES:
            return 0.0
        return max(0.0, failures[0] + WINDOW - self.clock())

    def failed(self, address: str) -> None:
        self._recent(address).append(self.clock())
        if len(self._failures) > MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.setdefault(address, deque(maxlen=MAX_FAILURES))
        while failures and failures[0] + WINDOW <= self.clock():
            failures.popleft()
        return failures
