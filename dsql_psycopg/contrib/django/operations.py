"""SQL generation that differs from PostgreSQL's."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.db import OperationalError
from django.db.backends.postgresql.operations import (
    DatabaseOperations as PostgreSQLOperations,
)
from django.db.models.expressions import Col

from dsql_psycopg.retry import retry_on_occ

from .schema import BATCH_ROWS

_INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})
# A statement of sql_flush's, styled or not: the table it empties.
_FLUSH_DELETE = re.compile(r'DELETE FROM "((?:[^"]|"")+)";')
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_ROW_LIMIT = "54000"


class DatabaseOperations(PostgreSQLOperations):
    """PostgreSQL's operations, with what DSQL lacks done another way."""

    # Every automatic key is a BIGINT identity here (DSQL has no other), so
    # lookups must not treat ids past the 32- or 16-bit range as impossible,
    # and casts to an automatic key's type must not narrow.
    integer_field_ranges = {  # noqa: RUF012 (an instance attribute in django-stubs)
        **PostgreSQLOperations.integer_field_ranges,
        "SmallAutoField": PostgreSQLOperations.integer_field_ranges["BigAutoField"],
        "AutoField": PostgreSQLOperations.integer_field_ranges["BigAutoField"],
    }
    cast_data_types = dict.fromkeys(
        ("AutoField", "BigAutoField", "SmallAutoField"), "bigint"
    )

    def lookup_cast(self, lookup_type: str, internal_type: str | None = None) -> str:
        """Cast for a lookup; IP addresses are text here, not ``inet``."""
        if internal_type in {"IPAddressField", "GenericIPAddressField"}:
            internal_type = "CharField"
        return super().lookup_cast(lookup_type, internal_type)

    def adapt_ipaddressfield_value(self, value: Any) -> str | None:
        """Send an IP address as text: its column is ``varchar`` (DSQL has no inet)."""
        return str(value) if value else None

    def prepare_join_on_clause(
        self, lhs_table: str, lhs_field: Any, rhs_table: str, rhs_field: Any
    ) -> tuple[Col, Col]:
        """Join on two columns, with no cast between integers of any width.

        Django declares a key to an AutoField ``integer`` while the AutoField
        itself is ``bigint`` here; PostgreSQL compares integers of different
        widths directly (with index support), where PostgreSQL's backend
        would cast one side, and a narrowing cast overflows.
        """
        if (
            lhs_field.db_type(self.connection) in _INTEGER_TYPES
            and rhs_field.db_type(self.connection) in _INTEGER_TYPES
        ):
            return Col(lhs_table, lhs_field), Col(rhs_table, rhs_field)
        return super().prepare_join_on_clause(
            lhs_table, lhs_field, rhs_table, rhs_field
        )

    def sql_flush(
        self,
        style: Any,
        tables: Any,
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        """Empty `tables` with DELETE: DSQL has no TRUNCATE.

        Foreign keys are checked at COMMIT, and `execute_sql_flush` empties
        the tables that refer to others first. A transaction may delete at
        most 3,000 rows in DSQL: see `execute_sql_flush`.
        """
        statements = [
            f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(t))};"
            for t in tables
        ]
        if reset_sequences:
            wanted = set(tables)
            sequences = [
                s
                for s in self.connection.introspection.sequence_list()
                if s["table"] in wanted
            ]
            statements.extend(self.sequence_reset_by_name_sql(style, sequences))
        return statements

    def execute_sql_flush(self, sql_list: Iterable[str]) -> None:
        """Run `sql_list`, each statement a transaction of its own.

        A table with more rows than DSQL lets a transaction delete is emptied
        in batches. A flush is not atomic then; on DSQL it cannot be. Inside
        an atomic block, everything runs in that block, as Django does it.
        """
        if self.connection.in_atomic_block:
            super().execute_sql_flush(sql_list)
            return
        with self.connection.cursor() as cursor:
            for group in self._flush_groups(cursor, list(sql_list)):
                if len(group) == 1:
                    self._flush_one(cursor, group[0])
                else:
                    self._flush_together(group)

    def _flush_groups(self, cursor: Any, sql_list: list[str]) -> list[list[str]]:
        """Order the statements so that no DELETE leaves a key dangling.

        A table is emptied after the tables whose keys refer to it; tables
        whose keys refer to each other in a cycle are emptied together, in
        one transaction (their keys are checked at COMMIT).
        """
        deletes = {t: sql for sql in sql_list if (t := _flushed_table(sql))}
        rest = [[sql] for sql in sql_list if _flushed_table(sql) is None]
        if not self.connection.features.supports_foreign_keys or len(deletes) < 2:
            return [[sql] for sql in deletes.values()] + rest
        cursor.execute(
            "SELECT t.relname, r.relname FROM pg_constraint c"
            " JOIN pg_class t ON t.oid = c.conrelid"
            " JOIN pg_class r ON r.oid = c.confrelid"
            " WHERE c.contype = 'f' AND pg_table_is_visible(c.conrelid)"
        )
        children: dict[str, set[str]] = {t: set() for t in deletes}
        for child, parent in cursor.fetchall():
            if child != parent and child in children and parent in children:
                children[parent].add(child)
        groups: list[list[str]] = []
        remaining = set(deletes)
        while remaining:
            free = sorted(t for t in remaining if not children[t] & remaining)
            if not free:
                groups.append([deletes[t] for t in sorted(remaining)])
                break
            groups.extend([deletes[t]] for t in free)
            remaining.difference_update(free)
        return groups + rest

    @retry_on_occ
    def _flush_together(self, group: list[str]) -> None:
        super().execute_sql_flush(group)  # in one transaction

    @retry_on_occ
    def _flush_one(self, cursor: Any, sql: str) -> None:
        # Each statement (or batch) commits alone in autocommit: one that
        # meets a conflict was rolled back whole and simply runs again.
        try:
            cursor.execute(sql)
        except OperationalError as exc:
            table = _flushed_table(sql)
            sqlstate = getattr(exc.__cause__, "sqlstate", None)
            if table is None or sqlstate != _ROW_LIMIT:
                raise
            # Refused whole, nothing deleted: delete in batches.
            self._delete_in_batches(cursor, table)

    def _delete_in_batches(self, cursor: Any, table: str) -> None:
        keys = self.connection.introspection.get_primary_key_columns(cursor, table)
        if not keys:
            raise OperationalError(
                f"cannot empty table {table!r} in batches: it has no primary key;"
                " give it one, or delete its rows 3,000 at a time yourself"
            )
        columns = ", ".join(self.quote_name(k) for k in keys)
        name = self.quote_name(table)
        batch = (
            f"DELETE FROM {name} WHERE ({columns}) IN"  # noqa: S608 (quoted names)
            f" (SELECT {columns} FROM {name} LIMIT {BATCH_ROWS})"
        )
        cursor.execute(batch)
        while cursor.rowcount == BATCH_ROWS:
            cursor.execute(batch)


def _flushed_table(sql: str) -> str | None:
    match = _FLUSH_DELETE.fullmatch(_ANSI_ESCAPE.sub("", sql).strip())
    return match.group(1).replace('""', '"') if match else None
