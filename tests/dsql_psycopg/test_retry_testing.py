"""retry_testing: the switch that turns backoff sleeps off."""

from __future__ import annotations

import dsql_psycopg.retry as retry
from dsql_psycopg._retry_testing import is_retry_testing


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
