"""What Django may expect of DSQL: the PostgreSQL feature set, less what DSQL lacks."""

from __future__ import annotations

from django.db.backends.postgresql.features import (
    DatabaseFeatures as PostgreSQLFeatures,
)


class DatabaseFeatures(PostgreSQLFeatures):
    """PostgreSQL's features as DSQL has them."""

    # No enforced foreign keys: relations are plain (indexed) columns.
    supports_foreign_keys = False
    can_create_inline_fk = False
    can_defer_constraint_checks = False
    supports_deferrable_unique_constraints = False
    # No SAVEPOINT: a nested atomic block joins the outer transaction.
    uses_savepoints = False
    can_release_savepoints = False
    # One DDL statement per transaction, never beside DML: migrations run
    # each statement in its own transaction.
    can_rollback_ddl = False
    # No DECLARE: results arrive whole.
    can_use_chunked_reads = False
    # SELECT ... FOR UPDATE exists, its variants do not.
    has_select_for_update_nowait = False
    has_select_for_update_skip_locked = False
    has_select_for_update_of = False
    has_select_for_no_key_update = False
    # No tablespaces, comments, materialized views or CREATE DATABASE.
    supports_tablespaces = False
    supports_comments = False
    can_introspect_materialized_views = False
    can_clone_databases = False
    # DSQL collates in C, and only in C: db_collation="C" is accepted (and
    # needs no COLLATE clause), any other is refused.
    supports_collation_on_charfield = True
    supports_collation_on_textfield = True
    test_collations = {  # noqa: RUF012 (Django's class attribute)
        "deterministic": "C",
        "virtual": "C",
    }
