"""pytest fixtures for testing against DSQL Local.

Installed with dsql-psycopg (a ``pytest11`` entry point), so any test suite
can ask for `dsql_local`, `dsql_schema` and `dsql_local_multi_region`; the
options ``--dsql-local-no-strict``, ``--dsql-local-own-process``,
``--dsql-local-region`` and ``--dsql-local-peer-region`` configure them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest

from dsql_local import _defaults as defaults

if TYPE_CHECKING:
    from dsql_local import DsqlLocal

logger = logging.getLogger("dsql_local")

# Connections of a finished test may still be closing: wait for their locks.
_WAIT = "-c lock_timeout=3s"
_FAKE_ACCESS_KEY = "AKIADSQLLOCALFAKEKEY"
_FAKE_SECRET_KEY = "dsql-local-fake-secret-access-key"  # noqa: S105 (fake)
_PEER_REGION = "us-east-2"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dsql-local", "DSQL Local (dsql-psycopg)")
    group.addoption(
        "--dsql-local-no-strict",
        action="store_true",
        default=False,
        help=(
            "let DSQL Local accept statements Aurora DSQL would refuse"
            " (DSQL's own syntax, such as CREATE INDEX ASYNC, still works)"
        ),
    )
    group.addoption(
        "--dsql-local-own-process",
        action="store_true",
        default=False,
        help=(
            "run DSQL Local's endpoints (TLS and the relays) in a process of"
            " their own rather than in the test process: statements run faster"
            " while the tests keep Python busy; every control still works"
        ),
    )
    group.addoption(
        "--dsql-local-region",
        default=defaults.REGION,
        help=f"AWS region DSQL Local pretends to be in (default: {defaults.REGION})",
    )
    group.addoption(
        "--dsql-local-peer-region",
        default=_PEER_REGION,
        help=(
            "the second region of dsql_local_multi_region's cluster"
            f" (default: {_PEER_REGION})"
        ),
    )


@contextlib.contextmanager
def _aws_keys() -> Iterator[None]:
    """Set a fake key pair for as long as it lasts, unless there is a pair."""
    with pytest.MonkeyPatch.context() as env:
        if not (
            os.environ.get("AWS_ACCESS_KEY_ID")
            and os.environ.get("AWS_SECRET_ACCESS_KEY")
        ):
            env.setenv("AWS_ACCESS_KEY_ID", _FAKE_ACCESS_KEY)
            env.setenv("AWS_SECRET_ACCESS_KEY", _FAKE_SECRET_KEY)
            env.delenv("AWS_SESSION_TOKEN", raising=False)
            env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="session")
def dsql_local(request: pytest.FixtureRequest) -> Iterator[DsqlLocal]:
    """A running `DsqlLocal`, shared by the whole test session (session scope).

    Connect with ``dsql_psycopg.connect(dsql_local.url)``, or with plain
    psycopg and a token. If the environment has no ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, the fixture sets a fake key pair (and
    ``AWS_EC2_METADATA_DISABLED=true``) for the session, so that tokens are
    signed and checked offline, and restores the environment afterwards.
    ``--dsql-local-region`` picks its Region, ``--dsql-local-no-strict``
    turns strict mode off, ``--dsql-local-own-process`` runs its endpoints
    in a process of their own (``DsqlLocal(own_process=True)``).

    <!-- docs-sample: pytest -->
    ```python
    import dsql_psycopg


    def test_select_one(dsql_local):
        with dsql_psycopg.connect(dsql_local.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    ```
    """
    from dsql_local import DsqlLocal  # noqa: PLC0415 (only when used)

    with _aws_keys():
        local = DsqlLocal(
            region=request.config.getoption("--dsql-local-region"),
            strict=not request.config.getoption("--dsql-local-no-strict"),
            own_process=request.config.getoption("--dsql-local-own-process"),
        )
        with local:
            yield local


@pytest.fixture(scope="session")
def _dsql_local_multi_region_session(
    request: pytest.FixtureRequest,
) -> Iterator[DsqlLocal]:
    from dsql_local import DsqlLocal  # noqa: PLC0415 (only when used)

    with _aws_keys():
        local = DsqlLocal(
            region=request.config.getoption("--dsql-local-region"),
            peer_region=request.config.getoption("--dsql-local-peer-region"),
            strict=not request.config.getoption("--dsql-local-no-strict"),
            own_process=request.config.getoption("--dsql-local-own-process"),
        )
        with local:
            yield local


@pytest.fixture
def dsql_local_multi_region(
    _dsql_local_multi_region_session: DsqlLocal,
) -> Iterator[DsqlLocal]:
    """A running two-Region `DsqlLocal` (function scope, one per session).

    It serves the ``--dsql-local-region`` endpoint and a peer in
    ``--dsql-local-peer-region`` (``us-east-2`` by default) over one data
    set. Started when a test first asks for it and shared by the session;
    after each test every Region is restored, the faults armed on either
    endpoint are cancelled, ``latency`` is back to 0, and the client forgets
    which endpoints failed, so the next test's connects try the first
    endpoint first again. Data stays for the session.
    """
    # Imported here: the plugin loads in every pytest run of every install.
    from dsql_psycopg import endpoint_health  # noqa: PLC0415

    local = _dsql_local_multi_region_session
    yield local
    endpoint_health.reset()
    local.latency = 0.0
    for region in local.regions:
        local.restore_region(region)
        local.refuse_connections(count=0, region=region)
        local.inject_server_unavailable(region=region)
        local.inject_conflicts(0, region=region)
        local.inject_commit_drops(0, region=region)


def _admin(local: DsqlLocal) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(local.backend_dsn, autocommit=True, options=_WAIT)


@pytest.fixture
def dsql_schema(dsql_local: DsqlLocal) -> Iterator[str]:
    """The name of a fresh, empty schema for one test (function scope).

    The schema is dropped with everything in it after the test. Qualify
    table names with it, or put it first in ``search_path``.

    <!-- docs-sample: pytest -->
    ```python
    import dsql_psycopg


    def test_table_of_its_own(dsql_local, dsql_schema):
        with dsql_psycopg.connect(dsql_local.url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {dsql_schema}.items (id int PRIMARY KEY)")
    ```

    If a connection still holds a transaction open on it (say, a connection
    fixture torn down after this one), the schema is left in place: it goes
    away with DSQL Local at the end of the session, and no later test uses it.
    """
    from psycopg import sql  # noqa: PLC0415

    name = f"test_{secrets.token_hex(6)}"
    ident = sql.Identifier(name)
    with _admin(dsql_local) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA {} TO PUBLIC").format(ident))
    try:
        yield name
    finally:
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident)
        with _admin(dsql_local) as conn:
            try:
                conn.execute(drop)
            except psycopg.errors.LockNotAvailable:
                logger.info("schema %s is still in use; it is left in place", name)
