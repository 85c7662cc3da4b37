"""The shared backoff and budget, fed by hand: no sleep, no clock."""

from __future__ import annotations

import itertools

import pytest

from dsql_psycopg._backoff import CONNECT_BACKOFF, Backoff, GiveUp, Schedule, Wait


def fixed(*draws: float):
    """A `draw` that returns `draws` in turn, then the last one forever."""
    it = itertools.chain(draws, itertools.repeat(draws[-1]))
    return lambda: next(it)


def test_caps_double_from_the_base_up_to_the_maximum():
    backoff = Backoff(base_delay=0.01, max_delay=0.1, jitter=0)
    assert [backoff.cap(n) for n in range(1, 7)] == [0.01, 0.02, 0.04, 0.08, 0.1, 0.1]
    assert backoff.cap(100_000) == 0.1  # no overflow far past the cap


def test_full_jitter_spans_zero_to_the_cap():
    backoff = Backoff(base_delay=1.0, max_delay=1.0, jitter=1.0)
    assert backoff.delay(1, 0.0) == 1.0
    assert backoff.delay(1, 0.75) == 0.25
    partial = Backoff(base_delay=1.0, max_delay=1.0, jitter=0.25)
    assert partial.delay(1, 0.999) == pytest.approx(0.75, abs=1e-3)


def test_a_wait_is_not_begun_when_it_would_end_past_the_budget():
    # elapsed + delay >= timeout gives up: the one rule, for both users.
    schedule = Schedule(
        Backoff(0.5, 0.5, jitter=0), started=100.0, timeout=1.0, draw=fixed(0.0)
    )
    assert schedule.failed(100.2) == Wait(
        delay=0.5, elapsed=pytest.approx(0.2), failures=1
    )
    assert schedule.failed(100.5) == GiveUp(elapsed=0.5, failures=2, out_of_time=True)


def test_max_attempts_is_a_backstop():
    schedule = Schedule(
        Backoff(0.01, 0.01, 0), started=0.0, timeout=None, max_attempts=3
    )
    assert isinstance(schedule.failed(0.0), Wait)
    assert isinstance(schedule.failed(0.0), Wait)
    assert schedule.failed(0.0) == GiveUp(elapsed=0.0, failures=3, out_of_time=False)


def test_skipped_waits_count_as_spent():
    schedule = Schedule(Backoff(0.4, 0.4, 0), started=0.0, timeout=1.0)
    first = schedule.failed(0.0)
    assert isinstance(first, Wait)
    schedule.skipped(first.delay)
    schedule.skipped(0.4)
    assert schedule.elapsed(0.0) == pytest.approx(0.8)
    assert isinstance(schedule.failed(0.0), GiveUp)


def test_no_time_limit_and_no_attempt_limit_never_gives_up():
    schedule = Schedule(Backoff(1.0, 1.0, 0), started=0.0, timeout=None)
    assert all(isinstance(schedule.failed(1e9), Wait) for _ in range(1000))


def test_the_connect_backoff():
    assert (CONNECT_BACKOFF.base_delay, CONNECT_BACKOFF.max_delay) == (0.05, 1.0)
    assert CONNECT_BACKOFF.jitter == 1.0
