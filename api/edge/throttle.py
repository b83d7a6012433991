"""Brute-force brake: failed authentications (a token presented but unknown, revoked, expired or of
a disabled user) are counted per client address (api/edge/clientaddr.py) in a sliding window; past the
limit a failed authentication is answered 429 with Retry-After instead of 401, until fewer than the
limit of failures are left in the window. Only failures are braked: a valid token is served even from
a braked address (api/edge/auth.py). Tokens carry 256 bits, so guessing is hopeless anyway; the brake
keeps a scanner from reading why its tokens fail and from filling the logs with 401s.

Per process: with several API workers the effective limit is the limit times the workers; behind a
reverse proxy, name it in RXLEDGER_TRUSTED_PROXIES so the client address is the caller's."""

from __future__ import annotations

import threading
import time
from collections import deque


class FailureThrottle:
    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again, or None if it may now."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) < self.limit:
                return None
            return failures[0] + self.window - now

    def fail(self, client: str) -> float | None:
        """Count a failure of `client`. Returns the seconds it has to wait if it was already at the
        limit (answer 429), else None (answer 401). Failures while braked count too, so a client
        that keeps failing stays braked; only the last `limit` are kept (bounded memory)."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            wait = failures[0] + self.window - now if len(failures) >= self.limit else None
            self._failures.setdefault(client, deque(maxlen=self.limit)).append(now)
            return wait
