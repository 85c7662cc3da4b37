"""The asyncio driver of retried transactions: attempts on pools and connections.

`AsyncTransactionAttempt` runs one attempt (BEGIN, the body, COMMIT) and
reports to the `RetryMachine` (`_retry_machine.py`), which decides;
`next_attempt` does what it decides (the wait, the ``on_retry`` hook);
`call_with_retries` drives a whole function. `retry.py` holds the public
functions on top.

The blocking driver, `_transaction.py`, is generated from this module by
``tools/async_to_sync.py``: edit this one, then run the tool.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
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

AC = TypeVar("AC", bound="psycopg.AsyncConnection[Any]")
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


async def next_attempt(
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
            await asyncio.sleep(step.delay)
    trace.attempt_started(machine.attempts)
    return True


async def call_with_retries(
    policy: RetryPolicy, idempotent: bool, fn: Callable[[], Awaitable[R]]
) -> R:
    """Return what ``await fn()`` returns, calling it again on a conflict."""
    machine = RetryMachine(policy, idempotent, single=False)
    trace = start_trace(machine)
    # Inside an enclosing scope, calls run in it (and it does the retrying).
    scope = machine.outer or Scope(owner=machine)
    result: R
    while await next_attempt(machine, trace):
        token = current_scope.set(scope)
        activation = trace.activate()
        machine.enter_body()
        try:
            result = await fn()
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


class AsyncTransactionAttempt(Generic[AC]):
    """One run of a transaction: ``async with attempt as conn:`` gives the connection.

    On entry it checks a connection out (from a pool) and begins a
    transaction, whatever the connection's autocommit setting; on exit it
    commits, or rolls back on error, and gives the connection back. A conflict
    or a lost connection is recorded for the loop to retry, and not raised.

    Don't ``return`` or ``break`` inside the ``async with`` block: a conflict
    found at COMMIT is only retried if the loop goes on. Assign what you need
    and use it after the loop, or use `run_transaction`.
    """

    def __init__(
        self,
        source: _AsyncSource[AC],
        machine: RetryMachine,
        trace: telemetry.TransactionTrace = telemetry.NOTHING,
    ) -> None:
        self._source = source
        self._machine = machine
        self._trace = trace
        self._activation: object = None
        self.number = machine.attempts
        """Number of this attempt, from 1."""
        self._conn: AC | None = None
        self._tx: AbstractAsyncContextManager[psycopg.AsyncTransaction] | None = None
        self._token: Any = None

    def __repr__(self) -> str:
        limit = self._machine.policy.max_attempts
        return f"<AsyncTransactionAttempt {self.number} of {limit}>"

    async def __aenter__(self) -> AC:
        machine, work = self._machine, self._source
        joined = machine.joined_conn(work.source)
        if joined is not None:
            # Joined: the enclosing transaction owns BEGIN, COMMIT and retries.
            machine.enter_body()
            return cast(AC, joined)
        # Current from BEGIN to COMMIT: query spans nest under the attempt.
        self._activation = self._trace.activate()
        try:
            self._conn, self._tx = await self._begin()
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

    async def _begin(
        self,
    ) -> tuple[AC, AbstractAsyncContextManager[psycopg.AsyncTransaction]]:
        pool = self._source.pool
        # A pooled connection can die while idle; the body has not run yet,
        # so trying the next one costs no attempt. After max_size of them the
        # pool is handing out new connections.
        tries = pool.max_size + 1 if pool is not None else 1
        for n in range(1, tries + 1):
            conn = await pool.getconn() if pool is not None else self._source.conn
            assert conn is not None
            if conn.info.transaction_status != TransactionStatus.IDLE:
                await self._source.release(conn)
                raise DsqlError(
                    "the connection is already in a transaction that"
                    " dsql_psycopg.transaction() did not start; DSQL has no"
                    " savepoints, so it cannot nest one: commit or roll back first"
                    " (or use autocommit=True)"
                )
            tx = conn.transaction()
            try:
                await tx.__aenter__()
            except psycopg.OperationalError:
                await self._source.release(conn)
                if pool is None or not conn.closed or n == tries:
                    raise
                logger.debug("pooled connection lost before BEGIN; taking another")
                continue
            return conn, tx
        raise AssertionError("unreachable")

    async def __aexit__(
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
                if await tx.__aexit__(exc_type, exc_val, exc_tb):  # psycopg.Rollback
                    machine.settle(None, None)
                    trace.attempt_ended(None, None, rolled_back=True)
                    return True
                reason = self._classify_body_error(conn, exc_val)
                retried = machine.settle(exc_val, reason)
                report(trace, exc_val, reason, retried)
                return retried
            machine.begin_commit()
            error, reason = await self._commit(conn, tx)
        finally:
            await self._source.release(conn)
            trace.deactivate(self._activation)
        retried = machine.settle(error, reason)
        report(trace, error, reason, retried)
        if retried or error is None:
            return False
        raise error

    def _classify_body_error(
        self, conn: AC, error: BaseException
    ) -> RetryReason | None:
        # No COMMIT was sent: nothing committed, so a fresh connection may
        # redo it, if there is one to take.
        pooled = self._source.pool is not None
        if conn.closed and not pooled:
            return None
        reason = body_error_reason(error, closed=conn.closed, pooled=pooled)
        return reason or self._machine.classify(error)

    async def _commit(
        self, conn: AC, tx: AbstractAsyncContextManager[psycopg.AsyncTransaction]
    ) -> tuple[Exception | None, RetryReason | None]:
        """Commit; return the error to raise or retry, and why it may be retried."""
        pooled = self._source.pool is not None
        if conn.info.transaction_status == TransactionStatus.INERROR:
            failed = failed_statement_error()
            await tx.__aexit__(type(failed), failed, None)
            return failed, None
        # psycopg skips COMMIT without a word on a closed connection; and if
        # the server hung up before COMMIT went out, nothing was committed.
        lost = connection_lost(conn)
        if lost is not None:
            await tx.__aexit__(type(lost), lost, None)
            return lost, lost_before_commit_reason(pooled=pooled)
        try:
            await tx.__aexit__(None, None, None)
        except psycopg.Error as ex:
            return commit_failure(
                ex,
                closed=conn.closed,
                pooled=pooled,
                idempotent=self._machine.idempotent,
            )
        return None, None


class _AsyncSource(Generic[AC]):
    """Where a transaction's attempts take their connection from."""

    def __init__(self, source: psycopg_pool.AsyncConnectionPool[AC] | AC) -> None:
        self.source = source
        self.pool: psycopg_pool.AsyncConnectionPool[AC] | None = None
        self.conn: AC | None = None
        if isinstance(source, psycopg_pool.AsyncConnectionPool):
            self.pool = source
        else:
            self.conn = source

    async def release(self, conn: AC) -> None:
        """Give a connection taken for an attempt back to its pool."""
        if self.pool is not None:
            await self.pool.putconn(conn)


class _AsyncAttempts(Generic[AC]):
    """The attempts of one retried transaction, handed out by ``async for``.

    A class rather than a generator, so that a loop left by ``return`` or
    ``break`` is warned of as soon as it is left: an async generator is
    closed only when the event loop gets to it, late and far from the cause.
    """

    def __init__(self, source: _AsyncSource[AC], machine: RetryMachine) -> None:
        self._source = source
        self._machine = machine
        self._trace = start_trace(machine)

    def __aiter__(self) -> _AsyncAttempts[AC]:
        return self

    async def __anext__(self) -> AsyncTransactionAttempt[AC]:
        if not await next_attempt(self._machine, self._trace):
            raise StopAsyncIteration
        return AsyncTransactionAttempt(self._source, self._machine, self._trace)

    def __del__(self) -> None:
        warning = self._machine.abandoned_warning()
        if warning is not None:
            warnings.warn(warning, RuntimeWarning, stacklevel=2)
        self._trace.finished()  # nothing if already told (a loop left early)


class AsyncRetryingTransaction(Generic[AC]):
    """What `transaction()` returns: iterate it to retry, or enter it once.

    - ``async for attempt in ...: async with attempt as conn:`` runs the block
      until one attempt commits (each `AsyncTransactionAttempt` is one
      transaction);
    - `run` calls a function in such a loop and returns what it returned;
    - ``async with ... as conn:`` runs the block once, as one transaction that
      does not retry (an enclosing retrying scope may).

    ```python
    import asyncio

    import dsql_psycopg

    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"


    async def fetch_now(conn):
        cursor = await conn.execute("SELECT now()")
        return await cursor.fetchone()


    async def main():
        async with await dsql_psycopg.AsyncDsqlConnection.connect(url) as conn:
            retrying = dsql_psycopg.transaction(conn, max_attempts=3)
            return await retrying.run(fetch_now)


    now = asyncio.run(main())
    ```
    """

    def __init__(
        self,
        source: psycopg_pool.AsyncConnectionPool[AC] | AC,
        policy: RetryPolicy,
        idempotent: bool,
    ) -> None:
        self._source = _AsyncSource(source)
        self._policy = policy
        self._idempotent = idempotent
        self._attempt: AsyncTransactionAttempt[AC] | None = None

    def __aiter__(self) -> _AsyncAttempts[AC]:
        return _AsyncAttempts(
            self._source, RetryMachine(self._policy, self._idempotent, single=False)
        )

    async def run(
        self,
        fn: Callable[Concatenate[AC, P], Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Return ``await fn(conn, *args, **kwargs)``, run in a transaction, retried.

        Every argument goes to `fn`; the retry settings are those given to
        `transaction()`. `fn` may run several times.

        Returns:
            What the run of `fn` that committed returned.
        """
        async for attempt in self:
            async with attempt as conn:
                result = await fn(conn, *args, **kwargs)
        return result

    async def __aenter__(self) -> AC:
        machine = RetryMachine(self._policy, self._idempotent, single=True)
        trace = start_trace(machine)
        await next_attempt(machine, trace)
        self._attempt = AsyncTransactionAttempt(self._source, machine, trace)
        return await self._attempt.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        attempt, self._attempt = self._attempt, None
        assert attempt is not None
        try:
            return await attempt.__aexit__(exc_type, exc_val, exc_tb)
        finally:
            attempt._trace.finished()  # one attempt: the work ends with it
