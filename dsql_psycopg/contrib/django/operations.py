"""SQL generation that differs from PostgreSQL's."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql.operations import (
    DatabaseOperations as PostgreSQLOperations,
)
from django.db.models.expressions import Col

_INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})


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

        Without foreign keys there is nothing to cascade to. A transaction
        may delete at most 3,000 rows in DSQL.
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
