"""The chaos workload on the asyncio driver: 8 writer tasks through a fault.

The books are audited as for the blocking writers (`Ledger.check`): nothing
lost, nothing applied twice, no failure but an unknown COMMIT outcome, no
retry budget exhausted. ``DSQL_CHAOS=full`` runs it at full size.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from dsql_local import DsqlLocal
from tests.chaos.async_ledger import AsyncLedger
from tests.chaos.conftest import OUTCOMES

pytestmark = pytest.mark.slow

DOWN = 2.0


@pytest.fixture
def async_ledger(request: pytest.FixtureRequest) -> Iterator[AsyncLedger]:
    with DsqlLocal() as local:
        ledger = AsyncLedger(local, request.node.name.removeprefix("test_"))
        yield ledger
        OUTCOMES.append(ledger.outcome)


def test_async_endpoint_down_2s(async_ledger: AsyncLedger) -> None:
    local = async_ledger.local

    def fault() -> float:
        # The endpoint is gone: its connections cut, new ones refused.
        local.kill_endpoint()
        time.sleep(DOWN)
        local.restart_endpoint()
        return time.monotonic()

    outcome = async_ledger.run(fault)
    async_ledger.check()
    # The fault did reach the writers: some attempt lost its connection.
    assert outcome.retries["connection_lost"] + sum(outcome.failures.values()) > 0
