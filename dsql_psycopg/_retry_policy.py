"""Retry policy, OCC error detection, retry events and the testing switch."""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from types import TracebackType
from typing import Literal, TypedDict

from typing_extensions import Self

from .errors import CommitOutcomeUnknown, ConfigurationError, OCCRetryExhausted

OCC_SQLSTATE = "40001"
_OCC_CODE = re.compile(r"\((OC00[01])\)")

RetryReason = Literal[
    "conflict", "connection_lost", "server_unavailable", "commit_outcome_unknown"
]
# DSQL's "the node serving this transaction is gone": re-run the transaction.
UNAVAILABLE_SQLSTATE = "XX000"
_UNAVAILABLE_TEXT = "server unavailable"


@dataclass(frozen=True)
class RetryEvent:
    """What `RetryPolicy.on_retry` receives before each retry.

    Carries no SQL and no parameters: `error` is the exception itself, for the
    hook to inspect if it wants more.
    """

    attempt: int
    """Number of the attempt that failed, from 1."""
    delay: float
    """Seconds the next attempt waits for (0 sleeps under `retry_testing`)."""
    reason: RetryReason
    sqlstate: str | None
    """``40001`` for a conflict; ``None`` for a lost connection."""
    code: str | None
    """``OC000`` (data conflict) or ``OC001`` (schema conflict) when known."""
    error: BaseException
    elapsed: float
    """Seconds since the first attempt started (waits skipped by
    `retry_testing` included)."""


RetryHook = Callable[[RetryEvent], None]

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
# - 20 attempts then sleep at most ~3.6 s in total (~1.8 s on average).
# - timeout=None: attempts already bound the time; a budget is opt-in.
DEFAULT_MAX_ATTEMPTS = 20
DEFAULT_BASE_DELAY = 0.005
DEFAULT_MAX_DELAY = 0.25
DEFAULT_JITTER = 1.0


class RetryOptions(TypedDict, total=False):
    """Keyword arguments that override fields of a `RetryPolicy`."""

    max_attempts: int
    base_delay: float
    max_delay: float
    jitter: float
    timeout: float | None
    on_retry: RetryHook | None


@dataclass(frozen=True)
class RetryPolicy:
    """How a transaction is re-run after an optimistic-concurrency conflict.

    The delay before attempt ``n + 1`` is
    ``min(max_delay, base_delay * 2 ** (n - 1))``, reduced by a random
    fraction of up to `jitter` of itself (``jitter=1`` draws it uniformly
    from zero to the cap, ``jitter=0`` makes it exact).

    - `max_attempts`: runs of the body in all, including the first (>= 1).
    - `base_delay`, `max_delay`: seconds (0 <= base_delay <= max_delay).
    - `jitter`: fraction of the delay that is randomised, 0 to 1.
    - `timeout`: seconds; no new attempt starts once this much time has
      passed since the first one began (or would pass during the wait).
      ``None``: no time limit.
    - `on_retry`: called with a `RetryEvent` before each wait.

    Invalid values raise `ConfigurationError`.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    jitter: float = DEFAULT_JITTER
    timeout: float | None = None
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

    def delay_cap(self, attempt: int) -> float:
        """Return the delay after failed attempt `attempt`, before jitter."""
        # Capping the exponent keeps 2.0 ** n finite; the product may still
        # overflow to inf, which min() turns into max_delay.
        return min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 1023))

    def compute_delay(self, attempt: int) -> float:
        """Return the seconds to wait after failed attempt `attempt` (from 1)."""
        cap = self.delay_cap(attempt)
        # Not for security: jitter only has to decorrelate clients.
        return cap * (1.0 - self.jitter * random.random())  # noqa: S311


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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield `exc` and every exception it wraps, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        # SQLAlchemy keeps the DBAPI error as .orig on its own wrappers.
        for inner in (
            current.__cause__,
            current.__context__,
            getattr(current, "orig", None),
        ):
            if isinstance(inner, BaseException):
                todo.append(inner)


def _own_occ_code(exc: BaseException) -> str | None:
    match = _OCC_CODE.search(str(exc))
    return match.group(1) if match else None


def is_occ_error(exc: BaseException) -> bool:
    """Tell whether `exc` is (or wraps) a DSQL optimistic-concurrency conflict.

    True for SQLSTATE 40001, for a message carrying ``(OC000)`` or
    ``(OC001)``, and for `OCCRetryExhausted`, looking through ``__cause__``,
    ``__context__`` and SQLAlchemy's ``.orig``.
    """
    return any(
        isinstance(e, OCCRetryExhausted)
        or getattr(e, "sqlstate", None) == OCC_SQLSTATE
        or _own_occ_code(e) is not None
        for e in _chain(exc)
    )


def is_server_unavailable(exc: BaseException) -> bool:
    """Tell whether `exc` is (or wraps) DSQL's ``ERROR: server unavailable``.

    That is SQLSTATE XX000 with that message. A `CommitOutcomeUnknown` made of
    one is not: the transaction may have committed.
    """
    chain = list(_chain(exc))
    return not any(isinstance(e, CommitOutcomeUnknown) for e in chain) and any(
        getattr(e, "sqlstate", None) == UNAVAILABLE_SQLSTATE
        and _UNAVAILABLE_TEXT in str(e).lower()
        for e in chain
    )


def occ_details(exc: BaseException) -> tuple[str | None, str | None]:
    """Return (SQLSTATE, OC code) of the conflict inside `exc`, if any."""
    sqlstate = code = None
    for e in _chain(exc):
        if sqlstate is None and getattr(e, "sqlstate", None) == OCC_SQLSTATE:
            sqlstate = OCC_SQLSTATE
        code = code or _own_occ_code(e)
    return sqlstate, code


class _TestingState:
    def __init__(self) -> None:
        self.enabled = False
        self.lock = threading.Lock()


_testing = _TestingState()


def is_retry_testing() -> bool:
    """Tell whether `retry_testing` has turned backoff sleeps off."""
    return _testing.enabled


class retry_testing:
    """Turn backoff sleeps off (or on again) for a test suite.

    Delays are still computed, logged and passed to `on_retry`; only the
    sleep is skipped, for every thread. Call it once (``retry_testing()`` in
    a conftest or fixture) or use it as a context manager, which restores the
    previous setting on exit::

        with dsql.retry_testing():
            run_the_code_under_test()
    """

    def __init__(self, enabled: bool = True) -> None:
        with _testing.lock:
            self._previous = _testing.enabled
            _testing.enabled = bool(enabled)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        with _testing.lock:
            _testing.enabled = self._previous
