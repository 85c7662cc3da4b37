"""StrictPolicy as a plain object: statement checks and transaction rules."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsql_local import DsqlLocalError
from dsql_local._policy import Refusal, Session
from dsql_local._strict_analysis import Kind, analyse
from dsql_local.strict import LaxPolicy, StrictPolicy

from .strict_cases import CORPUS, INDEX_ON_ROWS, REFUSED, RefusedCase

MIXED = Refusal("0A000", "ddl and dml are not supported in the same transaction")
TWO_DDL = Refusal("0A000", "multiple ddl statements not supported in a transaction")
ROW_LIMIT = Refusal("54000", "transaction row limit exceeded")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def policy() -> StrictPolicy:
    return StrictPolicy()


def session(*, in_transaction: bool = False, started: float | None = None) -> Session:
    if in_transaction and started is None:
        started = time.monotonic()
    return Session(
        user="admin", in_transaction=in_transaction, transaction_started_at=started
    )


@pytest.mark.parametrize("case", REFUSED, ids=[c.name for c in REFUSED])
def test_refused_feature(policy: StrictPolicy, case: RefusedCase) -> None:
    verdict = policy.check_statement(
        case.sql, session(in_transaction=case.in_transaction)
    )
    assert verdict == Refusal(case.sqlstate, case.message)


@pytest.mark.parametrize("case", REFUSED, ids=[c.name for c in REFUSED])
def test_refused_feature_setup_passes(policy: StrictPolicy, case: RefusedCase) -> None:
    for sql in case.setup:
        assert policy.check_statement(sql, session()) is None, sql


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 50


@pytest.mark.parametrize("sql", CORPUS)
def test_corpus_passes(policy: StrictPolicy, sql: str) -> None:
    verdict = policy.check_statement(sql, session())
    assert not isinstance(verdict, Refusal)
    if " ASYNC " in sql:
        assert isinstance(verdict, str)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t WHERE id = $1 AND name = $2",
        "INSERT INTO t (a, b) VALUES ($1, $2) RETURNING id",
        "UPDATE t SET a = $1 WHERE id = $2",
        "CALL sys.wait_for_job($1)",
    ],
)
def test_placeholders_parse(policy: StrictPolicy, sql: str) -> None:
    assert analyse(sql).statements  # parsed, not passed through unread
    assert policy.check_statement(sql, session()) is None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'TRUNCATE t; SAVEPOINT x'",
        "SELECT $$DO $x$ BEGIN END $x$$$",
        "-- TRUNCATE t\nSELECT 1",
        'SELECT 1 AS "VACUUM"',
        "SELECT advisory_locks FROM t",
        "SELECT my_schema.pg_advisory_lock(1)",
        "CREATE TABLE t (id bigint PRIMARY KEY, parent bigint)",
        "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY)",
        "CREATE SEQUENCE s CACHE 1",
        "CREATE SEQUENCE s AS bigint CACHE 100000",
        "CREATE FUNCTION f() RETURNS int LANGUAGE SQL RETURN 1",
        "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END",
        "ANALYZE t",
        "ALTER TABLE t ADD COLUMN x int, RENAME TO u",
        "SELECT * FROM t FOR UPDATE",
        "SET search_path = app, public",
        # Close to what DSQL refuses, and run by it.
        "ALTER ROLE app RENAME TO app2",
        "ALTER FUNCTION f() OWNER TO admin",
        "ALTER FUNCTION f() SET SCHEMA s",
        "DEALLOCATE ALL",
        'SELECT name FROM t ORDER BY name COLLATE "C"',
        "CREATE VIEW v WITH (security_barrier) AS SELECT 1",
        "CREATE TABLE t (id int PRIMARY KEY, s text STORAGE PLAIN)",
        "ALTER TABLE t ALTER COLUMN s SET STORAGE EXTERNAL",
    ],
)
def test_lookalikes_pass(policy: StrictPolicy, sql: str) -> None:
    """Text that merely mentions a feature, or a supported variant, passes."""
    assert policy.check_statement(sql, session()) is None


def test_syntax_error_is_left_to_postgresql(policy: StrictPolicy) -> None:
    assert policy.check_statement("SELEC 1", session()) is None
    assert policy.check_statement("SELECT 'unterminated", session()) is None


def test_each_statement_of_a_multi_statement_query_is_checked(
    policy: StrictPolicy,
) -> None:
    verdict = policy.check_statement("SELECT 1; TRUNCATE t; SELECT 2", session())
    assert verdict == Refusal("0A000", "unsupported statement: Truncate")


def test_multi_statement_query_is_one_transaction(policy: StrictPolicy) -> None:
    verdict = policy.check_statement(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)", session()
    )
    assert verdict == MIXED


def test_commit_inside_a_query_ends_the_transaction(policy: StrictPolicy) -> None:
    s = session()
    sql = "BEGIN; CREATE TABLE t (id int); COMMIT; BEGIN; INSERT INTO t VALUES (1)"
    assert policy.check_statement(sql, s) is None


def test_begin_inside_a_query_starts_the_rules(policy: StrictPolicy) -> None:
    s = session()
    assert policy.check_statement("BEGIN; CREATE TABLE t (id int)", s) is None
    s.in_transaction = True  # the relay's view after ReadyForQuery 'T'
    assert policy.check_statement("INSERT INTO t VALUES (1)", s) == MIXED


# -- SKIP LOCKED ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "runs"),
    [
        (
            "SELECT id FROM t ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 2",
            "SELECT id FROM t ORDER BY id FOR UPDATE  LIMIT 2",
        ),
        (
            "select 'é' from t for update of t skip\n locked",
            "select 'é' from t for update of t ",
        ),
        (
            "DELETE FROM t WHERE id IN (SELECT id FROM t FOR UPDATE SKIP LOCKED)",
            "DELETE FROM t WHERE id IN (SELECT id FROM t FOR UPDATE )",
        ),
        (
            "SELECT 1; SELECT id FROM t FOR KEY SHARE SKIP LOCKED",
            "SELECT 1; SELECT id FROM t FOR KEY SHARE ",
        ),
    ],
)
def test_skip_locked_is_left_out(policy: StrictPolicy, sql: str, runs: str) -> None:
    # DSQL locks no row, so it skips none; PostgreSQL would skip held rows.
    assert policy.check_statement(sql, session()) == runs


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM t FOR UPDATE NOWAIT",
        "SELECT 'skip locked' FROM t FOR UPDATE",
        # A column skip named locked: cutting the words would change the query.
        "SELECT skip locked FROM t FOR UPDATE SKIP LOCKED",
    ],
)
def test_skip_locked_lookalikes_run_as_sent(policy: StrictPolicy, sql: str) -> None:
    assert policy.check_statement(sql, session()) is None


# -- CREATE INDEX ASYNC --------------------------------------------------------


def test_async_index_becomes_a_job(policy: StrictPolicy) -> None:
    verdict = policy.check_statement("CREATE INDEX ASYNC i ON t (x)", session())
    assert verdict == (
        "SELECT sys._create_index_async(E'CREATE INDEX i ON t (x)', E'i') AS job_id"
    )


def test_unique_async_index_if_not_exists(policy: StrictPolicy) -> None:
    verdict = policy.check_statement(
        "create unique index async if not exists u_idx on s.t (a, b)", session()
    )
    assert verdict == (
        "SELECT sys._create_index_async("
        "E'create unique index if not exists u_idx on s.t (a, b)', E'u_idx')"
        " AS job_id"
    )


def test_async_index_without_a_name(policy: StrictPolicy) -> None:
    verdict = policy.check_statement("CREATE INDEX\tASYNC\n ON t (x)", session())
    assert verdict == (
        "SELECT sys._create_index_async(E'CREATE INDEX\tON t (x)', NULL) AS job_id"
    )


def test_async_index_quotes_its_text(policy: StrictPolicy) -> None:
    sql = "CREATE INDEX ASYNC \"it's\" ON t (x) WHERE y = 'a\\b'"
    verdict = policy.check_statement(sql, session())
    assert verdict == (
        "SELECT sys._create_index_async("
        "E'CREATE INDEX \"it\\'s\" ON t (x) WHERE y = \\'a\\\\b\\'', E'it\\'s')"
        " AS job_id"
    )


def test_async_index_in_a_multi_statement_query(policy: StrictPolicy) -> None:
    sql = "SELECT 'é'; CREATE INDEX ASYNC i ON t (x); SELECT 'ü'"
    verdict = policy.check_statement(sql, session())
    assert verdict == (
        "SELECT 'é'; SELECT sys._create_index_async(E'CREATE INDEX i ON t (x)',"
        " E'i') AS job_id; SELECT 'ü'"
    )


def test_async_is_a_keyword_only_after_index(policy: StrictPolicy) -> None:
    assert policy.check_statement('CREATE INDEX "async" ON t (x)', session()) is None
    assert policy.check_statement("SELECT async FROM t", session()) is None
    assert policy.check_statement("SELECT 'CREATE INDEX ASYNC i'", session()) is None


def test_async_index_counts_as_ddl(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    assert policy.check_statement("INSERT INTO t VALUES (1)", s) is None
    assert policy.check_statement("CREATE INDEX ASYNC i ON t (x)", s) == MIXED


# -- transaction rules ---------------------------------------------------------


def test_ddl_then_dml_refused(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    assert policy.check_statement("CREATE TABLE t (id int PRIMARY KEY)", s) is None
    assert policy.check_statement("INSERT INTO t VALUES (1)", s) == MIXED


def test_dml_then_ddl_refused(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    assert policy.check_statement("UPDATE t SET x = 1", s) is None
    assert policy.check_statement("SELECT 1", s) is None
    assert policy.check_statement("DROP TABLE u", s) == MIXED


def test_second_ddl_refused(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    assert policy.check_statement("CREATE TABLE t (id int)", s) is None
    assert policy.check_statement("CREATE TABLE u (id int)", s) == TWO_DDL


def test_reads_and_writes_mix_freely(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    for sql in [
        "SELECT * FROM t WHERE id = 1 FOR UPDATE",
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET x = 2",
        "DELETE FROM t WHERE id = 3",
        "SELECT count(*) FROM t",
    ]:
        assert policy.check_statement(sql, s) is None, sql


def test_data_modifying_cte_is_dml(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    assert policy.check_statement("CREATE TABLE t (id int)", s) is None
    cte = "WITH d AS (DELETE FROM u RETURNING *) SELECT count(*) FROM d"
    assert policy.check_statement(cte, s) == MIXED


def test_explain_without_analyze_is_not_dml(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    assert policy.check_statement("CREATE TABLE t (id int)", s) is None
    assert policy.check_statement("EXPLAIN DELETE FROM t", s) is None
    assert policy.check_statement("EXPLAIN (ANALYZE) DELETE FROM t", s) == MIXED


def test_autocommit_statements_are_separate_transactions(
    policy: StrictPolicy,
) -> None:
    s = session()
    assert policy.check_statement("CREATE TABLE t (id int)", s) is None
    assert policy.check_statement("CREATE TABLE u (id int)", s) is None
    assert policy.check_statement("INSERT INTO t VALUES (1)", s) is None


def test_rules_state_is_per_transaction(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    assert policy.check_statement("CREATE TABLE t (id int)", s) is None
    s.scratch.clear()  # what the relay does when the transaction ends
    assert policy.check_statement("INSERT INTO t VALUES (1)", s) is None


def test_row_limit_fails_the_statement_that_crosses_it(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    assert policy.statement_done("UPDATE 2000", s) is None
    assert policy.statement_done("INSERT 0 1000", s) is None
    assert policy.check_commit(s) is None
    assert policy.statement_done("DELETE 1", s) == ROW_LIMIT
    # What the relay could not fail in time fails at COMMIT.
    assert policy.check_commit(s) == ROW_LIMIT


def test_row_limit_counts_merge_and_copy_from(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    assert policy.statement_done("MERGE 2999", s) is None
    assert policy.check_statement("COPY t FROM STDIN", s) is None
    assert policy.statement_done("COPY 2", s) == ROW_LIMIT


def test_reads_do_not_count_as_mutated_rows(policy: StrictPolicy) -> None:
    s = session(in_transaction=True)
    policy.statement_done("SELECT 5000", s)
    assert policy.check_statement("COPY t TO STDOUT", s) is None
    policy.statement_done("COPY 5000", s)
    policy.statement_done("CREATE TABLE", s)
    assert policy.check_commit(s) is None


def test_row_limit_is_a_parameter() -> None:
    policy = StrictPolicy(transaction_row_limit=5)
    s = session(in_transaction=True)
    assert policy.statement_done("INSERT 0 5", s) is None
    assert policy.check_commit(s) is None
    assert policy.statement_done("INSERT 0 1", s) == ROW_LIMIT


def test_commit_outside_a_transaction_passes(policy: StrictPolicy) -> None:
    s = session()
    # The relay fails the statement only if it can still roll it back.
    assert policy.statement_done("UPDATE 5000", s) == ROW_LIMIT
    assert policy.check_commit(s) is None


def test_age_limit() -> None:
    clock = FakeClock()
    policy = StrictPolicy(transaction_age_limit=2.0, clock=clock)
    s = session(in_transaction=True, started=clock.now)
    clock.now += 2.0
    assert policy.check_statement("SELECT 1", s) is None
    assert policy.check_commit(s) is None
    clock.now += 0.5
    too_old = Refusal("54000", "transaction age limit of 2s exceeded")
    # As in DSQL, statements still run; the COMMIT fails.
    assert policy.check_statement("SELECT 1", s) is None
    assert policy.check_commit(s) == too_old
    assert policy.check_statement("ROLLBACK", s) is None


def test_age_limit_default_message() -> None:
    clock = FakeClock()
    policy = StrictPolicy(clock=clock)
    s = session(in_transaction=True, started=clock.now - 301)
    assert policy.check_commit(s) == Refusal(
        "54000", "transaction age limit of 300s exceeded"
    )


def test_age_limit_ignores_autocommit_statements() -> None:
    clock = FakeClock()
    policy = StrictPolicy(transaction_age_limit=1.0, clock=clock)
    assert policy.check_statement("SELECT 1", session(started=clock.now - 5)) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"transaction_age_limit": 0},
        {"transaction_age_limit": -1.0},
        {"transaction_age_limit": float("nan")},
        {"transaction_row_limit": -1},
        {"transaction_size_limit": -1},
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(DsqlLocalError, match="transaction_"):
        StrictPolicy(**kwargs)  # type: ignore[arg-type]


# -- parsing -------------------------------------------------------------------


def test_parse_results_are_cached() -> None:
    sql = "SELECT a FROM cache_probe WHERE id = $1"
    assert analyse(sql) is analyse(sql)


def test_long_texts_are_not_cached() -> None:
    sql = "SELECT 1 " + " " * 20_000
    assert analyse(sql) == analyse(sql)
    assert analyse(sql) is not analyse(sql)


def test_statement_kinds() -> None:
    kinds = [
        s.kind
        for s in analyse(
            "BEGIN; SELECT 1; CREATE TABLE t (a int); INSERT INTO t VALUES (1); COMMIT"
        ).statements
    ]
    assert kinds == [Kind.BEGIN, Kind.OTHER, Kind.DDL, Kind.DML, Kind.END]


def test_bootstrap_sql_defines_the_sys_schema(policy: StrictPolicy) -> None:
    text = "\n".join(policy.bootstrap_sql)
    assert "CREATE SCHEMA sys" in text
    assert "CREATE TABLE sys.jobs" in text
    assert "CREATE PROCEDURE sys.wait_for_job" in text


@pytest.mark.parametrize(
    ("sql", "in_transaction", "wanted"),
    [
        ("UPDATE t SET x = 1", False, True),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d", False, True),
        ("INSERT INTO t VALUES ($1)", False, True),
        ("UPDATE t SET x = 1", True, False),  # the transaction's COMMIT decides
        ("SELECT * FROM t", False, False),
        ("UPDATE t SET x = 1; UPDATE t SET x = 2", False, False),
        ("COPY t FROM STDIN", False, True),
        ("COPY t TO STDOUT", False, False),
        ("CREATE TABLE n (id int PRIMARY KEY)", False, False),
    ],
)
def test_lone_autocommit_dml_asks_for_a_transaction(
    policy: StrictPolicy, sql: str, in_transaction: bool, wanted: bool
) -> None:
    state = session(in_transaction=in_transaction)
    assert policy.check_statement(sql, state) is None
    assert state.run_in_transaction is wanted


# -- the lax policy of strict=False ------------------------------------------------

LAX_CASES = (*REFUSED, INDEX_ON_ROWS)


@pytest.mark.parametrize("case", LAX_CASES, ids=[c.name for c in LAX_CASES])
def test_lax_policy_refuses_nothing(case: RefusedCase) -> None:
    lax = LaxPolicy()
    state = session(in_transaction=case.in_transaction)
    for sql in (*case.setup, *case.lax_prelude, case.sql):
        assert lax.check_statement(sql, state) is None, sql
        lax.statement_done("UPDATE 5000", state)
    assert lax.check_commit(state) is None


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX ASYNC i ON t (x)",
        "create unique index async if not exists u_idx on s.t (a, b)",
        "BEGIN; CREATE INDEX ASYNC i ON t (x); COMMIT",
    ],
)
def test_lax_policy_rewrites_async_indexes_as_strict_does(sql: str) -> None:
    rewritten = LaxPolicy().check_statement(sql, session())
    assert isinstance(rewritten, str)
    assert "sys._create_index_async(" in rewritten
    assert rewritten == StrictPolicy().check_statement(sql, session())


def test_lax_policy_installs_sys_but_not_the_index_rule() -> None:
    text = "\n".join(LaxPolicy().bootstrap_sql)
    assert "CREATE PROCEDURE sys.wait_for_job" in text
    assert "CREATE TABLE sys.jobs" in text
    assert "EVENT TRIGGER" not in text
    assert "EVENT TRIGGER" in "\n".join(StrictPolicy().bootstrap_sql)


# Text arrives as UTF-8 from the wire: no NUL, no lone surrogates.
@given(
    st.text(
        alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
        max_size=200,
    )
)
def test_text_inside_a_literal_never_matters(text: str) -> None:
    literal = "'" + text.replace("'", "''") + "'"
    sql = f"SELECT {literal} AS t"
    assert [s.kind for s in analyse(sql).statements] == [Kind.OTHER]
    assert StrictPolicy().check_statement(sql, session(in_transaction=True)) is None


@given(
    st.sampled_from([c for c in REFUSED if not c.in_transaction]),
    st.sampled_from(["", " ", "\n\t", "/* note */ ", "-- note\n"]),
)
def test_refusal_survives_comments_and_spacing(case: RefusedCase, prefix: str) -> None:
    verdict = StrictPolicy().check_statement(prefix + case.sql + " ;", session())
    assert verdict == Refusal(case.sqlstate, case.message)


# -- the backend's PostgreSQL against DSQL's 16 -------------------------------------


def on(major: int) -> Session:
    return Session(user="admin", backend_major=major)


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        (
            "CREATE TABLE st (a text STORAGE PLAIN)",
            "a column's STORAGE in CREATE TABLE",
        ),
        ("ALTER TABLE st ALTER COLUMN a SET STORAGE DEFAULT", "STORAGE DEFAULT"),
        ("ALTER TABLE st ADD COLUMN b text STORAGE DEFAULT", "STORAGE DEFAULT"),
        ("SELECT '{}' IS JSON", "SQL/JSON"),
        ("SELECT JSON_OBJECT('a': 1)", "SQL/JSON"),
        ("SELECT any_value(x) FROM (VALUES (1)) AS v (x)", "any_value()"),
        ("EXPLAIN (GENERIC_PLAN) SELECT $1", "GENERIC_PLAN"),
    ],
)
@pytest.mark.parametrize("policy", [StrictPolicy(), LaxPolicy()], ids=repr)
def test_an_older_backend_says_it_cannot_run_postgresql_16(
    policy: StrictPolicy | LaxPolicy, sql: str, what: str
) -> None:
    refusal = policy.check_statement(sql, on(15))
    assert isinstance(refusal, Refusal)
    assert refusal.sqlstate == "0A000"
    assert refusal.message.startswith("DSQL Local's PostgreSQL 15 cannot run")
    assert what in refusal.message
    assert "PostgreSQL 16 or later" in refusal.message
    assert "DSQL_LOCAL_PG_BINDIR" in refusal.message
    for major in (16, 18):
        assert not isinstance(policy.check_statement(sql, on(major)), Refusal)


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE st ADD COLUMN b text STORAGE PLAIN",  # said otherwise for 15
        "ALTER TABLE st ALTER COLUMN a SET STORAGE PLAIN",
        "SELECT '{}'::jsonb ? 'a'",
        "SELECT myschema.any_value(1)",
    ],
)
def test_an_older_backend_runs_what_it_can(sql: str) -> None:
    assert not isinstance(StrictPolicy().check_statement(sql, on(15)), Refusal)


def test_a_newer_backend_than_the_parser_gets_no_unread_statement() -> None:
    policy = StrictPolicy()
    text = "SELECT FROM WHERE"  # no grammar reads it
    assert policy.check_statement(text, on(16)) is None  # PostgreSQL says why
    refusal = policy.check_statement(text, on(99))
    assert isinstance(refusal, Refusal)
    assert refusal.sqlstate == "42601"
    assert "syntax error" in refusal.message


_SHORT_PATH_TEXTS = (
    *CORPUS,
    *(case.sql for case in REFUSED),
    *(sql for case in REFUSED for sql in case.setup),
    "CREATE TABLE sp (id int PRIMARY KEY)",
    "SELECT 1; SELECT 2",
    "BEGIN",
    "COMMIT",
    "SELECT any_value(x) FROM (VALUES (1)) AS v (x)",
    "COPY sp FROM STDIN",
)


@pytest.mark.parametrize("prior", [(), ("SELECT 1",), ("CREATE TABLE sp2 (a int)",)])
@pytest.mark.parametrize("in_transaction", [False, True])
def test_the_short_path_judges_as_the_full_one(
    prior: tuple[str, ...], in_transaction: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text of one plain statement is judged in a few steps (`Analysis.plain`):
    the verdict and the session's state are the same as the full judgement's."""
    plain = 0
    for sql in _SHORT_PATH_TEXTS:
        plain += analyse(sql).plain is not None
        outcomes = []
        for short in (True, False):
            policy = StrictPolicy()
            with monkeypatch.context() as patch:
                if not short:
                    patch.setattr(
                        "dsql_local.strict.analyse",
                        lambda text: analyse(text)._replace(plain=None),
                    )
                state = session(in_transaction=in_transaction)
                for earlier in prior:
                    policy.check_statement(earlier, state)
                verdict = policy.check_statement(sql, state)
            outcomes.append(
                (
                    verdict,
                    state.scratch,
                    state.run_in_transaction,
                    state.command_tags,
                    state.in_transaction,
                )
            )
        assert outcomes[0] == outcomes[1], sql
    assert plain > len(CORPUS) // 2  # the short path was taken, mostly
