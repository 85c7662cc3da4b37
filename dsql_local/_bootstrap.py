"""The objects DSQL Local installs in the backend for the relay to call.

``dsql_local.refuse`` raises a refusal, so that the backend itself fails the
statement and leaves the transaction as any server-side error would;
``dsql_local.check_commit`` checks DSQL's size limit before a COMMIT (see
`_limits`); ``dsql_local.clone_for_insert`` and ``dsql_local.insert_rows``
answer a refused ``INSERT ... RETURNING`` and replay it, as
``dsql_local.clone_for_upsert`` and ``dsql_local.upsert_rows`` do an
``INSERT ... ON CONFLICT`` (see `_clones`);
the rest serves the first committer's win and the rows that foreign key
actions change (see `_yield`).
"""

from __future__ import annotations

from ._clones import (
    CLONE_FOR_UPSERT_SQL,
    CLONE_SQL,
    INSERT_ROWS_SQL,
    ROW_KEY_SQL,
    UPSERT_ROWS_SQL,
)
from ._yield import (
    BLOCKERS_SQL,
    HOLDER_CHECK_SQL,
    KEPT_CHECK_SQL,
    ROWS_CHANGED_SQL,
    ROWS_CHECK_SQL,
)

BOOTSTRAP_SQL = (
    "CREATE SCHEMA dsql_local",
    "GRANT USAGE ON SCHEMA dsql_local TO PUBLIC",
    """CREATE PROCEDURE dsql_local.refuse(
        sqlstate text, message text, VARIADIC ignored text[] DEFAULT '{}')
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message;
    END $$""",
    # DSQL's size limit, checked right before a COMMIT: the size of the row
    # versions the transaction wrote and can still see, as stored
    # (pg_column_size: compressed where PostgreSQL compresses; deleted rows,
    # index entries and per-row overhead not counted). A row is its own when
    # its xmin is still in progress: other transactions' uncommitted rows are
    # not visible. The tables to look at are those with pending insert or
    # update counts (which may include earlier transactions') that the
    # session may read: it runs with the session's privileges.
    """CREATE FUNCTION dsql_local.check_commit(size_limit bigint)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
    DECLARE
        written regclass;
        part bigint;
        total bigint := 0;
        epoch bigint := (txid_current() >> 32) << 32;
    BEGIN
        FOR written IN SELECT relid FROM pg_stat_xact_user_tables
                WHERE n_tup_ins + n_tup_upd > 0
                AND has_table_privilege(relid, 'SELECT') LOOP
            EXECUTE format('SELECT coalesce(sum(pg_column_size(t.*)), 0)'
                ' FROM ONLY %s AS t WHERE pg_xact_status('
                '(%s + t.xmin::text::bigint)::text::xid8) = ''in progress''',
                written, epoch) INTO part;
            total := total + part;
        END LOOP;
        IF total > size_limit THEN
            RAISE EXCEPTION USING ERRCODE = '54000',
                MESSAGE = format('transaction size limit %smb exceeded',
                    size_limit / 1048576),
                DETAIL = format('Current transaction size %smb > %smb',
                    ceil(total / 1048576.0), size_limit / 1048576);
        END IF;
    END $$""",
    BLOCKERS_SQL,
    HOLDER_CHECK_SQL,
    KEPT_CHECK_SQL,
    ROWS_CHANGED_SQL,
    ROWS_CHECK_SQL,
    CLONE_SQL,
    INSERT_ROWS_SQL,
    ROW_KEY_SQL,
    CLONE_FOR_UPSERT_SQL,
    UPSERT_ROWS_SQL,
)
