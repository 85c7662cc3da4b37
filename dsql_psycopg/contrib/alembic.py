"""Alembic migrations on Aurora DSQL.

Alembic picks its implementation by dialect name, and the ``postgresql+dsql``
dialect is named ``postgresql``: `DsqlImpl` takes PostgreSQL's place and
changes nothing for other PostgreSQL drivers. The DSQL dialect registers it
when it is created in a process that has imported Alembic (``alembic``'s
command line, Flask-Migrate), so ``env.py`` needs no import of its own.

On a DSQL connection, `DsqlImpl` declares DDL non-transactional: Alembic then
runs each migration in a transaction of its own, and the dialect gives each DDL
statement of that migration a transaction of its own too. The version table is
updated in the migration's last transaction, after its DDL: a migration that
fails part-way leaves the statements before the failing one in place and the
version table at the previous revision.
"""

from __future__ import annotations

from typing import Any, TextIO

from alembic.ddl.postgresql import PostgresqlImpl
from sqlalchemy import Column
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Connection, Dialect

__all__ = ["DsqlImpl"]

DRIVER = "dsql"  # the DSQL dialect's driver name


class DsqlImpl(PostgresqlImpl):
    """PostgreSQL's Alembic implementation, with DSQL's transaction rules."""

    __dialect__ = "postgresql"

    def __init__(  # noqa: PLR0917 (Alembic passes them by position)
        self,
        dialect: Dialect,
        connection: Connection | None,
        as_sql: bool,
        transactional_ddl: bool | None,
        output_buffer: TextIO | None,
        context_opts: dict[str, Any],
    ) -> None:
        if transactional_ddl is None and dialect.driver == DRIVER:
            # One DDL statement per transaction: DSQL's DDL cannot be rolled
            # back together with anything else.
            transactional_ddl = False
        super().__init__(
            dialect, connection, as_sql, transactional_ddl, output_buffer, context_opts
        )

    def compare_type(
        self, inspector_column: Column[Any], metadata_column: Column[Any]
    ) -> bool:
        """Compare types, knowing that the dialect made integer identities BIGINT."""
        if (
            self.dialect.driver == DRIVER
            and isinstance(inspector_column.type, sqltypes.BigInteger)
            and _made_bigint(metadata_column)
        ):
            return False
        return super().compare_type(inspector_column, metadata_column)


def _made_bigint(column: Column[Any]) -> bool:
    """Whether the DSQL dialect writes this INTEGER/SMALLINT column as BIGINT."""
    type_ = column.type
    if not isinstance(type_, sqltypes.Integer) or isinstance(
        type_, sqltypes.BigInteger
    ):
        return False
    table = column.table
    return column.identity is not None or (
        column.primary_key and column is table._autoincrement_column
    )
