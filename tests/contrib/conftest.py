"""Fixtures for the framework integrations, all on the session's DSQL Local.

Django is configured in this process the first time a test asks for
``django_db`` (settings can be configured once per process), with two
aliases on the same database: ``default`` (a connection per request) and
``pooled`` (``OPTIONS["pool"]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dsql_psycopg.local import DsqlLocal

POOL_OPTIONS = {"min_size": 1, "max_size": 4, "timeout": 10}


def django_databases(local: DsqlLocal) -> dict[str, dict[str, Any]]:
    """Return DATABASES for `local`: one unpooled alias, one pooled."""
    base = {
        "ENGINE": "dsql_psycopg.contrib.django",
        "HOST": local.host,
        "PORT": local.port,
        "NAME": "postgres",
        "USER": "admin",
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"hostaddr": "127.0.0.1", "sslrootcert": local.ca_file},
    }
    pooled = {**base, "OPTIONS": {**base["OPTIONS"], "pool": POOL_OPTIONS}}
    return {"default": base, "pooled": pooled}


@pytest.fixture(scope="session")
def django_db(dsql_local: DsqlLocal) -> Iterator[None]:
    """Configure Django on DSQL Local and migrate every app there, once."""
    pytest.importorskip("django")
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415
    from django.core.management import call_command  # noqa: PLC0415
    from django.db import connections  # noqa: PLC0415

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="dsql-psycopg-tests",
            ALLOWED_HOSTS=["testserver"],
            DATABASES=django_databases(dsql_local),
            INSTALLED_APPS=[
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "django.contrib.sessions",
                "djangoapp.apps.DjangoAppConfig",
            ],
            MIDDLEWARE=[],
            ROOT_URLCONF="djangoapp.urls",
            USE_TZ=True,
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        )
        django.setup()
    call_command("migrate", database="default", verbosity=0, interactive=False)
    yield
    for alias in connections:
        connections[alias].close()
    connections["pooled"].close_pool()
