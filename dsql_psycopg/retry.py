"""Run transactions again when DSQL reports an optimistic-concurrency conflict.

DSQL never blocks on a lock: a transaction that loses a race fails (SQLSTATE
40001, ``OC000``/``OC001``), the server rolls it back, and the whole
transaction has to run again. A Python ``with`` block cannot run its body
twice, so a retried block is a loop of attempts::

    for attempt in dsql.transaction(pool):
        with attempt as conn:
            conn.execute("UPDATE ...")

or a function, re-run whole: ``@dsql.retry_on_occ`` or
``dsql.run_transaction(pool, fn)``.

What runs again: a conflict (the server rolled back), a statement answered
with DSQL's ``server unavailable`` (SQLSTATE XX000: the server ended the
transaction), and a connection that broke before COMMIT was sent (nothing was
committed; a pool gives the next attempt a fresh connection). A connection
that broke while COMMIT was in flight, or a COMMIT answered with ``server
unavailable``, raises `CommitOutcomeUnknown`: the transaction may have
committed, so it runs again only if the caller passed ``idempotent=True``. Anything else
propagates at once, unchanged.

All three forms drive one state machine, `_Retrying`, through its phases
(`Phase`): an attempt is handed out, its body runs, it commits (transactions
only), and it is settled once, as retried or as done.

Nesting: DSQL has no savepoints, so there are no nested transactions. Only
the outermost retrying scope retries; inner ones run once and let errors
through, so that the outer scope re-runs the whole unit of work. An inner
`transaction()` on the pool or connection the enclosing one uses joins the
enclosing transaction (same connection, no BEGIN or COMMIT of its own).
"""

from __future__ import annotations

import enum
import functools
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar, cast, overload

import psycopg
import psycopg_pool
from psycopg.pq import TransactionStatus
from typing_extensions import ParamSpec, Unpack

from ._detect import is_occ_error, is_server_unavailable, occ_details
from ._liveness import connection_lost
from ._retry_policy import RetryPolicy, resolve_policy
from ._retry_testing import is_retry_testing, retry_testing
from .errors import (
    CommitOutcomeUnknown,
    ConfigurationError,
    DsqlError,
    OCCRetryExhausted,
)
from .typing import RetryEvent, RetryOptions, RetryReason

__all__ = [
    "RetryEvent",
    "RetryPolicy",
    "RetryingTransaction",
    "TransactionAttempt",
    "is_occ_error",
    "retry_on_occ",
    "retry_testing",
    "run_transaction",
    "transaction",
]

logger = logging.getLogger("dsql_psycopg.retry")

C = TypeVar("C", bound="psycopg.Connection[Any]")
R = TypeVar("R")
P = ParamSpec("P")

_POOL_ERRORS = (
    psycopg_pool.PoolTimeout,
    psycopg_pool.PoolClosed,
    psycopg_pool.TooManyRequests,
)


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


@dataclass
class _Scope:
    """The transaction (or retried call) the current code runs inside."""

    owner: _Retrying
    source: object = None
    conn: psycopg.Connection[Any] | None = None


_current: ContextVar[_Scope | None] = ContextVar("dsql_psycopg_scope", default=None)


class _Retrying:
    """The state machine of one unit of work: its attempts and their outcome.

    Every change of phase goes through a method here; attempts and the three
    public forms only call them.
    """

    def __init__(self, policy: RetryPolicy, idempotent: bool, *, single: bool) -> None:
        self.policy = policy
        self.idempotent = idempotent
        self.outer = _current.get()
        # None for the outermost machine: no reference to itself.
        self._owner = self.outer.owner if self.outer else None
        # Only the outermost scope retries: an inner one cannot re-run what
        # the enclosing transaction did before it.
        self.retrying = not single and self.outer is None
        self.phase = Phase.READY
        self.attempts = 0
        self.started = 0.0
        self.skipped = 0.0
        self.failure: tuple[BaseException, RetryReason] | None = None
        # Set by inner scopes: an error they know is safe to re-run although
        # it is no conflict (a connection lost before COMMIT).
        self.safe_error: BaseException | None = None
        self.endpoint: str | None = None
        self.endpoint_changed = False

    @property
    def owner(self) -> _Retrying:
        """The outermost machine: the one that retries."""
        return self._owner or self

    def _move(self, allowed: tuple[Phase, ...], to: Phase) -> None:
        if self.phase not in allowed:
            raise AssertionError(
                f"retry state machine: {self.phase.value} -> {to.value}"
            )
        self.phase = to

    def next_attempt(self) -> bool:
        """Hand out the next attempt, after the policy's wait; False when done.

        Raises `OCCRetryExhausted` when a retry is due but the policy allows
        no more attempts.
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
            return False
        if phase is Phase.READY:
            self.started = time.monotonic()
        else:
            self._wait_before_retry()
        self.attempts += 1
        self.phase = Phase.BEFORE_ATTEMPT
        return True

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
        if not isinstance(error, Exception):
            return None
        if is_occ_error(error):
            return "conflict"
        if is_server_unavailable(error):
            # Raised by a statement, never by COMMIT (that one is turned into
            # CommitOutcomeUnknown): the server ended the transaction.
            return "server_unavailable"
        if self.idempotent and isinstance(error, CommitOutcomeUnknown):
            return "commit_outcome_unknown"
        if error is self.safe_error or (self.idempotent and _is_connection_loss(error)):
            return "connection_lost"
        return None

    def _wait_before_retry(self) -> None:
        assert self.failure is not None
        (error, reason), self.failure = self.failure, None
        policy = self.policy
        delay = policy.compute_delay(self.attempts)
        # Waits skipped by retry_testing count, so tests see the real schedule.
        elapsed = time.monotonic() - self.started + self.skipped
        sqlstate, code = occ_details(error)
        out_of_time = policy.timeout is not None and elapsed + delay >= policy.timeout
        if self.attempts >= policy.max_attempts or out_of_time:
            self.phase = Phase.DONE
            limit = (
                f"its {policy.timeout:g} s time limit"
                if out_of_time
                else f"max_attempts={policy.max_attempts}"
            )
            raise OCCRetryExhausted(
                f"transaction gave up after {self.attempts} attempt(s) in"
                f" {elapsed:.3f} s ({limit}); last failure: {reason}"
                f" ({_describe(error, sqlstate, code)})",
                attempts=self.attempts,
            ) from error
        logger.debug(
            "attempt %d of %d failed: %s (%s); retrying in %.3f s",
            self.attempts,
            policy.max_attempts,
            reason,
            _describe(error, sqlstate, code),
            delay,
        )
        if policy.on_retry is not None:
            policy.on_retry(
                RetryEvent(
                    attempt=self.attempts,
                    delay=delay,
                    reason=reason,
                    sqlstate=sqlstate,
                    code=code,
                    error=error,
                    elapsed=elapsed,
                    endpoint=self.endpoint,
                    endpoint_changed=self.endpoint_changed,
                )
            )
        if is_retry_testing():
            self.skipped += delay
        else:
            time.sleep(delay)


def _is_connection_loss(error: BaseException) -> bool:
    return (
        isinstance(error, psycopg.OperationalError)
        and error.sqlstate is None
        and not isinstance(error, _POOL_ERRORS)
    )


def _describe(error: BaseException, sqlstate: str | None, code: str | None) -> str:
    # Class and codes only: a message may quote data, and logs must not.
    state = sqlstate or getattr(error, "sqlstate", None)
    parts = [type(error).__name__, f"SQLSTATE {state}" if state else "", code or ""]
    return ", ".join(p for p in parts if p)


class TransactionAttempt(Generic[C]):
    """One run of a transaction: ``with attempt as conn:`` gives the connection.

    On entry it checks a connection out (from a pool) and begins a
    transaction, whatever the connection's autocommit setting; on exit it
    commits, or rolls back on error, and gives the connection back. A conflict
    or a lost connection is recorded for the loop to retry, and not raised.

    Don't ``return`` or ``break`` inside the ``with`` block: a conflict found
    at COMMIT is only retried if the loop goes on. Assign what you need and
    use it after the loop, or use `run_transaction`.
    """

    def __init__(self, source: _Source[C], machine: _Retrying) -> None:
        self._source = source
        self._machine = machine
        self.number = machine.attempts
        """Number of this attempt, from 1."""
        self._conn: C | None = None
        self._tx: AbstractContextManager[psycopg.Transaction] | None = None
        self._token: Any = None

    def __repr__(self) -> str:
        limit = self._machine.policy.max_attempts
        return f"<TransactionAttempt {self.number} of {limit}>"

    def __enter__(self) -> C:
        machine, work = self._machine, self._source
        outer = machine.outer
        if (
            outer
            and outer.conn is not None
            and (work.source is outer.source or work.source is outer.conn)
        ):
            # Joined: the enclosing transaction owns BEGIN, COMMIT and retries.
            machine.enter_body()
            return cast(C, outer.conn)
        try:
            self._conn, self._tx = self._begin()
        except BaseException as error:
            machine.settle(error, None)
            raise
        machine.use_endpoint(
            getattr(self._conn, "endpoint", None) or self._conn.info.host
        )
        machine.enter_body()
        scope = _Scope(owner=machine.owner, source=work.source, conn=self._conn)
        self._token = _current.set(scope)
        return self._conn

    def _begin(self) -> tuple[C, AbstractContextManager[psycopg.Transaction]]:
        pool = self._source.pool
        # A pooled connection can die while idle; the body has not run yet,
        # so trying the next one costs no attempt. After max_size of them the
        # pool is handing out new connections.
        tries = pool.max_size + 1 if pool is not None else 1
        for n in range(1, tries + 1):
            conn = pool.getconn() if pool is not None else self._source.conn
            assert conn is not None
            if conn.info.transaction_status != TransactionStatus.IDLE:
                self._source.release(conn)
                raise DsqlError(
                    "the connection is already in a transaction that"
                    " dsql_psycopg.transaction() did not start; DSQL has no"
                    " savepoints, so it cannot nest one: commit or roll back first"
                    " (or use autocommit=True)"
                )
            tx = conn.transaction()
            try:
                tx.__enter__()
            except psycopg.OperationalError:
                self._source.release(conn)
                if pool is None or not conn.closed or n == tries:
                    raise
                logger.debug("pooled connection lost before BEGIN; taking another")
                continue
            return conn, tx
        raise AssertionError("unreachable")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        machine = self._machine
        conn, tx = self._conn, self._tx
        if conn is None or tx is None:  # joined the enclosing transaction
            machine.settle(exc_val, None)
            return False
        _current.reset(self._token)
        try:
            if exc_val is not None:
                if tx.__exit__(exc_type, exc_val, exc_tb):  # psycopg.Rollback
                    machine.settle(None, None)
                    return True
                reason = self._classify_body_error(conn, exc_val)
                return machine.settle(exc_val, reason)
            machine.begin_commit()
            error, reason = self._commit(conn, tx)
        finally:
            self._source.release(conn)
        if machine.settle(error, reason) or error is None:
            return False
        raise error

    def _classify_body_error(self, conn: C, error: BaseException) -> RetryReason | None:
        if conn.closed:
            # No COMMIT was sent: nothing committed, so a fresh connection may
            # redo it, if there is one to take.
            if self._source.pool is None:
                return None
            if isinstance(error, psycopg.OperationalError):
                return "connection_lost"
        return self._machine.classify(error)

    def _commit(
        self, conn: C, tx: AbstractContextManager[psycopg.Transaction]
    ) -> tuple[Exception | None, RetryReason | None]:
        """Commit; return the error to raise or retry, and why it may be retried."""
        pooled = self._source.pool is not None
        if conn.info.transaction_status == TransactionStatus.INERROR:
            failed = psycopg.errors.InFailedSqlTransaction(
                "a statement failed inside the transaction and the error was"
                " caught: the transaction was rolled back, not committed"
            )
            tx.__exit__(type(failed), failed, None)
            return failed, None
        # psycopg skips COMMIT without a word on a closed connection; and if
        # the server hung up before COMMIT went out, nothing was committed.
        lost = connection_lost(conn)
        if lost is not None:
            tx.__exit__(type(lost), lost, None)
            return lost, "connection_lost" if pooled else None
        try:
            tx.__exit__(None, None, None)
        except psycopg.Error as ex:
            if is_occ_error(ex):
                return ex, "conflict"
            if is_server_unavailable(ex):
                # The connection is still usable: no pool is needed to re-run.
                what = "the server answered COMMIT with 'server unavailable'"
                rerun = self._machine.idempotent
            elif isinstance(ex, psycopg.OperationalError) and conn.closed:
                what = "the connection broke while COMMIT was in flight"
                rerun = self._machine.idempotent and pooled
            else:
                return ex, None
            unknown = CommitOutcomeUnknown(
                f"{what}: the transaction may or may not have committed, so it"
                " was not run again. Check the data, or pass idempotent=True if"
                " running it twice is safe"
            )
            unknown.__cause__ = ex
            return unknown, "commit_outcome_unknown" if rerun else None
        return None, None


class _Source(Generic[C]):
    """Where a transaction's attempts take their connection from."""

    def __init__(self, source: psycopg_pool.ConnectionPool[C] | C) -> None:
        self.source = source
        self.pool: psycopg_pool.ConnectionPool[C] | None = None
        self.conn: C | None = None
        if isinstance(source, psycopg_pool.ConnectionPool):
            self.pool = source
        else:
            self.conn = source

    def release(self, conn: C) -> None:
        """Give a connection taken for an attempt back to its pool."""
        if self.pool is not None:
            self.pool.putconn(conn)


class RetryingTransaction(Generic[C]):
    """What `transaction()` returns: iterate it to retry, or enter it once."""

    def __init__(
        self,
        source: psycopg_pool.ConnectionPool[C] | C,
        policy: RetryPolicy,
        idempotent: bool,
    ) -> None:
        self._source = _Source(source)
        self._policy = policy
        self._idempotent = idempotent
        self._attempt: TransactionAttempt[C] | None = None

    def __iter__(self) -> Iterator[TransactionAttempt[C]]:
        return self._attempts(_Retrying(self._policy, self._idempotent, single=False))

    def _attempts(self, machine: _Retrying) -> Iterator[TransactionAttempt[C]]:
        try:
            while machine.next_attempt():
                yield TransactionAttempt(self._source, machine)
        except GeneratorExit:
            if machine.phase is Phase.RETRY_DUE:
                warnings.warn(
                    "a transaction attempt failed and was due to run again, but"
                    " the loop was left (return or break inside `with attempt`?):"
                    " it did not commit. Keep return and break out of the `with`"
                    " block, or use run_transaction()",
                    RuntimeWarning,
                    stacklevel=2,
                )
            raise

    def __enter__(self) -> C:
        machine = _Retrying(self._policy, self._idempotent, single=True)
        machine.next_attempt()
        self._attempt = TransactionAttempt(self._source, machine)
        return self._attempt.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        attempt, self._attempt = self._attempt, None
        assert attempt is not None
        return attempt.__exit__(exc_type, exc_val, exc_tb)


def _check_source(source: object) -> None:
    if isinstance(source, (psycopg_pool.ConnectionPool, psycopg.Connection)):
        return
    raise ConfigurationError(
        "transactions run on a psycopg_pool.ConnectionPool or a psycopg.Connection"
        f" (for example from dsql_psycopg.create_pool() or connect()), got"
        f" {type(source).__name__}"
    )


@overload
def transaction(
    source: psycopg_pool.ConnectionPool[C],
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    **options: Unpack[RetryOptions],
) -> RetryingTransaction[C]: ...


@overload
def transaction(
    source: C,
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    **options: Unpack[RetryOptions],
) -> RetryingTransaction[C]: ...


def transaction(
    source: psycopg_pool.ConnectionPool[Any] | psycopg.Connection[Any],
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    **options: Unpack[RetryOptions],
) -> RetryingTransaction[Any]:
    """Run a transaction on a pool or a connection, retried on conflict.

    Iterate it for attempts; each ``with attempt as conn:`` is one real
    transaction (BEGIN ... COMMIT, whatever the autocommit setting) on a
    connection checked out for the attempt::

        for attempt in dsql.transaction(pool, max_attempts=5):
            with attempt as conn:
                conn.execute("UPDATE ...")

    Entered directly, ``with dsql.transaction(pool) as conn:`` is exactly one
    attempt: errors propagate, for an enclosing retrying scope to handle.

    The body must be safe to run again. Inside an enclosing transaction on the
    same pool or connection, this one joins it (DSQL has no savepoints) and
    does not retry on its own.

    Args:
        source: The pool each attempt checks a connection out of, or the one
            connection every attempt runs on.
        policy: How to retry; the default `RetryPolicy` if None.
        idempotent: Also re-run when the connection broke while COMMIT was in
            flight (the transaction may have committed: running it twice must
            be harmless).
        **options: `RetryPolicy` fields (`RetryOptions`), applied on top of
            `policy`.

    Returns:
        An iterable of `TransactionAttempt`, also usable as one ``with`` block.

    Raises:
        ConfigurationError: `source` is no pool or connection, or an option is
            invalid.
    """
    _check_source(source)
    return RetryingTransaction(source, resolve_policy(policy, options), idempotent)


def _call_with_retries(policy: RetryPolicy, idempotent: bool, fn: Callable[[], R]) -> R:
    machine = _Retrying(policy, idempotent, single=False)
    # Inside an enclosing scope, calls run in it (and it does the retrying).
    scope = machine.outer or _Scope(owner=machine)
    result: R
    while machine.next_attempt():
        token = _current.set(scope)
        machine.enter_body()
        try:
            result = fn()
        except BaseException as error:
            if not machine.settle(error, machine.classify(error)):
                raise
        else:
            machine.settle(None, None)
        finally:
            _current.reset(token)
    return result


@overload
def retry_on_occ(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def retry_on_occ(
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    **options: Unpack[RetryOptions],
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def retry_on_occ(
    func: Callable[P, R] | None = None,
    /,
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    **options: Unpack[RetryOptions],
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function so that it runs again, whole, on a conflict.

    Use bare (``@retry_on_occ``) or with policy keywords
    (``@retry_on_occ(max_attempts=5)``). The function must start its own
    transaction each time it runs (``dsql.transaction(pool)``,
    ``pool.connection()``...), so that the server's rollback undid everything
    the failed run did. Only conflicts are retried, plus lost connections that
    an inner `transaction()` saw before COMMIT. Called inside another retrying
    scope, it runs once and leaves retrying to that scope.

    Args:
        func: The function, when used bare.
        policy: How to retry; the default `RetryPolicy` if None.
        idempotent: Also re-run on `CommitOutcomeUnknown` and on any lost
            connection.
        **options: `RetryPolicy` fields (`RetryOptions`), applied on top of
            `policy`.

    Returns:
        The wrapped function, or (with keywords) a decorator that wraps one.
        The wrapped function raises `OCCRetryExhausted` when no attempt is
        left.
    """
    resolved = resolve_policy(policy, options)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return _call_with_retries(resolved, idempotent, lambda: fn(*args, **kwargs))

        return wrapper

    return decorate if func is None else decorate(func)


_OPTION_NAMES = frozenset(RetryOptions.__annotations__)


def run_transaction(
    source: psycopg_pool.ConnectionPool[C] | C,
    fn: Callable[..., R],
    /,
    *args: Any,
    **kwargs: Any,
) -> R:
    """Return ``fn(conn, *args, **kwargs)`` run in a transaction, retried on conflict.

    `fn` runs inside ``for attempt in transaction(source): with attempt as
    conn:``, so it may run several times.

    Args:
        source: A pool or a connection, as for `transaction`.
        fn: The body; it gets the attempt's connection first.
        *args: Passed to `fn` after the connection.
        **kwargs: Passed to `fn`, except ``policy``, ``idempotent`` and the
            `RetryPolicy` fields, which configure the retries as in
            `transaction` (bind those with `functools.partial` if `fn` needs
            them).

    Returns:
        What the run of `fn` that committed returned.

    Raises:
        OCCRetryExhausted: Every attempt the policy allows failed.
        CommitOutcomeUnknown: The connection broke while COMMIT was in flight
            (and `idempotent` was not set).
    """
    policy: RetryPolicy | None = kwargs.pop("policy", None)
    idempotent = bool(kwargs.pop("idempotent", False))
    options = cast(
        RetryOptions, {k: kwargs.pop(k) for k in _OPTION_NAMES & kwargs.keys()}
    )
    for attempt in transaction(source, policy=policy, idempotent=idempotent, **options):
        with attempt as conn:
            result = fn(conn, *args, **kwargs)
    return result
