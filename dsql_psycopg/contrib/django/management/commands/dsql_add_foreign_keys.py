"""Add the foreign-key constraints that a database migrated without them lacks."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, router
from django.db.models import Field, Model


def missing_foreign_keys(alias: str) -> list[tuple[type[Model], Field[Any, Any]]]:
    """Return the (model, field) pairs whose key has no constraint in `alias`."""
    connection = connections[alias]
    introspection = connection.introspection
    missing = []
    with connection.cursor() as cursor:
        tables = set(introspection.table_names(cursor))
        for model in apps.get_models(include_auto_created=True):
            meta = model._meta
            if (
                not meta.managed
                or meta.proxy
                or meta.db_table not in tables
                or not router.allow_migrate_model(alias, model)
            ):
                continue
            keys = [
                field
                for field in meta.local_fields
                if field.concrete and getattr(field, "db_constraint", False)
            ]
            if not keys:
                continue
            constraints = introspection.get_constraints(cursor, meta.db_table)
            constrained = {
                tuple(c["columns"]) for c in constraints.values() if c["foreign_key"]
            }
            missing += [(model, f) for f in keys if (f.column,) not in constrained]
    return missing


class Command(BaseCommand):
    """``manage.py dsql_add_foreign_keys``: give keys the constraints they lack."""

    help = (
        "Add the foreign-key constraints that tables migrated without them"
        " (dsql-psycopg 0.1.0, or OPTIONS['foreign_keys'] = False) lack: each"
        " is added NOT VALID, then validated by an ASYNC job. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="the database alias (default: default)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="print the statements instead of running them",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        connection = connections[alias]
        if connection.vendor != "postgresql" or not hasattr(
            connection.features, "supports_foreign_keys"
        ):
            raise CommandError(f"database {alias!r} is not a PostgreSQL-like one")
        if not connection.features.supports_foreign_keys:
            raise CommandError(
                f"DATABASES[{alias!r}]['OPTIONS']['foreign_keys'] is False: set it"
                " to True (or remove it) first, so that Django keeps the"
                " constraints this command adds"
            )
        missing = missing_foreign_keys(alias)
        if not missing:
            self.stdout.write("Every foreign key has its constraint.")
            return
        failed = []
        with connection.schema_editor(
            collect_sql=options["dry_run"], atomic=False
        ) as editor:
            for model, field in missing:
                statement = editor._create_fk_sql(
                    model, field, "_fk_%(to_table)s_%(to_column)s"
                )
                try:
                    editor.execute(statement)
                except IntegrityError as exc:
                    failed.append(f"{model._meta.label}.{field.name}: {exc}")
                    continue
                if not options["dry_run"]:
                    self.stdout.write(f"Added {statement.parts['name']}")
            if options["dry_run"]:
                self.stdout.write("\n".join(editor.collected_sql))
        if failed:
            raise CommandError(
                "These keys have rows that refer to nothing, so their"
                " constraints were not kept; fix or delete those rows, then run"
                " this command again:\n  " + "\n  ".join(failed)
            )
