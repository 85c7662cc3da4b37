"""Test databases on DSQL: a schema of their own in the cluster's only database.

DSQL has one database, ``postgres``, and no ``CREATE DATABASE``. Django's
test runner gets a schema instead: created before the tests, migrated, set as
the alias's ``search_path`` (libpq ``options``), and dropped afterwards, so
the tables the tests flush are never the application's own. ``--parallel N``
gets one more schema per worker, migrated afresh; DSQL's limit of 10 schemas
(besides ``public`` and ``sys``) is checked before each one is made.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.apps import apps
from django.conf import settings
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql.creation import (
    DatabaseCreation as PostgreSQLCreation,
)

from . import _test_schema as plan


class _NoRoom(Exception):
    """DSQL's schema limit leaves no room for the next test schema."""


class DatabaseCreation(PostgreSQLCreation):
    """Create, clone and destroy test schemas instead of test databases.

    The schema is ``TEST["NAME"]`` if set, else ``test_postgres`` (or
    ``test_<schema>`` for an alias whose ``OPTIONS["options"]`` set a
    ``search_path``); parallel workers get ``<schema>_1``, ``<schema>_2``...
    The application's own schemas are never written to, and a schema is
    dropped only if this test run made it (or kept it, with ``--keepdb``).
    """

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self._original_options: dict[str, Any] | None = None
        # Schemas this run made or adopted (--keepdb): the only ones it drops.
        self._made: set[str] = set()

    # -- names -------------------------------------------------------------

    def _get_test_db_name(self) -> str:
        """Return the name of the test schema (not a database: DSQL has one)."""
        return plan.test_schema(self.connection.settings_dict, self.connection.alias)

    def _options(self) -> dict[str, Any]:
        return dict(self.connection.settings_dict.get("OPTIONS") or {})

    def _current_schema(self) -> str:
        schemas = plan.search_path(self._options().get("options"))
        if not schemas:
            return self._get_test_db_name()
        return schemas[0]

    def test_db_signature(self) -> tuple[Any, ...]:
        """Tell apart aliases on one cluster whose libpq ``options`` differ.

        Two aliases with their own ``search_path`` are two test databases to
        the test runner, each a schema of its own.
        """
        options = self._options().get("options")
        return (*super().test_db_signature(), options)

    def get_test_db_clone_settings(self, suffix: str) -> dict[str, Any]:
        """Return the settings of parallel worker `suffix`: its own schema."""
        settings_dict = self.connection.settings_dict
        schema = plan.clone_name(self._current_schema(), suffix)
        return {**settings_dict, "OPTIONS": self._options_for(schema)}

    def _options_for(self, schema: str) -> dict[str, Any]:
        options = self._options()
        return {
            **options,
            "options": plan.with_search_path(options.get("options"), schema),
        }

    def _display(self, schema: str) -> str:
        database = self.connection.settings_dict.get("NAME") or "postgres"
        return (
            f"test schema {schema!r} in database {database!r} for alias"
            f" {self.connection.alias!r}"
        )

    # -- talking to the cluster ---------------------------------------------

    @contextmanager
    def _admin_cursor(self) -> Iterator[Any]:
        """A cursor on a connection of its own, outside the test schema's pool."""
        connection = self.connection.__class__(
            {**self.connection.settings_dict}, alias=NO_DB_ALIAS
        )
        try:
            with connection.cursor() as cursor:
                yield cursor
        finally:
            connection.close()

    @staticmethod
    def _schemas(cursor: Any) -> list[str]:
        cursor.execute("SELECT nspname FROM pg_catalog.pg_namespace")
        return [row[0] for row in cursor.fetchall()]

    def _names(self, cursor: Any, schema: str, query: str) -> list[tuple[str, ...]]:
        cursor.execute(query, [schema])
        return [tuple(row) for row in cursor.fetchall()]

    def _drop_schema(self, cursor: Any, schema: str) -> None:
        """Drop `schema` and what is in it, a statement per transaction.

        Each object goes on its own (DSQL runs one DDL statement per
        transaction); views first, then foreign keys (so that tables that
        refer to each other can go), tables (with their indexes and identity
        sequences), what is left, and the schema.
        """
        q = self.connection.ops.quote_name
        s = q(schema)
        relations = (
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace"
            " n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ({})"
        )
        for (view,) in self._names(cursor, schema, relations.format("'v'")):
            cursor.execute(f"DROP VIEW IF EXISTS {s}.{q(view)}")
        keys = (
            "SELECT c.relname, k.conname FROM pg_catalog.pg_constraint k"
            " JOIN pg_catalog.pg_class c ON c.oid = k.conrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND k.contype = 'f'"
        )
        for table, key in self._names(cursor, schema, keys):
            cursor.execute(
                f"ALTER TABLE {s}.{q(table)} DROP CONSTRAINT IF EXISTS {q(key)}"
            )
        for (table,) in self._names(cursor, schema, relations.format("'r', 'p'")):
            cursor.execute(f"DROP TABLE IF EXISTS {s}.{q(table)}")
        for (sequence,) in self._names(cursor, schema, relations.format("'S'")):
            cursor.execute(f"DROP SEQUENCE IF EXISTS {s}.{q(sequence)}")
        functions = (
            "SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p JOIN"
            " pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s"
        )
        for (function,) in self._names(cursor, schema, functions):
            cursor.execute(f"DROP ROUTINE IF EXISTS {s}.{q(function)}")
        domains = (
            "SELECT t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace"
            " n ON n.oid = t.typnamespace WHERE n.nspname = %s AND t.typtype = 'd'"
        )
        for (domain,) in self._names(cursor, schema, domains):
            cursor.execute(f"DROP DOMAIN IF EXISTS {s}.{q(domain)}")
        cursor.execute(f"DROP SCHEMA IF EXISTS {s}")
        self._made.discard(schema)

    def _make_schema(
        self,
        schema: str,
        *,
        verbosity: int,
        autoclobber: bool,
        keepdb: bool,
        created: Sequence[str],
        worker: int | None,
    ) -> None:
        """Create `schema`, replacing a stale one; raise `_NoRoom` past DSQL's limit."""
        with self._admin_cursor() as cursor:
            existing = self._schemas(cursor)
            if schema in existing:
                if keepdb:
                    self._made.add(schema)
                    return
                if not autoclobber:
                    confirm = input(
                        f"The test schema {schema!r} already exists (left by an"
                        " earlier run?). Type 'yes' if you would like to drop it"
                        " and everything in it, or 'no' to cancel: "
                    )
                    if confirm != "yes":
                        self.log("Tests cancelled.")
                        sys.exit(1)
                if verbosity >= 1:
                    self.log(f"Destroying old {self._display(schema)}...")
                self._made.add(schema)
                self._drop_schema(cursor, schema)
                existing.remove(schema)
            room = plan.room(existing, created)
            if not room.fits:
                raise _NoRoom(
                    plan.no_room_message(self.connection.alias, schema, room, worker)
                )
            try:
                cursor.execute(
                    f"CREATE SCHEMA {self.connection.ops.quote_name(schema)}"
                )
            except Exception as error:
                if isinstance(error.__cause__, psycopg.errors.ProgramLimitExceeded):
                    raise _NoRoom(
                        plan.no_room_message(
                            self.connection.alias, schema, room, worker
                        )
                        + f" (DSQL said: {error})"
                    ) from error
                raise
            self._made.add(schema)

    def _switch_to(self, options: dict[str, Any]) -> None:
        """Point the alias at other ``OPTIONS``: its pool is rebuilt from them."""
        self.connection.close()
        self.connection.close_pool()
        self.connection.settings_dict["OPTIONS"] = options
        configured = settings.DATABASES.get(self.connection.alias)
        if configured is not None and configured is not self.connection.settings_dict:
            configured["OPTIONS"] = options

    def _migrate(self, verbosity: int) -> None:
        from django.core.management import call_command  # noqa: PLC0415

        alias = self.connection.alias
        no_migrations = self.connection.settings_dict["TEST"].get("MIGRATE") is False
        saved = settings.MIGRATION_MODULES
        if no_migrations:
            settings.MIGRATION_MODULES = {
                app.label: None for app in apps.get_app_configs()
            }
        try:
            call_command(
                "migrate",
                verbosity=max(verbosity - 1, 0),
                interactive=False,
                database=alias,
                run_syncdb=True,
            )
        finally:
            if no_migrations:
                settings.MIGRATION_MODULES = saved
        call_command("createcachetable", database=alias)

    def _give_up(self, message: str, leftovers: Sequence[str], keepdb: bool) -> None:
        """Drop what this run made (unless kept), say why, and stop."""
        if not keepdb:
            with self._admin_cursor() as cursor:
                for schema in leftovers:
                    if schema in self._made:
                        self._drop_schema(cursor, schema)
            self._restore()
        self.log(message)
        sys.exit(2)

    def _restore(self) -> None:
        if self._original_options is not None:
            self._switch_to(self._original_options)
            self._original_options = None

    # -- Django's entry points ---------------------------------------------

    def create_test_db(
        self,
        verbosity: int = 1,
        autoclobber: bool = False,
        serialize: bool | None = True,
        keepdb: bool = False,
    ) -> str:
        """Create and migrate the test schema, and run the alias in it."""
        schema = self._get_test_db_name()
        if verbosity >= 1:
            action = "Using existing" if keepdb else "Creating"
            self.log(
                f"{action} {self._display(schema)} (the tests run there; your"
                " own schemas are not touched)..."
            )
        self._create_test_db(verbosity, autoclobber, keepdb)
        self._original_options = self.connection.settings_dict.get("OPTIONS") or {}
        self._switch_to(self._options_for(schema))
        self._migrate(verbosity)
        if serialize:
            wrapper: Any = self.connection
            wrapper._test_serialized_contents = self.serialize_db_to_string()
        self.connection.ensure_connection()
        if os.environ.get("RUNNING_DJANGOS_TEST_SUITE") == "true":
            self.mark_expected_failures_and_skips()
        return schema

    def _create_test_db(
        self, verbosity: int, autoclobber: bool, keepdb: bool = False
    ) -> str:
        schema = self._get_test_db_name()
        try:
            self._make_schema(
                schema,
                verbosity=verbosity,
                autoclobber=autoclobber,
                keepdb=keepdb,
                created=(),
                worker=None,
            )
        except _NoRoom as refusal:
            self._give_up(str(refusal), (), keepdb)
        return schema

    def set_as_test_mirror(self, primary_settings_dict: dict[str, Any]) -> None:
        """Run this alias in the primary alias's test schema."""
        super().set_as_test_mirror(primary_settings_dict)
        primary = plan.search_path(
            (primary_settings_dict.get("OPTIONS") or {}).get("options")
        )
        if primary:
            self.connection.settings_dict["OPTIONS"] = self._options_for(primary[0])

    def clone_test_db(
        self,
        suffix: str,
        verbosity: int = 1,
        autoclobber: bool = False,
        keepdb: bool = False,
    ) -> None:
        """Make parallel worker `suffix`'s schema, migrated afresh."""
        if verbosity >= 1:
            target = plan.clone_name(self._current_schema(), suffix)
            action = "Using existing" if keepdb else "Creating"
            self.log(
                f"{action} {self._display(target)}, parallel worker {suffix}'s"
                " copy of the test schema (migrated afresh)..."
            )
        self._clone_test_db(suffix, verbosity, keepdb)

    def _clone_test_db(self, suffix: str, verbosity: int, keepdb: bool = False) -> None:
        source = self._current_schema()
        target = plan.clone_name(source, suffix)
        worker = int(suffix) if suffix.isdigit() else None
        earlier = [plan.clone_name(source, str(i)) for i in range(1, worker or 1)]
        try:
            self._make_schema(
                target,
                verbosity=verbosity,
                autoclobber=True,
                keepdb=keepdb,
                created=[source, *earlier],
                worker=worker,
            )
        except _NoRoom as refusal:
            self._give_up(str(refusal), [*earlier, source], keepdb)
        own = self.connection.settings_dict.get("OPTIONS") or {}
        self._switch_to(self._options_for(target))
        try:
            self._migrate(verbosity)
        finally:
            self._switch_to(own)

    def setup_worker_connection(self, _worker_id: int) -> None:
        """In a parallel worker, use the worker's schema, with a pool of its own."""
        # A forked worker inherits the parent's pool object, whose threads did
        # not follow: forget it (its connections belong to the parent).
        wrapper: Any = self.connection
        wrapper._connection_pools.pop(wrapper.alias, None)
        super().setup_worker_connection(_worker_id)

    def destroy_test_db(
        self,
        old_database_name: str | None = None,
        verbosity: int = 1,
        keepdb: bool = False,
        suffix: str | None = None,
    ) -> None:
        """Drop the test schema (or worker `suffix`'s) unless `keepdb`."""
        self.connection.close()
        self.connection.close_pool()
        schema = self._current_schema()
        if suffix is not None:
            schema = plan.clone_name(schema, suffix)
        if verbosity >= 1:
            action = "Preserving" if keepdb else "Destroying"
            self.log(f"{action} {self._display(schema)}...")
        if not keepdb:
            self._destroy_test_db(schema, verbosity)
        if suffix is None:
            self._restore()

    def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
        if test_database_name not in self._made:
            self.log(
                f"Not dropping schema {test_database_name!r}: this test run did"
                " not create it."
            )
            return
        with self._admin_cursor() as cursor:
            self._drop_schema(cursor, test_database_name)
