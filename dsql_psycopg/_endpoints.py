"""Which endpoint a connect tries first, and which ones failed lately.

A multi-Region cluster has one endpoint per Region, each needing a token for
its own host name, so connecting is a loop over endpoints, not libpq's own.
An endpoint that fails a connect cools down: for `Endpoints.cooldown`
seconds it is tried only after the others, then it is tried in its place
again.

The record is an `EndpointHealth` object. One, `endpoint_health`, is shared
by every connect in the process, so a pool that lost its Region moves every
new connection at once, after one failure; ``endpoint_health.reset()``
forgets every failure. Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Hashable

from ._config import DsqlParams, Endpoints

logger = logging.getLogger("dsql_psycopg")


def key(params: DsqlParams) -> Hashable:
    """Tell endpoints apart by where libpq goes, not only by name."""
    return (params.host, params.libpq.get("hostaddr"), params.libpq.get("port"))


class EndpointHealth:
    """Which endpoints failed a connect lately, and until when they cool down.

    Thread-safe; the times are ``time.monotonic()`` values the caller passes.
    `dsql_psycopg.endpoint_health` is the one every connect uses; call its
    `reset` to forget every failure (a test suite does it between tests).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Endpoint key -> monotonic time when its cool-down ends.
        self._cooling: dict[Hashable, float] = {}

    def __repr__(self) -> str:
        with self._lock:
            count = len(self._cooling)
        return f"<EndpointHealth: {count} endpoint(s) recorded as failed>"

    def order(
        self,
        endpoints: Endpoints,
        now: float,
        *,
        shuffle: Callable[[list[DsqlParams]], None] = random.shuffle,
    ) -> list[DsqlParams]:
        """Return the endpoints in the order to try them at `now`.

        The ones cooling down come last, the one whose cool-down ends first
        before the others; with ``load_balance_hosts=random`` the rest are
        shuffled first (`shuffle`, not for security: it spreads connections).
        """
        each = list(endpoints.each)
        if len(each) == 1:
            return each
        if endpoints.random_order:
            shuffle(each)
        with self._lock:
            until = {key(p): self._cooling.get(key(p), 0.0) for p in each}
        ready = [p for p in each if until[key(p)] <= now]
        cooling = sorted(
            (p for p in each if until[key(p)] > now), key=lambda p: until[key(p)]
        )
        return ready + cooling

    def failed(
        self, endpoints: Endpoints, params: DsqlParams, cause: str, now: float
    ) -> None:
        """Record that a connect to `params` failed at `now` for `cause`."""
        if len(endpoints.each) == 1:
            return
        with self._lock:
            self._cooling[key(params)] = now + endpoints.cooldown
        logger.warning(
            "endpoint %s (%s) failed: %s; it is tried last for %g s",
            params.host,
            params.region,
            cause,
            endpoints.cooldown,
        )

    def succeeded(self, endpoints: Endpoints, params: DsqlParams) -> None:
        """Record that a connect to `params` succeeded."""
        if len(endpoints.each) == 1:
            return
        with self._lock:
            recovered = self._cooling.pop(key(params), None) is not None
        if recovered:
            logger.info("endpoint %s (%s) is back", params.host, params.region)
        if not is_preferred(endpoints, params):
            logger.info(
                "connected to %s (%s), not the preferred %s",
                params.host,
                params.region,
                endpoints.each[0].host,
            )

    def cooling(self, now: float) -> dict[Hashable, float]:
        """Return the endpoints cooling down at `now`: key -> seconds left."""
        with self._lock:
            return {k: t - now for k, t in self._cooling.items() if t > now}

    def reset(self) -> None:
        """Forget every failure: each endpoint is tried in its place again."""
        with self._lock:
            self._cooling.clear()


endpoint_health = EndpointHealth()
"""The record every connect in the process shares."""


def is_preferred(endpoints: Endpoints, params: DsqlParams) -> bool:
    """Tell whether `params` is where traffic belongs (no other is preferred)."""
    return endpoints.random_order or params is endpoints.each[0]


def failback_due(
    endpoints: Endpoints | None, params: DsqlParams | None
) -> float | None:
    """Return how long a connection may keep traffic off its preferred
    endpoint: None when it is on it (or none is preferred)."""
    if endpoints is None or params is None or is_preferred(endpoints, params):
        return None
    return endpoints.cooldown
