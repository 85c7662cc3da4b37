"""Run transactions again when DSQL reports an optimistic-concurrency conflict.

DSQL never blocks on a lock: a transaction that loses a race fails (SQLSTATE
40001, ``OC000``/``OC001``), the server rolls it back, and the whole
transaction has to run again. A Python ``with`` block cannot run its body
twice, so a retried block is a loop of attempts:

```python
for attempt in dsql_psycopg.transaction(pool):
    with attempt as conn:
        conn.execute("UPDATE ...")
```

or a function, re-run whole: ``@dsql_psycopg.retry_on_occ`` or
``dsql_psycopg.run_transaction(pool, fn)``
(``dsql_psycopg.transaction(pool, max_attempts=5).run(fn)`` with retry
settings).

What runs again: a conflict (the server rolled back), a statement answered
with DSQL's ``server unavailable`` (SQLSTATE XX000: the server ended the
transaction), and a connection that broke before COMMIT was sent (nothing was
committed; a pool gives the next attempt a fresh connection). A connection
that broke while COMMIT was in flight, or a COMMIT answered with ``server
unavailable``, raises `CommitOutcomeUnknown`: the transaction may have
committed, so it runs again only if the caller passed ``idempotent=True``. Anything else
propagates at once, unchanged.

All three forms drive one state machine, `RetryMachine` (in
`_retry_machine.py`, shared with the async driver), through its phases: an
attempt is handed out, its body runs, it commits (transactions only), and it
is settled once, as retried or as done. The machine decides; the driver in
`_transaction.py` waits and runs.

Nesting: DSQL has no savepoints, so there are no nested transactions. Only
the outermost retrying scope retries; inner ones run once and let errors
through, so that the outer scope re-runs the whole unit of work. An inner
`transaction()` on the pool or connection the enclosing one uses joins the
enclosing transaction (same connection, no BEGIN or COMMIT of its own).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, TypeVar, cast, overload

import psycopg
import psycopg_pool
from typing_extensions import ParamSpec, Unpack

from . import _async_transaction as _async
from ._async_transaction import AsyncRetryingTransaction, AsyncTransactionAttempt
from ._detect import is_occ_error
from ._retry_machine import Phase
from ._retry_policy import RetryPolicy, resolve_policy
from ._retry_testing import retry_testing
from ._transaction import RetryingTransaction, TransactionAttempt, call_with_retries
from ._types import RetryEvent, RetryOptions
from .errors import ConfigurationError

__all__ = [
    "AsyncRetryingTransaction",
    "AsyncTransactionAttempt",
    "Phase",
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

C = TypeVar("C", bound="psycopg.Connection[Any]")
AC = TypeVar("AC", bound="psycopg.AsyncConnection[Any]")
R = TypeVar("R")
P = ParamSpec("P")


_SYNC_SOURCES = (psycopg_pool.ConnectionPool, psycopg.Connection)
_ASYNC_SOURCES = (psycopg_pool.AsyncConnectionPool, psycopg.AsyncConnection)


def _check_source(source: object) -> None:
    if isinstance(source, _SYNC_SOURCES + _ASYNC_SOURCES):
        return
    raise ConfigurationError(
        "transactions run on a psycopg_pool.ConnectionPool or a psycopg.Connection"
        " (for example from dsql_psycopg.create_pool() or connect()), or on their"
        " asyncio twins (create_async_pool(), AsyncDsqlConnection.connect()), got"
        f" {type(source).__name__}"
    )


@overload
def transaction(
    source: psycopg_pool.AsyncConnectionPool[AC],
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    **options: Unpack[RetryOptions],
) -> AsyncRetryingTransaction[AC]: ...


@overload
def transaction(
    source: AC,
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    **options: Unpack[RetryOptions],
) -> AsyncRetryingTransaction[AC]: ...


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
    source: psycopg_pool.ConnectionPool[Any]
    | psycopg.Connection[Any]
    | psycopg_pool.AsyncConnectionPool[Any]
    | psycopg.AsyncConnection[Any],
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    **options: Unpack[RetryOptions],
) -> RetryingTransaction[Any] | AsyncRetryingTransaction[Any]:
    """Run a transaction on a pool or a connection, retried on conflict.

    Iterate it for attempts; each ``with attempt as conn:`` is one real
    transaction (BEGIN ... COMMIT, whatever the autocommit setting) on a
    connection checked out for the attempt:

    ```python
    import dsql_psycopg

    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"
    with dsql_psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS hits (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO hits VALUES (1, 0) ON CONFLICT DO NOTHING")

    with dsql_psycopg.create_pool(url, min_size=1) as pool:
        for attempt in dsql_psycopg.transaction(pool, max_attempts=5):
            with attempt as conn:
                conn.execute("UPDATE hits SET n = n + 1 WHERE id = 1")
    ```

    Entered directly, ``with dsql_psycopg.transaction(pool) as conn:`` is
    exactly one attempt: errors propagate, for an enclosing retrying scope to
    handle.

    On an asyncio pool or connection (`create_async_pool`,
    `AsyncDsqlConnection`) it returns an `AsyncRetryingTransaction`, the same
    with ``async for attempt in ...: async with attempt as conn:``, ``async
    with ... as conn:`` and ``await ....run(fn)``.

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
    resolved = resolve_policy(policy, options)
    if isinstance(source, _ASYNC_SOURCES):
        return AsyncRetryingTransaction(source, resolved, idempotent)
    return RetryingTransaction(source, resolved, idempotent)


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
    transaction each time it runs (``dsql_psycopg.transaction(pool)``,
    ``pool.connection()``...), so that the server's rollback undid everything
    the failed run did. Only conflicts are retried, plus lost connections that
    an inner `transaction()` saw before COMMIT. Called inside another retrying
    scope, it runs once and leaves retrying to that scope. When no attempt is
    left, the wrapped function raises `OCCRetryExhausted`.

    ```python
    import dsql_psycopg

    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"
    pool = dsql_psycopg.create_pool(url, min_size=1)


    @dsql_psycopg.retry_on_occ(max_attempts=5)
    def add_visit(page):
        with pool.connection() as conn:  # a transaction of its own, each run
            conn.execute("CREATE TABLE IF NOT EXISTS visits (page text)")
        with pool.connection() as conn:
            conn.execute("INSERT INTO visits VALUES (%s)", (page,))


    add_visit("/")
    pool.close()
    ```

    Args:
        func: The function, when used bare.
        policy: How to retry; the default `RetryPolicy` if None.
        idempotent: Also re-run on `CommitOutcomeUnknown` and on any lost
            connection.
        **options: `RetryPolicy` fields (`RetryOptions`), applied on top of
            `policy`.

    Returns:
        The wrapped function, or (with keywords) a decorator that wraps one.
    """
    resolved = resolve_policy(policy, options)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            # An `async def`: the wrapper awaits each run, and its waits.
            return cast(Callable[P, R], _decorate_async(fn))

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return call_with_retries(resolved, idempotent, lambda: fn(*args, **kwargs))

        return wrapper

    def _decorate_async(
        fn: Callable[P, Awaitable[Any]],
    ) -> Callable[P, Coroutine[Any, Any, Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await _async.call_with_retries(
                resolved, idempotent, lambda: fn(*args, **kwargs)
            )

        return wrapper

    return decorate if func is None else decorate(func)


@overload
def run_transaction(
    source: psycopg_pool.AsyncConnectionPool[AC] | AC,
    fn: Callable[Concatenate[AC, P], Awaitable[R]],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> Coroutine[Any, Any, R]: ...


@overload
def run_transaction(
    source: psycopg_pool.ConnectionPool[C] | C,
    fn: Callable[Concatenate[C, P], R],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> R: ...


def run_transaction(
    source: Any,
    fn: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Return ``fn(conn, *args, **kwargs)`` run in a transaction, retried on conflict.

    `fn` runs inside ``for attempt in transaction(source): with attempt as
    conn:``, so it may run several times. Every argument after `fn` goes to
    `fn`, keywords included; the retries follow the default `RetryPolicy`.
    For other retry settings, use ``transaction(source, ...).run(fn, ...)``:

    <!-- docs-sample: skip (a fragment: pool and transfer are the caller's) -->
    ```python
    dsql_psycopg.transaction(pool, max_attempts=5).run(transfer, 1, 2, amount=10)
    ```

    Args:
        source: A pool or a connection, as for `transaction`.
        fn: The body; it gets the attempt's connection first.
        *args: Passed to `fn` after the connection.
        **kwargs: Passed to `fn`.

    Returns:
        What the run of `fn` that committed returned.

    On an asyncio pool or connection, `fn` is a coroutine function and the
    call returns an awaitable: ``await run_transaction(apool, fn, ...)``.

    Raises:
        OCCRetryExhausted: Every attempt the policy allows failed.
        CommitOutcomeUnknown: The connection broke while COMMIT was in flight.
    """
    return transaction(source).run(fn, *args, **kwargs)
