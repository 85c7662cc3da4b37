"""The Django backend on strict DSQL Local: migrate, ORM CRUD, OCC retries."""

from __future__ import annotations

import pytest

pytest.importorskip("django")

pytestmark = pytest.mark.usefixtures("django_db")


def test_migrate_applies_every_app() -> None:
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    applied = MigrationRecorder(connection).applied_migrations()
    apps = {app for app, _ in applied}
    assert {"contenttypes", "auth", "sessions", "djangoapp"} <= apps
