"""One backoff and one budget, for transaction retries and connect retries.

Sans-I/O: a `Schedule` counts the failures of one unit of work (a
transaction, a connect) and says how long to wait before the next try, or
that the budget is spent. It never sleeps and never reads the clock: the
driver passes ``now`` (``time.monotonic()``) and does the waiting, with
``time.sleep`` or ``asyncio.sleep``.

The delay after failure ``n`` is drawn from ``cap * (1 - jitter * U[0, 1))``
with ``cap = min(max_delay, base_delay * 2 ** (n - 1))``: with ``jitter=1``
("full jitter") clients that failed together spread out at once. No new try
starts when ``elapsed + delay >= timeout``: a wait that would end past the
budget is not begun.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter; the numbers only, no state."""

    base_delay: float
    """Seconds before the second try, before jitter."""
    max_delay: float
    """Seconds no wait exceeds."""
    jitter: float = 1.0
    """Fraction of the delay that is randomised, 0 to 1."""

    def cap(self, failures: int) -> float:
        """Return the delay after `failures` failed tries, before jitter."""
        # Capping the exponent keeps 2.0 ** n finite; the product may still
        # overflow to inf, which min() turns into max_delay.
        return min(self.max_delay, self.base_delay * 2.0 ** min(failures - 1, 1023))

    def delay(self, failures: int, draw: float) -> float:
        """Return the delay after `failures` failed tries; `draw` is in [0, 1)."""
        return self.cap(failures) * (1.0 - self.jitter * draw)


#: Connect retries: clients refused together (a fleet starting, a pool
#: refilling) spread out at once, and the cap keeps one waiting for a waking
#: cluster to about a second between tries.
CONNECT_BACKOFF = Backoff(base_delay=0.05, max_delay=1.0, jitter=1.0)


@dataclass(frozen=True)
class Wait:
    """Wait `delay` seconds, then try again."""

    delay: float
    elapsed: float
    """Seconds spent since the first try started, skipped waits included."""
    failures: int
    """Failed tries so far (this one included)."""


@dataclass(frozen=True)
class GiveUp:
    """Try no more: the time budget or the attempt count is spent."""

    elapsed: float
    failures: int
    out_of_time: bool
    """True: the time budget ran out; False: the attempt count did."""


class Schedule:
    """The failed tries of one unit of work, against a backoff and a budget.

    Args:
        backoff: How long to wait after each failure.
        started: ``time.monotonic()`` when the first try began.
        timeout: Seconds after `started` past which no try starts; None for
            no time limit.
        max_attempts: Tries in all, the first included; None for no limit.
        draw: Returns a number in [0, 1) for the jitter (not for security:
            it only decorrelates clients).
    """

    def __init__(
        self,
        backoff: Backoff,
        *,
        started: float,
        timeout: float | None,
        max_attempts: int | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.backoff = backoff
        self.started = started
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.failures = 0
        self._skipped = 0.0
        self._draw = draw

    def elapsed(self, now: float) -> float:
        """Return the seconds spent at `now`, waits skipped in tests included."""
        return now - self.started + self._skipped

    def failed(self, now: float) -> Wait | GiveUp:
        """Count one failed try at `now`; say whether and when to try again."""
        self.failures += 1
        elapsed = self.elapsed(now)
        delay = self.backoff.delay(self.failures, self._draw())
        if self.max_attempts is not None and self.failures >= self.max_attempts:
            return GiveUp(elapsed, self.failures, out_of_time=False)
        if self.timeout is not None and elapsed + delay >= self.timeout:
            return GiveUp(elapsed, self.failures, out_of_time=True)
        return Wait(delay, elapsed, self.failures)

    def skipped(self, delay: float) -> None:
        """Count a wait that `retry_testing` skipped as spent."""
        self._skipped += delay
