"""Schema editing the DSQL way.

Django's PostgreSQL schema editor, changed where DSQL differs:

- indexes are built by ``CREATE [UNIQUE] INDEX ASYNC``, and the editor waits
  for the job (``CALL sys.wait_for_job``) so the index exists when Django
  expects it; unique constraints added to an existing table are unique indexes;
- foreign keys inline in ``CREATE TABLE`` when the table referred to exists,
  else added ``NOT VALID`` and validated by an ``ALTER TABLE ASYNC ...
  VALIDATE CONSTRAINT`` job (so are checks added to an existing table); none
  with ``OPTIONS["foreign_keys"] = False``;
- no ``varchar_pattern_ops`` indexes (DSQL collates in C, so a plain index
  serves LIKE);
- ``ADD COLUMN`` carries only a name and a type: defaults are written into the
  existing rows in batches, NOT NULL and checks become ``CHECK (...) NOT
  VALID`` constraints (where the server has them), and uniqueness and indexes
  follow as indexes;
- a key pointing at an ``AutoField`` or ``SmallAutoField`` is ``bigint``, as
  wide as the identity it refers to (Django would make it ``integer`` or
  ``smallint``);
- a column cannot change type or gain NOT NULL (the error names the
  operation and the way out); it loses NOT NULL with ``DROP NOT NULL``, or by
  dropping the CHECK that stands for it on a column added later.

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
# Django 6.1 and later put a key's database ON DELETE in its DDL.
_ON_DELETE_DB = "%(on_delete_db)s" in PostgreSQLSchemaEditor.sql_create_fk
_QUOTED = r'"(?:[^"]|"")+"'
# A constraint this editor adds NOT VALID, which it then validates.
_NOT_VALID = re.compile(
    rf"\s*ALTER\s+TABLE\s+({_QUOTED})\s+ADD\s+CONSTRAINT\s+({_QUOTED})\s.*"
    r"\sNOT\s+VALID\s*",
    re.IGNORECASE | re.DOTALL,
)


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


def _unsupported(
    model: type[Model], field: Field[Any, Any], what: str, operation: str
) -> Exception:
    return NotSupportedError(
        f"{operation} {model._meta.label}.{field.name}: DSQL cannot {what} of"
        f" {model._meta.db_table}.{field.column}. Instead add a new field"
        " (AddField), copy the data into it (RunPython), then remove the old"
        " field (RemoveField) and rename the new one (RenameField)"
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
    # Likewise a foreign key, validated afterwards by an ASYNC job; DSQL has
    # no SET CONSTRAINTS ... IMMEDIATE before a DROP to run in the same
    # statement, and needs none: each DDL statement commits alone.
    sql_create_fk = PostgreSQLSchemaEditor.sql_create_fk + " NOT VALID"
    sql_delete_fk = "ALTER TABLE %(table)s DROP CONSTRAINT %(name)s"
    sql_create_column_inline_fk = None  # type: ignore[assignment]
    sql_validate_constraint = "ALTER TABLE ASYNC %(table)s VALIDATE CONSTRAINT %(name)s"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read by Django's table_sql right after column_sql for each field:
        # set there, field by field (see column_sql).
        self.sql_create_inline_fk: str | None = None

    def column_sql(
        self, model: type[Model], field: Field[Any, Any], include_default: bool = False
    ) -> tuple[None, None] | tuple[str, list[Any]]:
        """Return the column definition, widening keys to narrow AutoFields.

        Also choose how Django's ``table_sql``, which calls this for each
        field of a new table, makes the field's foreign key: inline in
        ``CREATE TABLE`` when the table it refers to exists (or is this one),
        else afterwards, ``NOT VALID`` then validated.
        """
        self.sql_create_inline_fk = self._inline_fk_sql(model, field)
        column = super().column_sql(model, field, include_default)
        sql, params = column
        if sql is None or params is None or not _refers_to_narrow_auto_field(field):
            return column
        narrow = field.db_parameters(connection=self.connection)["type"]
        if narrow and sql.startswith(narrow):
            sql = "bigint" + sql[len(narrow) :]
        return sql, params

    def _inline_fk_sql(self, model: type[Model], field: Field[Any, Any]) -> str | None:
        remote = field.remote_field
        if not (
            remote
            and getattr(field, "db_constraint", False)
            and self.connection.features.supports_foreign_keys
        ):
            return None
        to_table = remote.model._meta.db_table
        if to_table != model._meta.db_table and not self._table_exists(to_table):
            return None
        name = str(
            self._fk_constraint_name(  # type: ignore[attr-defined]
                model, field, "_fk_%(to_table)s_%(to_column)s"
            )
        )
        # Django fills in to_table and to_column (and from 6.1 on_delete_db,
        # the ON DELETE of db_on_delete).
        on_delete = "%(on_delete_db)s" if _ON_DELETE_DB else ""
        return (
            f"CONSTRAINT {name.replace('%', '%%')} REFERENCES %(to_table)s"
            f" (%(to_column)s){on_delete}{self.connection.ops.deferrable_sql()}"
        )

    def _table_exists(self, table: str) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", [self.quote_name(table)])
            row = cursor.fetchone()
        return row is not None and row[0] is not None

    def execute(self, sql: Any, params: Any = ()) -> None:
        """Run `sql`; wait for the jobs of ASYNC indexes and validations.

        A constraint added ``NOT VALID`` is validated by an ``ALTER TABLE
        ASYNC ... VALIDATE CONSTRAINT`` job; if the rows already there break
        it, the constraint is dropped again and `IntegrityError` raised.
        """
        text = str(sql)
        match = _NOT_VALID.fullmatch(text)
        if match:
            kind = "validation"
        elif _ASYNC_INDEX.match(text):
            kind = "index build"
        else:
            super().execute(sql, params)
            return
        if self.collect_sql:
            super().execute(sql, params)
            if match:
                table, name = match.groups()
                super().execute(
                    self.sql_validate_constraint % {"table": table, "name": name}
                )
            return
        if self.connection.in_atomic_block:
            raise TransactionManagementError(
                f"DSQL runs each {kind} as a job outside transactions: run this"
                " schema change outside transaction.atomic()"
            )
        if params:
            text = self.connection.ops.compose_sql(text, params)
        if not match:
            self._run_job(kind, text, text)
            return
        table, name = match.groups()
        super().execute(text)
        validate = self.sql_validate_constraint % {"table": table, "name": name}
        try:
            self._run_job(kind, validate, text)
        except IntegrityError:
            # Keep no constraint that the rows already there break.
            super().execute(self.sql_delete_check % {"table": table, "name": name})
            raise

    def _run_job(self, kind: str, sql: str, what: str) -> None:
        """Run `sql`, which returns a job id, and wait for the job to complete."""
        logger.debug("%s; (then waiting for the job)", sql)
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
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
            f"{kind} job {job_id} ended {status}: {details or 'no details'} ({what})"
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
        if field.primary_key or field.generated:
            raise _unsupported(
                model, field, "add a key or generated column", "AddField"
            )
        table = self.quote_name(model._meta.db_table)
        column = self.quote_name(_column(field))
        self.execute(
            self.sql_create_column
            % {"table": table, "column": column, "definition": db_type}
        )
        if field.has_db_default():
            # SET DEFAULT, then the rows already there get it, batch by batch.
            default_sql, default_params = self.db_default_sql(field)
            changes = self.sql_alter_column_default % {
                "column": column,
                "default": default_sql,
            }
            self.execute(
                self.sql_alter_column % {"table": table, "changes": changes},
                default_params,
            )
            self._fill_nulls(model, _column(field), "DEFAULT", [])
        elif (default := self.effective_default(field)) is not None:
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
        if (
            field.remote_field
            and getattr(field, "db_constraint", False)
            and self.connection.features.supports_foreign_keys
        ):
            self.deferred_sql.append(
                self._create_fk_sql(  # type: ignore[attr-defined]
                    model, field, "_fk_%(to_table)s_%(to_column)s"
                )
            )

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
                model,
                new_field,
                f"change the type {old_type} to {new_type}",
                "AlterField",
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
            raise _unsupported(
                model, new_field, "add NOT NULL (SET NOT NULL)", "AlterField"
            )
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
            self._drop_not_null(model, new_field)

    def _drop_not_null(self, model: type[Model], field: Field[Any, Any]) -> None:
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
        self.execute(self.sql_drop_not_null % {"table": table, "column": column})

    def _fill_nulls(
        self,
        model: type[Model],
        target: str,
        value_sql: str,
        params: list[Any],
    ) -> None:
        """Set `target` to `value_sql` where it is NULL, a batch per transaction."""
        table = self.quote_name(model._meta.db_table)
        pk = self.quote_name(_column(model._meta.pk))
        column = self.quote_name(target)
        # Identifiers only, each quoted by quote_name; values go as parameters.
        sql = (
            f"UPDATE {table} SET {column} = {value_sql} WHERE {pk} IN ("  # noqa: S608
            f"SELECT {pk} FROM {table} WHERE {column} IS NULL"
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
