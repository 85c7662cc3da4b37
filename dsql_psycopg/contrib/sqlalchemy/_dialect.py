"""The ``postgresql+dsql`` and ``postgresql+dsql_async`` dialects.

Both run statements through the same rules (`DsqlDialect._run`): the asyncio
dialect reaches psycopg's `AsyncConnection` through SQLAlchemy's adapter,
which gives it the same blocking-looking cursor and connection calls.
"""

from __future__ import annotations

import logging
import re
import sys
import weakref
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.psycopg import (
    AsyncAdapt_psycopg_connection,
    PGDialect_psycopg,
    PGDialectAsync_psycopg,
)
from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import Dialect, IsolationLevel
from sqlalchemy.schema import CreateIndex

from dsql_psycopg.connection import DsqlConnection
from dsql_psycopg.errors import DsqlError

from ._ddl import DsqlCompiler, DsqlDDLCompiler

__all__ = [
    "DRIVER",
    "DRIVER_ASYNC",
    "AsyncDsqlDialect",
    "DDLTransactionError",
    "DsqlDialect",
    "IndexBuildError",
]

logger = logging.getLogger("dsql_psycopg.contrib.sqlalchemy")

DRIVER = "dsql"
DRIVER_ASYNC = "dsql_async"

# Statements given as text: the first word tells DDL, and writes, apart.
_DDL_TEXT = re.compile(r"\s*(CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE)\b", re.IGNORECASE)
_DML_TEXT = re.compile(r"\s*(INSERT|UPDATE|DELETE|MERGE|COPY)\b", re.IGNORECASE)
# A WITH query writes when one of its parts does.
_WITH_DML_TEXT = re.compile(
    r"\s*WITH\b.*\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE | re.DOTALL
)


class DDLTransactionError(DsqlError, psycopg.NotSupportedError):
    """DDL was asked for in a transaction that has already written rows.

    DSQL runs DDL and DML in separate transactions. SQLAlchemy raises it as
    ``sqlalchemy.exc.NotSupportedError`` (this error is its ``.orig``).
    """


class IndexBuildError(DsqlError, psycopg.IntegrityError):
    """An index build job failed (for a unique index: duplicate keys).

    SQLAlchemy raises it as ``sqlalchemy.exc.IntegrityError``.
    """


class DsqlDialect(PGDialect_psycopg):
    """The psycopg dialect, connecting with `DsqlConnection`."""

    name = "postgresql"
    driver = DRIVER
    supports_statement_cache = True
    statement_compiler = DsqlCompiler
    ddl_compiler = DsqlDDLCompiler
    # DSQL has no DECLARE: results are read through client-side cursors.
    supports_server_side_cursors = False
    # DSQL has no CREATE TYPE: Enum is a VARCHAR.
    supports_native_enum = False

    def __init__(self, **kwargs: Any) -> None:
        # No extensions, so no hstore; looking for it would need a SAVEPOINT.
        kwargs["use_native_hstore"] = False
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        if "alembic" in sys.modules:
            # Alembic finds its implementation by dialect name: put DSQL's in.
            import dsql_psycopg.contrib.alembic  # noqa: F401, PLC0415
        # Driver connections whose current transaction has written rows.
        self._written: weakref.WeakSet[object] = weakref.WeakSet()

    @classmethod
    def get_async_dialect_cls(cls, url: URL) -> type[Dialect]:
        """Give ``create_async_engine("postgresql+dsql://...")`` the asyncio twin."""
        return AsyncDsqlDialect

    def get_isolation_level_values(self, dbapi_conn: Any) -> tuple[IsolationLevel, ...]:
        """Offer REPEATABLE READ, DSQL's only isolation level, and AUTOCOMMIT."""
        return ("REPEATABLE READ", "AUTOCOMMIT")

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """Open a `DsqlConnection` (psycopg keywords and DSQL options)."""
        return DsqlConnection.connect(*cargs, **cparams)

    def do_execute(
        self, cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        """Run a statement, giving DDL a transaction of its own."""
        self._run(
            cursor, statement, context, lambda: cursor.execute(statement, parameters)
        )

    def do_execute_no_params(
        self, cursor: Any, statement: str, context: Any = None
    ) -> None:
        """Run a statement without parameters, giving DDL a transaction of its own."""
        self._run(cursor, statement, context, lambda: cursor.execute(statement))

    def do_executemany(
        self, cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        """Run a statement once per parameter set, noting that it wrote."""
        self._run(
            cursor,
            statement,
            context,
            lambda: cursor.executemany(statement, parameters),
        )

    # The two hooks the asyncio dialect answers differently.

    def _connection_of(self, cursor: Any) -> tuple[Any, object]:
        """Return the connection to commit and run on, and the driver connection."""
        return cursor.connection, cursor.connection

    def _unread(self, cursor: Any, row: Any) -> None:
        """Put back the row just fetched, for the caller to read."""
        cursor.scroll(0, mode="absolute")

    def _run(
        self, cursor: Any, statement: str, context: Any, run: Callable[[], object]
    ) -> None:
        conn, driver = self._connection_of(cursor)
        status = conn.info.transaction_status
        if status == TransactionStatus.IDLE:
            self._written.discard(driver)
        if not _is_ddl(statement, context):
            run()
            if _writes(statement, context):
                self._written.add(driver)
            return
        if conn.autocommit or status == TransactionStatus.INERROR:
            # Its own transaction already, or a failed one that refuses it.
            self._run_ddl(cursor, conn, statement, context, run)
            return
        if status == TransactionStatus.INTRANS:
            if driver in self._written:
                raise DDLTransactionError(
                    "DSQL runs DDL and DML in separate transactions, and this"
                    " transaction has written rows: commit or roll back before"
                    f" {_first_words(statement)}..., or run it on another"
                    " connection (the dialect commits around DDL only when that"
                    " commits no rows of yours)"
                )
            # Only reads so far: ending their transaction loses nothing.
            conn.commit()
        # In autocommit, DDL is a transaction of its own, and DSQL wants
        # sys.wait_for_job called outside any transaction block.
        conn.autocommit = True
        try:
            self._run_ddl(cursor, conn, statement, context, run)
        finally:
            conn.autocommit = False

    def _run_ddl(
        self,
        cursor: Any,
        conn: Any,
        statement: str,
        context: Any,
        run: Callable[[], object],
    ) -> None:
        run()
        job_id = self._index_job(cursor, context)
        if job_id is None:
            return
        logger.debug("waiting for index build job %s", job_id)
        # Closed by hand: SQLAlchemy 2.0's asyncio cursor is no context manager.
        waiting = conn.cursor()
        try:
            waiting.execute("CALL sys.wait_for_job(%s)", [job_id])
            row = waiting.fetchone()
            if row and row[0]:
                return
            waiting.execute(
                "SELECT status, details FROM sys.jobs WHERE job_id = %s", [job_id]
            )
            status, details = waiting.fetchone() or ("unknown", None)
        finally:
            waiting.close()
        raise IndexBuildError(
            f"index build job {job_id} ended {status}:"
            f" {details or 'no details'} ({_first_words(statement)}...);"
            " the index is left INVALID: drop it, fix the rows, and create"
            " it again"
        )

    def _index_job(self, cursor: Any, context: Any) -> str | None:
        """Return the job id an ASYNC index build answered; leave it readable."""
        if context is None or not isinstance(
            getattr(context.compiled, "statement", None), CreateIndex
        ):
            return None
        if cursor.description is None:  # nothing to build (IF NOT EXISTS)
            return None
        row = cursor.fetchone()
        if row is None:
            return None
        self._unread(cursor, row)
        return str(row[0])


class AsyncDsqlDialect(DsqlDialect, PGDialectAsync_psycopg):
    """The psycopg asyncio dialect, connecting with `AsyncDsqlConnection`.

    SQLAlchemy runs the dialect's blocking-looking calls on the event loop
    through its adapter, so the DDL rules are `DsqlDialect`'s, unchanged.
    """

    driver = DRIVER_ASYNC
    supports_statement_cache = True

    @classmethod
    def get_async_dialect_cls(cls, url: URL) -> type[Dialect]:
        """This dialect is the asyncio one already."""
        return cls

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """Open an `AsyncDsqlConnection` (psycopg keywords and DSQL options)."""
        from dsql_psycopg._async_connection import (  # noqa: PLC0415
            AsyncDsqlConnection,
        )

        cparams.setdefault("async_creator_fn", AsyncDsqlConnection.connect)
        return self.loaded_dbapi.connect(*cargs, **cparams)

    def _connection_of(self, cursor: Any) -> tuple[Any, object]:
        # SQLAlchemy's adapted cursor: its connection wraps psycopg's.
        adapted = getattr(cursor, "_adapt_connection", None)
        if adapted is not None:  # SQLAlchemy 2.1
            return adapted, cursor._connection
        # SQLAlchemy 2.0's cursor keeps no link to its adapter: make one
        # around psycopg's connection (it holds no state of its own).
        driver = cursor._cursor.connection
        adapter: Any = AsyncAdapt_psycopg_connection  # 2.0's signature, not 2.1's
        return adapter(driver), driver

    def _unread(self, cursor: Any, row: Any) -> None:
        # The adapter has fetched every row into a queue: put this one back.
        cursor._rows.appendleft(row)


def _is_ddl(statement: str, context: Any) -> bool:
    if context is not None and context.isddl:
        return True
    textual = context is None or context.is_text or context.compiled is None
    return textual and _DDL_TEXT.match(statement) is not None


def _writes(statement: str, context: Any) -> bool:
    if context is not None and (
        context.isinsert or context.isupdate or context.isdelete
    ):
        return True
    return bool(_DML_TEXT.match(statement) or _WITH_DML_TEXT.match(statement))


def _first_words(statement: str) -> str:
    return " ".join(statement.split()[:4])


registry.register(f"postgresql.{DRIVER}", __name__, "DsqlDialect")
registry.register(f"postgresql.{DRIVER_ASYNC}", __name__, "AsyncDsqlDialect")
