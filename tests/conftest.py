"""Test-suite wide setup: an AWS environment that never reaches the real one.

Every test signs tokens with a fake key pair, and nothing may read the
machine's AWS configuration, profiles or instance metadata.
"""

from __future__ import annotations

import pytest

FAKE_ACCESS_KEY_ID = "AKIATESTDSQLPSYCOPG0"
FAKE_SECRET_ACCESS_KEY = "test-secret-access-key-for-dsql-psycopg"

pytest_plugins = ["pytester"]

_environment = pytest.MonkeyPatch()


def pytest_configure(config: pytest.Config) -> None:
    env = _environment
    env.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY_ID)
    env.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_ACCESS_KEY)
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    env.setenv("AWS_CONFIG_FILE", "/nonexistent/dsql-psycopg-tests/config")
    env.setenv(
        "AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/dsql-psycopg-tests/credentials"
    )
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        # libpq's defaults would change what the tests connect to.
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGSSLROOTCERT",
        "PGSSLMODE",
        "PGOPTIONS",
        "PGSERVICE",
    ):
        env.delenv(name, raising=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    _environment.undo()
