"""Alembic on DSQL Local, with the env.py recipe from examples/alembic."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("alembic")

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from dsql_local import DsqlLocal
from dsql_psycopg.contrib.sqlalchemy import create_engine

RECIPE = Path(__file__).parents[3] / "examples" / "alembic"

FAILING_MIGRATION = '''
"""Reviews, then a column on a table that does not exist: fails half-way."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("reviews", sa.Column("id", sa.BigInteger, primary_key=True))
    op.add_column("no_such_table", sa.Column("stars", sa.Integer))


def downgrade():
    op.drop_table("reviews")
'''

DATA_THEN_DDL_MIGRATION = '''
"""A row, then DDL in the same migration: DSQL cannot commit both together."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("INSERT INTO authors (name) VALUES ('Ursula')")
    op.create_table("reviews", sa.Column("id", sa.BigInteger, primary_key=True))


def downgrade():
    op.drop_table("reviews")
'''


@pytest.fixture
def project(tmp_path: Path, dsql_local: DsqlLocal) -> Iterator[Config]:
    """Copy the recipe and point it at DSQL Local; drop what it made afterwards."""
    shutil.copytree(RECIPE, tmp_path / "migrations")
    config = Config(str(tmp_path / "migrations" / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", dsql_local.url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    yield config
    engine = create_engine(dsql_local.url)
    with engine.connect() as conn:
        for table in ("reviews", "books", "authors", "alembic_version"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


def _state(url: str) -> dict[str, object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables = set(inspector.get_table_names())
            state: dict[str, object] = {"tables": tables}
            if "alembic_version" in tables:
                state["version"] = conn.scalar(
                    sa.text("SELECT version_num FROM alembic_version")
                )
            if "books" in tables:
                state["columns"] = [c["name"] for c in inspector.get_columns("books")]
                state["foreign_keys"] = [
                    (fk["constrained_columns"], fk["referred_table"])
                    for fk in inspector.get_foreign_keys("books")
                ]
                state["valid_indexes"] = conn.scalars(
                    sa.text(
                        "SELECT c.relname FROM pg_index i"
                        " JOIN pg_class c ON c.oid = i.indexrelid"
                        " WHERE i.indrelid = 'books'::regclass"
                        " AND NOT i.indisprimary AND i.indisvalid"
                    )
                ).all()
            return state
    finally:
        engine.dispose()


def test_upgrade_and_downgrade_with_the_alembic_command(
    project: Config, dsql_local: DsqlLocal
) -> None:
    ini = project.config_file_name
    assert ini is not None
    # The command line in a fresh process: the dialect brings DSQL's
    # Alembic implementation in by itself.
    run = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", ini, "upgrade", "head"],
        capture_output=True,
        text=True,
        env={**os.environ, "DSQL_URL": dsql_local.url},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "Running upgrade 0001 -> 0002" in run.stderr
    state = _state(dsql_local.url)
    assert {"authors", "books", "alembic_version"} <= state["tables"]  # type: ignore[operator]
    assert state["version"] == "0002"
    assert state["columns"] == ["id", "author_id", "title", "isbn"]
    assert state["foreign_keys"] == [(["author_id"], "authors")]
    assert state["valid_indexes"] == ["ix_books_author_id"]

    # The foreign key is enforced.
    engine = create_engine(dsql_local.url)
    insert = sa.text("INSERT INTO books (author_id, title) VALUES (42, 'x')")
    with (
        pytest.raises(sa.exc.IntegrityError, match="foreign key"),
        engine.begin() as conn,
    ):
        conn.execute(insert)
    engine.dispose()

    command.downgrade(project, "0001")
    state = _state(dsql_local.url)
    assert state["version"] == "0001"
    assert state["columns"] == ["id", "author_id", "title", "pages"]

    command.downgrade(project, "base")
    state = _state(dsql_local.url)
    assert state["tables"] == {"alembic_version"}
    assert state["version"] is None


def test_failed_migration_keeps_the_statements_before_the_failure(
    project: Config, dsql_local: DsqlLocal
) -> None:
    command.upgrade(project, "head")
    versions = Path(project.get_main_option("script_location", "")) / "versions"
    (versions / "0003_reviews.py").write_text(FAILING_MIGRATION)
    with pytest.raises(sa.exc.ProgrammingError, match="no_such_table"):
        command.upgrade(project, "head")
    # As the docs say: the table made before the failure stays, the version
    # table stays at the last revision that finished.
    state = _state(dsql_local.url)
    assert "reviews" in state["tables"]  # type: ignore[operator]
    assert state["version"] == "0002"


def test_data_then_ddl_in_one_migration_is_refused_clearly(
    project: Config, dsql_local: DsqlLocal
) -> None:
    command.upgrade(project, "head")
    versions = Path(project.get_main_option("script_location", "")) / "versions"
    (versions / "0003_reviews.py").write_text(DATA_THEN_DDL_MIGRATION)
    with pytest.raises(sa.exc.NotSupportedError, match="separate transactions"):
        command.upgrade(project, "head")
    state = _state(dsql_local.url)
    assert "reviews" not in state["tables"]  # type: ignore[operator]
    assert state["version"] == "0002"
    engine = create_engine(dsql_local.url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM authors")) == 0
    engine.dispose()


def test_offline_sql_builds_indexes_async_without_transactions(
    project: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    command.upgrade(project, "head", sql=True)
    sql = capsys.readouterr().out
    assert "CREATE INDEX ASYNC ix_books_author_id ON books (author_id);" in sql
    assert "GENERATED BY DEFAULT AS IDENTITY (CACHE 1)" in sql
    assert "BEGIN;" not in sql


def test_autogenerate_sees_no_change_in_integer_keys_made_bigint(
    dsql_local: DsqlLocal,
) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "ag_items",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, sa.Identity()),
        sa.Column("qty", sa.Integer),
    )
    engine = create_engine(dsql_local.url)
    with engine.begin() as conn:
        metadata.create_all(conn)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert type(context.impl).__name__ == "DsqlImpl"
            assert compare_metadata(context, metadata) == []
            # A real difference is still seen.
            changed = sa.MetaData()
            sa.Table(
                "ag_items",
                changed,
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("seq", sa.Integer, sa.Identity()),
                sa.Column("qty", sa.String(10)),
            )
            (diff,) = compare_metadata(context, changed)
            assert diff[0][0] == "modify_type"
            assert diff[0][3] == "qty"
    finally:
        with engine.begin() as conn:
            metadata.drop_all(conn)
        engine.dispose()
