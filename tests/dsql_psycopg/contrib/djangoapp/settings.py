"""Django settings for the tests, built around a running DSQL Local."""

from __future__ import annotations

from typing import Any

from dsql_local import DsqlLocal

POOL_OPTIONS = {"min_size": 1, "max_size": 4, "timeout": 10}
#: Authors inserted between the app's two migrations (more than one backfill
#: batch).
SEED_AUTHORS = 1_500


def databases(local: DsqlLocal) -> dict[str, dict[str, Any]]:
    """Return DATABASES for `local`: unpooled, pooled, and without foreign keys."""
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
    # What a project migrated before foreign keys were constraints has.
    no_fks = {**base, "OPTIONS": {**base["OPTIONS"], "foreign_keys": False}}
    return {"default": base, "pooled": pooled, "no_fks": no_fks}


def settings(local: DsqlLocal) -> dict[str, Any]:
    """Return the keyword arguments of ``settings.configure()``."""
    return {
        "DEBUG": False,
        "SECRET_KEY": "dsql-psycopg-tests",
        "ALLOWED_HOSTS": ["testserver"],
        "DATABASES": databases(local),
        "INSTALLED_APPS": [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "dsql_psycopg.contrib.django",
            "tests.dsql_psycopg.contrib.djangoapp.apps.DjangoAppConfig",
        ],
        "MIDDLEWARE": [],
        "ROOT_URLCONF": "tests.dsql_psycopg.contrib.djangoapp.urls",
        "USE_TZ": True,
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
    }
