"""The transaction retry state machine, fed by hand: no sleep, no server.

The machine only decides (`Run`, `Stop`, `Raise`); the clock is an argument.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pge

from dsql_psycopg._backoff import Backoff
from dsql_psycopg._retry_machine import (
    Phase,
    Raise,
    RetryMachine,
    Run,
    Scope,
    Stop,
    current_scope,
)
from dsql_psycopg.errors import DsqlError, OCCRetryExhausted
from dsql_psycopg.retry import RetryPolicy

OC000 = "change conflicts with another transaction, please retry: (OC000)"


def machine(**options: object) -> RetryMachine:
    policy = RetryPolicy(jitter=0, **options)  # type: ignore[arg-type]
    return RetryMachine(policy, idempotent=False, single=False)


def fail_once(m: RetryMachine, now: float, error: BaseException) -> Run | Stop | Raise:
    """Run one attempt that fails with a conflict; return the next step."""
    m.enter_body()
    assert m.settle(error, "conflict")
    return m.next_attempt(now)


def test_the_policy_gives_the_shared_backoff():
    policy = RetryPolicy(base_delay=0.01, max_delay=0.2, jitter=0.5)
    assert policy.backoff == Backoff(0.01, 0.2, 0.5)
    assert policy.delay_cap(3) == policy.backoff.cap(3) == 0.04


def test_phases_of_a_retried_then_committed_unit_of_work():
    m = machine(max_attempts=3, base_delay=0.1, max_delay=0.1)
    assert m.phase is Phase.READY
    assert m.next_attempt(10.0) == Run(0.0, None)
    assert (m.phase, m.attempts) == (Phase.BEFORE_ATTEMPT, 1)
    m.enter_body()
    assert m.phase is Phase.IN_BODY
    m.begin_commit()
    assert m.phase is Phase.COMMITTING
    conflict = pge.SerializationFailure(OC000)
    assert m.settle(conflict, "conflict")
    assert m.phase is Phase.RETRY_DUE
    step = m.next_attempt(10.5)
    assert isinstance(step, Run)
    assert step.delay == 0.1  # jitter=0: the cap itself
    assert step.event is not None
    assert (step.event.attempt, step.event.reason, step.event.code) == (
        1,
        "conflict",
        "OC000",
    )
    assert step.event.elapsed == pytest.approx(0.5)
    assert step.event.error is conflict
    assert (m.phase, m.attempts) == (Phase.BEFORE_ATTEMPT, 2)
    m.enter_body()
    assert not m.settle(None, None)
    assert m.phase is Phase.DONE
    assert isinstance(m.next_attempt(11.0), Stop)
    assert m.attempts == 2


def test_the_time_budget_is_judged_on_the_clock_given():
    m = machine(timeout=1.0, base_delay=0.2, max_delay=0.2)
    m.next_attempt(0.0)
    assert isinstance(fail_once(m, 0.7, pge.SerializationFailure(OC000)), Run)
    step = fail_once(m, 0.85, pge.SerializationFailure(OC000))  # 0.85 + 0.2 >= 1
    assert isinstance(step, Raise)
    assert isinstance(step.error, OCCRetryExhausted)
    assert "1 s time limit" in str(step.error)
    assert step.error.attempts == 2


def test_skipped_waits_count_against_the_budget():
    m = machine(timeout=1.0, base_delay=0.3, max_delay=0.3)
    m.next_attempt(0.0)
    step = fail_once(m, 0.0, pge.SerializationFailure(OC000))
    assert isinstance(step, Run)
    for _ in range(3):
        m.skipped(step.delay)  # 0.9 s "spent" without a clock moving
    assert isinstance(fail_once(m, 0.0, pge.SerializationFailure(OC000)), Raise)


def test_settle_runs_once_per_attempt():
    m = machine()
    m.next_attempt(0.0)
    m.enter_body()
    m.begin_commit()
    m.settle(pge.SerializationFailure(OC000), "conflict")
    with pytest.raises(AssertionError, match="retry due"):
        m.settle(None, None)


def test_no_new_attempt_while_one_runs():
    m = machine()
    m.next_attempt(0.0)
    m.enter_body()
    with pytest.raises(DsqlError, match="leave the `with attempt` block"):
        m.next_attempt(0.0)
    assert m.phase is Phase.IN_BODY


def test_exhaustion_ends_the_machine():
    m = machine(max_attempts=1)
    m.next_attempt(0.0)
    conflict = pge.SerializationFailure(OC000)
    step = fail_once(m, 0.0, conflict)
    assert isinstance(step, Raise)
    assert step.error.__cause__ is conflict
    assert "max_attempts=1" in str(step.error)
    assert m.phase is Phase.DONE
    assert isinstance(m.next_attempt(0.0), Stop)


def test_an_attempt_handed_out_but_never_entered_ends_the_work():
    m = machine()
    m.next_attempt(0.0)
    assert isinstance(m.next_attempt(0.0), Stop)
    assert m.abandoned_warning() is None


def test_leaving_the_loop_with_a_retry_due_is_reported():
    m = machine()
    m.next_attempt(0.0)
    m.enter_body()
    m.settle(pge.SerializationFailure(OC000), "conflict")
    warning = m.abandoned_warning()
    assert warning is not None
    assert "did not commit" in warning


def test_an_inner_scope_hands_a_safe_error_to_the_outermost():
    outer = machine()
    outer.next_attempt(0.0)
    token = current_scope.set(Scope(owner=outer, source="pool", conn="conn"))
    try:
        inner = machine()
    finally:
        current_scope.reset(token)
    assert not inner.retrying
    assert inner.owner is outer
    assert inner.joined_conn("pool") == "conn"
    assert inner.joined_conn("conn") == "conn"
    assert inner.joined_conn("another pool") is None
    inner.next_attempt(0.0)
    inner.enter_body()
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    assert not inner.settle(lost, "connection_lost")  # not retried here...
    assert inner.phase is Phase.DONE
    assert outer.classify(lost) == "connection_lost"  # ...but by the outer scope


def test_a_single_attempt_never_retries():
    m = RetryMachine(RetryPolicy(), idempotent=False, single=True)
    m.next_attempt(0.0)
    m.enter_body()
    assert not m.settle(pge.SerializationFailure(OC000), "conflict")
    assert isinstance(m.next_attempt(0.0), Stop)


def test_the_endpoint_of_each_attempt_reaches_the_event():
    m = machine()
    m.next_attempt(0.0)
    m.use_endpoint("a.example")
    step = fail_once(m, 0.0, pge.SerializationFailure(OC000))
    assert isinstance(step, Run)
    assert step.event is not None
    assert (step.event.endpoint, step.event.endpoint_changed) == ("a.example", False)
    m.use_endpoint("b.example")
    step = fail_once(m, 0.0, pge.SerializationFailure(OC000))
    assert isinstance(step, Run)
    assert step.event is not None
    assert (step.event.endpoint, step.event.endpoint_changed) == ("b.example", True)
