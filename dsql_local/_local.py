"""`DsqlLocal`: one DSQL Local cluster (its PostgreSQL and its regional endpoints)."""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import string
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from dsql_psycopg._naming import CLUSTER_ID, REGION, endpoint_host

from . import _signals
from ._backend import ADMIN, Backend
from ._bootstrap import BOOTSTRAP_SQL
from ._endpoint import Endpoint
from ._errors import DsqlLocalError
from ._faults import ConnectRefusal
from ._messages import CONFLICT_MESSAGES
from ._policy import StatementPolicy
from ._process import EndpointProcess, RemoteEndpoint
from ._schema import SchemaClock
from ._sigv4 import TokenVerifier

if TYPE_CHECKING:
    from ._certs import CertFiles

__all__ = ["DsqlLocal", "RegionalEndpoint"]

logger = logging.getLogger("dsql_local")

_ID_ALPHABET = string.ascii_lowercase + string.digits


def _new_cluster_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def _certificate_maker() -> Callable[..., tuple[CertFiles, ...]]:
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


def _load_policy(strict: bool) -> StatementPolicy | None:
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


def _url(host: str, port: int, ca_file: str) -> str:
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
        return _url(self.host, self.port, self._local.ca_file)

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


class DsqlLocal:
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
        if own_process and policy is not None:
            raise DsqlLocalError(
                "a policy object cannot be handed to a process of its own: pass"
                " strict= with own_process=True, or own_process=False with policy="
            )
        if max_connection_age <= 0:
            raise DsqlLocalError(
                "max_connection_age must be a positive number of seconds"
            )
        if latency < 0:
            raise DsqlLocalError("latency must be zero or a positive number of seconds")
        if max_connections < 1:
            raise DsqlLocalError("max_connections must be at least 1")
        if connection_rate is not None and not connection_rate > 0:
            raise DsqlLocalError(
                "connection_rate must be a positive number of connections per"
                " second, or None for no limit"
            )
        if connection_burst < 1:
            raise DsqlLocalError("connection_burst must be at least 1")
        if not REGION.fullmatch(region):
            raise DsqlLocalError(f"region must look like 'us-east-1', not {region!r}")
        if cluster_id is not None and not CLUSTER_ID.fullmatch(cluster_id):
            raise DsqlLocalError("cluster_id must be 26 characters of a-z and 0-9")
        self.region = region
        self.cluster_id = cluster_id or _new_cluster_id()
        _check_peer(self, peer_region, peer_cluster_id, port, peer_port)
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
        self._max_connections = max_connections
        self._connection_rate = connection_rate
        self._connection_burst = connection_burst
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
                else self._environment_credentials()
            )
            policy = self._policy
            if policy is None:
                policy = _load_policy(self.strict)
            _make_room_for_sockets()
            make_certificates = _certificate_maker()
            # One clock for all endpoints: DDL through one conflicts with
            # transactions on the other, as the cluster's catalog is one.
            schema_clock = SchemaClock() if self._schema_conflicts else None
            endpoints: dict[str, Endpoint | RemoteEndpoint] = {}
            process = EndpointProcess() if self.own_process else None
            try:
                if self._cert_dir is not None:
                    try:
                        self._cert_dir.mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise DsqlLocalError(
                            f"cannot use {str(self._cert_dir)!r} as the"
                            f" certificate folder: {exc.strerror}"
                        ) from exc
                    self._tmp = self._cert_dir
                else:
                    self._tmp = Path(tempfile.mkdtemp(prefix="dsql-local-certs-"))
                certs = make_certificates(
                    self._tmp, *self._views, keep_ca=self._cert_dir is not None
                )
                bootstrap = [*BOOTSTRAP_SQL, *(policy.bootstrap_sql if policy else ())]
                self._backend.start(bootstrap)
                if process is not None:
                    endpoints.update(self._start_process(process, credentials, certs))
                else:
                    for region, region_certs in zip(self._views, certs, strict=True):
                        endpoint = Endpoint(
                            certs=region_certs,
                            verifier=TokenVerifier(
                                region, credentials, clock_skew=self._clock_skew
                            ),
                            backend_socket=self._backend.socket_path(),
                            port=self._ports[region],
                            max_connection_age=self.max_connection_age,
                            latency=self._latencies[region],
                            policy=policy,
                            schema_clock=schema_clock,
                            max_connections=self._max_connections,
                            connection_rate=self._connection_rate,
                            connection_burst=self._connection_burst,
                        )
                        endpoint.start()
                        endpoints[region] = endpoint
            except BaseException:
                for started in endpoints.values():
                    started.stop()
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

    def _start_process(
        self,
        process: EndpointProcess,
        credentials: Mapping[str, str],
        certs: tuple[CertFiles, ...],
    ) -> dict[str, RemoteEndpoint]:
        """Start the endpoints in a process of their own (see `_process`)."""
        process.start(
            {
                "strict": self.strict,
                "schema_conflicts": self._schema_conflicts,
                "credentials": dict(credentials),
                "clock_skew": self._clock_skew,
                "backend_socket": self._backend.socket_path(),
                "max_connection_age": self.max_connection_age,
                "max_connections": self._max_connections,
                "connection_rate": self._connection_rate,
                "connection_burst": self._connection_burst,
                "endpoints": [
                    {
                        "region": region,
                        "certs": [
                            str(c.ca_file),
                            str(c.cert_file),
                            str(c.key_file),
                        ],
                        "port": self._ports[region],
                        "latency": self._latencies[region],
                    }
                    for region, c in zip(self._views, certs, strict=True)
                ],
            }
        )
        return {
            region: RemoteEndpoint(
                process, region, self._latencies[region], owner=i == 0
            )
            for i, region in enumerate(self._views)
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

    @staticmethod
    def _environment_credentials() -> dict[str, str]:
        key = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise DsqlLocalError(
                "DSQL Local verifies tokens with an AWS key pair: set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any fake values "
                "will do), or pass credentials={access_key_id: secret_access_key}"
            )
        return {key: secret}

    # -- where it is ----------------------------------------------------------

    def _running(self, region: str | None = None) -> Endpoint | RemoteEndpoint:
        """The endpoint of `region` (None: the own region's), if running."""
        region = self._known(region)
        endpoint = self._endpoints.get(region)
        if endpoint is None:
            raise DsqlLocalError(
                "DSQL Local is not running: call start() or use `with`"
            )
        return endpoint

    def _known(self, region: str | None) -> str:
        if region is None:
            return self.region
        if region not in self._views:
            raise DsqlLocalError(
                f"DSQL Local serves no endpoint in region {region!r}; its"
                f" regions are {', '.join(self._views)}"
            )
        return region

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
        return _url(self.host, self.port, self.ca_file)

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

    # -- controls -------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to every client round trip (at the own region's endpoint).

        Setting it sets every endpoint's; ``endpoint(region).latency`` sets
        one endpoint's own.
        """
        return self._latencies[self.region]

    @latency.setter
    def latency(self, value: float) -> None:
        for region in self._views:
            self._set_latency(region, value)

    def _set_latency(self, region: str, value: float) -> None:
        if not value >= 0:
            raise DsqlLocalError("latency must be zero or a positive number of seconds")
        self._latencies[region] = value
        endpoint = self._endpoints.get(region)
        if endpoint is not None:
            endpoint.latency = value

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

    def inject_conflicts(
        self, count: int, code: str = "OC000", *, region: str | None = None
    ) -> None:
        """Make the next `count` COMMITs fail with SQLSTATE 40001.

        The transaction is rolled back and the connection stays usable, as
        in DSQL. `code` is ``"OC000"`` (data conflict) or ``"OC001"`` (schema).
        Replaces any injection not used yet; ``0`` cancels them. Counts the
        COMMITs of one endpoint: `region`'s (by default the own region's).
        """
        if code not in CONFLICT_MESSAGES:
            raise DsqlLocalError(f"code must be one of {sorted(CONFLICT_MESSAGES)}")
        if count < 0:
            raise DsqlLocalError("count must be zero or more")
        self._running(region).inject_conflicts(count, code)

    def inject_commit_drops(self, count: int, *, region: str | None = None) -> None:
        """Lose the connection of each of the next `count` COMMITs after it commits.

        The COMMIT reaches the backend and commits; when the backend confirms
        it, the client connection is closed abruptly instead of relaying the
        confirmation. The client sees a broken connection while COMMIT is in
        flight and cannot tell whether it committed: this is how to test code
        that must cope with an unknown commit outcome (it did commit here).
        Counts only COMMITs of a transaction in progress (not failed), on any
        connection, after injected conflicts and the policy have let them
        through. Replaces any injection not used yet; ``0`` cancels them.
        Counts the COMMITs of `region`'s endpoint (by default the own
        region's).
        """
        if count < 0:
            raise DsqlLocalError("count must be zero or more")
        self._running(region).inject_commit_drops(count)

    def drop_connections(self, *, region: str | None = None) -> None:
        """Close every client connection now, without a message.

        Those of `region`'s endpoint; by default the own region's.
        """
        self._running(region).drop_connections()

    # -- faults ---------------------------------------------------------------

    def refuse_connections(
        self,
        reason: ConnectRefusal = "waking_up",
        *,
        count: int | None = None,
        seconds: float | None = None,
        region: str | None = None,
    ) -> None:
        """Refuse new connections, as DSQL does, for `count` of them or `seconds`.

        Each is answered at startup, before its token is checked, with the
        FATAL error DSQL sends:

        - ``"waking_up"``: ``unable to accept connection, waking up cluster,
          please retry later``, from a cluster that scaled down while idle
          (SQLSTATE 57P03 here; DSQL's own code for it is not documented);
        - ``"rate_exceeded"``: 53400 ``Unable to accept connection, rate
          exceeded.`` (DSQL admits 100 new connections a second, bursts of
          1,000);
        - ``"too_many"``: 53300 ``Unable to accept connection, too many open
          connections.`` (10,000 open connections by default).

        With both `count` and `seconds`, whichever runs out first ends it.
        Replaces the refusal armed before; ``count=0`` cancels it. Refuses
        at `region`'s endpoint; by default the own region's.
        """
        self._running(region).faults.refuse_connections(reason, count, seconds)

    def inject_server_unavailable(
        self,
        statements: int = 0,
        *,
        commits: int = 0,
        commit_fraction: float = 0.0,
        committed: bool | None = False,
        region: str | None = None,
    ) -> None:
        """Fail statements or COMMITs with ``ERROR: server unavailable`` (XX000).

        DSQL answers so when the node serving the connection is lost: the
        transaction is over and must run again, and at COMMIT its outcome is
        unknown. Here, each of the next `statements` statements (not BEGIN,
        COMMIT or ROLLBACK) fails with it and leaves its transaction failed;
        each of the next `commits` COMMITs, and then a random `commit_fraction`
        of all COMMITs, fails with it and ends the transaction. `committed`
        says what such a COMMIT did: ``False`` rolled back, ``True``
        committed, ``None`` either, at random. The connection stays usable.
        Replaces what was armed before; all zeros cancel it. Fails what runs
        through `region`'s endpoint; by default the own region's.
        """
        self._running(region).faults.server_unavailable(
            statements, commits, commit_fraction, committed
        )

    def outage(
        self, seconds: float, *, refuse: bool = True, region: str | None = None
    ) -> None:
        """Take the endpoint away for `seconds`, then bring it back on its port.

        Every connection is cut at once without a message. With `refuse`,
        nothing listens meanwhile, so connecting fails with ``Connection
        refused``; otherwise new connections are accepted and reset at once.
        Returns at once; `end_outage()` ends it early. The data stays.
        With `region`, that region's endpoint; by default the own region's.
        """
        if not seconds > 0:
            raise DsqlLocalError("seconds must be a positive number")
        endpoint = self._running(region)
        region = self._known(region)
        with self._lock:
            self._cancel_outage(region)
            if refuse:
                endpoint.suspend()
            else:
                endpoint.cut(seconds)
            self._end_outage_in(region, seconds)

    def end_outage(self, *, region: str | None = None) -> None:
        """End an outage (or a failed region) now; nothing if there is none.

        With `region`, that region's endpoint; by default the own region's.
        """
        region = self._known(region)
        with self._lock:
            self._cancel_outage(region)
            endpoint = self._endpoints.get(region)
            if endpoint is not None:
                endpoint.cut(0)
                endpoint.resume()

    def _end_outage_in(self, region: str, seconds: float) -> None:
        """Arm the timer that ends `region`'s outage; the caller holds the lock."""
        timer = threading.Timer(seconds, self.end_outage, kwargs={"region": region})
        timer.daemon = True
        self._outage_ends[region] = timer
        timer.start()

    def _cancel_outage(self, region: str) -> None:
        timer = self._outage_ends.pop(region, None)
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def fail_region(self, region: str, seconds: float | None = None) -> None:
        """Take `region`'s endpoint away, as in a regional outage.

        Every connection to it is cut at once without a message, and nothing
        listens on its port (connecting fails with ``Connection refused``)
        until `restore_region()`, or for `seconds` when given (the call
        returns at once; a timer restores it). The other region's endpoint
        keeps serving the same data.
        """
        endpoint = self._running(region)
        if seconds is not None and not seconds > 0:
            raise DsqlLocalError("seconds must be a positive number, or None")
        with self._lock:
            self._cancel_outage(region)
            endpoint.suspend()
            if seconds is not None:
                self._end_outage_in(region, seconds)
        logger.info("DSQL Local failed region %s", region)

    def restore_region(self, region: str) -> None:
        """Listen again on `region`'s port; nothing if it is not failed.

        The data is as the other region left it.
        """
        self._running(region)
        self.end_outage(region=region)
        logger.info("DSQL Local restored region %s", region)

    def kill_endpoint(self) -> None:
        """Make the endpoint vanish, as its process would if killed.

        Every connection is cut without a message and nothing listens on the
        port until `restart_endpoint()`; the backend and its data stay.
        `fail_region()` does the same to any region's endpoint.
        """
        self.fail_region(self.region)

    def restart_endpoint(self) -> None:
        """Listen again on the same port after `kill_endpoint()` or an outage."""
        self.restore_region(self.region)


def _make_room_for_sockets() -> None:
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


def _check_peer(
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
