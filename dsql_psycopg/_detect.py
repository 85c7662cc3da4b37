"""Recognise the DSQL errors that end a transaction, however they are wrapped.

Optimistic-concurrency conflicts (SQLSTATE 40001) and ``server unavailable``
(XX000): the server rolled the transaction back, so it may run again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .errors import CommitOutcomeUnknown, OCCRetryExhausted

OCC_SQLSTATE = "40001"
_OCC_CODE = re.compile(r"\((OC00[01])\)")
# DSQL's "the node serving this transaction is gone": re-run the transaction.
UNAVAILABLE_SQLSTATE = "XX000"
_UNAVAILABLE_TEXT = "server unavailable"


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

    Args:
        exc: Any exception; ``__cause__``, ``__context__`` and SQLAlchemy's
            ``.orig`` are looked through.

    ```python
    import dsql_psycopg

    gave_up = dsql_psycopg.OCCRetryExhausted("10 attempts failed", attempts=10)
    assert dsql_psycopg.is_occ_error(gave_up)
    assert not dsql_psycopg.is_occ_error(ValueError("not a conflict"))
    ```

    Returns:
        Whether it is SQLSTATE 40001, ``(OC000)``/``(OC001)``, or `OCCRetryExhausted`.
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
