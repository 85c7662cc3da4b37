"""Fixtures for DSQL Local's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from dsql_local import DsqlLocal
from tests.dsql_local.helpers import Connect, open_connection


@pytest.fixture
def connect(dsql_local: DsqlLocal, dsql_schema: str) -> Iterator[Connect]:
    """Open connections to the session's DSQL Local; close them after the test.

    Their search_path is the test's own schema; they are closed before the
    schema is dropped.
    """
    opened: list[psycopg.Connection[Any]] = []

    def factory(user: str = "admin", **kwargs: Any) -> psycopg.Connection[Any]:
        options = f"-c search_path={dsql_schema} " + kwargs.pop("options", "")
        conn = open_connection(dsql_local, user, options=options, **kwargs)
        opened.append(conn)
        return conn

    yield factory
    for conn in opened:
        conn.close()
