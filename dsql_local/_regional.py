"""`RegionalEndpoint`: one regional endpoint of a `DsqlLocal`, and its address.

A `DsqlLocal` serves its own region's endpoint and, with ``peer_region``, a
peer region's, over the same data (`_options.check_peer` refuses a peer that
cannot be served).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dsql_psycopg._naming import endpoint_host

from ._backend import ADMIN

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
