"""The blocking driver of retried transactions: attempts on pools and connections.

`TransactionAttempt` runs one attempt (BEGIN, the body, COMMIT) and
reports to the `RetryMachine` (`_retry_machine.py`), which decides;
`next_attempt` does what it decides (the wait, the ``on_retry`` hook);
`call_with_retries` drives a whole function. `retry.py` holds the public
functions on top.

Generated from `_async_transaction.py` by ``tools/async_to_sync.py``:
edit that module, then run the tool.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Concatenate, Generic, TypeVar, cast

import psycopg
import psycopg_pool
from psycopg.pq import TransactionStatus
from typing_extensions import ParamSpec

from . import _telemetry as telemetry
from ._classify import (
    body_error_reason,
    commit_failure,
    failed_statement_error,
    lost_before_commit_reason,
)
from ._liveness import connection_lost
from ._retry_machine import Raise, RetryMachine, Scope, Stop, current_scope
from ._retry_policy import RetryPolicy
from ._retry_testing import is_retry_testing
from ._types import RetryReason
from .errors import DsqlError

logger = logging.getLogger("dsql_psycopg.retry")

C = TypeVar("C", bound="psycopg.Connection[Any]")
R = TypeVar("R")
P = ParamSpec("P")


def start_trace(machine: RetryMachine) -> telemetry.TransactionTrace:
    """The telemetry of `machine`'s unit of work: only the outermost reports."""
    if machine.outer is not None:
        return telemetry.NOTHING
    return telemetry.transaction_started(
        machine.policy.max_attempts, machine.idempotent
    )


def report(
    trace: telemetry.TransactionTrace,
    error: BaseException | None,
    reason: RetryReason | None,
    retried: bool,
) -> None:
    """Tell `trace` how an attempt ended, and the work too if nothing follows."""
    trace.attempt_ended(error, reason)
    if error is not None and not retried:
        trace.finished(error)


def next_attempt(
    machine: RetryMachine, trace: telemetry.TransactionTrace = telemetry.NOTHING
) -> bool:
    """Do what `machine` decides for the next attempt; False when done.

    Raises what the machine says to raise (`OCCRetryExhausted`).
    """
    step = machine.next_attempt(time.monotonic())
    if isinstance(step, Raise):
        trace.finished(step.error)
        raise step.error
    if isinstance(step, Stop):
        trace.finished()
        return False
    if step.event is not None:
        trace.retrying(step.event.reason, step.delay)
        hook = machine.policy.on_retry
        if hook is not None:
            hook(step.event)
    if step.delay:
        if is_retry_testing():
            machine.skipped(step.delay)
        else:
            time.sleep(step.delay)
    trace.attempt_started(machine.attempts)
    return True


def call_with_retries(policy: RetryPolicy, idempotent: bool, fn: Callable[[], R]) -> R:
    """Return what ``fn()`` returns, calling it again on a conflict."""
    machine = RetryMachine(policy, idempotent, single=False)
    trace = start_trace(machine)
    # Inside an enclosing scope, calls run in it (and it does the retrying).
    scope = machine.outer or Scope(owner=machine)
    result: R
    while next_attempt(machine, trace):
        token = current_scope.set(scope)
        activation = trace.activate()
        machine.enter_body()
        try:
            result = fn()
        except BaseException as error:
            reason = machine.classify(error)
            retried = machine.settle(error, reason)
            report(trace, error, reason, retried)
            if not retried:
                raise
        else:
            machine.settle(None, None)
            trace.attempt_ended(None, None)
        finally:
            trace.deactivate(activation)
            current_scope.reset(token)
    return result


class TransactionAttempt(Generic[C]):
    """One run of a transaction: ``with attempt as conn:`` gives the connection.

    On entry it checks a connection out (from a pool) and begins a
    transaction, whatever the connection's autocommit setting; on exit it
    commits, or rolls back on error, and gives the connection back. A conflict
    or a lost connection is recorded for the loop to retry, and not raised.

    Don't ``return`` or ``break`` inside the ``with`` block: a conflict
    found at COMMIT is only retried if the loop goes on. Assign what you need
    and use it after the loop, or use `run_transaction`.
    """

    def __init__(
        self,
        source: _Source[C],
        machine: RetryMachine,
        trace: telemetry.TransactionTrace = telemetry.NOTHING,
    ) -> None:
        self._source = source
        self._machine = machine
        self._trace = trace
        self._activation: object = None
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
        joined = machine.joined_conn(work.source)
        if joined is not None:
            # Joined: the enclosing transaction owns BEGIN, COMMIT and retries.
            machine.enter_body()
            return cast(C, joined)
        # Current from BEGIN to COMMIT: query spans nest under the attempt.
        self._activation = self._trace.activate()
        try:
            self._conn, self._tx = self._begin()
        except BaseException as error:
            machine.settle(error, None)
            self._trace.deactivate(self._activation)
            report(self._trace, error, None, retried=False)
            raise
        machine.use_endpoint(
            getattr(self._conn, "endpoint", None) or self._conn.info.host
        )
        machine.enter_body()
        scope = Scope(owner=machine.owner, source=work.source, conn=self._conn)
        self._token = current_scope.set(scope)
        return self._conn

    def _begin(
        self,
    ) -> tuple[C, AbstractContextManager[psycopg.Transaction]]:
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
        current_scope.reset(self._token)
        trace = self._trace
        try:
            if exc_val is not None:
                if tx.__exit__(exc_type, exc_val, exc_tb):  # psycopg.Rollback
                    machine.settle(None, None)
                    trace.attempt_ended(None, None, rolled_back=True)
                    return True
                reason = self._classify_body_error(conn, exc_val)
                retried = machine.settle(exc_val, reason)
                report(trace, exc_val, reason, retried)
                return retried
            machine.begin_commit()
            error, reason = self._commit(conn, tx)
        finally:
            self._source.release(conn)
            trace.deactivate(self._activation)
        retried = machine.settle(error, reason)
        report(trace, error, reason, retried)
        if retried or error is None:
            return False
        raise error

    def _classify_body_error(self, conn: C, error: BaseException) -> RetryReason | None:
        # No COMMIT was sent: nothing committed, so a fresh connection may
        # redo it, if there is one to take.
        pooled = self._source.pool is not None
        if conn.closed and not pooled:
            return None
        reason = body_error_reason(error, closed=conn.closed, pooled=pooled)
        return reason or self._machine.classify(error)

    def _commit(
        self, conn: C, tx: AbstractContextManager[psycopg.Transaction]
    ) -> tuple[Exception | None, RetryReason | None]:
        """Commit; return the error to raise or retry, and why it may be retried."""
        pooled = self._source.pool is not None
        if conn.info.transaction_status == TransactionStatus.INERROR:
            failed = failed_statement_error()
            tx.__exit__(type(failed), failed, None)
            return failed, None
        # psycopg skips COMMIT without a word on a closed connection; and if
        # the server hung up before COMMIT went out, nothing was committed.
        lost = connection_lost(conn)
        if lost is not None:
            tx.__exit__(type(lost), lost, None)
            return lost, lost_before_commit_reason(pooled=pooled)
        try:
            tx.__exit__(None, None, None)
        except psycopg.Error as ex:
            return commit_failure(
                ex,
                closed=conn.closed,
                pooled=pooled,
                idempotent=self._machine.idempotent,
            )
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


class _Attempts(Generic[C]):
    """The attempts of one retried transaction, handed out by ``for``.

    A class rather than a generator, so that a loop left by ``return`` or
    ``break`` is warned of as soon as it is left: an async generator is
    closed only when the event loop gets to it, late and far from the cause.
    """

    def __init__(self, source: _Source[C], machine: RetryMachine) -> None:
        self._source = source
        self._machine = machine
        self._trace = start_trace(machine)

    def __iter__(self) -> _Attempts[C]:
        return self

    def __next__(self) -> TransactionAttempt[C]:
        if not next_attempt(self._machine, self._trace):
            raise StopIteration
        return TransactionAttempt(self._source, self._machine, self._trace)

    def __del__(self) -> None:
        warning = self._machine.abandoned_warning()
        if warning is not None:
            warnings.warn(warning, RuntimeWarning, stacklevel=2)
        self._trace.finished()  # nothing if already told (a loop left early)


class RetryingTransaction(Generic[C]):
    """What `transaction()` returns: iterate it to retry, or enter it once.

    - ``for attempt in ...: with attempt as conn:`` runs the block
      until one attempt commits (each `TransactionAttempt` is one
      transaction);
    - `run` calls a function in such a loop and returns what it returned;
    - ``with ... as conn:`` runs the block once, as one transaction that
      does not retry (an enclosing retrying scope may).

    ```python
    import dsql_psycopg

    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"


    def fetch_now(conn):
        cursor = conn.execute("SELECT now()")
        return cursor.fetchone()


    def main():
        with dsql_psycopg.DsqlConnection.connect(url) as conn:
            retrying = dsql_psycopg.transaction(conn, max_attempts=3)
            return retrying.run(fetch_now)


    now = main()
    ```
    """

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

    def __iter__(self) -> _Attempts[C]:
        return _Attempts(
            self._source, RetryMachine(self._policy, self._idempotent, single=False)
        )

    def run(
        self,
        fn: Callable[Concatenate[C, P], R],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Return ``fn(conn, *args, **kwargs)``, run in a transaction, retried.

        Every argument goes to `fn`; the retry settings are those given to
        `transaction()`. `fn` may run several times.

        Returns:
            What the run of `fn` that committed returned.
        """
        for attempt in self:
            with attempt as conn:
                result = fn(conn, *args, **kwargs)
        return result

    def __enter__(self) -> C:
        machine = RetryMachine(self._policy, self._idempotent, single=True)
        trace = start_trace(machine)
        next_attempt(machine, trace)
        self._attempt = TransactionAttempt(self._source, machine, trace)
        return self._attempt.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        attempt, self._attempt = self._attempt, None
        assert attempt is not None
        try:
            return attempt.__exit__(exc_type, exc_val, exc_tb)
        finally:
            attempt._trace.finished()  # one attempt: the work ends with it
