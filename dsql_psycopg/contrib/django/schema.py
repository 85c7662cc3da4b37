"""Schema editing the DSQL way.

Django's PostgreSQL schema editor, changed where DSQL differs:

- indexes are built by ``CREATE [UNIQUE] INDEX ASYNC``, and the editor waits
  for the job (``CALL sys.wait_for_job``) so the index exists when Django
  expects it; unique constraints added to an existing table are unique indexes;
- no foreign-key constraints (see the features), no ``varchar_pattern_ops``
  indexes (DSQL collates in C, so a plain index serves LIKE);
- ``ADD COLUMN`` carries only a name and a type: defaults are written into the
  existing rows in batches, NOT NULL and checks become ``CHECK (...) NOT
  VALID`` constraints (where the server has them), and uniqueness and indexes
  follow as indexes;
- check constraints added to an existing table are ``NOT VALID``;
- a key pointing at an ``AutoField`` or ``SmallAutoField`` is ``bigint``, as
  wide as the identity it refers to (Django would make it ``integer`` or
  ``smallint``);
- a column cannot change type or gain NOT NULL; it can lose NOT NULL, natively
  where the server allows it, else by rebuilding the column.

Migrations run without a transaction around them (one DDL statement per
transaction): a migration that fails half-way is not rolled back.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.db import NotSupportedError
from django.db.backends.postgresql.schema import (
    DatabaseSchemaEditor as PostgreSQLSchemaEditor,
)
from django.db.models import Field, Model
from django.db.transaction import TransactionManagementError
from django.db.utils import IntegrityError

from dsql_psycopg.retry import retry_on_occ

from .validation import DSQL_COLLATION

logger = logging.getLogger("dsql_psycopg.contrib.django")

# DSQL limits a transaction to 3,000 changed rows: backfills go in batches.
BATCH_ROWS = 1_000

_ASYNC_INDEX = re.compile(r"\s*CREATE\s+(UNIQUE\s+)?INDEX\s+ASYNC\b", re.IGNORECASE)


def _column(field: Field[Any, Any] | None) -> str:
    # Only concrete fields reach the schema editor: they have a column.
    assert field is not None
    assert field.column is not None
    return field.column


def _refers_to_narrow_auto_field(field: Field[Any, Any]) -> bool:
    """Whether `field` is a key that ends at an AutoField or SmallAutoField."""
    target = field
    while target.many_to_one or target.one_to_one:
        target = target.target_field  # type: ignore[attr-defined]
    return target is not field and target.get_internal_type() in {
        "AutoField",
        "SmallAutoField",
    }


def _unsupported(model: type[Model], field: Field[Any, Any], what: str) -> Exception:
    return NotSupportedError(
        f"DSQL cannot {what} of {model._meta.db_table}.{field.column}: add a new"
        " field, copy the data into it (RunPython), then remove the old field"
    )


class DatabaseSchemaEditor(PostgreSQLSchemaEditor):
    """PostgreSQL's schema editor, speaking DSQL's DDL."""

    sql_create_index = (
        "CREATE INDEX ASYNC %(name)s ON %(table)s%(using)s "
        "(%(columns)s)%(include)s%(extra)s%(condition)s"
    )
    sql_create_index_concurrently = sql_create_index
    sql_delete_index_concurrently = "DROP INDEX IF EXISTS %(name)s"
    sql_create_unique_index = (
        "CREATE UNIQUE INDEX ASYNC %(name)s ON %(table)s "
        "(%(columns)s)%(include)s%(nulls_distinct)s%(condition)s"
    )
    # A unique constraint on an existing table is a unique index.
    sql_create_unique = sql_create_unique_index
    sql_create_column = "ALTER TABLE %(table)s ADD COLUMN %(column)s %(definition)s"
    sql_drop_not_null = "ALTER TABLE %(table)s ALTER COLUMN %(column)s DROP NOT NULL"
    # DSQL adds a check to a table only NOT VALID: later writes are checked,
    # the rows already there are not.
    sql_create_check = (
        "ALTER TABLE %(table)s ADD CONSTRAINT %(name)s CHECK (%(check)s) NOT VALID"
    )

    def column_sql(
        self, model: type[Model], field: Field[Any, Any], include_default: bool = False
    ) -> tuple[None, None] | tuple[str, list[Any]]:
        """Return the column definition, widening keys to narrow AutoFields."""
        column = super().column_sql(model, field, include_default)
        sql, params = column
        if sql is None or params is None or not _refers_to_narrow_auto_field(field):
            return column
        narrow = field.db_parameters(connection=self.connection)["type"]
        if narrow and sql.startswith(narrow):
            sql = "bigint" + sql[len(narrow) :]
        return sql, params

    def execute(self, sql: Any, params: Any = ()) -> None:
        """Run `sql`; for an ASYNC index, wait until the index is built."""
        text = str(sql)
        if self.collect_sql or not _ASYNC_INDEX.match(text):
            super().execute(sql, params)
            return
        if self.connection.in_atomic_block:
            raise TransactionManagementError(
                "DSQL builds indexes outside transactions: run this schema"
                " change outside transaction.atomic()"
            )
        if params:
            text = self.connection.ops.compose_sql(text, params)
        logger.debug("%s; (building, then waiting for the job)", text)
        with self.connection.cursor() as cursor:
            cursor.execute(text)
            (job_id,) = cursor.fetchone()
            cursor.execute("CALL sys.wait_for_job(%s)", [job_id])
            (completed,) = cursor.fetchone()
            if completed:
                return
            cursor.execute(
                "SELECT status, details FROM sys.jobs WHERE job_id = %s", [job_id]
            )
            status, details = cursor.fetchone() or ("unknown", None)
        raise IntegrityError(
            f"index build job {job_id} ended {status}: {details or 'no details'}"
            f" ({text})"
        )

    def _collate_sql(
        self,
        collation: str | None,
        old_collation: str | None = None,
        table_name: str | None = None,
    ) -> str:
        # DSQL's only collation is C, and it takes no COLLATE clause in DDL.
        if collation is None or collation == DSQL_COLLATION:
            return ""
        raise NotSupportedError(
            f"DSQL collates in {DSQL_COLLATION!r} only: db_collation={collation!r}"
            f" cannot be honoured; remove db_collation or set it to"
            f" {DSQL_COLLATION!r}"
        )

    def _create_like_index_sql(self, model: type[Model], field: Field[Any, Any]) -> Any:
        # DSQL has no operator classes and collates in C: the plain index
        # already serves LIKE 'prefix%'.
        return None

    def _delete_constraint_sql(
        self, template: str, model: type[Model], name: str
    ) -> Any:
        if (
            template == self.sql_delete_unique
            and not self.collect_sql
            and not self._is_constraint(model, name)
        ):
            # Made by this editor as a unique index, not a table constraint.
            template = self.sql_delete_index
        return super()._delete_constraint_sql(template, model, name)  # type: ignore[misc]

    def _is_constraint(self, model: type[Model], name: str) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_constraint"
                " WHERE conname = %s AND conrelid = %s::regclass",
                [name, self.quote_name(model._meta.db_table)],
            )
            return cursor.fetchone() is not None

    def add_field(self, model: type[Model], field: Field[Any, Any]) -> None:
        """Add a column as DSQL allows: a name and a type, then the rest."""
        through = getattr(field.remote_field, "through", None)
        if field.many_to_many and through is not None and through._meta.auto_created:
            super().add_field(model, field)  # a new table, which DSQL allows
            return
        db_type = field.db_parameters(connection=self.connection)["type"]
        if db_type is None:
            return
        if _refers_to_narrow_auto_field(field):
            db_type = "bigint"
        if field.primary_key or field.has_db_default() or field.generated:
            raise _unsupported(
                model, field, "add a key, db_default or generated column"
            )
        table = self.quote_name(model._meta.db_table)
        column = self.quote_name(_column(field))
        self.execute(
            self.sql_create_column
            % {"table": table, "column": column, "definition": db_type}
        )
        default = self.effective_default(field)
        if default is not None:
            self._fill_nulls(model, _column(field), "%s", [default])
        if not field.null:
            self._add_check(
                model,
                field,
                self._not_null_check_name(model, field),
                f"{column} IS NOT NULL",
            )
        if check := field.db_parameters(connection=self.connection)["check"]:
            self._add_check(model, field, self._check_name(model, field), check)
        self.deferred_sql.extend(self._field_indexes_sql(model, field))  # type: ignore[attr-defined]
        if field.unique:
            self.deferred_sql.append(self._create_unique_sql(model, [field]))  # type: ignore[attr-defined]

    def _is_not_null(self, model: type[Model], field: Field[Any, Any]) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT attnotnull FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attname = %s",
                [self.quote_name(model._meta.db_table), _column(field)],
            )
            row = cursor.fetchone()
        return bool(row and row[0])

    def _add_check(
        self, model: type[Model], field: Field[Any, Any], name: str, check: str
    ) -> None:
        # ADD COLUMN takes no constraint; a CHECK added NOT VALID holds every
        # later write (the existing rows were filled with a valid default).
        sql = self.sql_create_check % {
            "table": self.quote_name(model._meta.db_table),
            "name": self.quote_name(name),
            "check": check,
        }
        if self.collect_sql:
            self.execute(sql)
            return
        try:
            self.execute(sql)
        except NotSupportedError:
            logger.warning(
                "%s.%s was added without its constraint: the server refused %s",
                model._meta.db_table,
                field.column,
                sql,
            )

    def _not_null_check_name(self, model: type[Model], field: Field[Any, Any]) -> str:
        name: str = self._create_index_name(  # type: ignore[attr-defined]
            model._meta.db_table, [_column(field)], suffix="_notnull"
        )
        return name

    def _check_name(self, model: type[Model], field: Field[Any, Any]) -> str:
        name: str = self._create_index_name(  # type: ignore[attr-defined]
            model._meta.db_table, [_column(field)], suffix="_check"
        )
        return name

    def _alter_field(  # noqa: PLR0917 (Django's signature)
        self,
        model: type[Model],
        old_field: Field[Any, Any],
        new_field: Field[Any, Any],
        old_type: str,
        new_type: str,
        old_db_params: dict[str, Any],
        new_db_params: dict[str, Any],
        strict: bool = False,
    ) -> None:
        if old_type != new_type:
            raise _unsupported(
                model, new_field, f"change the type {old_type} to {new_type}"
            )
        if {old_db_params.get("collation"), new_db_params.get("collation")} <= {
            None,
            DSQL_COLLATION,
        }:
            # No collation and "C" are the same collation on DSQL: no DDL.
            new_db_params = {
                **new_db_params,
                "collation": old_db_params.get("collation"),
            }
        if old_field.null and not new_field.null:
            raise _unsupported(model, new_field, "add NOT NULL to the column")
        if getattr(old_field, "db_default", None) != getattr(
            new_field, "db_default", None
        ):
            raise _unsupported(model, new_field, "change the database default")
        drops_not_null = not old_field.null and new_field.null
        if drops_not_null:
            # Let Django do the rest (renames, indexes, uniqueness) first.
            new_field.null = False
        try:
            super()._alter_field(  # type: ignore[misc]
                model,
                old_field,
                new_field,
                old_type,
                new_type,
                old_db_params,
                new_db_params,
                strict,
            )
        finally:
            if drops_not_null:
                new_field.null = True
        if drops_not_null:
            self._drop_not_null(model, new_field, new_type)

    def _drop_not_null(
        self, model: type[Model], field: Field[Any, Any], db_type: str
    ) -> None:
        table = self.quote_name(model._meta.db_table)
        column = self.quote_name(_column(field))
        # The CHECK standing for NOT NULL on a column added after its table.
        check = self._not_null_check_name(model, field)
        if self.collect_sql or self._is_constraint(model, check):
            self.execute(
                self.sql_delete_check % {"table": table, "name": self.quote_name(check)}
            )
        if not self.collect_sql and not self._is_not_null(model, field):
            return  # added after its table: the CHECK was all there was
        native = self.sql_drop_not_null % {"table": table, "column": column}
        if self.collect_sql:
            self.execute(native)
            return
        try:
            self.execute(native)
        except NotSupportedError:
            logger.info("%s refused: rebuilding the column as nullable", native)
            self._rebuild_nullable(model, field, db_type)

    def _rebuild_nullable(
        self, model: type[Model], field: Field[Any, Any], db_type: str
    ) -> None:
        """Replace the column by a nullable copy (for servers without DROP NOT NULL).

        Writes to the column while this runs may be lost: run it while the
        application is not writing to the table.
        """
        db_table = model._meta.db_table
        table = self.quote_name(db_table)
        column = self.quote_name(_column(field))
        spare_name = self._create_index_name(db_table, [_column(field)], suffix="_new")  # type: ignore[attr-defined]
        spare = self.quote_name(spare_name)
        self.execute(
            self.sql_create_column
            % {"table": table, "column": spare, "definition": db_type}
        )
        self._fill_nulls(model, spare_name, column, [], source=column)
        self.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        self.execute(f"ALTER TABLE {table} RENAME COLUMN {spare} TO {column}")
        if check := field.db_parameters(connection=self.connection)["check"]:
            self._add_check(model, field, self._check_name(model, field), check)
        for statement in self._field_indexes_sql(model, field):  # type: ignore[attr-defined]
            self.execute(statement)
        if field.unique:
            self.execute(self._create_unique_sql(model, [field]))  # type: ignore[attr-defined]

    def _fill_nulls(
        self,
        model: type[Model],
        target: str,
        value_sql: str,
        params: list[Any],
        source: str | None = None,
    ) -> None:
        """Set `target` to `value_sql` where it is NULL, a batch per transaction."""
        table = self.quote_name(model._meta.db_table)
        pk = self.quote_name(_column(model._meta.pk))
        column = self.quote_name(target)
        skip_null_source = f" AND {source} IS NOT NULL" if source else ""
        # Identifiers only, each quoted by quote_name; values go as parameters.
        sql = (
            f"UPDATE {table} SET {column} = {value_sql} WHERE {pk} IN ("  # noqa: S608
            f"SELECT {pk} FROM {table} WHERE {column} IS NULL{skip_null_source}"
            f" LIMIT {BATCH_ROWS})"
        )
        if self.collect_sql:
            self.execute(sql, params)
            return
        text = self.connection.ops.compose_sql(sql, params) if params else sql

        # Each batch commits on its own; one that meets a conflict was rolled
        # back and is simply run again.
        @retry_on_occ
        def batch() -> int:
            with self.connection.cursor() as cursor:
                cursor.execute(text)
                return int(cursor.rowcount)

        while batch() == BATCH_ROWS:
            pass
