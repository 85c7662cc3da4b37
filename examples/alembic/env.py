"""Alembic environment for Aurora DSQL (and DSQL Local).

The URL comes from ``sqlalchemy.url`` in alembic.ini, or from the
``DSQL_URL`` environment variable when set. The engine is made by
`dsql_psycopg.contrib.sqlalchemy.create_engine` (IAM tokens, verify-full,
pool_recycle under DSQL's connection cap). Its dialect makes Alembic run each
migration in a transaction of its own and each DDL statement in one too, as
DSQL requires.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool

from dsql_psycopg.contrib.sqlalchemy import create_engine

config = context.config
# A program that runs Alembic in-process (a test) may keep its own logging.
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
# The models' metadata, for autogenerate: `from myapp.models import Base`.
target_metadata = None


def url() -> str:
    return os.environ.get("DSQL_URL") or config.get_main_option("sqlalchemy.url", "")


def run_migrations_offline() -> None:
    """Write the migrations' SQL out (``alembic upgrade --sql``)."""
    context.configure(
        url=url().replace("postgresql://", "postgresql+dsql://", 1),
        target_metadata=target_metadata,
        literal_binds=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the database."""
    engine = create_engine(url(), poolclass=pool.NullPool)
    # connect(), not begin(): each migration needs a transaction of its own.
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
