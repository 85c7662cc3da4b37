"""DSQL Local: an Aurora DSQL look-alike endpoint in front of a private PostgreSQL.

It behaves like DSQL where a client can tell: TLS only (classic and direct
negotiation), IAM token authentication (SigV4, verified with the configured
secrets), optimistic conflicts reported as SQLSTATE 40001 ``(OC000)``, and a
connection age cap. For tests it can inject conflicts, lose connections
(now, or right after a COMMIT has committed), add latency, and reproduce
DSQL's transient failures: connections refused while the cluster wakes up or
past its limits, ``server unavailable`` at a statement or COMMIT, an outage,
and the endpoint going away and coming back::

    with DsqlLocal() as local:
        token = boto3.client("dsql", region_name=local.region) \\
            .generate_db_connect_admin_auth_token(local.host, local.region)
        psycopg.connect(**local.connect_kwargs(), password=token,
                        sslmode="verify-full")
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
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from dsql_psycopg._naming import CLUSTER_ID, REGION, endpoint_host

from . import _defaults as defaults
from . import _signals
from ._backend import ADMIN, Backend
from ._endpoint import Endpoint
from ._errors import DsqlLocalError
from ._faults import ConnectRefusal
from ._policy import Refusal, Session, StatementPolicy
from ._relay import BOOTSTRAP_SQL, CONFLICT_MESSAGES
from ._sigv4 import TokenVerifier

if TYPE_CHECKING:
    from ._certs import CertFiles

__all__ = ["DsqlLocal", "DsqlLocalError", "Refusal", "Session", "StatementPolicy"]

logger = logging.getLogger("dsql_local")

_ID_ALPHABET = string.ascii_lowercase + string.digits


def _new_cluster_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def _certificate_maker() -> Callable[[Path, str], CertFiles]:
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
        if exc.name != f"{__name__}.strict":
            what = "strict mode" if strict else "DSQL syntax (CREATE INDEX ASYNC, sys)"
            logger.warning("%s is off: %s (install dsql-psycopg[local])", what, exc)
        return None
    policy: StatementPolicy = StrictPolicy() if strict else LaxPolicy()
    return policy


class DsqlLocal:
    """A local endpoint that stands in for an Aurora DSQL cluster.

    Use it as a context manager, or call ``start()`` and ``stop()``.

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

    Raises:
        DsqlLocalError: A value is out of range.
    """

    def __init__(
        self,
        region: str = defaults.REGION,
        max_connection_age: float = defaults.MAX_CONNECTION_AGE,
        strict: bool = True,
        latency: float = 0.0,
        credentials: Mapping[str, str] | None = None,
        *,
        port: int = 0,
        cluster_id: str | None = None,
        policy: StatementPolicy | None = None,
        pg_bindir: str | os.PathLike[str] | None = None,
        clock_skew: float = defaults.CLOCK_SKEW,
        schema_conflicts: bool = False,
        max_connections: int = defaults.MAX_CONNECTIONS,
        connection_rate: float | None = defaults.CONNECTION_RATE,
        connection_burst: int = defaults.CONNECTION_BURST,
    ) -> None:
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
        self.max_connection_age = max_connection_age
        self.strict = strict
        self._latency = latency
        self._credentials = dict(credentials) if credentials is not None else None
        self._requested_port = port
        self._policy = policy
        self._clock_skew = clock_skew
        self._schema_conflicts = schema_conflicts
        self._max_connections = max_connections
        self._connection_rate = connection_rate
        self._connection_burst = connection_burst
        self._backend = Backend(Path(pg_bindir) if pg_bindir is not None else None)
        self._endpoint: Endpoint | None = None
        self._tmp: Path | None = None
        self._lock = threading.Lock()
        self._outage_end: threading.Timer | None = None

    def __repr__(self) -> str:
        state = f"port={self.port}" if self._endpoint else "stopped"
        return f"<DsqlLocal {self.host} {state}>"

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> DsqlLocal:
        """Start the backend and the endpoint; return self."""
        with self._lock:
            if self._endpoint is not None:
                return self
            credentials = (
                self._credentials
                if self._credentials is not None
                else self._environment_credentials()
            )
            policy = self._policy
            if policy is None:
                policy = _load_policy(self.strict)
            make_certificates = _certificate_maker()
            try:
                self._tmp = Path(tempfile.mkdtemp(prefix="dsql-local-certs-"))
                certs = make_certificates(self._tmp, self.region)
                bootstrap = [*BOOTSTRAP_SQL, *(policy.bootstrap_sql if policy else ())]
                self._backend.start(bootstrap)
                endpoint = Endpoint(
                    certs=certs,
                    verifier=TokenVerifier(
                        self.region, credentials, clock_skew=self._clock_skew
                    ),
                    backend_socket=self._backend.socket_path(),
                    port=self._requested_port,
                    max_connection_age=self.max_connection_age,
                    latency=self._latency,
                    policy=policy,
                    schema_conflicts=self._schema_conflicts,
                    max_connections=self._max_connections,
                    connection_rate=self._connection_rate,
                    connection_burst=self._connection_burst,
                )
                endpoint.start()
            except BaseException:
                self._cleanup()
                raise
            self._endpoint = endpoint
            atexit.register(self.stop)
            _signals.hold()
        logger.info("DSQL Local listening on 127.0.0.1:%s as %s", self.port, self.host)
        return self

    def stop(self) -> None:
        """Close every connection, stop the backend and delete all files."""
        with self._lock:
            atexit.unregister(self.stop)
            self._cancel_outage()
            endpoint, self._endpoint = self._endpoint, None
            if endpoint is not None:
                endpoint.stop()
                _signals.release()
            self._cleanup()

    def _cleanup(self) -> None:
        self._backend.stop()
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
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

    def _running(self) -> Endpoint:
        if self._endpoint is None:
            raise DsqlLocalError(
                "DSQL Local is not running: call start() or use `with`"
            )
        return self._endpoint

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
        return (
            f"postgresql://{ADMIN}@{self.host}:{self.port}/postgres"
            f"?hostaddr=127.0.0.1&sslrootcert={quote(self.ca_file, safe='/')}"
        )

    def connect_kwargs(self, user: str = ADMIN) -> dict[str, Any]:
        """Keyword arguments for psycopg.connect(), without the password."""
        return {
            "host": self.host,
            "hostaddr": "127.0.0.1",
            "port": self.port,
            "dbname": "postgres",
            "user": user,
            "sslrootcert": self.ca_file,
        }

    @property
    def backend_dsn(self) -> str:
        """A libpq conninfo straight to the backend's unix socket (as admin)."""
        self._running()
        return self._backend.dsn()

    # -- controls -------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to every client round trip."""
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        if value < 0:
            raise DsqlLocalError("latency must be zero or a positive number of seconds")
        self._latency = value
        if self._endpoint is not None:
            self._endpoint.latency = value

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

    def inject_conflicts(self, count: int, code: str = "OC000") -> None:
        """Make the next `count` COMMITs fail with SQLSTATE 40001.

        The transaction is rolled back and the connection stays usable, as
        in DSQL. `code` is ``"OC000"`` (data conflict) or ``"OC001"`` (schema).
        Replaces any injection not used yet; ``0`` cancels them.
        """
        if code not in CONFLICT_MESSAGES:
            raise DsqlLocalError(f"code must be one of {sorted(CONFLICT_MESSAGES)}")
        if count < 0:
            raise DsqlLocalError("count must be zero or more")
        self._running().inject_conflicts(count, code)

    def inject_commit_drops(self, count: int) -> None:
        """Lose the connection of each of the next `count` COMMITs after it commits.

        The COMMIT reaches the backend and commits; when the backend confirms
        it, the client connection is closed abruptly instead of relaying the
        confirmation. The client sees a broken connection while COMMIT is in
        flight and cannot tell whether it committed: this is how to test code
        that must cope with an unknown commit outcome (it did commit here).
        Counts only COMMITs of a transaction in progress (not failed), on any
        connection, after injected conflicts and the policy have let them
        through. Replaces any injection not used yet; ``0`` cancels them.
        """
        if count < 0:
            raise DsqlLocalError("count must be zero or more")
        self._running().inject_commit_drops(count)

    def drop_connections(self) -> None:
        """Close every client connection now, without a message."""
        self._running().drop_connections()

    # -- faults ---------------------------------------------------------------

    def refuse_connections(
        self,
        reason: ConnectRefusal = "waking_up",
        *,
        count: int | None = None,
        seconds: float | None = None,
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
        Replaces the refusal armed before; ``count=0`` cancels it.
        """
        self._running().faults.refuse_connections(reason, count, seconds)

    def inject_server_unavailable(
        self,
        statements: int = 0,
        *,
        commits: int = 0,
        commit_fraction: float = 0.0,
        committed: bool | None = False,
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
        Replaces what was armed before; all zeros cancel it.
        """
        self._running().faults.server_unavailable(
            statements, commits, commit_fraction, committed
        )

    def outage(self, seconds: float, *, refuse: bool = True) -> None:
        """Take the endpoint away for `seconds`, then bring it back on its port.

        Every connection is cut at once without a message. With `refuse`,
        nothing listens meanwhile, so connecting fails with ``Connection
        refused``; otherwise new connections are accepted and reset at once.
        Returns at once; `end_outage()` ends it early. The data stays.
        """
        if not seconds > 0:
            raise DsqlLocalError("seconds must be a positive number")
        endpoint = self._running()
        with self._lock:
            self._cancel_outage()
            if refuse:
                endpoint.suspend()
            else:
                endpoint.cut(seconds)
            timer = threading.Timer(seconds, self.end_outage)
            timer.daemon = True
            self._outage_end = timer
            timer.start()

    def end_outage(self) -> None:
        """End an outage (or a killed endpoint) now; nothing if there is none."""
        with self._lock:
            self._cancel_outage()
            endpoint = self._endpoint
            if endpoint is not None:
                endpoint.cut(0)
                endpoint.resume()

    def _cancel_outage(self) -> None:
        timer, self._outage_end = self._outage_end, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def kill_endpoint(self) -> None:
        """Make the endpoint vanish, as its process would if killed.

        Every connection is cut without a message and nothing listens on the
        port until `restart_endpoint()`; the backend and its data stay.
        """
        endpoint = self._running()
        with self._lock:
            self._cancel_outage()
            endpoint.suspend()

    def restart_endpoint(self) -> None:
        """Listen again on the same port after `kill_endpoint()` or an outage."""
        self._running()
        self.end_outage()
