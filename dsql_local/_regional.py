"""`RegionalEndpoint`: one regional endpoint of a `DsqlLocal`, and its address.

A `DsqlLocal` serves its own region's endpoint and, with ``peer_region``, a
peer region's, over the same data; `check_peer` refuses a peer that cannot
be served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dsql_psycopg._naming import CLUSTER_ID, REGION, endpoint_host

from ._backend import ADMIN
from ._errors import DsqlLocalError

if TYPE_CHECKING:
    from ._local import DsqlLocal


def endpoint_url(host: str, port: int, ca_file: str) -> str:
    """A connection URL of an endpoint (user admin), without a password."""
    return (
        f"postgresql://{ADMIN}@{host}:{port}/postgres"
        f"?hostaddr=127.0.0.1&sslrootcert={quote(ca_file, safe='/')}"
    )


class RegionalEndpoint:
    """One regional endpoint of the cluster a `DsqlLocal` serves.

    Get it with `DsqlLocal.endpoint()`. The own region's endpoint is the one
    `DsqlLocal.host`, `port`, `url` and `connect_kwargs()` describe; a peer
    region's has its own cluster id, host name, port and certificate.
    """

    def __init__(self, local: DsqlLocal, region: str, cluster_id: str) -> None:
        self._local = local
        self.region = region
        self.cluster_id = cluster_id

    def __repr__(self) -> str:
        return f"<RegionalEndpoint {self._describe()}>"

    def _describe(self) -> str:
        endpoint = self._local._endpoints.get(self.region)
        if endpoint is None:
            return f"{self.host} stopped"
        state = "" if endpoint.listening else " failed"
        return f"{self.host} port={endpoint.port}{state}"

    @property
    def host(self) -> str:
        """The DSQL-style host name; it resolves through ``hostaddr``."""
        return endpoint_host(self.cluster_id, self.region)

    @property
    def port(self) -> int:
        return self._local._running(self.region).port

    @property
    def listening(self) -> bool:
        """False while the region is failed (see `DsqlLocal.fail_region`)."""
        return self._local._running(self.region).listening

    @property
    def url(self) -> str:
        """A connection URL (user admin); add a token as the password."""
        return endpoint_url(self.host, self.port, self._local.ca_file)

    @property
    def latency(self) -> float:
        """Seconds added to every round trip through this endpoint.

        Settable, before start or while it runs: a peer region far away.
        """
        return self._local._latencies[self.region]

    @latency.setter
    def latency(self, value: float) -> None:
        self._local._set_latency(self.region, value)

    def connect_kwargs(self, user: str = ADMIN) -> dict[str, Any]:
        """Keyword arguments for psycopg.connect(), without the password."""
        return {
            "host": self.host,
            "hostaddr": "127.0.0.1",
            "port": self.port,
            "dbname": "postgres",
            "user": user,
            "sslrootcert": self._local.ca_file,
        }


def check_peer(
    local: DsqlLocal,
    peer_region: str | None,
    peer_cluster_id: str | None,
    port: int,
    peer_port: int,
) -> None:
    """Refuse a peer configuration that cannot be served."""
    if peer_region is None:
        if peer_cluster_id is not None or peer_port:
            raise DsqlLocalError(
                "peer_cluster_id and peer_port need peer_region (the second"
                " region of a multi-region cluster)"
            )
        return
    if not REGION.fullmatch(peer_region):
        raise DsqlLocalError(
            f"peer_region must look like 'us-east-2', not {peer_region!r}"
        )
    if peer_region == local.region:
        raise DsqlLocalError(
            f"peer_region must be another region than region ({local.region!r}):"
            " the peered clusters of a multi-region cluster are in two regions"
        )
    if peer_cluster_id is not None:
        if not CLUSTER_ID.fullmatch(peer_cluster_id):
            raise DsqlLocalError("peer_cluster_id must be 26 characters of a-z and 0-9")
        if peer_cluster_id == local.cluster_id:
            raise DsqlLocalError(
                "peer_cluster_id must differ from cluster_id: each peered"
                " cluster has its own id"
            )
    if peer_port and peer_port == port:
        raise DsqlLocalError(
            f"peer_port must differ from port ({port}): each endpoint listens"
            " on its own port"
        )
