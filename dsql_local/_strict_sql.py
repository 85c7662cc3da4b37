"""SQL that DSQL Local installs in the backend, and the ASYNC index rewrite.

The backend gets DSQL's ``sys`` schema (`SYS_SQL`, also when not strict):
``sys.jobs`` and ``CALL sys.wait_for_job(job_id)``. ``CREATE INDEX ASYNC``
becomes a call of ``sys._create_index_async``, which builds the index at once
and records a finished job. In strict mode (`BOOTSTRAP_SQL`), an event trigger
also refuses a plain ``CREATE INDEX`` on a table that has rows, as DSQL does;
it is the only place that can see the rows, and it keeps the statement's own
command tag.
"""

from __future__ import annotations

SYS_SQL: tuple[str, ...] = (
    "CREATE SCHEMA sys",
    "GRANT USAGE ON SCHEMA sys TO PUBLIC",
    """
    CREATE TABLE sys.jobs (
        job_id text PRIMARY KEY,
        status text NOT NULL,
        details text,
        job_type text NOT NULL,
        object_name text,
        start_time timestamptz NOT NULL,
        update_time timestamptz NOT NULL
    )
    """,
    "GRANT SELECT ON sys.jobs TO PUBLIC",
    # Definer's rights: every role may record its jobs, none may edit them.
    """
    CREATE FUNCTION sys._record_job(
        status text, details text, object_name text, started timestamptz
    ) RETURNS text
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
        INSERT INTO sys.jobs VALUES (
            substr(md5(gen_random_uuid()::text), 1, 26), $1, $2, 'INDEX_BUILD',
            $3, $4, clock_timestamp()
        ) RETURNING job_id
    $$
    """,
    # Invoker's rights and search_path: the index is built as the caller.
    # A duplicate key fails the job, as in DSQL; other errors fail the statement.
    # dsql_local.index_async tells the event trigger below to let the build be.
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
        RETURN sys._record_job(outcome, detail, index_name, started);
    END
    $$
    """,
    """
    CREATE PROCEDURE sys.wait_for_job(job_id text, INOUT wait_for_job boolean = NULL)
    LANGUAGE plpgsql AS $$
    DECLARE
        outcome text;
    BEGIN
        SELECT j.status INTO outcome FROM sys.jobs AS j WHERE j.job_id = $1;
        IF outcome IS NULL THEN
            RAISE EXCEPTION 'job % not found', $1 USING ERRCODE = '42704';
        END IF;
        wait_for_job := outcome = 'completed';
    END
    $$
    """,
)

_INDEX_ON_ROWS_SQL: tuple[str, ...] = (
    """
    CREATE FUNCTION sys._refuse_index_on_rows() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
    DECLARE
        tbl regclass;
        has_rows boolean;
    BEGIN
        IF current_setting('dsql_local.index_async', true) = 'on' THEN
            RETURN;
        END IF;
        FOR tbl IN
            SELECT i.indrelid::regclass
            FROM pg_event_trigger_ddl_commands() AS c
            JOIN pg_index AS i ON i.indexrelid = c.objid
            WHERE c.command_tag = 'CREATE INDEX'
        LOOP
            EXECUTE format('SELECT EXISTS (SELECT FROM %s)', tbl) INTO has_rows;
            IF has_rows THEN
                RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE =
                    'CREATE INDEX on a table with rows not supported,'
                    ' use CREATE INDEX ASYNC';
            END IF;
        END LOOP;
    END
    $$
    """,
    """
    CREATE EVENT TRIGGER dsql_local_index_on_rows ON ddl_command_end
    WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION sys._refuse_index_on_rows()
    """,
)

BOOTSTRAP_SQL: tuple[str, ...] = (*SYS_SQL, *_INDEX_ON_ROWS_SQL)


def _literal(text: str | None) -> str:
    """Quote `text` as an escape string literal, valid whatever the settings."""
    if text is None:
        return "NULL"
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def async_index_call(ddl: str, index_name: str | None) -> str:
    """Return the query that runs `ddl` (CREATE INDEX) and answers its job id."""
    return (
        f"SELECT sys._create_index_async({_literal(ddl)}, {_literal(index_name)})"
        " AS job_id"
    )
