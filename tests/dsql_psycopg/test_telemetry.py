"""_telemetry.py and _otel.py by themselves: the hooks the drivers call,
seen through the SDK's in-memory exporter and reader; the switch; nothing
imported when off.

The same hooks driven by real connects, conflicts and failovers against DSQL
Local are in test_telemetry_local.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psycopg
import pytest
from opentelemetry import trace as api

from dsql_psycopg import _config as config
from dsql_psycopg import _telemetry as telemetry
from dsql_psycopg.errors import CommitOutcomeUnknown, OCCRetryExhausted
from tests.fixtures.otel import Otel

HOST = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
PEER = "zyxwvutsrqponmlkjihgfedcba.dsql.us-west-2.on.aws"


def params(host: str = HOST) -> config.DsqlParams:
    return config.parse(host=host, port=5432)


def conflict(code: str = "OC000") -> psycopg.Error:
    return psycopg.errors.SerializationFailure(
        f"change conflicts with another transaction, please retry: ({code})"
    )


def attrs(span: object) -> dict[str, object]:
    return dict(span.attributes or {})  # type: ignore[attr-defined]


def test_a_connect_that_failed_over_after_a_retry(otel: Otel) -> None:
    trace = telemetry.connect_started()
    first, second = params(HOST), params(PEER)
    trace.endpoint_failed(first, psycopg.OperationalError("connection refused"))
    trace.endpoint_failed(
        second,
        psycopg.OperationalError(
            "FATAL: unable to accept connection, waking up cluster, please retry later"
        ),
    )
    trace.retrying(0.025)
    trace.endpoint_failed(first, psycopg.OperationalError("Connection refused"))
    telemetry.token_signed(0.0002)
    trace.connected(second, failover=True)

    (span,) = otel.spans("dsql.connect")
    a = attrs(span)
    assert a["server.address"] == PEER
    assert a["server.port"] == 5432
    assert a["dsql.region"] == "us-west-2"
    assert a["db.system.name"] == "postgresql"
    assert a["dsql.connect.failover"] is True
    assert a["dsql.connect.retries"] == 1
    assert a["dsql.connect.failed_tries"] == 3
    assert a["dsql.token.signing_time"] == pytest.approx(0.0002)
    events = [(e.name, dict(e.attributes)) for e in span.events]
    assert [name for name, _ in events] == [
        "dsql.connect.endpoint_failed",
        "dsql.connect.endpoint_failed",
        "dsql.connect.retry",
        "dsql.connect.endpoint_failed",
    ]
    assert events[0][1]["error.type"] == "connection_refused"
    assert events[0][1]["server.address"] == HOST
    assert events[1][1]["error.type"] == "waking_up"
    assert events[2][1] == {"error.type": "waking_up", "dsql.retry.delay": 0.025}

    assert otel.metrics("dsql.connect.retries") == {
        frozenset({("error.type", "waking_up")}): 1
    }
    (failover,) = otel.metrics("dsql.connect.failovers")
    assert ("server.address", PEER) in failover
    assert sum(otel.metrics("dsql.connect.duration").values()) == 1
    assert sum(otel.metrics("dsql.token.signing_time").values()) == 1


def test_a_connect_that_failed_for_good(otel: Otel) -> None:
    trace = telemetry.connect_started()
    error = psycopg.OperationalError("password authentication failed for user")
    trace.endpoint_failed(params(), error)
    trace.failed(error)
    (span,) = otel.spans("dsql.connect")
    assert span.status.status_code.name == "ERROR"
    assert attrs(span)["error.type"] == "OperationalError"
    assert span.events[0].attributes["error.type"] == "authentication"
    # No word of the server's message in the span.
    assert "password" not in str(span.to_json())
    assert otel.metrics("dsql.connect.failovers") == {}


def test_signing_outside_a_connect_counts_but_joins_no_span(otel: Otel) -> None:
    telemetry.token_signed(0.001)
    assert otel.spans() == []
    assert sum(otel.metrics("dsql.token.signing_time").values()) == 1


def run_attempts(
    otel: Otel, outcomes: list[tuple[BaseException | None, str | None]]
) -> telemetry.TransactionTrace:
    trace = telemetry.transaction_started(max_attempts=5, idempotent=False)
    for number, (error, reason) in enumerate(outcomes, start=1):
        trace.attempt_started(number)
        token = trace.activate()
        trace.deactivate(token)
        trace.attempt_ended(error, reason)  # type: ignore[arg-type]
        if reason is not None:
            trace.retrying(reason, 0.01 * number)
    return trace


def test_a_transaction_retried_after_a_conflict(otel: Otel) -> None:
    trace = run_attempts(
        otel, [(conflict("OC000"), "conflict"), (conflict("OC001"), "conflict")]
    )
    trace.attempt_started(3)
    trace.attempt_ended(None, None)
    trace.finished()

    (tx,) = otel.spans("dsql.transaction")
    attempts = otel.spans("dsql.transaction.attempt")
    assert [attrs(s)["dsql.attempt.number"] for s in attempts] == [1, 2, 3]
    for span in attempts:
        assert span.parent.span_id == tx.context.span_id
        assert span.context.trace_id == tx.context.trace_id
    one, two, three = (attrs(s) for s in attempts)
    assert one["dsql.attempt.outcome"] == "conflict"
    assert one["dsql.occ.code"] == "OC000"
    assert one["db.response.status_code"] == "40001"
    assert one["error.type"] == "40001"
    assert one["dsql.retry.backoff"] == pytest.approx(0.01)
    assert two["dsql.occ.code"] == "OC001"
    assert two["dsql.retry.backoff"] == pytest.approx(0.02)
    assert three["dsql.attempt.outcome"] == "committed"
    assert "dsql.retry.backoff" not in three
    assert attempts[0].status.status_code.name == "ERROR"
    assert attempts[2].status.status_code.name == "UNSET"
    t = attrs(tx)
    assert t["dsql.transaction.outcome"] == "committed"
    assert t["dsql.transaction.attempts"] == 3
    assert t["dsql.retry.max_attempts"] == 5
    assert tx.status.status_code.name == "UNSET"

    assert otel.metrics("dsql.transaction.conflicts") == {
        frozenset({("db.response.status_code", "40001"), ("dsql.occ.code", c)}): 1
        for c in ("OC000", "OC001")
    }
    assert otel.metrics("dsql.transaction.retries") == {
        frozenset({("dsql.retry.reason", "conflict")}): 2
    }
    (point,) = [
        p
        for p in otel.histogram("dsql.transaction.attempts")
        if p.attributes["dsql.transaction.outcome"] == "committed"
    ]
    assert point.max >= 3
    assert otel.metrics("dsql.transaction.exhausted") == {}


def test_the_attempt_span_is_current_while_its_body_runs(otel: Otel) -> None:
    trace = telemetry.transaction_started(max_attempts=3, idempotent=True)
    trace.attempt_started(1)
    before = api.get_current_span()
    token = trace.activate()
    with api.get_tracer("a query").start_as_current_span("SELECT"):
        pass
    trace.deactivate(token)
    assert api.get_current_span() is before
    trace.attempt_ended(None, None)
    trace.finished()
    (query,) = otel.spans("SELECT")
    (attempt,) = otel.spans("dsql.transaction.attempt")
    assert query.parent.span_id == attempt.context.span_id


def test_an_exhausted_transaction(otel: Otel) -> None:
    trace = run_attempts(otel, [(conflict(), "conflict"), (conflict(), None)])
    exhausted = OCCRetryExhausted("gave up", attempts=2)
    trace.finished(exhausted)
    (tx,) = otel.spans("dsql.transaction")
    assert attrs(tx)["dsql.transaction.outcome"] == "exhausted"
    assert attrs(tx)["error.type"] == "OCCRetryExhausted"
    assert tx.status.status_code.name == "ERROR"
    assert sum(otel.metrics("dsql.transaction.exhausted").values()) == 1
    # Both attempts ended, the last without a backoff.
    last = otel.spans("dsql.transaction.attempt")[-1]
    assert "dsql.retry.backoff" not in attrs(last)


def test_a_commit_outcome_unknown(otel: Otel) -> None:
    unknown = CommitOutcomeUnknown("the connection broke while COMMIT was in flight")
    trace = run_attempts(otel, [(unknown, None)])
    trace.finished(unknown)
    (attempt,) = otel.spans("dsql.transaction.attempt")
    assert attrs(attempt)["dsql.attempt.outcome"] == "commit_outcome_unknown"
    (tx,) = otel.spans("dsql.transaction")
    assert attrs(tx)["dsql.transaction.outcome"] == "commit_outcome_unknown"
    assert sum(otel.metrics("dsql.transaction.commit_outcome_unknown").values()) == 1


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("server_unavailable", "server_unavailable"),
        ("connection_lost", "connection_lost"),
        (None, "error"),
    ],
)
def test_attempt_outcomes(reason: str | None, outcome: str) -> None:
    error = psycopg.OperationalError("gone")
    assert telemetry.attempt_outcome(error, reason) == outcome  # type: ignore[arg-type]
    assert telemetry.attempt_outcome(None, None) == "committed"


def test_switched_off_nothing_is_reported(otel: Otel) -> None:
    telemetry.set_telemetry(False)
    assert not telemetry.telemetry_enabled()
    assert telemetry.connect_started() is telemetry.NOTHING
    assert telemetry.transaction_started(3, False) is telemetry.NOTHING
    run_attempts(otel, [(conflict(), "conflict")]).finished()
    telemetry.token_signed(0.001)
    assert otel.spans() == []
    assert otel.metrics("dsql.transaction.conflicts") == {}
    telemetry.set_telemetry(True)
    assert telemetry.telemetry_enabled()


@pytest.mark.parametrize("value", ["off", "0", "FALSE", "no"])
def test_the_environment_switch_keeps_opentelemetry_out(value: str) -> None:
    code = textwrap.dedent(
        """
        import sys
        import dsql_psycopg as dsql
        from dsql_psycopg import _telemetry as t
        assert not dsql.telemetry_enabled()
        assert t.connect_started() is t.NOTHING
        assert t.transaction_started(3, False) is t.NOTHING
        t.token_signed(0.1)
        assert "opentelemetry" not in sys.modules, "imported"
        dsql.set_telemetry(True)  # the function overrides the environment
        assert dsql.telemetry_enabled()
        assert "opentelemetry" in sys.modules
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"DSQL_PSYCOPG_OTEL": value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_without_an_sdk_the_hooks_do_nothing_until_one_is_set() -> None:
    code = textwrap.dedent(
        """
        import dsql_psycopg as dsql
        from dsql_psycopg import _telemetry as t
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        # The API is there, no SDK: the no-op providers would take the calls.
        assert dsql.telemetry_enabled()
        assert t.connect_started() is t.NOTHING
        assert t.transaction_started(3, False) is t.NOTHING
        trace.set_tracer_provider(TracerProvider())
        assert t.connect_started() is not t.NOTHING
        assert t.transaction_started(3, False) is not t.NOTHING
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_error_types_name_no_server_words() -> None:
    assert (
        telemetry.connect_error_type(
            psycopg.OperationalError("Unable to accept connection, rate exceeded.")
        )
        == "rate_exceeded"
    )
    assert (
        telemetry.connect_error_type(psycopg.OperationalError("something odd"))
        == "OperationalError"
    )
    assert telemetry.error_type(conflict()) == "40001"
    assert telemetry.error_type(ValueError("x")) == "ValueError"


def test_a_rolled_back_and_an_abandoned_transaction(otel: Otel) -> None:
    rolled = telemetry.transaction_started(max_attempts=3, idempotent=False)
    rolled.attempt_started(1)
    rolled.attempt_ended(None, None, rolled_back=True)
    rolled.finished()
    left = telemetry.transaction_started(max_attempts=3, idempotent=False)
    left.attempt_started(1)
    left.attempt_ended(conflict(), "conflict")
    left.finished()  # the loop was left with attempt 2 due
    left.finished()  # counted once
    first, second = otel.spans("dsql.transaction")
    assert attrs(first)["dsql.transaction.outcome"] == "rolled_back"
    assert attrs(second)["dsql.transaction.outcome"] == "abandoned"
    outcomes = [
        attrs(s)["dsql.attempt.outcome"] for s in otel.spans("dsql.transaction.attempt")
    ]
    assert outcomes == ["rolled_back", "conflict"]
    assert otel.metrics("dsql.transaction.attempts") == {
        frozenset({("dsql.transaction.outcome", "rolled_back")}): 1,
        frozenset({("dsql.transaction.outcome", "abandoned")}): 1,
    }
