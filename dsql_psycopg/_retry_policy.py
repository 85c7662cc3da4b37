"""The retry policy: how many attempts, how long to wait between them."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from typing_extensions import Self

from ._backoff import Backoff
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._types import RetryHook, RetryOptions

# Defaults, chosen with the hot-row contention benchmark (benchmarks/run.py,
# docs/retries.md has the table): K writers doing read-then-increment
# transactions on one row. Among the schedules that committed everything at
# K = 16, 20 attempts from 5 ms to 0.25 s with full jitter finished first
# (1.6-1.9 s against 2.5-2.9 s for 10 attempts from 20 ms to 1 s, and 4 s for
# 100 ms to 5 s), at the price of more runs of the body per commit (3.3
# against 2.6). The article's 3 attempts lost 11 % of the transactions there.
# - jitter=1.0 ("full jitter"): the delay is drawn uniformly from (0, cap];
#   AWS's backoff study found it does the least total work, and it spreads
#   out retries of clients that failed together.
# - A time budget, not an attempt count, is what bounds the retries: right
#   after an outage every writer comes back at once, and 20 attempts (1.4 s
#   of waits) could run out in that burst while the row was still hot; at
#   K = 32 they ran out for 1 % of the transactions. 10 s carries 8 writers
#   on one row through each fault of the chaos suite (tests/chaos) and K = 32
#   in the benchmark; 100 attempts (about 12 s of waits) only stop a body
#   that fails at once, again and again.
# The defaults are written as values in the fields below, so that the
# reference shows them (docs/retries.md's table is checked against them).


@dataclass(frozen=True)
class RetryPolicy:
    """How a transaction is re-run after an optimistic-concurrency conflict.

    The delay before attempt ``n + 1`` is
    ``min(max_delay, base_delay * 2 ** (n - 1))``, reduced by a random
    fraction of up to `jitter` of itself (``jitter=1`` draws it uniformly
    from zero to the cap, ``jitter=0`` makes it exact).

    Args:
        max_attempts: Runs of the body in all, including the first (>= 1).
        base_delay: Seconds before the second attempt, before jitter (>= 0).
        max_delay: Seconds no wait exceeds (>= base_delay).
        jitter: Fraction of the delay that is randomised, 0 to 1.
        timeout: Seconds; no new attempt starts once this much time has passed
            since the first one began (or would pass during the wait). None:
            no time limit. By default 10 s: the budget that bounds the
            retries, with `max_attempts` (100) as a backstop.
        on_retry: Called with a `RetryEvent` before each wait.

    ```python
    import logging

    import dsql_psycopg

    log = logging.getLogger("app")
    policy = dsql_psycopg.RetryPolicy(
        max_attempts=20,
        timeout=30.0,
        on_retry=lambda event: log.info("retry %d: %s", event.attempt, event.reason),
    )
    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"
    with dsql_psycopg.connect(url) as conn:
        for attempt in dsql_psycopg.transaction(conn, policy=policy):
            with attempt as tx:
                tx.execute("SELECT 1")
    ```

    Raises:
        ConfigurationError: A value is out of range or of the wrong type.
    """

    max_attempts: int = 100
    base_delay: float = 0.005
    max_delay: float = 0.25
    jitter: float = 1.0
    timeout: float | None = 10.0
    on_retry: RetryHook | None = None

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise ConfigurationError(
                f"max_attempts must be an int, got {type(attempts).__name__}"
            )
        if attempts < 1:
            raise ConfigurationError(
                f"max_attempts must be at least 1 (1 means no retry), got {attempts}"
            )
        base = _seconds("base_delay", self.base_delay)
        cap = _seconds("max_delay", self.max_delay)
        if base > cap:
            raise ConfigurationError(
                f"base_delay ({base}) must not exceed max_delay ({cap})"
            )
        jitter = _number("jitter", self.jitter)
        if not 0.0 <= jitter <= 1.0:
            raise ConfigurationError(
                f"jitter is a fraction of the delay between 0 and 1, got {jitter}"
            )
        if self.timeout is not None and _seconds("timeout", self.timeout) == 0:
            raise ConfigurationError(
                "timeout must be positive seconds, or None for no time limit"
            )
        if self.on_retry is not None and not callable(self.on_retry):
            raise ConfigurationError(
                f"on_retry must be callable, got {type(self.on_retry).__name__}"
            )

    def with_options(self, options: RetryOptions) -> Self:
        """Return a copy with `options` applied (validated)."""
        unknown = set(options) - _FIELD_NAMES
        if unknown:
            raise ConfigurationError(
                f"unknown retry option(s): {', '.join(sorted(unknown))}"
            )
        return replace(self, **options) if options else self

    @property
    def backoff(self) -> Backoff:
        """The waits between attempts, as the shared `Backoff`."""
        return Backoff(self.base_delay, self.max_delay, self.jitter)

    def delay_cap(self, attempt: int) -> float:
        """Return the delay after failed attempt `attempt`, before jitter."""
        return self.backoff.cap(attempt)

    def compute_delay(self, attempt: int) -> float:
        """Return the seconds to wait after failed attempt `attempt` (from 1)."""
        # Not for security: jitter only has to decorrelate clients.
        return self.backoff.delay(attempt, random.random())  # noqa: S311


_FIELD_NAMES = frozenset(f.name for f in fields(RetryPolicy))


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be finite, got {value}")
    return float(value)


def _seconds(name: str, value: object) -> float:
    seconds = _number(name, value)
    if seconds < 0:
        raise ConfigurationError(f"{name} must be >= 0 seconds, got {seconds}")
    return seconds


def resolve_policy(policy: RetryPolicy | None, options: RetryOptions) -> RetryPolicy:
    """Return `policy` (or the default one) with keyword `options` applied."""
    if policy is not None and not isinstance(policy, RetryPolicy):
        raise ConfigurationError(
            f"policy must be a RetryPolicy, got {type(policy).__name__}"
        )
    return (policy or _DEFAULT_POLICY).with_options(options)


_DEFAULT_POLICY = RetryPolicy()
