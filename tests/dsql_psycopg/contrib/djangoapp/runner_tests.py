"""Tests a user's project runs with ``manage.py test`` (see ``project_settings``).

``test_django.py`` runs them in a subprocess: they check that they run in a
test schema, not among the user's rows, and note the schema each test ran in
under ``DSQL_DJANGO_REPORT`` (a folder), a file per test.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.db import connections
from django.test import TestCase, TransactionTestCase

from .models import Counter

#: The name of the row the user made in their own table before the tests.
USER_ROW = "made-by-the-user"


def _schema(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    return str(schema)


def _report(test: str, schema: str) -> None:
    folder = os.environ.get("DSQL_DJANGO_REPORT")
    if folder:
        Path(folder, test).write_text(schema)


class FlushingTests(TransactionTestCase):
    """A TransactionTestCase: Django empties every table after each test."""

    databases = {"default", "pooled"}  # noqa: RUF012 (Django's class attribute)

    def test_sees_only_its_own_rows(self) -> None:
        schema = _schema("default")
        assert schema.startswith("test_"), schema
        assert not Counter.objects.filter(name=USER_ROW).exists()
        Counter.objects.create(name="made-by-a-test")
        # The pooled alias shares the test schema.
        assert _schema("pooled") == schema
        assert Counter.objects.using("pooled").filter(name="made-by-a-test").exists()
        _report(self.id(), schema)

    def test_the_table_was_flushed(self) -> None:
        assert not Counter.objects.filter(name="made-by-a-test").exists()
        Counter.objects.create(name="made-by-a-test")
        _report(self.id(), _schema("default"))


class IsolatedTests(TestCase):
    """A TestCase, in another worker when run with ``--parallel 2``."""

    def test_runs_in_the_test_schema(self) -> None:
        schema = _schema("default")
        assert schema.startswith("test_"), schema
        assert not Counter.objects.filter(name=USER_ROW).exists()
        _report(self.id(), schema)
