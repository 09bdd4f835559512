"""A per-client bound on sign-in attempts.

Each attempt costs an argon2 verification (tens of milliseconds of CPU, on purpose), and
the lockout (store/users.py) protects one account, not the server: a client spraying
usernames could keep both cores busy. So one client address may try at most
``SIGN_IN_ATTEMPTS`` times in ``SIGN_IN_WINDOW_S`` seconds (``B12DX_SIGN_IN_PER_MINUTE``
changes it); past that it is told to wait (HTTP 429) without any password being checked.
A practice behind one address signing in at the start of a clinic stays under it.

The count is kept by each worker process (with ``--workers N`` a client may try N times
as often); it holds no patient data and is forgotten on restart.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.requests import Request

SIGN_IN_ATTEMPTS = 20
SIGN_IN_WINDOW_S = 60.0
MAX_CLIENTS = 10_000  # addresses remembered at once; the least recent are forgotten


class SlidingWindowLimiter:
    """At most ``attempts`` per key in any ``window`` seconds."""

    def __init__(
        self,
        attempts: int = SIGN_IN_ATTEMPTS,
        window: float = SIGN_IN_WINDOW_S,
        max_keys: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts = attempts
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, key: str) -> int:
        """0 when this attempt may go ahead (it is counted); else the whole seconds to
        wait before the next one would be allowed (it is not counted)."""
        now = self.clock()
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.attempts:
                self._seen[key] = times
                return max(1, math.ceil(times[0] + self.window - now))
            times.append(now)
            self._seen[key] = times
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return 0

    def blocked(self, key: str) -> int:
        """0 when ``key`` is under its limit; else the whole seconds until it is (nothing
        is counted)."""
        now = self.clock()
        with self._lock:
            times = self._seen.get(key)
            if times is None:
                return 0
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < self.attempts:
                return 0
            return max(1, math.ceil(times[0] + self.window - now))

    def count(self, key: str) -> None:
        """Count one event for ``key`` (a failed sign-in)."""
        now = self.clock()
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            times.append(now)
            self._seen[key] = times
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)


# Wrong passwords for one username from one client address (NIST SP 800-63B 5.2.2 asks
# to limit guessing, not to let anyone lock an account they know the name of): after
# FAILURES_PER_NAME in FAILURE_WINDOW_S that address must wait for that username; other
# addresses, the user's own included, are not held up.
FAILURES_PER_NAME = 5
FAILURE_WINDOW_S = 15 * 60.0


def client_address(request: Request) -> str:
    return request.client.host if request.client else "local socket"
