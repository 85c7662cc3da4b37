"""The state machine of one retried unit of work: decisions only.

A `RetryMachine` walks one transaction (or retried call) through its
phases (`Phase`): an attempt is handed out, its body runs, it commits
(transactions only), and it is settled once, as retried or as done. Asked
for the next attempt, it answers with a step: `Run` (after waiting
``delay`` seconds), `Stop` or `Raise`. It never sleeps and never touches a
connection; the sync driver (`_transaction.py`) and the async one do.

Nesting: DSQL has no savepoints, so there are no nested transactions. Only
the outermost retrying scope retries; inner ones run once and let errors
through, so that the outer scope re-runs the whole unit of work. The scope
the code runs in is a context variable: per thread, and per asyncio task.
"""

from __future__ import annotations

import enum
import logging
from contextvars import ContextVar
from dataclasses import dataclass

from ._backoff import GiveUp, Schedule
from ._classify import describe, retry_reason
from ._detect import occ_details
from ._retry_policy import RetryPolicy
from ._types import RetryEvent, RetryReason
from .errors import DsqlError, OCCRetryExhausted

logger = logging.getLogger("dsql_psycopg.retry")


class Phase(enum.Enum):
    """Where a unit of work stands between its attempts."""

    READY = "ready"
    """Nothing has run yet."""
    BEFORE_ATTEMPT = "before attempt"
    """An attempt was handed out; its body has not started."""
    IN_BODY = "in body"
    """The attempt's body runs."""
    COMMITTING = "committing"
    """The body ended; its transaction's COMMIT is under way."""
    RETRY_DUE = "retry due"
    """The attempt failed with an error that the next attempt may re-run."""
    DONE = "done"
    """The work succeeded, or failed for good: no attempt follows."""


@dataclass(frozen=True)
class Run:
    """Run the next attempt after `delay` seconds.

    Call the policy's ``on_retry`` with `event` (None for the first attempt)
    before the wait.
    """

    delay: float
    event: RetryEvent | None


@dataclass(frozen=True)
class Stop:
    """No attempt follows: the work is done."""


@dataclass(frozen=True)
class Raise:
    """Raise `error`: the retries are spent (its ``__cause__`` is set)."""

    error: BaseException


@dataclass
class Scope:
    """The transaction (or retried call) the current code runs inside."""

    owner: RetryMachine
    source: object = None
    conn: object = None


current_scope: ContextVar[Scope | None] = ContextVar("dsql_psycopg_scope", default=None)


class RetryMachine:
    """The phases and attempts of one unit of work, and when to retry it.

    Args:
        policy: How many attempts, how long between them.
        idempotent: Whether a COMMIT of unknown outcome may run again.
        single: Run one attempt only (``with transaction(...)``).
    """

    def __init__(self, policy: RetryPolicy, idempotent: bool, *, single: bool) -> None:
        self.policy = policy
        self.idempotent = idempotent
        self.outer = current_scope.get()
        # None for the outermost machine: no reference to itself.
        self._owner = self.outer.owner if self.outer else None
        # Only the outermost scope retries: an inner one cannot re-run what
        # the enclosing transaction did before it.
        self.retrying = not single and self.outer is None
        self.phase = Phase.READY
        self.attempts = 0
        self.schedule: Schedule | None = None
        self.failure: tuple[BaseException, RetryReason] | None = None
        # Set by inner scopes: an error they know is safe to re-run although
        # it is no conflict (a connection lost before COMMIT).
        self.safe_error: BaseException | None = None
        self.endpoint: str | None = None
        self.endpoint_changed = False

    @property
    def owner(self) -> RetryMachine:
        """The outermost machine: the one that retries."""
        return self._owner or self

    def _move(self, allowed: tuple[Phase, ...], to: Phase) -> None:
        if self.phase not in allowed:
            raise AssertionError(
                f"retry state machine: {self.phase.value} -> {to.value}"
            )
        self.phase = to

    def next_attempt(self, now: float) -> Run | Stop | Raise:
        """Decide what follows at `now` (``time.monotonic()``).

        Raises:
            DsqlError: An attempt is still running (its ``with`` block was
                not left).
        """
        phase = self.phase
        if phase in (Phase.IN_BODY, Phase.COMMITTING):
            raise DsqlError(
                "leave the `with attempt` block before starting the next attempt"
            )
        if phase is Phase.BEFORE_ATTEMPT:
            # The attempt handed out was never entered: nothing to re-run.
            self.phase = Phase.DONE
        if self.phase is Phase.DONE:
            return Stop()
        step: Run | Raise
        if self.schedule is None:
            policy = self.policy
            self.schedule = Schedule(
                policy.backoff,
                started=now,
                timeout=policy.timeout,
                max_attempts=policy.max_attempts,
            )
            step = Run(0.0, None)
        else:
            step = self._after_failure(self.schedule, now)
            if isinstance(step, Raise):
                self.phase = Phase.DONE
                return step
        self.attempts += 1
        self.phase = Phase.BEFORE_ATTEMPT
        return step

    def _after_failure(self, schedule: Schedule, now: float) -> Run | Raise:
        assert self.failure is not None
        (error, reason), self.failure = self.failure, None
        decision = schedule.failed(now)
        sqlstate, code = occ_details(error)
        if isinstance(decision, GiveUp):
            policy = self.policy
            limit = (
                f"its {policy.timeout:g} s time limit"
                if decision.out_of_time
                else f"max_attempts={policy.max_attempts}"
            )
            exhausted = OCCRetryExhausted(
                f"transaction gave up after {self.attempts} attempt(s) in"
                f" {decision.elapsed:.3f} s ({limit}); last failure: {reason}"
                f" ({describe(error, sqlstate, code)})",
                attempts=self.attempts,
            )
            exhausted.__cause__ = error
            return Raise(exhausted)
        logger.debug(
            "attempt %d of %d failed: %s (%s); retrying in %.3f s",
            self.attempts,
            self.policy.max_attempts,
            reason,
            describe(error, sqlstate, code),
            decision.delay,
        )
        event = RetryEvent(
            attempt=self.attempts,
            delay=decision.delay,
            reason=reason,
            sqlstate=sqlstate,
            code=code,
            error=error,
            elapsed=decision.elapsed,
            endpoint=self.endpoint,
            endpoint_changed=self.endpoint_changed,
        )
        return Run(decision.delay, event)

    def skipped(self, delay: float) -> None:
        """Count a wait that `retry_testing` skipped as spent."""
        if self.schedule is not None:
            self.schedule.skipped(delay)

    def use_endpoint(self, endpoint: str) -> None:
        """Record the endpoint (host name) the current attempt runs on."""
        previous, self.endpoint = self.endpoint, endpoint
        self.endpoint_changed = previous is not None and previous != endpoint
        if self.endpoint_changed:
            logger.info(
                "attempt %d runs on %s; the attempt before ran on %s",
                self.attempts,
                endpoint,
                previous,
            )

    def enter_body(self) -> None:
        """Mark the body as started (its transaction, if any, has begun)."""
        self._move((Phase.BEFORE_ATTEMPT,), Phase.IN_BODY)

    def begin_commit(self) -> None:
        """Mark the body as ended without error and its COMMIT as under way."""
        self._move((Phase.IN_BODY,), Phase.COMMITTING)

    def settle(self, error: BaseException | None, reason: RetryReason | None) -> bool:
        """End the attempt, once; return True if `error` is to be re-run.

        `reason` says why `error` may be re-run (None: it may not). An inner
        scope does not retry: it hands a re-runnable error to the outermost.
        """
        self._move((Phase.BEFORE_ATTEMPT, Phase.IN_BODY, Phase.COMMITTING), Phase.DONE)
        if error is None or reason is None:
            return False
        if not self.retrying:
            self.owner.safe_error = error
            return False
        self.failure = (error, reason)
        self.phase = Phase.RETRY_DUE
        return True

    def classify(self, error: BaseException) -> RetryReason | None:
        """Tell why `error` (raised by a whole attempt) may be re-run, if it may."""
        return retry_reason(
            error, idempotent=self.idempotent, safe_error=self.safe_error
        )

    def joined_conn(self, source: object) -> object | None:
        """Return the enclosing transaction's connection if `source` joins it.

        An inner `transaction()` on the pool or connection the enclosing one
        uses runs in the enclosing transaction (DSQL has no savepoints).
        """
        outer = self.outer
        if (
            outer
            and outer.conn is not None
            and (source is outer.source or source is outer.conn)
        ):
            return outer.conn
        return None

    def abandoned_warning(self) -> str | None:
        """Return why leaving the loop now loses work, if it does."""
        if self.phase is not Phase.RETRY_DUE:
            return None
        return (
            "a transaction attempt failed and was due to run again, but"
            " the loop was left (return or break inside `with attempt`?):"
            " it did not commit. Keep return and break out of the `with`"
            " block, or use run_transaction()"
        )
