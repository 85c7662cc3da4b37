"""The connect loop's decisions and the endpoint record, fed by hand.

No socket, no sleep: errors are psycopg's own exception objects with
libpq's wording, and the clock is an argument.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pge

from dsql_psycopg import EndpointHealth, endpoint_health
from dsql_psycopg._classify import commit_failure, connect_failure, retry_reason
from dsql_psycopg._config import parse_endpoints
from dsql_psycopg._connect_plan import ConnectPlan, Fail, Sleep, TryEndpoint
from dsql_psycopg.errors import (
    AuthenticationError,
    CommitOutcomeUnknown,
    ConnectRetryExhausted,
)

EAST = "aaaaaaaaaaaaaaaaaaaaaaaaaa.dsql.us-east-1.on.aws"
WEST = "bbbbbbbbbbbbbbbbbbbbbbbbbb.dsql.us-west-2.on.aws"
REFUSED = psycopg.OperationalError(
    'connection failed: connection to server at "127.0.0.1", port 1 failed:'
    " Connection refused"
)
DENIED = psycopg.OperationalError(
    "connection failed: FATAL:  password authentication failed for user admin"
)
NO_DB = psycopg.OperationalError('FATAL:  database "nope" does not exist')


def plan(hosts: str, health: EndpointHealth, **options: object) -> ConnectPlan:
    endpoints = parse_endpoints(host=hosts, **options)
    return ConnectPlan(
        endpoints, conninfo="", kwargs={"host": hosts}, started=0.0, health=health
    )


def test_every_endpoint_is_tried_in_order_then_the_first_error_wins():
    health = EndpointHealth()
    p = plan(f"{EAST},{WEST}", health, connect_retry=0)
    first = p.next_step(0.0)
    assert isinstance(first, TryEndpoint)
    assert first.params.host == EAST
    p.failed(first.params, REFUSED, 0.0)
    second = p.next_step(0.0)
    assert isinstance(second, TryEndpoint)
    assert second.params.host == WEST
    p.failed(second.params, NO_DB, 0.0)
    step = p.next_step(0.0)
    assert step == Fail(NO_DB)  # connect_retry=0: the last error, as it is


def test_a_failed_endpoint_cools_down_in_the_record_given():
    health = EndpointHealth()
    p = plan(f"{EAST},{WEST}", health, endpoint_cooldown=10)
    step = p.next_step(100.0)
    assert isinstance(step, TryEndpoint)
    p.failed(step.params, REFUSED, 100.0)
    step = p.next_step(100.0)
    assert isinstance(step, TryEndpoint)
    p.succeeded(step.params)
    endpoints = p.endpoints
    assert [e.host for e in health.order(endpoints, 105.0)] == [WEST, EAST]
    assert [e.host for e in health.order(endpoints, 110.5)] == [EAST, WEST]
    assert list(health.cooling(105.0).values()) == [5.0]
    assert endpoint_health.cooling(105.0) == {}  # the shared one was not used
    health.reset()
    assert [e.host for e in health.order(endpoints, 105.0)] == [EAST, WEST]


def test_transient_refusals_sleep_then_retry_until_the_budget_is_spent():
    p = plan(EAST, EndpointHealth(), connect_retry=1)
    now = 0.0
    sleeps = []
    while True:
        step = p.next_step(now)
        if isinstance(step, Fail):
            break
        if isinstance(step, Sleep):
            sleeps.append(step.delay)
            now += step.delay
            continue
        p.failed(step.params, REFUSED, now)
    assert sleeps
    assert all(0 <= d <= 1.0 for d in sleeps)
    assert now + 0.0 < 1.0  # never waited past the budget
    error = step.error
    assert isinstance(error, ConnectRetryExhausted)
    assert error.__cause__ is REFUSED
    assert "the connection was refused" in str(error)
    assert "connect_retry=1 s" in str(error)


def test_a_refused_token_fails_at_once_without_trying_the_other_endpoint():
    p = plan(f"{EAST},{WEST}", EndpointHealth())
    step = p.next_step(0.0)
    assert isinstance(step, TryEndpoint)
    p.failed(step.params, DENIED, 0.0)
    step = p.next_step(0.0)
    assert isinstance(step, Fail)
    assert isinstance(step.error, AuthenticationError)
    assert step.error.__cause__ is DENIED


@pytest.mark.parametrize(
    ("message", "final", "transient"),
    [
        ("FATAL:  waking up cluster", False, True),
        ("connection to server failed: Connection refused", False, True),
        ("FATAL:  too many clients already", False, True),
        ("server certificate for x does not match host name", False, False),
        ("FATAL:  password authentication failed", True, False),
        ('FATAL:  role "x" does not exist', False, False),
    ],
)
def test_connect_failures_are_classified(message, final, transient):
    error, cause = connect_failure(psycopg.OperationalError(message), "", {})
    assert (error is not None, cause is not None) == (final, transient)


def test_commit_failures_are_classified():
    conflict = pge.SerializationFailure("conflict (OC000)")
    assert commit_failure(conflict, closed=False, pooled=True, idempotent=False) == (
        conflict,
        "conflict",
    )
    broke = psycopg.OperationalError("server closed the connection unexpectedly")
    error, reason = commit_failure(broke, closed=True, pooled=True, idempotent=False)
    assert isinstance(error, CommitOutcomeUnknown)
    assert error.__cause__ is broke
    assert reason is None
    _, reason = commit_failure(broke, closed=True, pooled=True, idempotent=True)
    assert reason == "commit_outcome_unknown"
    _, reason = commit_failure(broke, closed=True, pooled=False, idempotent=True)
    assert reason is None  # no fresh connection to re-run it on
    other = pge.UniqueViolation("duplicate key")
    assert commit_failure(other, closed=False, pooled=True, idempotent=True) == (
        other,
        None,
    )


def test_whole_attempt_errors_are_classified():
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    assert retry_reason(lost, idempotent=False, safe_error=None) is None
    assert retry_reason(lost, idempotent=False, safe_error=lost) == "connection_lost"
    assert retry_reason(lost, idempotent=True, safe_error=None) == "connection_lost"
    assert retry_reason(KeyboardInterrupt(), idempotent=True, safe_error=None) is None
    unknown = CommitOutcomeUnknown("?")
    assert retry_reason(unknown, idempotent=False, safe_error=None) is None
    assert (
        retry_reason(unknown, idempotent=True, safe_error=None)
        == "commit_outcome_unknown"
    )
