"""What Django may expect of DSQL: the PostgreSQL feature set, less what DSQL lacks."""

from __future__ import annotations

from django.db.backends.postgresql.features import (
    DatabaseFeatures as PostgreSQLFeatures,
)
from django.utils.functional import cached_property


class DatabaseFeatures(PostgreSQLFeatures):
    """PostgreSQL's features as DSQL has them."""

    # DEFERRABLE is for foreign keys only.
    supports_deferrable_unique_constraints = False
    # No SAVEPOINT: a nested atomic block joins the outer transaction.
    uses_savepoints = False
    can_release_savepoints = False
    # One DDL statement per transaction, never beside DML: migrations run
    # each statement in its own transaction.
    can_rollback_ddl = False
    # No DECLARE: results arrive whole.
    can_use_chunked_reads = False
    # SELECT ... FOR UPDATE takes its OF, NOWAIT and SKIP LOCKED tails, but
    # nothing ever waits or is skipped: a contended row fails the later
    # COMMIT instead (OC000). FOR NO KEY UPDATE is refused.
    has_select_for_no_key_update = False
    # Index keys take no ASC/DESC: Django then builds a descending index
    # ascending, as on other databases without ordered keys.
    supports_index_column_ordering = False
    # No tablespaces, comments or materialized views.
    supports_tablespaces = False
    supports_comments = False
    can_introspect_materialized_views = False
    # Parallel test workers get a schema each (see creation.py).
    can_clone_databases = True
    # DSQL collates in C, and only in C: db_collation="C" is accepted (and
    # needs no COLLATE clause), any other is refused.
    supports_collation_on_charfield = True
    supports_collation_on_textfield = True
    test_collations = {  # noqa: RUF012 (Django's class attribute)
        "deterministic": "C",
        "virtual": "C",
    }

    @cached_property
    def supports_foreign_keys(self) -> bool:  # type: ignore[override]
        """Whether keys are constraints: unless ``OPTIONS["foreign_keys"]`` is False."""
        options = self.connection.settings_dict.get("OPTIONS") or {}
        return bool(options.get("foreign_keys", True))

    @cached_property
    def can_create_inline_fk(self) -> bool:  # type: ignore[override]
        """Whether ``CREATE TABLE`` carries the foreign keys (when on)."""
        return self.supports_foreign_keys

    @cached_property
    def can_defer_constraint_checks(self) -> bool:  # type: ignore[override]
        """Whether foreign keys are checked at COMMIT (``DEFERRABLE``)."""
        return self.supports_foreign_keys
