"""System checks for what DSQL cannot store as asked."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db.backends.base.validation import BaseDatabaseValidation

#: The one collation DSQL has.
DSQL_COLLATION = "C"


class DatabaseValidation(BaseDatabaseValidation):
    """Refuse fields DSQL cannot store as declared."""

    def check_field_type(self, field: Any, field_type: str) -> list[checks.Error]:
        """Refuse a ``db_collation`` other than DSQL's ``"C"``."""
        collation = getattr(field, "db_collation", None)
        if collation is None or collation == DSQL_COLLATION:
            return []
        return [
            checks.Error(
                f"{self.connection.display_name} collates in {DSQL_COLLATION!r}"
                f" only, so db_collation={collation!r} cannot be honoured.",
                hint=f"Remove db_collation, or set it to {DSQL_COLLATION!r}.",
                obj=field,
                id="dsql_psycopg.E001",
            )
        ]
