"""The switch that turns backoff sleeps off in test suites."""

from __future__ import annotations

import threading
from types import TracebackType


class _TestingState:
    def __init__(self) -> None:
        self.enabled = False
        self.lock = threading.Lock()


_testing = _TestingState()


def is_retry_testing() -> bool:
    """Tell whether `retry_testing` has turned backoff sleeps off."""
    return _testing.enabled


class retry_testing:
    """Turn backoff sleeps off (or on again) for a test suite.

    Delays are still computed, logged and passed to `on_retry`; only the
    sleep is skipped, for every thread. Call it once (``retry_testing()`` in
    a conftest or fixture) or use it as a context manager, which restores the
    previous setting on exit:

    ```python
    import dsql_psycopg

    url = "postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres"
    with dsql_psycopg.connect(url) as conn, dsql_psycopg.retry_testing():
        # Attempts follow each other with no sleep in between.
        dsql_psycopg.run_transaction(conn, lambda conn: conn.execute("SELECT 1"))
    ```

    Args:
        enabled: True skips the sleeps, False restores them.
    """

    def __init__(self, enabled: bool = True) -> None:
        with _testing.lock:
            self._previous = _testing.enabled
            _testing.enabled = bool(enabled)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        with _testing.lock:
            _testing.enabled = self._previous
