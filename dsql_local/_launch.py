"""Starting a `DsqlLocal`'s endpoints, in this process or in one of their own.

`DsqlLocal.start` describes its endpoints in `Settings`, which hold only what
JSON carries: with ``own_process`` they go to the child process (see
`_process`), which starts them with `start_here` as the test process does
without it. What else a start needs is here too: the policy, the
certificate maker (which needs the [local] extra), the key pair from the
environment, and room for many sockets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from ._endpoint import Endpoint
from ._errors import DsqlLocalError
from ._policy import StatementPolicy
from ._process import EndpointProcess, RemoteEndpoint
from ._schema import SchemaClock
from ._sigv4 import TokenVerifier

if TYPE_CHECKING:
    from ._certs import CertFiles

logger = logging.getLogger("dsql_local")


class EndpointSettings(TypedDict):
    """One regional endpoint: its certificates (CA, own, key), port, latency."""

    region: str
    certs: list[str]
    port: int
    latency: float


class Settings(TypedDict):
    """Every endpoint of one `DsqlLocal`, and what they share."""

    strict: bool
    schema_conflicts: bool
    credentials: dict[str, str]
    clock_skew: float
    backend_socket: str
    max_connection_age: float
    max_connections: int
    connection_rate: float | None
    connection_burst: int
    endpoints: list[EndpointSettings]


def endpoint_settings(
    region: str, certs: CertFiles, port: int, latency: float
) -> EndpointSettings:
    """Describe `region`'s endpoint."""
    files = [str(certs.ca_file), str(certs.cert_file), str(certs.key_file)]
    return {"region": region, "certs": files, "port": port, "latency": latency}


def start_endpoints(
    settings: Settings,
    policy: StatementPolicy | None,
    process: EndpointProcess | None,
) -> dict[str, Endpoint | RemoteEndpoint]:
    """Start the endpoints in this process, or in `process` (with its policy)."""
    if process is None:
        return dict(start_here(settings, policy))
    process.start(settings)
    regions = [spec["region"] for spec in settings["endpoints"]]
    return {
        region: RemoteEndpoint(
            process, region, spec["latency"], owner=region == regions[0]
        )
        for region, spec in zip(regions, settings["endpoints"], strict=True)
    }


def start_here(
    settings: Settings, policy: StatementPolicy | None
) -> dict[str, Endpoint]:
    """Start the endpoints in this process; stop those started if one fails."""
    # Imported here: the base install has no cryptography.
    from ._certs import CertFiles  # noqa: PLC0415

    # One clock for all endpoints: DDL through one conflicts with
    # transactions on the other, as the cluster's catalog is one.
    schema_clock = SchemaClock() if settings["schema_conflicts"] else None
    endpoints: dict[str, Endpoint] = {}
    try:
        for spec in settings["endpoints"]:
            endpoint = Endpoint(
                certs=CertFiles(*(Path(p) for p in spec["certs"])),
                verifier=TokenVerifier(
                    spec["region"],
                    settings["credentials"],
                    clock_skew=settings["clock_skew"],
                ),
                backend_socket=settings["backend_socket"],
                port=spec["port"],
                max_connection_age=settings["max_connection_age"],
                latency=spec["latency"],
                policy=policy,
                schema_clock=schema_clock,
                max_connections=settings["max_connections"],
                connection_rate=settings["connection_rate"],
                connection_burst=settings["connection_burst"],
            )
            endpoint.start()
            endpoints[spec["region"]] = endpoint
    except BaseException:
        for started in endpoints.values():
            started.stop()
        raise
    return endpoints


def load_policy(strict: bool) -> StatementPolicy | None:
    """The strict policy, or the lax one that only knows DSQL's syntax."""
    try:
        # Imported late: both are optional and pull in pglast.
        from .strict import LaxPolicy, StrictPolicy  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.strict":
            what = "strict mode" if strict else "DSQL syntax (CREATE INDEX ASYNC, sys)"
            logger.warning("%s is off: %s (install dsql-psycopg[local])", what, exc)
        return None
    policy: StatementPolicy = StrictPolicy() if strict else LaxPolicy()
    return policy


def certificate_maker() -> Callable[..., tuple[CertFiles, ...]]:
    """Import the certificate maker, which needs the [local] extra."""
    # Imported late: the pytest plugin imports this package in every test
    # session, and the base install has no cryptography.
    try:
        from ._certs import make_certificates  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise DsqlLocalError(
            f"DSQL Local needs the [local] extra ({exc}): pip install"
            " 'dsql-psycopg[local]'"
        ) from exc
    return make_certificates


def environment_credentials() -> dict[str, str]:
    """The key pair in the environment, whose tokens are accepted."""
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        raise DsqlLocalError(
            "DSQL Local verifies tokens with an AWS key pair: set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any fake values "
            "will do), or pass credentials={access_key_id: secret_access_key}"
        )
    return {key: secret}


def make_room_for_sockets() -> None:
    """Raise this process's soft limit on open files as far as it may go.

    In-process, both ends of every client connection are here, and the
    endpoint holds a socket to PostgreSQL for each: a pool of a few hundred
    connections would meet the usual soft limit of 1,024 (``Too many open
    files``) long before DSQL's own limits.
    """
    try:
        import resource  # noqa: PLC0415 (not on Windows)
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return
        logger.debug("open files limit raised from %d to %d", soft, wanted)
