"""Settings for Django's own test suite on DSQL Local (see ``run.py``).

The endpoint comes from the environment ``run.py`` sets: ``DSQL_SUITE_HOST``,
``DSQL_SUITE_PORT`` and ``DSQL_SUITE_CA``.
"""

from __future__ import annotations

import os

_DATABASE = {
    "ENGINE": "dsql_psycopg.contrib.django",
    "HOST": os.environ.get("DSQL_SUITE_HOST", ""),
    "PORT": os.environ.get("DSQL_SUITE_PORT", ""),
    "NAME": "postgres",
    "USER": "admin",
    "OPTIONS": {
        "hostaddr": "127.0.0.1",
        "sslrootcert": os.environ.get("DSQL_SUITE_CA", ""),
    },
}

#: DSQL has one database: the second one Django's tests use is a schema (and
#: its test schema, made by the test runner, ``test_django_other``).
OTHER_SCHEMA = "django_other"

DATABASES = {
    "default": _DATABASE,
    "other": {
        **_DATABASE,
        "OPTIONS": {
            **_DATABASE["OPTIONS"],
            "options": f"-c search_path={OTHER_SCHEMA}",
        },
    },
}

SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
TEST_RUNNER = "tests.django_suite.runner.SuiteRunner"
