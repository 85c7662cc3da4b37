"""is_occ_error and occ_details: DSQL's conflicts, however they are wrapped."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pge

from dsql_psycopg._detect import occ_details
from dsql_psycopg.errors import OCCRetryExhausted
from dsql_psycopg.retry import is_occ_error

OC000 = "change conflicts with another transaction, please retry: (OC000)"
OC001 = "schema has been updated by another transaction, please retry: (OC001)"


# -- detection ---------------------------------------------------------------


def test_is_occ_error_on_psycopg_errors():
    assert is_occ_error(pge.SerializationFailure(OC000))
    assert is_occ_error(pge.SerializationFailure("could not serialize access"))
    # DSQL's code in the text is enough, whatever class carries it.
    assert is_occ_error(psycopg.OperationalError(OC001))
    assert not is_occ_error(pge.UniqueViolation("duplicate key value"))
    assert not is_occ_error(psycopg.OperationalError("server closed the connection"))
    assert not is_occ_error(ValueError("OC000 without parentheses"))
    assert occ_details(pge.SerializationFailure(OC001)) == ("40001", "OC001")
    assert occ_details(psycopg.OperationalError(OC000)) == (None, "OC000")
    assert occ_details(ValueError("x")) == (None, None)


def test_is_occ_error_looks_through_wrappers():
    conflict = pge.SerializationFailure(OC000)
    caused = RuntimeError("wrapped")
    caused.__cause__ = conflict
    assert is_occ_error(caused)

    def handle() -> None:
        try:
            raise conflict
        except pge.SerializationFailure:
            raise KeyError("while handling") from None

    with pytest.raises(KeyError) as info:
        handle()
    # `from None` hides the context from tracebacks, not from us.
    assert is_occ_error(info.value)

    sqlalchemy_exc = pytest.importorskip("sqlalchemy.exc")
    wrapped = sqlalchemy_exc.OperationalError("UPDATE t SET v = 1", {}, conflict)
    wrapped.__cause__ = None
    assert wrapped.orig is conflict
    assert is_occ_error(wrapped)
    assert not is_occ_error(
        sqlalchemy_exc.IntegrityError("INSERT", {}, pge.UniqueViolation("dup"))
    )


def test_is_occ_error_survives_cycles_and_knows_exhaustion():
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert not is_occ_error(a)
    exhausted = OCCRetryExhausted("gave up", attempts=3)
    assert is_occ_error(exhausted)
    assert exhausted.attempts == 3
