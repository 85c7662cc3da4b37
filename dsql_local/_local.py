"""`DsqlLocal`: one DSQL Local cluster (its PostgreSQL and its regional endpoints).

What it is made of: the backend (`_backend`), its endpoints, started in this
process or in one of their own (`_launch`, `_process`), one per region
(`_regional`), and the controls of a running cluster (`_controls`).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import string
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from dsql_psycopg._naming import endpoint_host

from . import _signals
from ._backend import ADMIN, Backend
from ._bootstrap import BOOTSTRAP_SQL
from ._controls import Controls
from ._errors import DsqlLocalError
from ._launch import (
    Settings,
    certificate_maker,
    endpoint_settings,
    environment_credentials,
    load_policy,
    make_room_for_sockets,
    start_endpoints,
)
from ._options import (
    ConnectionLimits,
    check_cluster,
    check_latency,
    check_peer,
    check_placement,
)
from ._policy import StatementPolicy
from ._process import EndpointProcess
from ._regional import RegionalEndpoint, endpoint_url

if TYPE_CHECKING:
    from ._certs import CertFiles
    from ._endpoint import Endpoint
    from ._process import RemoteEndpoint

__all__ = ["DsqlLocal", "RegionalEndpoint"]

logger = logging.getLogger("dsql_local")

_ID_ALPHABET = string.ascii_lowercase + string.digits


def _new_cluster_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


class DsqlLocal(Controls):
    """A local endpoint that stands in for an Aurora DSQL cluster.

    Use it as a context manager, or call `start()` and `stop()`. It checks
    tokens signed with the key pair in ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` (any fake pair will do).

    ```python
    import dsql_psycopg
    from dsql_local import DsqlLocal

    with DsqlLocal(region="us-east-1") as local:
        local.inject_conflicts(1)  # the next COMMIT fails with 40001 (OC000)
        with dsql_psycopg.create_pool(local.url, min_size=1) as pool:
            dsql_psycopg.run_transaction(pool, lambda conn: conn.execute("SELECT 1"))
    ```

    The defaults are DSQL's figures where DSQL has one.

    Args:
        region: The AWS region it pretends to be in (``us-east-1`` form).
        max_connection_age: Seconds before a connection is closed, as DSQL
            does after an hour.
        strict: Refuse statements DSQL does not support (when the strict-mode
            policy is installed). With False nothing is refused, but DSQL's
            own syntax still works (``CREATE [UNIQUE] INDEX ASYNC``,
            ``sys.jobs``, ``CALL sys.wait_for_job``).
        latency: Seconds added to every client round trip; can be changed at
            run time.
        credentials: Access key ids mapped to the secret access keys whose
            tokens are accepted; by default, the key pair in
            ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` when started.
        port: TCP port on 127.0.0.1 (0: any free port).
        cluster_id: 26 characters of ``[a-z0-9]``; random by default.
        policy: A `StatementPolicy` used instead of strict mode's.
        pg_bindir: Where initdb and postgres are; found on PATH, through
            pg_config or in /usr/lib/postgresql by default.
        clock_skew: Seconds a token's times may be off.
        schema_conflicts: As in DSQL, a transaction that began before another
            one committed DDL fails with 40001 ``(OC001)`` at its next
            statement.
        max_connections: Connections open at once (SQLSTATE 53300 past it;
            the private PostgreSQL allows 300, whichever is lower applies).
        connection_rate: New connections per second on average (53400 past
            it; None turns the limit off).
        connection_burst: New connections allowed in one burst.
        peer_region: Serve a multi-region cluster: a second regional
            endpoint, in that region, over the same data (see `endpoint()`,
            `fail_region()`). Connection limits and injected faults apply
            per endpoint; data, roles and schema changes are shared.
        peer_cluster_id: The peer endpoint's cluster id; random by default.
        peer_port: The peer endpoint's TCP port (0: any free port).
        cert_dir: Keep the certificates in this folder (created if need be)
            instead of a temporary one deleted at `stop()`: the CA
            (``root.crt``, with its key) is made once and used again by every
            start, so `ca_file` keeps its path and content across restarts.
            With the same `cluster_id` and `port`, a restart serves the same
            endpoint to clients that kept its settings.
        own_process: Run the endpoints (TLS, tokens, the relays) in a child
            process rather than in threads of this one, so that they do not
            share this process's GIL: faster while this process keeps Python
            busy (a test suite does). Every control works the same, through
            a pipe; a `policy` object cannot be given (``strict`` picks the
            policy), and the relays log to the child's stderr.

    Raises:
        DsqlLocalError: A value is out of range.
    """

    def __init__(
        self,
        region: str = "us-east-1",
        max_connection_age: float = 3600.0,
        strict: bool = True,
        latency: float = 0.0,
        credentials: Mapping[str, str] | None = None,
        *,
        port: int = 0,
        cluster_id: str | None = None,
        policy: StatementPolicy | None = None,
        pg_bindir: str | os.PathLike[str] | None = None,
        clock_skew: float = 300.0,
        schema_conflicts: bool = False,
        max_connections: int = 10_000,
        connection_rate: float | None = 100.0,
        connection_burst: int = 1_000,
        peer_region: str | None = None,
        peer_cluster_id: str | None = None,
        peer_port: int = 0,
        cert_dir: str | os.PathLike[str] | None = None,
        own_process: bool = False,
    ) -> None:
        check_placement(own_process, policy)
        check_latency(latency)
        self._limits = ConnectionLimits(
            max_connection_age, max_connections, connection_rate, connection_burst
        )
        check_cluster(region, cluster_id)
        self.region = region
        self.cluster_id = cluster_id or _new_cluster_id()
        check_peer(
            own=(region, self.cluster_id, port),
            peer=(peer_region, peer_cluster_id, peer_port),
        )
        self.peer_region = peer_region
        self._ports = {region: port}
        self._views = {region: RegionalEndpoint(self, region, self.cluster_id)}
        if peer_region is not None:
            self._ports[peer_region] = peer_port
            self._views[peer_region] = RegionalEndpoint(
                self, peer_region, peer_cluster_id or _new_cluster_id()
            )
        self.max_connection_age = max_connection_age
        self.strict = strict
        self._latencies = dict.fromkeys(self._views, latency)
        self._credentials = dict(credentials) if credentials is not None else None
        self._policy = policy
        self._clock_skew = clock_skew
        self._schema_conflicts = schema_conflicts
        self._backend = Backend(Path(pg_bindir) if pg_bindir is not None else None)
        # The running endpoints by region, own region first; empty when stopped.
        self._endpoints: dict[str, Endpoint | RemoteEndpoint] = {}
        self._cert_dir = Path(cert_dir).expanduser() if cert_dir is not None else None
        self.own_process = own_process
        # The certificates' folder while running: cert_dir, or a temporary one.
        self._tmp: Path | None = None
        self._lock = threading.Lock()
        self._outage_ends: dict[str, threading.Timer] = {}

    def __repr__(self) -> str:
        if self.peer_region is None:
            state = f"port={self.port}" if self._endpoints else "stopped"
            return f"<DsqlLocal {self.host} {state}>"
        views = ", ".join(view._describe() for view in self._views.values())
        return f"<DsqlLocal {views}>"

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> DsqlLocal:
        """Start the backend and the endpoints; return self."""
        with self._lock:
            if self._endpoints:
                return self
            credentials = (
                self._credentials
                if self._credentials is not None
                else environment_credentials()
            )
            policy = self._policy
            if policy is None:
                policy = load_policy(self.strict)
            make_room_for_sockets()
            make_certificates = certificate_maker()
            process = EndpointProcess() if self.own_process else None
            try:
                self._tmp = self._cert_folder()
                certs = make_certificates(
                    self._tmp, *self._views, keep_ca=self._cert_dir is not None
                )
                bootstrap = [*BOOTSTRAP_SQL, *(policy.bootstrap_sql if policy else ())]
                self._backend.start(bootstrap)
                settings = self._settings(credentials, certs)
                endpoints = start_endpoints(settings, policy, process)
            except BaseException:
                if process is not None:
                    process.stop()
                self._cleanup()
                raise
            self._endpoints = endpoints
            atexit.register(self.stop)
            _signals.hold()
        for view in self._views.values():
            logger.info(
                "DSQL Local listening on 127.0.0.1:%s as %s", view.port, view.host
            )
        return self

    def _cert_folder(self) -> Path:
        """The certificates' folder: cert_dir (made if need be), or a new one."""
        if self._cert_dir is None:
            return Path(tempfile.mkdtemp(prefix="dsql-local-certs-"))
        try:
            self._cert_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DsqlLocalError(
                f"cannot use {str(self._cert_dir)!r} as the"
                f" certificate folder: {exc.strerror}"
            ) from exc
        return self._cert_dir

    def _settings(
        self, credentials: Mapping[str, str], certs: tuple[CertFiles, ...]
    ) -> Settings:
        """What the endpoints are to be (see `_launch`)."""
        return {
            "strict": self.strict,
            "schema_conflicts": self._schema_conflicts,
            "credentials": dict(credentials),
            "clock_skew": self._clock_skew,
            "backend_socket": self._backend.socket_path(),
            "max_connection_age": self.max_connection_age,
            "max_connections": self._limits.max_connections,
            "connection_rate": self._limits.connection_rate,
            "connection_burst": self._limits.connection_burst,
            "endpoints": [
                endpoint_settings(
                    region, c, self._ports[region], self._latencies[region]
                )
                for region, c in zip(self._views, certs, strict=True)
            ],
        }

    def stop(self) -> None:
        """Close every connection, stop the backend and delete all files."""
        with self._lock:
            atexit.unregister(self.stop)
            for region in self._views:
                self._cancel_outage(region)
            endpoints, self._endpoints = self._endpoints, {}
            for endpoint in endpoints.values():
                endpoint.stop()
            if endpoints:
                _signals.release()
            self._cleanup()

    def _cleanup(self) -> None:
        self._backend.stop()
        tmp, self._tmp = self._tmp, None
        # A cert_dir is the user's: its CA stays for the next start.
        if tmp is not None and tmp != self._cert_dir:
            shutil.rmtree(tmp, ignore_errors=True)

    def __enter__(self) -> DsqlLocal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it is ----------------------------------------------------------

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions with an endpoint: the own region, then the peer's."""
        return tuple(self._views)

    def endpoint(self, region: str) -> RegionalEndpoint:
        """The endpoint in `region`, one of `regions`."""
        return self._views[self._known(region)]

    @property
    def host(self) -> str:
        """The DSQL-style host name; it resolves through ``hostaddr``."""
        return endpoint_host(self.cluster_id, self.region)

    @property
    def port(self) -> int:
        return self._running().port

    @property
    def ca_file(self) -> str:
        """The PEM file of the CA that signed the endpoint's certificate."""
        self._running()
        assert self._tmp is not None
        return str(self._tmp / "root.crt")

    @property
    def url(self) -> str:
        """A connection URL (user admin); add a token as the password."""
        return endpoint_url(self.host, self.port, self.ca_file)

    def connect_kwargs(self, user: str = ADMIN) -> dict[str, Any]:
        """Keyword arguments for psycopg.connect(), without the password."""
        return self._views[self.region].connect_kwargs(user)

    def multi_region_kwargs(self, user: str = ADMIN) -> dict[str, Any]:
        """Every endpoint, own region first, in libpq's multi-host spelling.

        ``host``, ``hostaddr`` and ``port`` are comma-separated lists;
        without a password (each endpoint needs a token of its own).
        """
        views = self._views.values()
        return {
            "host": ",".join(view.host for view in views),
            "hostaddr": ",".join("127.0.0.1" for _ in views),
            "port": ",".join(str(view.port) for view in views),
            "dbname": "postgres",
            "user": user,
            "sslrootcert": self.ca_file,
        }

    @property
    def multi_region_url(self) -> str:
        """A URL naming every endpoint, own region first (user admin)."""
        views = self._views.values()
        hosts = ",".join(f"{view.host}:{view.port}" for view in views)
        hostaddrs = ",".join("127.0.0.1" for _ in views)
        return (
            f"postgresql://{ADMIN}@{hosts}/postgres?hostaddr={hostaddrs}"
            f"&sslrootcert={quote(self.ca_file, safe='/')}"
        )

    @property
    def backend_dsn(self) -> str:
        """A libpq conninfo straight to the backend's unix socket (as admin)."""
        self._running()
        return self._backend.dsn()

    # -- the backend ---------------------------------------------------------

    def create_role(self, name: str) -> None:
        """Create a login role in the backend (no error if it exists).

        Connect as it with a ``DbConnect`` token; grant it what it needs as
        admin, who is a member of it (so it can, say, create a schema for it).
        """
        with psycopg.connect(self.backend_dsn, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)
            ).fetchone()
            if not exists:
                role = sql.Identifier(name)
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(role, sql.Identifier(ADMIN))
                )
