"""The backend as a Django app, for its management command."""

from __future__ import annotations

from django.apps import AppConfig


class DsqlConfig(AppConfig):
    """Add ``"dsql_psycopg.contrib.django"`` to ``INSTALLED_APPS`` for its commands."""

    name = "dsql_psycopg.contrib.django"
    label = "dsql_psycopg"
    verbose_name = "Aurora DSQL"
