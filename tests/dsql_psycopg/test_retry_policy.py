"""RetryPolicy, is_occ_error and the retry loop itself, without a server."""

from __future__ import annotations

import logging
import math

import psycopg
import pytest
from psycopg import errors as pge

import dsql_psycopg.retry as retry
from dsql_psycopg._retry_policy import is_retry_testing, occ_details
from dsql_psycopg.errors import ConfigurationError, DsqlError, OCCRetryExhausted
from dsql_psycopg.retry import (
    Phase,
    RetryEvent,
    RetryPolicy,
    is_occ_error,
    retry_on_occ,
)

OC000 = "change conflicts with another transaction, please retry: (OC000)"
OC001 = "schema has been updated by another transaction, please retry: (OC001)"


@pytest.fixture
def no_sleep():
    with retry.retry_testing():
        yield


# -- policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"max_attempts": 2.0}, "max_attempts must be an int"),
        ({"max_attempts": True}, "max_attempts must be an int"),
        ({"base_delay": -0.1}, "base_delay must be >= 0"),
        ({"base_delay": "1"}, "base_delay must be a number"),
        ({"max_delay": math.inf}, "max_delay must be finite"),
        ({"base_delay": 2.0, "max_delay": 1.0}, "must not exceed max_delay"),
        ({"jitter": 1.5}, "jitter is a fraction"),
        ({"jitter": -0.1}, "jitter is a fraction"),
        ({"jitter": math.nan}, "jitter must be finite"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"timeout": -1.0}, "timeout must be >= 0"),
        ({"on_retry": 3}, "on_retry must be callable"),
    ],
)
def test_policy_rejects_bad_values(options, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        RetryPolicy(**options)


def test_policy_is_frozen_and_validates_overrides():
    policy = RetryPolicy(max_attempts=3)
    with pytest.raises(AttributeError):
        policy.max_attempts = 4  # type: ignore[misc]
    assert policy.with_options({"max_delay": 2.0}).max_delay == 2.0
    assert policy.with_options({}) is policy
    with pytest.raises(ConfigurationError, match="max_attempts must be at least 1"):
        policy.with_options({"max_attempts": 0})
    with pytest.raises(ConfigurationError, match="unknown retry option"):
        policy.with_options({"retries": 3})  # type: ignore[typeddict-unknown-key]


def test_delays_without_jitter_are_exact_and_capped():
    policy = RetryPolicy(base_delay=0.01, max_delay=0.1, jitter=0)
    delays = [policy.compute_delay(n) for n in range(1, 8)]
    assert delays == [0.01, 0.02, 0.04, 0.08, 0.1, 0.1, 0.1]
    # Far past the cap the arithmetic must not overflow.
    assert policy.compute_delay(10_000) == 0.1


def test_jitter_stays_inside_its_band():
    policy = RetryPolicy(base_delay=0.1, max_delay=10.0, jitter=0.25)
    for attempt in (1, 3, 6):
        cap = policy.delay_cap(attempt)
        samples = [policy.compute_delay(attempt) for _ in range(500)]
        assert all(0.75 * cap <= d <= cap for d in samples)
        assert len(set(samples)) > 1  # it is random
    full = RetryPolicy(base_delay=1.0, max_delay=1.0, jitter=1.0)
    samples = [full.compute_delay(1) for _ in range(500)]
    assert all(0.0 < d <= 1.0 for d in samples)
    assert min(samples) < 0.2
    assert max(samples) > 0.8


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


# -- the loop, on plain functions -------------------------------------------------


class Flaky:
    """Fails with the given errors, one per call, then returns the call count."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


def test_decorator_retries_conflicts_and_reports_each_retry(no_sleep, caplog):
    events: list[RetryEvent] = []
    flaky = Flaky(pge.SerializationFailure(OC000), psycopg.OperationalError(OC001))
    policy = RetryPolicy(
        max_attempts=10, base_delay=0.5, max_delay=5.0, jitter=0, on_retry=events.append
    )
    caplog.set_level(logging.DEBUG, logger="dsql_psycopg.retry")

    assert retry_on_occ(policy=policy)(flaky)() == 3
    assert flaky.calls == 3
    assert [(e.attempt, e.delay, e.reason, e.sqlstate, e.code) for e in events] == [
        (1, 0.5, "conflict", "40001", "OC000"),
        (2, 1.0, "conflict", None, "OC001"),
    ]
    assert all(e.elapsed >= 0 for e in events)
    lines = [r.getMessage() for r in caplog.records if r.name == "dsql_psycopg.retry"]
    assert len(lines) == 2
    assert "attempt 1 of 10 failed" in lines[0]
    assert "OC000" in lines[0]
    assert "retrying in 0.500 s" in lines[0]
    # Codes only: the server's text (which might quote data) stays out.
    assert "conflicts with another" not in " ".join(lines)


def test_bare_decorator_and_wraps():
    @retry_on_occ
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    assert add(2, 3) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Add."


def test_exhaustion_carries_attempts_and_last_error(no_sleep):
    errors = [pge.SerializationFailure(OC000) for _ in range(4)]
    flaky = Flaky(*errors)
    with pytest.raises(OCCRetryExhausted) as info:
        retry_on_occ(max_attempts=3)(flaky)()
    assert flaky.calls == 3
    assert info.value.attempts == 3
    assert info.value.__cause__ is errors[2]
    assert "after 3 attempt(s)" in str(info.value)
    assert "max_attempts=3" in str(info.value)
    assert "OC000" in str(info.value)
    assert is_occ_error(info.value)


def test_time_budget_stops_before_a_wait_that_would_overrun_it(no_sleep):
    flaky = Flaky(*(pge.SerializationFailure(OC000) for _ in range(5)))
    decorated = retry_on_occ(base_delay=0.2, max_delay=2.0, jitter=0, timeout=0.5)(
        flaky
    )
    with pytest.raises(OCCRetryExhausted, match=r"0\.5 s time limit") as info:
        decorated()
    # Waits of 0.2 and 0.4 s: the second would end past the 0.5 s budget.
    assert flaky.calls == 2
    assert info.value.attempts == 2


def test_non_occ_error_runs_once_and_propagates_unchanged():
    boom = pge.UniqueViolation("duplicate key")
    flaky = Flaky(boom)
    with pytest.raises(pge.UniqueViolation) as info:
        retry_on_occ(flaky)()
    assert info.value is boom
    assert flaky.calls == 1


def test_keyboard_interrupt_is_not_retried():
    flaky = Flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        retry_on_occ(flaky)()
    assert flaky.calls == 1


def test_connection_loss_is_retried_only_when_idempotent(no_sleep):
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    flaky = Flaky(lost)
    with pytest.raises(psycopg.OperationalError) as info:
        retry_on_occ(flaky)()
    assert info.value is lost
    assert flaky.calls == 1

    flaky = Flaky(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert retry_on_occ(idempotent=True)(flaky)() == 2


def test_nested_retrying_scopes_leave_retries_to_the_outermost(no_sleep):
    inner = Flaky(pge.SerializationFailure(OC000), pge.SerializationFailure(OC000))
    outer_calls = 0

    @retry_on_occ(max_attempts=5)
    def outer() -> int:
        nonlocal outer_calls
        outer_calls += 1
        return retry_on_occ(max_attempts=5)(inner)()

    assert outer() == 3
    # The inner decorator ran once per outer run: retries did not multiply.
    assert outer_calls == 3
    assert inner.calls == 3


def test_hook_errors_propagate(no_sleep):
    def hook(event: RetryEvent) -> None:
        raise LookupError("hook failed")

    flaky = Flaky(pge.SerializationFailure(OC000))
    with pytest.raises(LookupError, match="hook failed"):
        retry_on_occ(on_retry=hook)(flaky)()


def test_retry_testing_switch_nests_and_restores():
    assert not is_retry_testing()
    with retry.retry_testing():
        assert is_retry_testing()
        with retry.retry_testing(enabled=False):
            assert not is_retry_testing()
        assert is_retry_testing()
    assert not is_retry_testing()
    retry.retry_testing()
    try:
        assert is_retry_testing()
    finally:
        retry.retry_testing(False)
    assert not is_retry_testing()


def test_policy_argument_is_checked():
    with pytest.raises(ConfigurationError, match="policy must be a RetryPolicy"):
        retry_on_occ(policy={"max_attempts": 3})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ConnectionPool or a psycopg"):
        retry.transaction("host=localhost")  # type: ignore[call-overload]


# -- the state machine, driven by hand ---------------------------------------------


def machine(**options: object) -> retry._Retrying:
    policy = RetryPolicy(jitter=0, **options)  # type: ignore[arg-type]
    return retry._Retrying(policy, idempotent=False, single=False)


def test_phases_of_a_retried_then_committed_unit_of_work(no_sleep):
    m = machine(max_attempts=3)
    assert m.phase is Phase.READY
    assert m.next_attempt()
    assert (m.phase, m.attempts) == (Phase.BEFORE_ATTEMPT, 1)
    m.enter_body()
    assert m.phase is Phase.IN_BODY
    m.begin_commit()
    assert m.phase is Phase.COMMITTING
    assert m.settle(pge.SerializationFailure(OC000), "conflict")
    assert m.phase is Phase.RETRY_DUE
    assert m.next_attempt()
    assert (m.phase, m.attempts) == (Phase.BEFORE_ATTEMPT, 2)
    m.enter_body()
    assert not m.settle(None, None)
    assert m.phase is Phase.DONE
    assert not m.next_attempt()
    assert m.attempts == 2


def test_settle_runs_once_per_attempt(no_sleep):
    m = machine()
    m.next_attempt()
    m.enter_body()
    m.begin_commit()
    m.settle(pge.SerializationFailure(OC000), "conflict")
    with pytest.raises(AssertionError, match="retry due"):
        m.settle(None, None)


def test_no_new_attempt_while_one_runs():
    m = machine()
    m.next_attempt()
    m.enter_body()
    with pytest.raises(DsqlError, match="leave the `with attempt` block"):
        m.next_attempt()
    assert m.phase is Phase.IN_BODY


def test_exhaustion_ends_the_machine(no_sleep):
    m = machine(max_attempts=1)
    m.next_attempt()
    m.enter_body()
    conflict = pge.SerializationFailure(OC000)
    assert m.settle(conflict, "conflict")
    with pytest.raises(OCCRetryExhausted) as info:
        m.next_attempt()
    assert info.value.__cause__ is conflict
    assert m.phase is Phase.DONE
    assert not m.next_attempt()


def test_an_inner_scope_hands_a_safe_error_to_the_outermost(no_sleep):
    outer = machine()
    outer.next_attempt()
    token = retry._current.set(retry._Scope(owner=outer))
    try:
        inner = machine()
    finally:
        retry._current.reset(token)
    assert not inner.retrying
    assert inner.owner is outer
    inner.next_attempt()
    inner.enter_body()
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    assert not inner.settle(lost, "connection_lost")  # not retried here...
    assert inner.phase is Phase.DONE
    assert outer.classify(lost) == "connection_lost"  # ...but by the outer scope
