"""Run SQLAlchemy's dialect compliance suite against DSQL Local.

DSQL Local starts when pytest configures itself (before SQLAlchemy's plugin
reads ``--dburi``) and stops when pytest ends. Tests listed in
``known_failures.txt`` are expected to fail, each for the DSQL limit named
there; one that passes fails the run, so the list stays true.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects import registry

registry.register("postgresql.dsql", "dsql_psycopg.contrib.sqlalchemy", "DsqlDialect")
pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.dialects.postgresql import provision as pg_provision  # noqa: E402
from sqlalchemy.testing import provision  # noqa: E402
from sqlalchemy.testing.plugin import pytestplugin  # noqa: E402
from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402

import dsql_psycopg  # noqa: E402
from dsql_local import DsqlLocal  # noqa: E402

KNOWN_FAILURES = Path(__file__).with_name("known_failures.txt")
_FAKE_KEYS = {
    "AWS_ACCESS_KEY_ID": "AKIADSQLLOCALFAKEKEY",
    "AWS_SECRET_ACCESS_KEY": "dsql-local-fake-secret-access-key",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_SCHEMAS = ("test_schema", "test_schema_2")
# SQLAlchemy names each class after the backend and its version.
_BACKEND_SUFFIX = re.compile(r"_postgresql\+dsql_[0-9_]+::")
_local: DsqlLocal | None = None


def _skip(*args: object, **kwargs: object) -> None:
    """Do nothing: the PostgreSQL step has no DSQL counterpart."""


# PostgreSQL's provisioning, less what DSQL has not: extensions (citext,
# hstore), prepared transactions, enums, pg_stat_activity.
assert pg_provision  # imported for its registrations, then amended
provision.post_configure_engine.for_db("postgresql")(_skip)
provision.drop_all_schema_objects_pre_tables.for_db("postgresql")(_skip)
provision.drop_all_schema_objects_post_tables.for_db("postgresql")(_skip)
provision.prepare_for_drop_tables.for_db("postgresql")(_skip)


def read_known_failures(path: Path = KNOWN_FAILURES) -> dict[str, str]:
    """Map each listed test id to the DSQL limit it meets."""
    failures: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        test_id, _, reason = line.partition("  # ")
        if not reason:
            raise ValueError(f"{path.name}: no DSQL limit given for {line!r}")
        failures[test_id.strip()] = reason.strip()
    return failures


def _test_id(item: pytest.Item) -> str:
    """Name a test as known_failures.txt does: no directory, no backend suffix."""
    path, _, rest = item.nodeid.partition("::")
    return _BACKEND_SUFFIX.sub("::", f"{Path(path).name}::{rest}")


class KnownFailures:
    """Mark the listed tests as expected failures, strictly."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures

    # After SQLAlchemy's plugin, which makes a class per backend there.
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            reason = self.failures.get(_test_id(item))
            if reason is not None:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


class Cleanup:
    """Drop what a class whose setup failed half-way left behind.

    DSQL commits each DDL statement on its own, so a ``create_all`` that
    fails at its third table keeps the first two, and SQLAlchemy's class
    teardown does not run after a failed setup: without this, one class's
    failure would fail the next class that uses the same table names.
    """

    def __init__(self) -> None:
        self.dirty = False

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Expected failures leave things behind too.
        if report.failed or hasattr(report, "wasxfail"):
            self.dirty = True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Iterator[None]:
        yield
        if self.dirty and (nextitem is None or nextitem.cls is not item.cls):
            self.dirty = False
            from sqlalchemy.testing import config  # noqa: PLC0415

            provision.drop_all_schema_objects(config._current, config.db)


class ModuleTable:
    """Count outcomes per suite module and print them as a table at the end."""

    COLUMNS = ("passed", "failed", "error", "xfailed", "xpassed", "skipped")

    def __init__(self) -> None:
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        module = Path(report.nodeid.partition("::")[0]).stem
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.when == "call" or not report.passed:
            outcome = (
                "error" if report.failed and report.when != "call" else report.outcome
            )
        else:
            return
        self.counts[module][outcome] += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.counts:
            return
        write = terminalreporter.write_line
        write("")
        write("| module | " + " | ".join(self.COLUMNS) + " |")
        write("|---" * (len(self.COLUMNS) + 1) + "|")
        total: collections.Counter[str] = collections.Counter()
        for module in sorted(self.counts):
            total.update(self.counts[module])
            cells = (str(self.counts[module][c]) for c in self.COLUMNS)
            write(f"| {module} | " + " | ".join(cells) + " |")
        write("| **total** | " + " | ".join(str(total[c]) for c in self.COLUMNS) + " |")


def pytest_configure(config: pytest.Config) -> None:
    global _local  # noqa: PLW0603
    for name, value in _FAKE_KEYS.items():
        os.environ.setdefault(name, value)
    if not config.option.dburi:
        _local = DsqlLocal(strict=not config.getoption("--dsql-local-no-strict"))
        _local.start()
        url = _local.url.replace("postgresql://", "postgresql+dsql://", 1)
        config.option.dburi = [url]
        with dsql_psycopg.connect(_local.url, autocommit=True) as conn:
            for schema in _SCHEMAS:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    config.pluginmanager.register(KnownFailures(read_known_failures()))
    config.pluginmanager.register(Cleanup())
    config.pluginmanager.register(ModuleTable())
    pytestplugin.pytest_configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    pytestplugin.pytest_unconfigure(config)
    if _local is not None:
        _local.stop()
