"""Every rule of strict mode's table, refusing its example and letting its
close variant run: on the parse tree alone, then through DSQL Local."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dsql_local import DsqlLocal
from dsql_local._strict_analysis import analyse
from dsql_local._strict_rules import RULES, Rule, Verdict, rules_page
from dsql_local.strict import StrictPolicy, check_startup_settings
from tests.dsql_local.helpers import open_connection

PAGE = Path(__file__).parents[2] / "docs" / "refused.md"
STATEMENT_RULES = [r for r in RULES if r.verdict is Verdict.STATEMENT]
RUN_RULES = [r for r in RULES if r.verdict is not Verdict.STARTUP]
# What a backend rule's message says of the examples.
BACKEND_DETAILS = {"drop-primary-key-column": "id", "newer-function": "uuidv7"}


def problems(text: str) -> list[str]:
    return [s.problem.rule for s in analyse(text).statements if s.problem]


def test_rules_are_well_formed() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    for rule in RULES:
        assert len(rule.sqlstate) == 5, rule.name
        assert rule.source, rule.name
        assert rule.example, rule.name
        assert (rule.match is None) == (rule.verdict is not Verdict.STATEMENT)


@pytest.mark.parametrize("rule", STATEMENT_RULES, ids=lambda r: r.name)
def test_rule_refuses_its_example(rule: Rule) -> None:
    assert problems(rule.example)[:1] == [rule.name]


@pytest.mark.parametrize(
    "rule", [r for r in STATEMENT_RULES if r.allowed], ids=lambda r: r.name
)
def test_rule_lets_its_variant_run(rule: Rule) -> None:
    assert problems(rule.allowed) == []


def test_docs_page_lists_every_rule() -> None:
    fix = (
        'python -c "from dsql_local._strict_rules import rules_page;'
        " print(rules_page(), end='')\" > docs/refused.md"
    )
    assert PAGE.read_text(encoding="utf-8") == rules_page(), f"regenerate: {fix}"


# -- through DSQL Local ---------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> Iterator[DsqlLocal]:
    with DsqlLocal() as strict:
        yield strict


def fresh(local: DsqlLocal, name: str) -> psycopg.Connection[Any]:
    """An autocommit connection working in a new schema of its own."""
    conn = open_connection(local, autocommit=True)
    schema = sql.Identifier("rule_" + name.replace("-", "_"))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    conn.execute(sql.SQL("SET search_path = {}").format(schema))
    return conn


def run(conn: psycopg.Connection[Any], statement: str) -> None:
    if statement.startswith("COPY"):
        with conn.cursor().copy(statement.encode()) as copy:
            for _ in copy:
                pass
    else:
        conn.execute(statement.encode())


@pytest.mark.parametrize("rule", RUN_RULES, ids=lambda r: r.name)
def test_dsql_local_refuses_the_example(local: DsqlLocal, rule: Rule) -> None:
    if rule.verdict is Verdict.BACKEND:
        message = rule.text(BACKEND_DETAILS.get(rule.name, ""))
    else:
        first = next(s.problem for s in analyse(rule.example).statements if s.problem)
        message = first.message
    with fresh(local, rule.name) as conn:
        for statement in rule.setup:
            run(conn, statement)
        with pytest.raises(psycopg.Error) as caught:
            run(conn, rule.example)
        assert caught.value.sqlstate == rule.sqlstate
        assert caught.value.diag.message_primary == message
        assert caught.value.diag.context is None  # as from DSQL


@pytest.mark.parametrize(
    "rule", [r for r in RUN_RULES if r.allowed], ids=lambda r: r.name
)
def test_dsql_local_runs_the_variant(local: DsqlLocal, rule: Rule) -> None:
    with fresh(local, rule.name + "-ok") as conn:
        for statement in (*rule.setup, rule.allowed):
            run(conn, statement)


# -- settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters",
    [
        {"options": "-c statement_timeout=1000"},
        {"options": "-c search_path=app --standard-conforming-strings=off"},
        {"options": "-cdefault_transaction_read_only=on"},
        {"default_transaction_read_only": "on"},
        {"role": "admin"},
    ],
)
def test_startup_settings_outside_the_list_are_refused(
    parameters: dict[str, str],
) -> None:
    refusal = check_startup_settings({"user": "admin", **parameters})
    assert refusal is not None
    assert refusal.sqlstate == "0A000"
    assert refusal.message.startswith("setting configuration parameter")


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {"application_name": "app", "client_encoding": "UTF8", "database": "postgres"},
        {"options": "-c search_path=app\\ two -c TimeZone=UTC --datestyle=ISO"},
        {"options": "-c enable_seqscan=off -c dsql.enable_batched_nestloop=on"},
    ],
)
def test_startup_settings_in_the_list_pass(parameters: dict[str, str]) -> None:
    assert StrictPolicy().check_startup({"user": "admin", **parameters}) is None


def test_a_startup_setting_fails_the_connection(local: DsqlLocal) -> None:
    for options in ("-c statement_timeout=1000", "-c standard_conforming_strings=off"):
        with pytest.raises(psycopg.OperationalError) as caught:
            open_connection(local, options=options)
        name = options.split()[1].split("=")[0]
        assert f'setting configuration parameter "{name}" not supported' in str(
            caught.value
        )
    with open_connection(local, options="-c search_path=public") as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("public",)


@pytest.mark.parametrize(
    "statement",
    [
        "SET standard_conforming_strings = off",
        "SET SESSION lock_timeout = 0",
        "RESET client_min_messages",
        "SET role = admin",
        "SET TRANSACTION READ ONLY",
    ],
)
def test_set_outside_the_list_is_refused(local: DsqlLocal, statement: str) -> None:
    with open_connection(local, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
            conn.execute(statement.encode())
        assert caught.value.diag.message_primary.startswith(
            "setting configuration parameter"
        )
        assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)


def test_set_in_the_list_runs(local: DsqlLocal) -> None:
    with open_connection(local, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'Europe/Paris'")
        conn.execute("SET application_name = 'rules'")
        conn.execute("SET dsql.enable_batched_nestloop = on")
        conn.execute("RESET ALL")
        with conn.transaction():
            conn.execute("SET LOCAL role = admin")
        assert conn.execute("SHOW timezone").fetchone() == ("UTC",)


def test_sync_index_after_the_session_allows_it(local: DsqlLocal) -> None:
    with fresh(local, "sync-index") as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, n int)")
        with pytest.raises(
            psycopg.errors.FeatureNotSupported, match="unsupported mode"
        ):
            conn.execute("CREATE INDEX t_n ON t (n)")  # even on an empty table
        conn.execute("SET disable_sync_create_index = off")
        conn.execute("CREATE INDEX t_n ON t (n)")
        conn.execute("INSERT INTO t VALUES (1, 1)")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="with rows"):
            conn.execute("CREATE INDEX t_n2 ON t (n)")
        conn.execute("RESET disable_sync_create_index")
        with pytest.raises(
            psycopg.errors.FeatureNotSupported, match="unsupported mode"
        ):
            conn.execute("CREATE INDEX t_n2 ON t (n)")


# -- what other clients' tests expect of DSQL -------------------------------------


_SCHEMAS = itertools.count()


@pytest.mark.parametrize(
    ("statement", "pattern"),
    [
        # awslabs/aurora-dsql-orms python/sqlalchemy/test/test_serial_primary_key.py,
        # test_invalid_cache_size
        *(
            (
                f"CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY (CACHE {n})"
                " PRIMARY KEY, name varchar(50))",
                "CACHE.*must be greater than or equal to.*65536.*or equal to 1",
            )
            for n in (2, 1000, 65535)
        ),
        # ... test_sequence.py, test_unsupported_decimal_seq (the dialect adds
        # CACHE 65536)
        (
            "CREATE SEQUENCE decimal_seq AS DECIMAL(10, 0) CACHE 65536",
            "sequence type must be bigint",
        ),
        ("CREATE SEQUENCE s AS integer CACHE 1", "sequence type must be bigint"),
        ("CREATE SEQUENCE s CACHE 100", "CACHE.*65536.*or equal to 1"),
        ("ALTER SEQUENCE s CACHE 2", "CACHE.*65536.*or equal to 1"),
    ],
)
def test_bad_sequence_options_are_data_errors(
    local: DsqlLocal, statement: str, pattern: str
) -> None:
    with fresh(local, f"data-errors-{next(_SCHEMAS)}") as conn:
        if statement.startswith("ALTER"):
            conn.execute("CREATE SEQUENCE s CACHE 1")
        with pytest.raises(psycopg.DataError, match=pattern) as caught:
            conn.execute(statement.encode())
        assert caught.value.sqlstate is not None
        assert caught.value.sqlstate.startswith("22")


# -- PostgreSQL 17 and 18 are not DSQL's 16 ----------------------------------------


def test_newer_functions_are_missing_but_a_users_own_is_called(
    local: DsqlLocal,
) -> None:
    with fresh(local, "newer-functions") as conn:
        for call in ("SELECT pg_catalog.uuidv7()", "SELECT random(1, 10)"):
            with pytest.raises(psycopg.errors.UndefinedFunction):
                conn.execute(call)
        # A polyfill, as users write for PostgreSQL 16: on DSQL it is called.
        conn.execute(
            "CREATE FUNCTION uuidv7() RETURNS uuid LANGUAGE sql"
            " RETURN gen_random_uuid()"
        )
        row = conn.execute("SELECT uuidv7() IS NOT NULL").fetchone()
        assert row == (True,)


@pytest.mark.parametrize(
    ("statement", "sqlstate"),
    [
        (
            "SELECT * FROM JSON_TABLE('[1]', '$[*]' AS p COLUMNS (a int PATH '$'))",
            "42601",
        ),
        ("SELECT JSON_QUERY('{}', '$' WITH WRAPPER)", "42601"),
        ("SELECT JSON_EXISTS('{}', '$.a')", "42883"),
        (
            "CREATE TABLE g (a int PRIMARY KEY, b int GENERATED ALWAYS AS (a + 1))",
            "42601",
        ),
        (
            # The syntax error first, as PostgreSQL parses before it judges.
            "CREATE TABLE o (id int, p tstzrange,"
            " PRIMARY KEY (id, p WITHOUT OVERLAPS))",
            "42601",
        ),
        ("CREATE TABLE e (a int, CHECK (a > 0) NOT ENFORCED)", "42601"),
        ("INSERT INTO x VALUES (1) RETURNING new.id", "42P01"),
        ("COPY x FROM STDIN (FORMAT csv, REJECT_LIMIT 5)", "42601"),
    ],
)
def test_newer_syntax_gets_postgresql_16s_answer(statement: str, sqlstate: str) -> None:
    (found,) = analyse(statement).statements
    assert found.problem is not None
    assert found.problem.sqlstate == sqlstate
