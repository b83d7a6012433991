"""Brute-force brake: failed authentications (a token presented but unknown, revoked, expired or of
a disabled user) are counted per client address in a sliding window; past the limit the client gets
429 with Retry-After until its oldest failure leaves the window. Tokens carry 256 bits, so guessing
is hopeless anyway; the brake keeps a scanner from loading the database and the logs.

Per process: with several API workers the effective limit is the limit times the workers; behind a
reverse proxy, run uvicorn with --proxy-headers so the client address is the caller's."""

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

    def fail(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(client, now)
            self._failures.setdefault(client, deque()).append(now)
