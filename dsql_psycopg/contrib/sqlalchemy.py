"""SQLAlchemy engines for Aurora DSQL.

`create_engine` is `sqlalchemy.create_engine` on the ``postgresql+psycopg``
dialect, with every new DBAPI connection made by `DsqlConnection` (a fresh IAM
token, ``sslmode=verify-full``) and ``pool_recycle`` below DSQL's 60-minute
connection cap::

    engine = create_engine("postgresql://admin@<id>.dsql.us-east-1.on.aws/postgres")

The dialect (also reachable as ``postgresql+dsql://`` URLs) leaves foreign-key
constraints out of ``CREATE TABLE``, since DSQL has none; relationships still
join on them. Other DSQL rules hold as for any client:

- one DDL statement per transaction: run ``metadata.create_all`` on
  ``engine.execution_options(isolation_level="AUTOCOMMIT")``;
- no SAVEPOINT, so no ``Session.begin_nested()``;
- conflicts: wrap the unit of work in `dsql_psycopg.retry_on_occ`, which sees
  through SQLAlchemy's wrapping (``.orig``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import engine as sa_engine
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.base import PGDDLCompiler
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.schema import ForeignKeyConstraint

from dsql_psycopg.connection import DsqlConnection
from dsql_psycopg.errors import ConfigurationError
from dsql_psycopg.pool import DEFAULT_MAX_LIFETIME, MAX_LIFETIME_CEILING

__all__ = ["DEFAULT_POOL_RECYCLE", "DsqlDialect", "create_engine"]

#: Seconds after which the engine's pool replaces a connection.
DEFAULT_POOL_RECYCLE = int(DEFAULT_MAX_LIFETIME)

DRIVER = "dsql"
_ACCEPTED_DRIVERS = frozenset({"postgresql", "postgres", "postgresql+psycopg"})


class DsqlDDLCompiler(PGDDLCompiler):
    """PostgreSQL DDL without foreign-key constraints."""

    def visit_foreign_key_constraint(  # type: ignore[override]
        self, constraint: ForeignKeyConstraint, **kw: Any
    ) -> str | None:
        """Leave the constraint out: DSQL does not enforce foreign keys."""
        return None


class DsqlDialect(PGDialect_psycopg):
    """The psycopg dialect, connecting with `DsqlConnection`."""

    name = "postgresql"
    driver = DRIVER
    supports_statement_cache = True
    ddl_compiler = DsqlDDLCompiler
    # Foreign keys are never added with ALTER TABLE either.
    supports_alter = False

    def __init__(self, **kwargs: Any) -> None:
        # No extensions, so no hstore; looking for it would need a SAVEPOINT.
        kwargs["use_native_hstore"] = False
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """Open a `DsqlConnection` (psycopg keywords and DSQL options)."""
        return DsqlConnection.connect(*cargs, **cparams)


registry.register(f"postgresql.{DRIVER}", __name__, "DsqlDialect")


def create_engine(
    url: str | URL,
    *,
    pool_recycle: float = DEFAULT_POOL_RECYCLE,
    pool_pre_ping: bool = False,
    **kwargs: Any,
) -> sa_engine.Engine:
    """Create a SQLAlchemy `Engine` for Aurora DSQL.

    `url` is a ``postgresql://`` (or ``postgresql+psycopg://``) URL; DSQL
    options (``region``, ``profile``, ``token_duration``) and libpq ones
    (``hostaddr``, ``sslrootcert``...) may go in its query, Python objects
    (``session``, ``token_provider``) in ``connect_args``. `pool_recycle`
    (seconds) defaults to 50 minutes and may not exceed 55: DSQL closes
    connections at 60. `pool_pre_ping` tests a connection before each
    checkout (one round trip). Other keywords go to
    `sqlalchemy.create_engine`.
    """
    parsed = make_url(url)
    if parsed.drivername not in _ACCEPTED_DRIVERS | {f"postgresql+{DRIVER}"}:
        raise ConfigurationError(
            f"create_engine() drives DSQL with psycopg 3, but the URL asks for"
            f" {parsed.drivername!r}: use postgresql:// or postgresql+psycopg://"
        )
    if not 0 < pool_recycle <= MAX_LIFETIME_CEILING:
        raise ConfigurationError(
            f"pool_recycle must be between 0 and {MAX_LIFETIME_CEILING:g} seconds:"
            " DSQL closes connections after 60 minutes and a transaction may run"
            f" for 5, got {pool_recycle!r}"
        )
    return sa_engine.create_engine(
        parsed.set(drivername=f"postgresql+{DRIVER}"),
        pool_recycle=pool_recycle,
        pool_pre_ping=pool_pre_ping,
        **kwargs,
    )
