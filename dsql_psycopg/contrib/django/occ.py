"""Re-run a whole view or function when DSQL reports a conflict."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar, overload

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.transaction import TransactionManagementError
from typing_extensions import ParamSpec, Unpack

from dsql_psycopg.retry import retry_on_occ
from dsql_psycopg.typing import RetryOptions, RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")


@overload
def retry_atomic(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def retry_atomic(
    *,
    using: str | None = None,
    policy: RetryPolicy | None = None,
    **options: Unpack[RetryOptions],
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def retry_atomic(
    func: Callable[P, R] | None = None,
    /,
    *,
    using: str | None = None,
    policy: RetryPolicy | None = None,
    **options: Unpack[RetryOptions],
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the function in ``transaction.atomic(using)``; run it again on a conflict.

    Use bare (``@retry_atomic``) or with retry keywords
    (``@retry_atomic(max_attempts=5, using="default")``). A conflict rolls
    back the whole transaction, so the function runs again from the start:
    keep side effects outside the database (mail, HTTP calls) in
    ``transaction.on_commit``. It must be the outermost transaction: called
    inside ``atomic()`` it raises `TransactionManagementError`, since only
    the outer block could be retried. With ``ATOMIC_REQUESTS``, mark such
    views ``@transaction.non_atomic_requests`` (above this decorator).

    <!-- docs-sample: skip (needs a configured Django project and its models) -->
    ```python
    from django.db.models import F

    from dsql_psycopg.contrib.django import retry_atomic

    from .models import Account


    @retry_atomic(max_attempts=5)
    def transfer(source_id, target_id, amount):
        Account.objects.filter(pk=source_id).update(balance=F("balance") - amount)
        Account.objects.filter(pk=target_id).update(balance=F("balance") + amount)
    ```

    Args:
        func: The function, when used bare.
        using: The database alias; ``default`` if None.
        policy: How to retry; the default `RetryPolicy` if None.
        **options: `RetryPolicy` fields (`RetryOptions`), applied on top of
            `policy`.

    Returns:
        The wrapped function, or (with keywords) a decorator that wraps one.
    """
    alias = using or DEFAULT_DB_ALIAS

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @retry_on_occ(policy=policy, **options)
        def attempt(*args: P.args, **kwargs: P.kwargs) -> R:
            with transaction.atomic(using=alias):
                return fn(*args, **kwargs)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if transaction.get_connection(alias).in_atomic_block:
                raise TransactionManagementError(
                    f"{fn.__qualname__} retries its transaction on DSQL conflicts,"
                    " so it must not run inside atomic(): a conflict rolls back"
                    " the outer transaction too. Call it outside atomic(), or"
                    " move the retry to the outermost function"
                )
            return attempt(*args, **kwargs)

        return wrapper

    return decorate if func is None else decorate(func)
