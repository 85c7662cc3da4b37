"""Settings of a user's project on DSQL Local, for ``manage.py test`` runs.

``python -m django test --settings=<this module>`` reads the endpoint from
``DSQL_DJANGO_HOST``, ``DSQL_DJANGO_PORT`` and ``DSQL_DJANGO_CA``. No ``TEST``
settings: the test runner makes a test schema.
"""

from __future__ import annotations

import os

from .settings import POOL_OPTIONS

_BASE = {
    "ENGINE": "dsql_psycopg.contrib.django",
    "HOST": os.environ.get("DSQL_DJANGO_HOST", ""),
    "PORT": os.environ.get("DSQL_DJANGO_PORT", ""),
    "NAME": "postgres",
    "USER": "admin",
    "OPTIONS": {
        "hostaddr": "127.0.0.1",
        "sslrootcert": os.environ.get("DSQL_DJANGO_CA", ""),
    },
}

DATABASES = {
    "default": _BASE,
    "pooled": {**_BASE, "OPTIONS": {**_BASE["OPTIONS"], "pool": POOL_OPTIONS}},
}
SECRET_KEY = "dsql-psycopg-tests"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "dsql_psycopg.contrib.django",
    "tests.dsql_psycopg.contrib.djangoapp.apps.DjangoAppConfig",
]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TEST_RUNNER = "dsql_psycopg.contrib.django.testing.DiscoverRunner"
