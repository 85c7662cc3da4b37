"""SQL that DSQL Local installs in the backend, and the calls DSQL's syntax becomes.

The backend gets DSQL's ``sys`` schema (`SYS_SQL`, also when not strict):
``sys.jobs`` and ``CALL sys.wait_for_job(job_id)``, with job ids shaped as
DSQL's (26 characters of base32). ``CREATE INDEX ASYNC`` becomes a call of
``sys._create_index_async`` and ``ALTER TABLE ASYNC ... VALIDATE
CONSTRAINT`` one of ``sys._validate_constraint_async``: both do the work at
once and record a finished (or failed) job. Sessions start in UTC, as on DSQL.

In strict mode (`BOOTSTRAP_SQL`), the rules of `_strict_rules` that need the
data or the catalog are judged here, with the table's SQLSTATEs and messages
(raised through the relay's ``dsql_local.refuse``, so that the client sees
no PL/pgSQL context, as from DSQL):
an event trigger refuses a plain ``CREATE INDEX`` (unless the session set
``disable_sync_create_index = off`` and the table is empty) and a 25th index
on a table; ``sys._alter_table_checked`` refuses to drop a primary key or its
columns before it runs the ALTER TABLE. The functions PostgreSQL 17 and 18
added are moved out of reach (`_strict_rules.NEWER_FUNCTIONS`).
"""

from __future__ import annotations

from ._strict_rules import (
    MAX_INDEXES_PER_TABLE,
    NEWER_AGGREGATES,
    NEWER_FUNCTIONS,
    RULES_BY_NAME,
)

SYNC_INDEX_GUC = "dsql_local.disable_sync_create_index"
NEWER_SCHEMA = "dsql_local_newer"


def literal(text: str | None) -> str:
    """Quote `text` as an escape string literal, valid whatever the settings."""
    if text is None:
        return "NULL"
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _message(rule: str) -> str:
    """A rule's message as a literal for format() (``{}`` becomes ``%s``)."""
    return literal(RULES_BY_NAME[rule].message.replace("{}", "%s"))


def _sqlstate(rule: str) -> str:
    return literal(RULES_BY_NAME[rule].sqlstate)


SYS_SQL: tuple[str, ...] = (
    "CREATE SCHEMA sys",
    "GRANT USAGE ON SCHEMA sys TO PUBLIC",
    """
    DO $$ BEGIN
        EXECUTE format('ALTER DATABASE %I SET timezone TO %L',
                       current_database(), 'UTC');
    END $$
    """,
    """
    CREATE TABLE sys.jobs (
        job_id text PRIMARY KEY,
        status text NOT NULL,
        details text,
        job_type text NOT NULL,
        class_id oid,
        object_id oid,
        object_name text,
        start_time timestamptz NOT NULL,
        update_time timestamptz NOT NULL
    )
    """,
    "GRANT SELECT ON sys.jobs TO PUBLIC",
    # A random UUID in base32, as DSQL's job ids are.
    """
    CREATE FUNCTION sys._new_job_id() RETURNS text
    LANGUAGE sql SET search_path = pg_catalog AS $$
        SELECT string_agg(
            substr('abcdefghijklmnopqrstuvwxyz234567',
                   substring(bits FROM i * 5 + 1 FOR 5)::int + 1, 1),
            '' ORDER BY i)
        FROM (SELECT ('x' || replace(gen_random_uuid()::text, '-', ''))::bit(128)
                     || B'00' AS bits) AS id,
             generate_series(0, 25) AS i
    $$
    """,
    # Definer's rights: every role may record its jobs, none may edit them.
    """
    CREATE FUNCTION sys._record_job(
        job_type text, status text, details text, class_id oid, object_id oid,
        object_name text, started timestamptz
    ) RETURNS text
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
        INSERT INTO sys.jobs VALUES (
            sys._new_job_id(), $2, $3, $1, $4, $5, $6, $7, clock_timestamp()
        ) RETURNING job_id
    $$
    """,
    # Invoker's rights and search_path: the index is built as the caller.
    # A duplicate key fails the job, as in DSQL; other errors fail the statement.
    # dsql_local.index_async tells the event trigger below it is an ASYNC build.
    """
    CREATE FUNCTION sys._create_index_async(ddl text, index_name text)
    RETURNS text LANGUAGE plpgsql AS $$
    DECLARE
        started timestamptz := clock_timestamp();
        outcome text := 'completed';
        detail text;
    BEGIN
        PERFORM set_config('dsql_local.index_async', 'on', true);
        BEGIN
            EXECUTE ddl;
        EXCEPTION WHEN unique_violation THEN
            outcome := 'failed';
            detail := SQLERRM;
        END;
        PERFORM set_config('dsql_local.index_async', '', true);
        RETURN sys._record_job(
            'INDEX_BUILD', outcome, detail, 'pg_class'::regclass,
            to_regclass(quote_ident(index_name)), index_name, started);
    END
    $$
    """,
    # A constraint the rows break stays NOT VALID; the job fails and says why.
    """
    CREATE FUNCTION sys._validate_constraint_async(
        ddl text, table_name text, constraint_name text
    ) RETURNS text LANGUAGE plpgsql AS $$
    DECLARE
        started timestamptz := clock_timestamp();
        outcome text := 'completed';
        detail text;
        constraint_id oid;
    BEGIN
        SELECT c.oid INTO constraint_id FROM pg_catalog.pg_constraint AS c
        WHERE c.conrelid = table_name::regclass AND c.conname = constraint_name;
        BEGIN
            EXECUTE ddl;
        EXCEPTION WHEN check_violation OR foreign_key_violation
                       OR not_null_violation THEN
            outcome := 'failed';
            detail := SQLERRM;
        END;
        RETURN sys._record_job(
            'VALIDATE_CONSTRAINT', outcome, detail, 'pg_constraint'::regclass,
            constraint_id, constraint_name, started);
    END
    $$
    """,
    """
    CREATE PROCEDURE sys.wait_for_job(job_id text, INOUT wait_for_job boolean = NULL)
    LANGUAGE plpgsql AS $$
    DECLARE
        outcome text;
    BEGIN
        IF $1 IS NULL OR $1 !~ '^[a-z2-7]{26}$' THEN
            CALL dsql_local.refuse('22P02', 'Unable to convert text to UUID');
        END IF;
        SELECT j.status INTO outcome FROM sys.jobs AS j WHERE j.job_id = $1;
        IF outcome IS NULL THEN
            CALL dsql_local.refuse('42704', format('job %s not found', $1));
        END IF;
        wait_for_job := outcome = 'completed';
    END
    $$
    """,
)

# The f-strings below only insert this module's constants and the rules'
# texts, each quoted by literal().
_STRICT_SQL: tuple[str, ...] = (
    f"""
    CREATE FUNCTION sys._check_new_index() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
    DECLARE
        tbl regclass;
        has_rows boolean;
        is_async boolean := current_setting('dsql_local.index_async', true) = 'on';
        sync_allowed boolean := lower(coalesce(
            current_setting('{SYNC_INDEX_GUC}', true), ''))
            IN ('off', 'false', '0', 'no');
    BEGIN
        FOR tbl IN
            SELECT i.indrelid::regclass
            FROM pg_event_trigger_ddl_commands() AS c
            JOIN pg_index AS i ON i.indexrelid = c.objid
            WHERE c.command_tag = 'CREATE INDEX'
        LOOP
            IF (SELECT count(*) FROM pg_index WHERE indrelid = tbl)
                    > {MAX_INDEXES_PER_TABLE} THEN
                CALL dsql_local.refuse({_sqlstate("indexes-per-table")},
                    {_message("indexes-per-table")});
            END IF;
            CONTINUE WHEN is_async;
            IF NOT sync_allowed THEN
                CALL dsql_local.refuse({_sqlstate("index-not-async")},
                    {_message("index-not-async")});
            END IF;
            EXECUTE format('SELECT EXISTS (SELECT FROM %s)', tbl) INTO has_rows;
            IF has_rows THEN
                CALL dsql_local.refuse({_sqlstate("index-not-async-on-rows")},
                    {_message("index-not-async-on-rows")});
            END IF;
        END LOOP;
    END
    $$
    """,  # noqa: S608
    """
    CREATE EVENT TRIGGER dsql_local_new_index ON ddl_command_end
    WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION sys._check_new_index()
    """,
    # Invoker's rights: the ALTER TABLE runs as the caller.
    f"""
    CREATE PROCEDURE sys._alter_table_checked(
        ddl text, table_name text, dropped_columns text[], dropped_constraints text[]
    ) LANGUAGE plpgsql AS $$
    DECLARE
        rel regclass := table_name::regclass;
        key_column name;
    BEGIN
        SELECT a.attname INTO key_column
        FROM pg_catalog.pg_index AS i
        JOIN pg_catalog.pg_attribute AS a
            ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = rel AND i.indisprimary
            AND a.attname = ANY (dropped_columns)
        LIMIT 1;
        IF key_column IS NOT NULL THEN
            CALL dsql_local.refuse({_sqlstate("drop-primary-key-column")},
                format({_message("drop-primary-key-column")}, key_column));
        END IF;
        IF EXISTS (
            SELECT FROM pg_catalog.pg_constraint AS c
            WHERE c.conrelid = rel AND c.contype = 'p'
                AND c.conname = ANY (dropped_constraints)
        ) THEN
            CALL dsql_local.refuse({_sqlstate("drop-primary-key")},
                {_message("drop-primary-key")});
        END IF;
        EXECUTE ddl;
    END
    $$
    """,  # noqa: S608
)


def _array(items: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(literal(item) for item in items) + "]::text[]"


# The functions PostgreSQL 17 and 18 added, out of everyone's reach (a schema
# no one may use), so that a call finds what it would on DSQL's PostgreSQL 16:
# no such function (42883), or a user's own of that name.
_HIDE_NEWER_SQL = f"""
    DO $$
    DECLARE
        signature text;
        found regprocedure;
    BEGIN
        CREATE SCHEMA {NEWER_SCHEMA};
        REVOKE ALL ON SCHEMA {NEWER_SCHEMA} FROM PUBLIC;
        FOREACH signature IN ARRAY {_array(NEWER_FUNCTIONS + NEWER_AGGREGATES)}
        LOOP
            found := to_regprocedure('pg_catalog.' || signature);
            CONTINUE WHEN found IS NULL;
            EXECUTE format(
                'ALTER %s %s SET SCHEMA {NEWER_SCHEMA}',
                CASE WHEN signature = ANY ({_array(NEWER_AGGREGATES)})
                     THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                found);
        END LOOP;
    END $$
    """

BOOTSTRAP_SQL: tuple[str, ...] = (*SYS_SQL, *_STRICT_SQL, _HIDE_NEWER_SQL)


def async_index_call(ddl: str, index_name: str | None) -> str:
    """Return the query that runs `ddl` (CREATE INDEX) and answers its job id."""
    return (
        f"SELECT sys._create_index_async({literal(ddl)}, {literal(index_name)})"
        " AS job_id"
    )


def validate_constraint_call(ddl: str, table: str, constraint: str) -> str:
    """Return the query that validates a constraint and answers the job id."""
    return (
        f"SELECT sys._validate_constraint_async({literal(ddl)}, {literal(table)},"
        f" {literal(constraint)}) AS job_id"
    )


def _text_array(items: list[str]) -> str:
    return "ARRAY[" + ", ".join(literal(i) for i in items) + "]::text[]"


def checked_alter_call(
    ddl: str, table: str, columns: list[str], constraints: list[str]
) -> str:
    """Return the statement that runs an ALTER TABLE dropping columns or constraints."""
    return (
        f"CALL sys._alter_table_checked({literal(ddl)}, {literal(table)},"
        f" {_text_array(columns)}, {_text_array(constraints)})"
    )
