"""SQL generation that differs from PostgreSQL's."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql.operations import (
    DatabaseOperations as PostgreSQLOperations,
)


class DatabaseOperations(PostgreSQLOperations):
    """PostgreSQL's operations, with what DSQL lacks done another way."""

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
