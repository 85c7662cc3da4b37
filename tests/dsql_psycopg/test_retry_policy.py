"""RetryPolicy: validation, overrides and the backoff schedule."""

from __future__ import annotations

import math

import pytest

from dsql_psycopg.errors import ConfigurationError
from dsql_psycopg.typing import RetryPolicy

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
