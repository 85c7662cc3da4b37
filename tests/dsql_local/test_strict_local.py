"""Strict mode on DSQL Local, through plain psycopg, real TLS and real tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import errors, sql

from dsql_local import DsqlLocal
from dsql_local.strict import StrictPolicy

from .strict_cases import CORPUS, INDEX_ON_ROWS, REFUSED, RefusedCase

MIXED = "ddl and dml are not supported in the same transaction"
TWO_DDL = "multiple ddl statements not supported in a transaction"
ROW_LIMIT = "transaction row limit exceeded"
AGE_LIMIT = 0.5
SIZE_LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def strict_local() -> Iterator[DsqlLocal]:
    with DsqlLocal() as local:  # strict by default
        yield local


@pytest.fixture(scope="module")
def lax_local() -> Iterator[DsqlLocal]:
    with DsqlLocal(strict=False) as local:
        yield local


@pytest.fixture(scope="module")
def short_local() -> Iterator[DsqlLocal]:
    """Strict, with a transaction age limit short enough to wait out."""
    with DsqlLocal(policy=StrictPolicy(transaction_age_limit=AGE_LIMIT)) as local:
        yield local


@pytest.fixture(scope="module")
def sized_local() -> Iterator[DsqlLocal]:
    """Strict, with a 1 MiB transaction size limit."""
    with DsqlLocal(policy=StrictPolicy(transaction_size_limit=SIZE_LIMIT)) as local:
        yield local


@pytest.fixture(scope="module")
def signer() -> Any:
    return boto3.client("dsql", region_name="us-east-1")


def connect(
    local: DsqlLocal, signer: Any, *, autocommit: bool = True
) -> psycopg.Connection[Any]:
    token = signer.generate_db_connect_admin_auth_token(local.host, local.region)
    return psycopg.connect(
        **local.connect_kwargs(),
        password=token,
        sslmode="verify-full",
        autocommit=autocommit,
    )


def fresh_schema(conn: psycopg.Connection[Any], name: str) -> None:
    """Create schema `name` and make it the connection's first choice."""
    ident = sql.Identifier(name)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    conn.execute(sql.SQL("SET search_path = {}, public").format(ident))


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the current schema."""
    tables = conn.execute(
        "SELECT relname FROM pg_class"
        " WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'"
    ).fetchall()
    return {
        t: sorted(conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(t))))
        for (t,) in tables
    }


def schema_name(case: RefusedCase) -> str:
    return "case_" + case.name.replace("-", "_")


ALL_REFUSED = (*REFUSED, INDEX_ON_ROWS)


@pytest.mark.parametrize("case", ALL_REFUSED, ids=[c.name for c in ALL_REFUSED])
def test_refused_in_strict_mode(
    strict_local: DsqlLocal, signer: Any, case: RefusedCase
) -> None:
    with connect(strict_local, signer) as conn:
        fresh_schema(conn, schema_name(case))
        conn.execute("CREATE TABLE sentinel (id int PRIMARY KEY)")
        conn.execute("INSERT INTO sentinel VALUES (1)")
        for statement in case.setup:
            conn.execute(statement)
        before = snapshot(conn)
        with pytest.raises(psycopg.Error) as caught:  # noqa: PT012
            if case.in_transaction:
                with conn.transaction():
                    conn.execute("SELECT 1")
                    conn.execute(case.sql)
            else:
                conn.execute(case.sql)
        assert caught.value.sqlstate == case.sqlstate
        assert caught.value.diag.message_primary == case.message
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert snapshot(conn) == before


@pytest.mark.parametrize("case", ALL_REFUSED, ids=[c.name for c in ALL_REFUSED])
def test_runs_when_not_strict(
    lax_local: DsqlLocal, signer: Any, case: RefusedCase
) -> None:
    with connect(lax_local, signer) as conn:
        fresh_schema(conn, schema_name(case))
        for statement in case.setup:
            conn.execute(statement)
        if case.in_transaction:
            with conn.transaction(force_rollback=True):
                for statement in case.lax_prelude:
                    conn.execute(statement)
                conn.execute(case.sql)
        else:
            conn.execute(case.sql)


def test_psycopg_named_cursor_is_refused(strict_local: DsqlLocal, signer: Any) -> None:
    with connect(strict_local, signer, autocommit=False) as conn:
        with conn.cursor("server_side") as cur:
            with pytest.raises(errors.FeatureNotSupported, match="DECLARE CURSOR"):
                cur.execute("SELECT 1")
            conn.rollback()
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_psycopg_nested_transaction_is_refused(
    strict_local: DsqlLocal, signer: Any
) -> None:
    with connect(strict_local, signer) as conn:
        with pytest.raises(errors.FeatureNotSupported, match="SAVEPOINT"):  # noqa: SIM117
            with conn.transaction(), conn.transaction():
                pass
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_multi_statement_query_checked_statement_by_statement(
    strict_local: DsqlLocal, signer: Any
) -> None:
    with connect(strict_local, signer) as conn:
        fresh_schema(conn, "multi")
        conn.execute("CREATE TABLE m (id int PRIMARY KEY)")
        conn.execute("INSERT INTO m VALUES (1)")
        with pytest.raises(errors.FeatureNotSupported, match=r"^unsupported statement"):
            conn.execute("INSERT INTO m VALUES (2); TRUNCATE m")
        with pytest.raises(errors.FeatureNotSupported) as caught:
            conn.execute("CREATE TABLE n (id int); INSERT INTO m VALUES (3)")
        assert caught.value.diag.message_primary == MIXED
        assert snapshot(conn) == {"m": [(1,)]}
        conn.execute("INSERT INTO m VALUES (2); SELECT 1; UPDATE m SET id = id")
        assert snapshot(conn) == {"m": [(1,), (2,)]}


# -- what DSQL supports runs -----------------------------------------------------


def test_corpus_runs_in_strict_mode(strict_local: DsqlLocal, signer: Any) -> None:
    with connect(strict_local, signer) as conn:
        for statement in CORPUS:
            cur = conn.execute(statement)
            if " ASYNC " in statement:
                row = cur.fetchone()
                assert row is not None
                assert [c.name for c in cur.description or ()] == ["job_id"]
                waited = conn.execute("CALL sys.wait_for_job(%s)", row).fetchone()
                assert waited == (True,), statement
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'strict_corpus'"
            " AND indexname IN ('orders_customer_idx', 'customers_name_idx')"
        ).fetchall()
        assert sorted(indexes) == [("customers_name_idx",), ("orders_customer_idx",)]


def test_parameters_through_the_extended_protocol(
    strict_local: DsqlLocal, signer: Any
) -> None:
    with connect(strict_local, signer) as conn:
        fresh_schema(conn, "params")
        conn.execute("CREATE TABLE p (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO p VALUES (%s, %s), (%s, %s)", (1, "a", 2, "b"))
        cur = conn.execute("SELECT name FROM p WHERE id = %s", (2,), prepare=True)
        assert cur.fetchall() == [("b",)]
        conn.execute("UPDATE p SET name = %s WHERE id = %s", ("c", 1), prepare=True)
        with pytest.raises(errors.FeatureNotSupported, match="pg_advisory_lock"):
            conn.execute("SELECT pg_advisory_lock(%s)", (1,))
        assert conn.execute("SELECT name FROM p ORDER BY id").fetchall() == [
            ("c",),
            ("b",),
        ]


def test_foreign_keys_are_enforced(strict_local: DsqlLocal, signer: Any) -> None:
    with connect(strict_local, signer) as conn:
        fresh_schema(conn, "fks")
        conn.execute("CREATE TABLE parent (id bigint PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE child (id bigint PRIMARY KEY,"
            " parent_id bigint REFERENCES parent (id) ON DELETE CASCADE)"
        )
        conn.execute("INSERT INTO parent VALUES (1), (2)")
        conn.execute("INSERT INTO child VALUES (10, 1), (20, 2)")
        with pytest.raises(errors.ForeignKeyViolation) as caught:
            conn.execute("INSERT INTO child VALUES (30, 3)")
        assert caught.value.sqlstate == "23503"
        conn.execute("DELETE FROM parent WHERE id = 1")
        assert conn.execute("SELECT id FROM child").fetchall() == [(20,)]


@pytest.fixture(params=["strict", "lax"])
def either_local(request: pytest.FixtureRequest) -> DsqlLocal:
    """The strict DSQL Local, then the lax one: DSQL's syntax works in both."""
    local: DsqlLocal = request.getfixturevalue(f"{request.param}_local")
    return local


def test_async_index_jobs(either_local: DsqlLocal, signer: Any) -> None:
    with connect(either_local, signer) as conn:
        fresh_schema(conn, "jobs")
        conn.execute("CREATE TABLE j (id int PRIMARY KEY, x int)")
        conn.execute("INSERT INTO j VALUES (1, 7), (2, 7)")
        cur = conn.execute("CREATE INDEX ASYNC j_x ON j (x)")
        assert cur.statusmessage == "CREATE INDEX"  # as DSQL answers
        (ok,) = cur.fetchone() or ("",)
        (dup,) = conn.execute("CREATE UNIQUE INDEX ASYNC j_ux ON j (x)").fetchone() or (
            "",
        )
        assert conn.execute("CALL sys.wait_for_job(%s)", (ok,)).fetchone() == (True,)
        assert conn.execute("CALL sys.wait_for_job(%s)", (dup,)).fetchone() == (False,)
        jobs = conn.execute(
            "SELECT job_id, status, object_name FROM sys.jobs"
            " WHERE job_id IN (%s, %s) ORDER BY object_name",
            (ok, dup),
        ).fetchall()
        assert jobs == [(dup, "failed", "j_ux"), (ok, "completed", "j_x")]
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'jobs'"
            " AND tablename = 'j' ORDER BY 1"
        ).fetchall()
        assert indexes == [("j_pkey",), ("j_x",)]
        with pytest.raises(errors.UndefinedObject, match="not found"):
            conn.execute("CALL sys.wait_for_job(%s)", ("a" * 26,))
        with pytest.raises(errors.InvalidTextRepresentation) as caught:
            conn.execute("CALL sys.wait_for_job('no-such-job')")
        assert caught.value.diag.message_primary == "Unable to convert text to UUID"


def test_validate_constraint_jobs(either_local: DsqlLocal, signer: Any) -> None:
    with connect(either_local, signer) as conn:
        fresh_schema(conn, "validate")
        conn.execute("CREATE TABLE parent (id bigint PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint, n int)"
        )
        conn.execute("INSERT INTO parent VALUES (1)")
        conn.execute("INSERT INTO child VALUES (1, 1, 5), (2, 2, -1)")
        conn.execute(
            "ALTER TABLE child ADD CONSTRAINT child_parent"
            " FOREIGN KEY (parent_id) REFERENCES parent (id) NOT VALID"
        )
        conn.execute("ALTER TABLE child ADD CONSTRAINT child_n CHECK (n > 0) NOT VALID")
        with pytest.raises(errors.CheckViolation):  # new rows are checked at once
            conn.execute("INSERT INTO child VALUES (3, 1, 0)")

        def validate(name: str) -> tuple[str, bool]:
            cur = conn.execute(f"ALTER TABLE ASYNC child VALIDATE CONSTRAINT {name}")
            assert cur.statusmessage == "ALTER TABLE"
            assert [c.name for c in cur.description or ()] == ["job_id"]
            (job,) = cur.fetchone() or ("",)
            (done,) = conn.execute("CALL sys.wait_for_job(%s)", (job,)).fetchone() or (
                None,
            )
            return job, done

        def validated() -> list[tuple[str, bool]]:
            return conn.execute(
                # Not NULL constraints ('n') exist from PostgreSQL 18 on only.
                "SELECT conname, convalidated FROM pg_constraint"
                " WHERE conrelid = 'child'::regclass AND contype NOT IN ('p', 'n')"
                " ORDER BY 1"
            ).fetchall()

        failed, done = validate("child_n")
        assert done is False
        job = conn.execute(
            "SELECT status, job_type, object_name, details FROM sys.jobs"
            " WHERE job_id = %s",
            (failed,),
        ).fetchone()
        assert job is not None
        assert job[:3] == ("failed", "VALIDATE_CONSTRAINT", "child_n")
        assert "child_n" in job[3]
        assert validated() == [("child_n", False), ("child_parent", False)]

        conn.execute("DELETE FROM child WHERE id = 2")
        for name in ("child_n", "child_parent"):
            job_id, done = validate(name)
            assert done is True
            assert conn.execute(
                "SELECT status, details FROM sys.jobs WHERE job_id = %s", (job_id,)
            ).fetchone() == ("completed", None)
        assert validated() == [("child_n", True), ("child_parent", True)]


def test_foreign_key_forms(strict_local: DsqlLocal, signer: Any) -> None:
    with connect(strict_local, signer) as conn:
        fresh_schema(conn, "fk_forms")
        conn.execute("CREATE TABLE p (a int, b int, PRIMARY KEY (a, b))")
        conn.execute(
            "CREATE TABLE c (id int PRIMARY KEY, a int DEFAULT 0, b int DEFAULT 0,"
            " FOREIGN KEY (a, b) REFERENCES p (a, b) MATCH FULL"
            " ON UPDATE CASCADE ON DELETE SET DEFAULT"
            " DEFERRABLE INITIALLY IMMEDIATE)"
        )
        conn.execute("INSERT INTO p VALUES (1, 1), (0, 0)")
        conn.execute("INSERT INTO c VALUES (1, 1, 1)")
        with pytest.raises(errors.ForeignKeyViolation):  # MATCH FULL
            conn.execute("INSERT INTO c VALUES (2, 1, NULL)")
        conn.execute("UPDATE p SET b = 2 WHERE a = 1")
        assert conn.execute("SELECT a, b FROM c").fetchall() == [(1, 2)]
        conn.execute("DELETE FROM p WHERE a = 1")
        assert conn.execute("SELECT a, b FROM c").fetchall() == [(0, 0)]
        with conn.transaction():  # checked at COMMIT once deferred
            conn.execute("SET CONSTRAINTS ALL DEFERRED")
            conn.execute("INSERT INTO c VALUES (3, 7, 7)")
            conn.execute("INSERT INTO p VALUES (7, 7)")
        conn.autocommit = False
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        conn.execute("INSERT INTO c VALUES (4, 9, 9)")
        with pytest.raises(errors.ForeignKeyViolation):
            conn.commit()
        assert conn.execute("SELECT count(*) FROM c").fetchone() == (2,)
        conn.rollback()


def test_async_index_by_a_plain_role(strict_local: DsqlLocal, signer: Any) -> None:
    strict_local.create_role("indexer")
    with connect(strict_local, signer) as admin:
        admin.execute("CREATE SCHEMA AUTHORIZATION indexer")
    token = signer.generate_db_connect_auth_token(
        strict_local.host, strict_local.region
    )
    with psycopg.connect(
        **strict_local.connect_kwargs(user="indexer"),
        password=token,
        sslmode="verify-full",
        autocommit=True,
    ) as conn:
        conn.execute("SET search_path = indexer")
        conn.execute("CREATE TABLE r (id int PRIMARY KEY, x int)")
        conn.execute("INSERT INTO r VALUES (1, 1)")
        with pytest.raises(errors.FeatureNotSupported, match="CREATE INDEX ASYNC"):
            conn.execute("CREATE INDEX r_x ON r (x)")
        (job,) = conn.execute("CREATE INDEX ASYNC r_x ON r (x)").fetchone() or ("",)
        assert conn.execute("CALL sys.wait_for_job(%s)", (job,)).fetchone() == (True,)
        assert conn.execute(
            "SELECT status FROM sys.jobs WHERE job_id = %s", (job,)
        ).fetchone() == ("completed",)


def test_not_strict_speaks_dsql_and_refuses_nothing(
    lax_local: DsqlLocal, signer: Any
) -> None:
    with connect(lax_local, signer) as conn:
        fresh_schema(conn, "lax_rules")
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, x int)")
        conn.execute("INSERT INTO t SELECT i, i % 7 FROM generate_series(1, 3001) i")
        with conn.transaction():  # DDL and DML, two DDL, 3,001 rows: all fine
            conn.execute("UPDATE t SET x = x + 1")
            conn.execute("CREATE INDEX t_x ON t (x)")  # on rows, not ASYNC
            cur = conn.execute("CREATE UNIQUE INDEX ASYNC t_id ON t (id)")
            (job,) = cur.fetchone() or ("",)
        assert conn.execute("CALL sys.wait_for_job(%s)", (job,)).fetchone() == (True,)
        assert conn.execute(
            "SELECT status, object_name FROM sys.jobs WHERE job_id = %s", (job,)
        ).fetchone() == ("completed", "t_id")
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'lax_rules' ORDER BY 1"
        ).fetchall()
        assert indexes == [("t_id",), ("t_pkey",), ("t_x",)]
        assert conn.execute("SELECT count(*) FROM t WHERE x > 0").fetchone() == (3001,)


# -- transaction rules -----------------------------------------------------------


@pytest.fixture
def rules_conn(
    strict_local: DsqlLocal, signer: Any, request: pytest.FixtureRequest
) -> Iterator[psycopg.Connection[Any]]:
    """A connection in transaction mode, on a schema of its own."""
    with connect(strict_local, signer) as conn:
        fresh_schema(conn, request.node.name.replace("-", "_"))
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY, v int)")
        conn.execute("INSERT INTO kept VALUES (1, 1)")
        conn.autocommit = False
        yield conn


def test_ddl_then_dml_refused(rules_conn: psycopg.Connection[Any]) -> None:
    conn = rules_conn
    before = snapshot(conn)
    conn.execute("CREATE TABLE made (id int PRIMARY KEY)")
    with pytest.raises(errors.FeatureNotSupported) as caught:
        conn.execute("INSERT INTO kept VALUES (2, 2)")
    assert caught.value.diag.message_primary == MIXED
    conn.rollback()
    assert snapshot(conn) == before  # no table made, no row added
    conn.commit()


def test_dml_then_ddl_refused(rules_conn: psycopg.Connection[Any]) -> None:
    conn = rules_conn
    before = snapshot(conn)
    conn.execute("UPDATE kept SET v = 5")
    with pytest.raises(errors.FeatureNotSupported) as caught:
        conn.execute("CREATE INDEX ASYNC kept_v ON kept (v)")
    assert caught.value.diag.message_primary == MIXED
    conn.rollback()
    assert snapshot(conn) == before


def test_two_ddl_refused(rules_conn: psycopg.Connection[Any]) -> None:
    conn = rules_conn
    before = snapshot(conn)
    conn.execute("CREATE TABLE first_t (id int PRIMARY KEY)")
    with pytest.raises(errors.FeatureNotSupported) as caught:
        conn.execute("CREATE TABLE second_t (id int PRIMARY KEY)")
    assert caught.value.diag.message_primary == TWO_DDL
    conn.rollback()
    assert snapshot(conn) == before


def test_one_ddl_per_transaction_commits(rules_conn: psycopg.Connection[Any]) -> None:
    conn = rules_conn
    conn.execute("CREATE TABLE first_t (id int PRIMARY KEY)")
    conn.commit()
    conn.execute("INSERT INTO first_t VALUES (1)")
    conn.execute("UPDATE kept SET v = 2")
    conn.commit()
    assert conn.execute("SELECT count(*) FROM first_t").fetchone() == (1,)


def test_row_limit_fails_the_statement_that_crosses_it(
    rules_conn: psycopg.Connection[Any],
) -> None:
    conn = rules_conn
    conn.execute("CREATE TABLE many (id int PRIMARY KEY, v int NOT NULL)")
    conn.commit()
    for low, high in [(1, 1500), (1501, 3001)]:  # two transactions under the limit
        conn.execute(
            "INSERT INTO many SELECT i, 0 FROM generate_series(%s::int, %s::int) AS i",
            (low, high),
        )
        conn.commit()
    conn.execute("UPDATE many SET v = 1 WHERE id <= 3000")
    conn.commit()  # exactly at the limit
    before = snapshot(conn)

    conn.execute("UPDATE many SET v = 2 WHERE id <= 2000")
    with pytest.raises(errors.ProgramLimitExceeded) as caught:
        conn.execute("UPDATE many SET v = 3 WHERE id > 2000")  # 1,001 more
    assert caught.value.sqlstate == "54000"
    assert caught.value.diag.message_primary == ROW_LIMIT
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    conn.rollback()
    assert snapshot(conn) == before
    conn.commit()


def fill_many(conn: psycopg.Connection[Any], rows: int) -> None:
    """Table ``many`` with `rows` rows, inserted in transactions under the limit."""
    conn.execute("CREATE TABLE many (id int PRIMARY KEY, v int NOT NULL)")
    conn.commit()
    for low in range(1, rows + 1, 1500):
        conn.execute(
            "INSERT INTO many SELECT i, 0 FROM generate_series(%s::int, %s::int) AS i",
            (low, min(low + 1499, rows)),
        )
        conn.commit()


@pytest.mark.parametrize(
    ("query", "autocommit"),
    [
        ("BEGIN; UPDATE many SET v = 2; COMMIT", True),
        ("UPDATE many SET v = 2; COMMIT", False),
        ("BEGIN; UPDATE many SET v = 2; END; UPDATE many SET v = 3", True),
        (
            "BEGIN; UPDATE many SET v = 2 WHERE id <= 1500; COMMIT;"
            " BEGIN; UPDATE many SET v = 2 WHERE id > 1500; COMMIT;"
            " BEGIN; UPDATE many SET v = 4; COMMIT",
            True,
        ),
    ],
    ids=["begin-update-commit", "update-commit", "then-more", "third-commit"],
)
def test_row_limit_applies_to_a_commit_inside_a_query(
    rules_conn: psycopg.Connection[Any], query: str, autocommit: bool
) -> None:
    conn = rules_conn
    fill_many(conn, 3001)
    conn.autocommit = autocommit
    before = snapshot(conn)
    with pytest.raises(errors.ProgramLimitExceeded) as caught:
        conn.execute(query)  # no parameters: one simple Query message
    assert caught.value.sqlstate == "54000"
    assert caught.value.diag.message_primary == ROW_LIMIT
    # The UPDATE failed: the rest of the text is skipped, the transaction
    # is aborted.
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    conn.rollback()
    after = snapshot(conn)
    if query.count("COMMIT") == 3:
        # The first two transactions were under the limit and committed.
        assert after == {**before, "many": [(i, 2) for i in range(1, 3002)]}
    else:
        assert after == before
    conn.execute("SELECT 1")
    conn.rollback()


def test_commits_inside_a_query_under_the_limit(
    rules_conn: psycopg.Connection[Any],
) -> None:
    conn = rules_conn
    fill_many(conn, 3001)
    conn.autocommit = True
    cur = conn.execute(
        "BEGIN; UPDATE many SET v = 5 WHERE id <= 3000; COMMIT;"
        " UPDATE kept SET v = 7; SELECT v FROM kept"
    )
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    tags = []
    while True:
        tags.append(cur.statusmessage)
        if not cur.nextset():
            break
    # Every statement's answer arrives, in order, as from one query.
    assert tags == ["BEGIN", "UPDATE 3000", "COMMIT", "UPDATE 1", "SELECT 1"]
    assert cur.fetchall() == [(7,)]
    counts = conn.execute("SELECT v, count(*) FROM many GROUP BY v ORDER BY v")
    assert counts.fetchall() == [(0, 1), (5, 3000)]


def test_error_before_a_commit_inside_a_query_skips_the_rest(
    rules_conn: psycopg.Connection[Any],
) -> None:
    conn = rules_conn
    conn.autocommit = True
    before = snapshot(conn)
    with pytest.raises(errors.DivisionByZero):
        conn.execute("BEGIN; UPDATE kept SET v = 9; SELECT 1 / 0; COMMIT; SELECT 2")
    # As in PostgreSQL: the transaction is left failed, nothing after ran.
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    conn.execute("ROLLBACK")
    assert snapshot(conn) == before


def run(conn: psycopg.Connection[Any], protocol: str, query: str, *args: Any) -> Any:
    """Run `query` through the given protocol; %s placeholders take `args`."""
    if protocol == "simple":
        return psycopg.ClientCursor(conn).execute(query, args)
    return conn.execute(query, args, prepare=protocol == "prepared")


@pytest.mark.parametrize("protocol", ["simple", "extended", "prepared"])
def test_row_limit_applies_to_an_autocommit_statement(
    strict_local: DsqlLocal, signer: Any, protocol: str
) -> None:
    with connect(strict_local, signer) as conn:  # autocommit
        fresh_schema(conn, f"autocommit_{protocol}")
        conn.execute("CREATE TABLE many (id int PRIMARY KEY, v int NOT NULL)")
        for low, high in [(1, 1500), (1501, 3001)]:
            run(
                conn,
                protocol,
                "INSERT INTO many SELECT i, 0"
                " FROM generate_series(%s::int, %s::int) AS i",
                low,
                high,
            )
        before = snapshot(conn)
        assert len(before["many"]) == 3001
        for _ in range(2):  # a prepared statement: at its Parse, then its Bind
            with pytest.raises(errors.ProgramLimitExceeded) as caught:
                run(conn, protocol, "UPDATE many SET v = %s", 2)
            assert caught.value.diag.message_primary == ROW_LIMIT
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert snapshot(conn) == before
        # Under the limit it commits, and the client sees what it asked for.
        cur = run(conn, protocol, "UPDATE many SET v = %s WHERE id <= 3000", 3)
        assert cur.rowcount == 3000
        assert cur.statusmessage == "UPDATE 3000"
        cur = run(
            conn, protocol, "UPDATE many SET v = %s WHERE id > 2999 RETURNING id", 4
        )
        assert sorted(cur.fetchall()) == [(3000,), (3001,)]
        with pytest.raises(errors.UniqueViolation):
            run(conn, protocol, "INSERT INTO many VALUES (%s, 0)", 1)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        counts = conn.execute("SELECT v, count(*) FROM many GROUP BY v ORDER BY v")
        assert counts.fetchall() == [(3, 2999), (4, 2)]


def copy_ids(conn: psycopg.Connection[Any], ids: range | list[int]) -> None:
    with conn.cursor().copy("COPY many (id, v) FROM STDIN") as copy:
        for i in ids:
            copy.write_row((i, 0))


def test_row_limit_applies_to_an_autocommit_copy(
    strict_local: DsqlLocal, signer: Any
) -> None:
    with connect(strict_local, signer) as conn:  # autocommit
        fresh_schema(conn, "autocommit_copy")
        conn.execute("CREATE TABLE many (id int PRIMARY KEY, v int NOT NULL)")
        with pytest.raises(errors.ProgramLimitExceeded) as caught:
            copy_ids(conn, range(1, 3002))
        assert caught.value.diag.message_primary == ROW_LIMIT
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM many").fetchone() == (0,)
        copy_ids(conn, range(1, 3001))  # at the limit it commits
        assert conn.execute("SELECT count(*) FROM many").fetchone() == (3000,)
        # A COPY that fails on its data commits nothing; the session goes on.
        with pytest.raises(errors.UniqueViolation):
            copy_ids(conn, [5000, 1])
        assert conn.execute("SELECT count(*) FROM many").fetchone() == (3000,)
        with conn.cursor().copy("COPY (SELECT 1) TO STDOUT") as copy:
            assert b"".join(bytes(data) for data in copy) == b"1\n"


def test_row_limit_counts_copy_in_a_transaction(
    rules_conn: psycopg.Connection[Any],
) -> None:
    conn = rules_conn
    conn.execute("CREATE TABLE many (id int PRIMARY KEY, v int NOT NULL)")
    conn.commit()
    with pytest.raises(errors.ProgramLimitExceeded):
        copy_ids(conn, range(1, 3002))
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM many").fetchone() == (0,)


def test_autocommit_copy_is_unchecked_when_not_strict(
    lax_local: DsqlLocal, signer: Any
) -> None:
    with connect(lax_local, signer) as conn:
        fresh_schema(conn, "lax_copy")
        conn.execute("CREATE TABLE many (id int PRIMARY KEY, v int NOT NULL)")
        copy_ids(conn, range(1, 3002))
        assert conn.execute("SELECT count(*) FROM many").fetchone() == (3001,)


def test_age_limit(short_local: DsqlLocal, signer: Any) -> None:
    with connect(short_local, signer) as conn:
        fresh_schema(conn, "aged")
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
        conn.autocommit = False
        conn.execute("INSERT INTO kept VALUES (1)")
        time.sleep(AGE_LIMIT + 0.3)
        with pytest.raises(errors.ProgramLimitExceeded) as caught:
            conn.commit()
        assert caught.value.diag.message_primary == (
            f"transaction age limit of {AGE_LIMIT:g}s exceeded"
        )
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
        time.sleep(AGE_LIMIT + 0.3)
        # Statements still run, as in DSQL; the COMMIT fails.
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.rollback()
        conn.execute("INSERT INTO kept VALUES (2)")
        conn.commit()  # a young transaction commits
        assert conn.execute("SELECT id FROM kept").fetchall() == [(2,)]


@pytest.mark.parametrize("protocol", ["simple", "extended", "prepared"])
def test_size_limit_fails_at_commit(
    sized_local: DsqlLocal, signer: Any, protocol: str
) -> None:
    with connect(sized_local, signer) as conn:
        fresh_schema(conn, f"sized_{protocol}")
        conn.execute("CREATE TABLE blobs (id int PRIMARY KEY, data text NOT NULL)")
        conn.autocommit = False
        # Hex digits of hashes: 32 bytes each, which PostgreSQL stores as is.
        big = (
            "INSERT INTO blobs SELECT %s, string_agg(md5(i::text), '')"
            " FROM generate_series(1, %s) AS i"
        )
        run(conn, protocol, big, 1, 19_000)
        run(conn, protocol, big, 2, 19_000)
        with pytest.raises(errors.ProgramLimitExceeded) as caught:
            conn.commit()
        assert caught.value.sqlstate == "54000"
        assert (
            caught.value.diag.message_primary == "transaction size limit 1mb exceeded"
        )
        assert caught.value.diag.message_detail == "Current transaction size 2mb > 1mb"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM blobs").fetchone() == (0,)
        run(conn, protocol, big, 1, 19_000)
        conn.commit()  # under the limit
        # Rows written, not rows read, count.
        run(conn, protocol, "UPDATE blobs SET id = %s", 3)
        run(conn, protocol, big, 4, 3_000)
        conn.commit()
        conn.autocommit = True
        with pytest.raises(errors.ProgramLimitExceeded, match="size limit"):
            run(conn, protocol, "UPDATE blobs SET data = data || data")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        lengths = conn.execute("SELECT id, length(data) FROM blobs ORDER BY id")
        assert lengths.fetchall() == [(3, 608_000), (4, 96_000)]


# -- DSQL's PostgreSQL 16 syntax, whatever PostgreSQL runs behind ------------------

_STORAGE = (
    "CREATE TABLE st (id int PRIMARY KEY, a text STORAGE PLAIN)",
    "ALTER TABLE st ADD COLUMN b text STORAGE EXTERNAL",
    "ALTER TABLE st ALTER COLUMN a SET STORAGE DEFAULT",
)


def test_storage_clauses_run(strict_local: DsqlLocal, signer: Any) -> None:
    # DSQL runs them (CT, AT); so does a backend of PostgreSQL 16 or later.
    with connect(strict_local, signer) as conn:
        major = int(conn.info.parameter_status("server_version").split(".")[0])
        if major < 16:
            pytest.skip(f"the backend is PostgreSQL {major}")
        fresh_schema(conn, "storage")
        for statement in _STORAGE:
            conn.execute(statement.encode())
        rows = conn.execute(
            "SELECT attname, attstorage FROM pg_attribute"
            " WHERE attrelid = 'st'::regclass AND attnum > 1 ORDER BY attnum"
        ).fetchall()
        assert rows == [("a", "x"), ("b", "e")]


def _older_bindir() -> str | None:
    for major in range(15, 11, -1):
        bindir = Path(f"/usr/lib/postgresql/{major}/bin")
        if (bindir / "postgres").is_file():
            return str(bindir)
    return None


@pytest.mark.skipif(_older_bindir() is None, reason="no PostgreSQL older than 16")
def test_an_older_backend_says_what_it_cannot_run(signer: Any) -> None:
    with DsqlLocal(pg_bindir=_older_bindir()) as local, connect(local, signer) as conn:
        fresh_schema(conn, "storage_old")
        with pytest.raises(errors.FeatureNotSupported) as caught:
            conn.execute(_STORAGE[0])
        message = caught.value.diag.message_primary or ""
        assert "cannot run a column's STORAGE in CREATE TABLE" in message
        assert "PostgreSQL 16 or later" in message
        # What it can run, it runs: ADD COLUMN ... STORAGE is said its way.
        conn.execute("CREATE TABLE st (id int PRIMARY KEY, a text)")
        conn.execute(_STORAGE[1])
        with pytest.raises(errors.FeatureNotSupported, match="STORAGE DEFAULT"):
            conn.execute(_STORAGE[2])
