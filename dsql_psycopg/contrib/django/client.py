"""``manage.py dbshell``: psql with a freshly signed token, never shown."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.backends.postgresql.client import (
    DatabaseClient as PostgreSQLClient,
)

from dsql_psycopg import _auth as auth
from dsql_psycopg import _config as config
from dsql_psycopg import _tls as tls
from dsql_psycopg.cli import _psql

# OPTIONS keys that are Django's or this backend's, not the connection's.
_NOT_FOR_PSQL = frozenset(
    {
        "pool",
        "identity_cache",
        "foreign_keys",
        "isolation_level",
        "server_side_binding",
        "assume_role",
        "cursor_factory",
        "context",
        "prepare_threshold",
        "client_encoding",
    }
)


class DatabaseClient(PostgreSQLClient):
    """Run psql as the backend connects: IAM token, verify-full TLS.

    The token goes in ``PGPASSWORD`` only, never on psql's command line;
    the connection settings go in the ``PG*`` variables as
    ``dsql-psycopg psql`` sets them. With several hosts (a multi-Region
    cluster), psql opens the first.
    """

    @classmethod
    def settings_to_cmd_args_env(
        cls, settings_dict: dict[str, Any], parameters: Iterable[str]
    ) -> tuple[list[str], dict[str, str]]:
        """Return psql's arguments and the environment it adds, token included."""
        options = settings_dict.get("OPTIONS") or {}
        kwargs: dict[str, Any] = {
            "host": settings_dict.get("HOST"),
            "port": settings_dict.get("PORT"),
            "dbname": settings_dict.get("NAME") or "postgres",
            "user": settings_dict.get("USER"),
            **{k: v for k, v in options.items() if k not in _NOT_FOR_PSQL},
        }
        kwargs = {k: v for k, v in kwargs.items() if v not in (None, "")}
        params = config.parse_endpoints(**kwargs).each[0]
        libpq = dict(params.libpq)
        tls.apply_tls(libpq)
        env, argv = _psql.environment(libpq, {})
        env["PGPASSWORD"] = auth.make_token(params)
        return [cls.executable_name, *argv, *parameters], env
