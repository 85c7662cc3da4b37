"""Test databases: DSQL has one database, ``postgres``, and no CREATE DATABASE."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql.creation import (
    DatabaseCreation as PostgreSQLCreation,
)

DSQL_DATABASE = "postgres"


class DatabaseCreation(PostgreSQLCreation):
    """Run Django's tests in the cluster's only database, when asked to.

    Tests then share the database with whatever else is in it, and
    ``TransactionTestCase`` empties the tables it touches: point them at
    DSQL Local or a cluster kept for tests, and opt in with
    ``"TEST": {"NAME": "postgres"}``.
    """

    def _get_test_db_name(self) -> str:
        name = self.connection.settings_dict["TEST"]["NAME"]
        if name != DSQL_DATABASE:
            raise ImproperlyConfigured(
                "DSQL has a single database and cannot create a test database."
                f" To run tests in {DSQL_DATABASE!r} (DSQL Local, or a cluster"
                " kept for tests: the tests empty the tables they use), set"
                f" DATABASES[{self.connection.alias!r}]['TEST'] ="
                f" {{'NAME': {DSQL_DATABASE!r}}}"
            )
        return DSQL_DATABASE

    def test_db_signature(self) -> tuple[Any, ...]:
        """Tell apart aliases on one cluster whose libpq ``options`` differ.

        Two aliases with their own ``search_path`` are two databases to the
        test runner, each migrated in its own schema.
        """
        options = (self.connection.settings_dict.get("OPTIONS") or {}).get("options")
        return (*super().test_db_signature(), options)

    def _create_test_db(
        self, verbosity: int, autoclobber: bool, keepdb: bool = False
    ) -> str:
        return self._get_test_db_name()

    def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
        self.connection.close_pool()
