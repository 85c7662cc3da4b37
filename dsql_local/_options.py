"""The arguments of `DsqlLocal`, checked before anything starts.

One check per group of arguments: where the endpoints run, the cluster's
regions, ids and ports, and its connection limits (held in `ConnectionLimits`).
Each bad value raises `DsqlLocalError` naming the argument and what it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsql_psycopg._naming import CLUSTER_ID, REGION

from ._errors import DsqlLocalError
from ._policy import StatementPolicy


def _require(ok: bool, problem: str) -> None:
    if not ok:
        raise DsqlLocalError(problem)


def check_placement(own_process: bool, policy: StatementPolicy | None) -> None:
    """A policy object cannot cross into the endpoints' own process."""
    _require(
        not (own_process and policy is not None),
        "a policy object cannot be handed to a process of its own: pass"
        " strict= with own_process=True, or own_process=False with policy=",
    )


def check_latency(latency: float) -> None:
    """Latency is zero or more seconds (at the start and when changed)."""
    _require(latency >= 0, "latency must be zero or a positive number of seconds")


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a connection lasts, how many are open, how fast new ones come."""

    max_connection_age: float
    max_connections: int
    connection_rate: float | None
    connection_burst: int

    def __post_init__(self) -> None:
        _require(
            self.max_connection_age > 0,
            "max_connection_age must be a positive number of seconds",
        )
        _require(self.max_connections >= 1, "max_connections must be at least 1")
        _require(
            self.connection_rate is None or self.connection_rate > 0,
            "connection_rate must be a positive number of connections per"
            " second, or None for no limit",
        )
        _require(self.connection_burst >= 1, "connection_burst must be at least 1")


def check_cluster(region: str, cluster_id: str | None) -> None:
    """The own region and, if given, the cluster id, as DSQL spells them."""
    _require(
        REGION.fullmatch(region) is not None,
        f"region must look like 'us-east-1', not {region!r}",
    )
    _require(
        cluster_id is None or CLUSTER_ID.fullmatch(cluster_id) is not None,
        "cluster_id must be 26 characters of a-z and 0-9",
    )


def check_peer(
    *,
    own: tuple[str, str, int],
    peer: tuple[str | None, str | None, int],
) -> None:
    """Refuse a peer (the second region's endpoint) that cannot be served.

    `own` and `peer` are each a region, cluster id and port (the peer's
    region None for a cluster of one region).
    """
    region, cluster_id, port = own
    peer_region, peer_cluster_id, peer_port = peer
    if peer_region is None:
        _require(
            peer_cluster_id is None and not peer_port,
            "peer_cluster_id and peer_port need peer_region (the second"
            " region of a multi-region cluster)",
        )
        return
    _require(
        REGION.fullmatch(peer_region) is not None,
        f"peer_region must look like 'us-east-2', not {peer_region!r}",
    )
    _require(
        peer_region != region,
        f"peer_region must be another region than region ({region!r}):"
        " the peered clusters of a multi-region cluster are in two regions",
    )
    if peer_cluster_id is not None:
        _require(
            CLUSTER_ID.fullmatch(peer_cluster_id) is not None,
            "peer_cluster_id must be 26 characters of a-z and 0-9",
        )
        _require(
            peer_cluster_id != cluster_id,
            "peer_cluster_id must differ from cluster_id: each peered"
            " cluster has its own id",
        )
    _require(
        not peer_port or peer_port != port,
        f"peer_port must differ from port ({port}): each endpoint listens"
        " on its own port",
    )
