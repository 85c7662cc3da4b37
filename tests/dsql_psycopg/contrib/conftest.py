"""Fixtures for the framework integrations, all on the session's DSQL Local.

Django is configured in this process the first time a test asks for
``django_db`` (settings can be configured once per process), with two
aliases on the same database: ``default`` (a connection per request) and
``pooled`` (``OPTIONS["pool"]``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dsql_local import DsqlLocal


@pytest.fixture(scope="session")
def django_db(dsql_local: DsqlLocal) -> Iterator[None]:
    """Configure Django on DSQL Local and migrate every app there, once."""
    pytest.importorskip("django")
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415
    from django.core.management import call_command  # noqa: PLC0415
    from django.db import connections  # noqa: PLC0415

    from tests.dsql_psycopg.contrib.djangoapp import settings as test_settings  # noqa: PLC0415

    if not settings.configured:
        settings.configure(**test_settings.settings(dsql_local))
        django.setup()
    # The sample app's second migration runs on a table with rows.
    call_command("migrate", "djangoapp", "0001", verbosity=0, interactive=False)
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "INSERT INTO djangoapp_author (name, email)"
            " SELECT 'seed-' || g, 'seed-' || g || '@example.com'"
            " FROM generate_series(1, %s) AS g",
            [test_settings.SEED_AUTHORS],
        )
    call_command("migrate", verbosity=0, interactive=False)
    yield
    for alias in connections:
        connections[alias].close()
    connections["pooled"].close_pool()
