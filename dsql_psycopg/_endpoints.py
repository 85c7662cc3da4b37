"""Which endpoint a connect tries first, and which ones failed lately.

A multi-Region cluster has one endpoint per Region, each needing a token for
its own host name, so connecting is a loop over endpoints, not libpq's own.
An endpoint that fails a connect cools down: for `Endpoints.cooldown`
seconds it is tried only after the others, then it is tried in its place
again. The record is shared by every connect in the process, so a pool that
lost its Region moves every new connection at once, after one failure.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Hashable

from ._config import DsqlParams, Endpoints

logger = logging.getLogger("dsql_psycopg")

_lock = threading.Lock()
# Endpoint key -> time.monotonic() when its cool-down ends.
_cooling: dict[Hashable, float] = {}


def key(params: DsqlParams) -> Hashable:
    """Tell endpoints apart by where libpq goes, not only by name."""
    return (params.host, params.libpq.get("hostaddr"), params.libpq.get("port"))


def order(endpoints: Endpoints) -> list[DsqlParams]:
    """Return the endpoints in the order to try them."""
    each = list(endpoints.each)
    if len(each) == 1:
        return each
    if endpoints.random_order:
        # Not for security: spreading connections over endpoints.
        random.shuffle(each)
    now = time.monotonic()
    with _lock:
        until = {key(p): _cooling.get(key(p), 0.0) for p in each}
    ready = [p for p in each if until[key(p)] <= now]
    cooling = sorted(
        (p for p in each if until[key(p)] > now), key=lambda p: until[key(p)]
    )
    return ready + cooling


def failed(endpoints: Endpoints, params: DsqlParams, cause: str) -> None:
    """Record that a connect to `params` failed for `cause`."""
    if len(endpoints.each) == 1:
        return
    with _lock:
        _cooling[key(params)] = time.monotonic() + endpoints.cooldown
    logger.warning(
        "endpoint %s (%s) failed: %s; it is tried last for %g s",
        params.host,
        params.region,
        cause,
        endpoints.cooldown,
    )


def succeeded(endpoints: Endpoints, params: DsqlParams) -> None:
    """Record that a connect to `params` succeeded."""
    if len(endpoints.each) == 1:
        return
    with _lock:
        recovered = _cooling.pop(key(params), None) is not None
    if recovered:
        logger.info("endpoint %s (%s) is back", params.host, params.region)
    if params is not endpoints.each[0] and not endpoints.random_order:
        logger.info(
            "connected to %s (%s), not the preferred %s",
            params.host,
            params.region,
            endpoints.each[0].host,
        )


def forget() -> None:
    """Forget every failure: each endpoint is tried in its place again."""
    with _lock:
        _cooling.clear()


def is_preferred(endpoints: Endpoints, params: DsqlParams) -> bool:
    """Tell whether `params` is where traffic belongs (no other is preferred)."""
    return endpoints.random_order or params is endpoints.each[0]
