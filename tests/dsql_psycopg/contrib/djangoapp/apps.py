from __future__ import annotations

from django.apps import AppConfig


class DjangoAppConfig(AppConfig):
    name = "tests.dsql_psycopg.contrib.djangoapp"
    label = "djangoapp"
    # AutoField on purpose: the backend must make it a BIGINT identity.
    default_auto_field = "django.db.models.AutoField"
