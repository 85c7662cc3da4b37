"""The clone tables that answer a refused write, and the replay of their rows.

A write that only running it can answer (see `_conflicts`) runs in a
temporary clone of its table, numbered by the relay, as a transaction may
have several: an ``INSERT ... RETURNING`` in an empty one, an ``UPDATE ...
RETURNING`` in one holding the rows it touches, an ``INSERT ... ON
CONFLICT`` in one holding the table's rows and unique constraints. Here is
the SQL that makes a clone (`clone_sql`), fills it (`fill_sql`), runs the
write there (`answer_sql`), drops it (`drop_clone_sql`) and, right before
the transaction's COMMIT, writes its rows into the table (`insert_rows_sql`,
`upsert_rows_sql`); and the functions these call, which DSQL Local installs
in the backend (see `_bootstrap`).

What the clones do not reproduce:

- An INSERT's clone has no index and no trigger: a duplicate key within the
  refused INSERT, or a value a ``BEFORE`` trigger changes (DSQL has no
  triggers), shows only at the replay, whose error fails the COMMIT as a
  conflict. The refused attempt consumed sequence values that are then
  skipped, as any rolled-back insert's are. In an UPDATE's clone, generated
  columns keep the values they had before it.
- An upsert's clone copies the whole table, and is kept until COMMIT: N
  refused upserts in a transaction make N copies. Its replay cannot pair the rows
  a ``DO UPDATE`` changed without a key (primary, or unique on NOT NULL
  columns), or when it changed the key:
  it fails the COMMIT. A ``DO NOTHING`` that found its row in the snapshot
  writes nothing, and conflicts with nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._conflicts import Guard


# The clone of an INSERT's table that answers it (see `clone_sql`): numbered
# by the relay, as a transaction may have several.
CLONE = "dsql_local_rows"
_CLONE_MARK = f"pg_temp.{CLONE} "

CLONE_SQL = """CREATE FUNCTION dsql_local.clone_for_insert(
        target regclass, number int, for_update boolean DEFAULT false)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
    DECLARE
        clone text := 'dsql_local_rows_' || number;
        identity record;
    BEGIN
        EXECUTE format('DROP TABLE IF EXISTS pg_temp.%I', clone);
        -- An UPDATE's clone takes the rows as they are: generated columns
        -- are plain ones there.
        EXECUTE format('CREATE TEMP TABLE %I (LIKE %s INCLUDING DEFAULTS'
            ' %s INCLUDING CONSTRAINTS) ON COMMIT DROP', clone, target,
            CASE WHEN for_update THEN '' ELSE 'INCLUDING GENERATED' END);
        IF for_update THEN
            RETURN;
        END IF;
        -- An identity column's values come from the table's own sequence.
        FOR identity IN SELECT attname,
                pg_get_serial_sequence(target::text, attname) AS sequence
                FROM pg_attribute WHERE attrelid = target
                AND attidentity <> '' AND NOT attisdropped LOOP
            EXECUTE format('ALTER TABLE pg_temp.%I ALTER COLUMN %I'
                ' SET DEFAULT nextval(%L::regclass)',
                clone, identity.attname, identity.sequence);
        END LOOP;
    END $$"""
INSERT_ROWS_SQL = """CREATE FUNCTION dsql_local.insert_rows(
        target regclass, number int)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
    DECLARE
        clone regclass := to_regclass('pg_temp.dsql_local_rows_' || number);
        columns text;
    BEGIN
        IF clone IS NULL THEN
            RETURN;  -- rolled back to a savepoint of the client's
        END IF;
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
            INTO columns FROM pg_attribute WHERE attrelid = target
            AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
        EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE'
            ' SELECT %s FROM %s', target, columns, columns, clone);
        EXECUTE format('DROP TABLE %s', clone);
    END $$"""

# An upsert's clone: the table's rows in the snapshot and its unique
# constraints and indexes, by their names (``ON CONFLICT ON CONSTRAINT``);
# the unique ones of earlier clones go first (index names are the schema's,
# and an earlier clone has answered already). Which rows the upsert then
# changes is told by their ctids: the copies' are kept, with their key.
CLONE_FOR_UPSERT_SQL = """CREATE FUNCTION dsql_local.clone_for_upsert(
        target regclass, number int)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog
    -- (Strict mode's event trigger lets only CREATE INDEX ASYNC through.)
    SET dsql_local.index_async = 'on' AS $$
    DECLARE
        clone text := 'dsql_local_rows_' || number;
        item record;
        columns text;
        key text;
    BEGIN
        FOR item IN SELECT i.indexrelid::regclass AS name, c.conname,
                i.indrelid::regclass AS owner
                FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
                LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid
                    AND c.conrelid = i.indrelid
                WHERE t.relnamespace = pg_my_temp_schema() AND i.indisunique
                AND t.relname LIKE 'dsql\\_local\\_rows\\_%' LOOP
            IF item.conname IS NULL THEN
                EXECUTE format('DROP INDEX %s', item.name);
            ELSE
                EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I',
                    item.owner, item.conname);
            END IF;
        END LOOP;
        PERFORM dsql_local.clone_for_insert(target, number);
        FOR item IN SELECT conname, pg_get_constraintdef(oid) AS def
                FROM pg_constraint WHERE conrelid = target
                AND contype IN ('p', 'u') LOOP
            EXECUTE format('ALTER TABLE pg_temp.%I ADD CONSTRAINT %I %s',
                clone, item.conname, item.def);
        END LOOP;
        FOR item IN SELECT pg_get_indexdef(i.indexrelid) AS def
                FROM pg_index i WHERE i.indrelid = target AND i.indisunique
                AND NOT EXISTS (SELECT FROM pg_constraint c
                    WHERE c.conindid = i.indexrelid AND c.conrelid = target) LOOP
            EXECUTE replace(item.def, ' ON ' || target::text || ' USING ',
                format(' ON pg_temp.%I USING ', clone));
        END LOOP;
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
            INTO columns FROM pg_attribute WHERE attrelid = target
            AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
        EXECUTE format('INSERT INTO pg_temp.%I (%s) SELECT %s FROM ONLY %s',
            clone, columns, columns, target);
        key := dsql_local.row_key(target, '');
        EXECUTE format('CREATE TEMP TABLE %I ON COMMIT DROP AS'
            ' SELECT ctid AS dsql_local_copy%s FROM pg_temp.%I',
            'dsql_local_copies_' || number, coalesce(', ' || key, ''), clone);
    END $$"""
# The columns that pair a row of an upsert's clone with its row in the
# table: the primary key's, or else those of a unique index without
# predicate or expression whose columns are all NOT NULL.
ROW_KEY_SQL = """CREATE FUNCTION dsql_local.row_key(target regclass, prefix text)
    RETURNS text LANGUAGE sql STABLE
    SET search_path = pg_catalog
    RETURN (SELECT string_agg(prefix || quote_ident(a.attname), ', '
            ORDER BY array_position(k.columns, a.attnum))
        FROM pg_attribute a, (SELECT (i.indkey::int2[])[0:i.indnkeyatts - 1]
                AS columns FROM pg_index i
            WHERE i.indrelid = target AND i.indisunique AND i.indimmediate
            AND i.indpred IS NULL AND i.indexprs IS NULL
            AND NOT EXISTS (SELECT FROM pg_attribute n
                WHERE n.attrelid = target AND n.attnum = ANY (i.indkey)
                AND NOT n.attnotnull)
            ORDER BY i.indisprimary DESC, i.indexrelid LIMIT 1) k
        WHERE a.attrelid = target AND a.attnum = ANY (k.columns))"""
# The replay of an answered upsert: the rows it updated in the clone (the
# copies it replaced, paired by `row_key`) are updated in the table, the
# columns its DO UPDATE SET assigns (`set_columns`) to the values answered
# (the others keep what the transaction wrote since), the rows it inserted
# are inserted. A row updated in the table since the snapshot fails the
# UPDATE (40001), a key taken since fails the INSERT: either fails the COMMIT.
UPSERT_ROWS_SQL = """CREATE FUNCTION dsql_local.upsert_rows(
        target regclass, number int, set_columns text[])
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
    DECLARE
        clone regclass := to_regclass('pg_temp.dsql_local_rows_' || number);
        copies regclass := to_regclass('pg_temp.dsql_local_copies_' || number);
        columns text;
        assigned text;
        written text;
        key text := dsql_local.row_key(target, '');
        updated bigint;
        done bigint;
    BEGIN
        IF clone IS NULL THEN
            RETURN;  -- rolled back to a savepoint of the client's
        END IF;
        -- The copies left as they were go: the clone keeps the rows the
        -- upsert wrote, the copies table the keys of those it updated.
        EXECUTE format('WITH kept AS (DELETE FROM %s WHERE dsql_local_copy'
            ' IN (SELECT ctid FROM %s) RETURNING dsql_local_copy)'
            ' DELETE FROM %s WHERE ctid IN (SELECT dsql_local_copy FROM kept)',
            copies, clone, clone);
        EXECUTE format('SELECT count(*) FROM %s', copies) INTO updated;
        -- (An identity column GENERATED ALWAYS takes no value an UPDATE
        -- gives, and an upsert's DO UPDATE cannot change it.)
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum),
                string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                    FILTER (WHERE attidentity <> 'a'
                        AND attname = ANY (set_columns)),
                string_agg('w.' || quote_ident(attname), ', ' ORDER BY attnum)
                    FILTER (WHERE attidentity <> 'a'
                        AND attname = ANY (set_columns))
            INTO columns, assigned, written FROM pg_attribute
            WHERE attrelid = target AND attnum > 0 AND NOT attisdropped
            AND attgenerated = '';
        IF updated > 0 THEN
            IF key IS NULL OR assigned IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = '40001',
                    MESSAGE = 'an upsert without a key is not replayed';
            END IF;
            EXECUTE format('UPDATE ONLY %s AS t SET (%s) = ROW(%s) FROM %s AS w'
                ' WHERE (%s) = (%s) AND (%s) IN (SELECT %s FROM %s)',
                target, assigned, written, clone,
                dsql_local.row_key(target, 't.'),
                dsql_local.row_key(target, 'w.'),
                dsql_local.row_key(target, 'w.'), key, copies);
            GET DIAGNOSTICS done = ROW_COUNT;
            IF done <> updated THEN
                RAISE EXCEPTION USING ERRCODE = '40001',
                    MESSAGE = 'the rows an upsert updated changed';
            END IF;
            EXECUTE format('DELETE FROM %s WHERE (%s) IN (SELECT %s FROM %s)',
                clone, key, key, copies);
        END IF;
        EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE'
            ' SELECT %s FROM %s', target, columns, columns, clone);
        EXECUTE format('DROP TABLE %s, %s', clone, copies);
    END $$"""


def clone_sql(found: Guard, number: int) -> str:
    """The SQL that makes clone `number` of `found`'s table, empty.

    The clone has the table's columns, defaults (an identity column's taken
    from its sequence), generated columns and CHECK constraints, but no
    index and no trigger; it lives until the transaction ends. An upsert's
    clone has the table's unique constraints and indexes and its rows.
    """
    if found.upsert:
        return (
            f"SELECT dsql_local.clone_for_upsert({_literal(found.target)}::regclass,"
            f" {int(number)})"
        )
    update = ", true" if found.fill else ""
    return (
        f"SELECT dsql_local.clone_for_insert({_literal(found.target)}::regclass,"
        f" {int(number)}{update})"
    )


def fill_sql(found: Guard, number: int) -> str:
    """For an UPDATE answered in a clone: the INSERT of its rows into clone `number`."""
    return f"INSERT INTO pg_temp.{CLONE}_{int(number)} {found.fill}"


def drop_clone_sql(number: int) -> str:
    """Drop clone `number` (an UPDATE's, once replayed: its rows count nowhere)."""
    return f"DROP TABLE IF EXISTS pg_temp.{CLONE}_{int(number)}"


def answer_sql(found: Guard, number: int) -> str:
    """The statement answering `found`'s write: for an INSERT, into clone `number`."""
    if found.parts:
        text = found.stand_in
        for k in range(len(found.parts)):
            clone = f"pg_temp.{CLONE}_{int(number) + k} "
            text = text.replace(f"pg_temp.{CLONE}__{k} ", clone, 1)
        return text
    if not found.target:
        return found.stand_in
    return found.stand_in.replace(_CLONE_MARK, f"pg_temp.{CLONE}_{int(number)} ", 1)


def insert_rows_sql(found: Guard, number: int) -> str:
    """The replay of an answered INSERT: clone `number`'s rows into its table.

    The rows go in as answered, their defaults and identity values included
    (a BEFORE trigger of the table still runs on them).
    """
    return (
        f"SELECT dsql_local.insert_rows({_literal(found.target)}::regclass,"
        f" {int(number)})"
    )


def upsert_rows_sql(found: Guard, number: int) -> str:
    """The replay of an answered upsert: what it wrote in clone `number`,
    written into its table (see ``UPSERT_ROWS_SQL``): of the rows it
    updated, the columns its ``DO UPDATE SET`` assigns."""
    assigned = ", ".join(_literal(name) for name in found.assigned)
    return (
        f"SELECT dsql_local.upsert_rows({_literal(found.target)}::regclass,"
        f" {int(number)}, ARRAY[{assigned}]::text[])"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
