"""How to answer a write that lost a row to another transaction, as DSQL would.

In Aurora DSQL nothing waits: two transactions may write the same row, both
statements succeed, and the later COMMIT fails with 40001 ``(OC000)``.
PostgreSQL instead makes the second writer wait for the first one's row lock
until that transaction ends, and fails it at once with 40001 when the row
changed after its snapshot. The relay runs each such statement after a hidden
savepoint with a lock timeout of a few milliseconds; when PostgreSQL refuses
it, the relay rolls back to the savepoint, answers the statement with what
DSQL would have answered, and runs the write again right before its
transaction's COMMIT (see `_relay` and `_yield`).

`guard` finds that answer for one statement: mostly a plain read (no row
locks) of the rows the statement would have touched, in the transaction's
snapshot. It gives the command tag's row count and, where DSQL returns rows
(``RETURNING``, ``SELECT ... FOR UPDATE``), the rows themselves:

- ``SELECT ... FOR UPDATE / FOR KEY SHARE``: the same query without its
  locking clauses (in a subquery or CTE too: so are the reads of the
  writes below, as a job queue's ``DELETE ... WHERE id = (SELECT ... FOR
  UPDATE SKIP LOCKED)``; the replay, the statement itself, locks);
- ``UPDATE``/``DELETE ... WHERE``: ``SELECT FROM`` the target (and ``FROM``/
  ``USING`` list) with the same condition; ``RETURNING`` expressions are read
  with each assigned column replaced by the expression assigned to it;
- ``INSERT`` without ``RETURNING``: one row per row of its source;
- ``INSERT ... RETURNING``: only running it gives its rows (defaults,
  identity values, generated columns), so it runs, unchanged but for its
  table, into an empty clone of the table (`clone_sql`, `answer_sql`) that
  keeps the rows until the replay inserts exactly them (`insert_rows_sql`):
  the values the client was answered are the ones committed;
- ``UPDATE ... RETURNING`` whose values substitution cannot give (``*``, a
  multi-column or ``DEFAULT`` assignment): the rows it touches go into an
  empty clone of the table (`fill_sql`), where the same UPDATE runs; the
  replay is the UPDATE itself;
- ``INSERT ... ON CONFLICT``: DSQL's statement sees its snapshot, where a
  key only another transaction's uncommitted write holds is free. It runs
  in a clone holding the table's rows and unique constraints (``ON
  CONFLICT`` meets exactly the snapshot's rows there), and the replay
  writes what it wrote there (`upsert_rows_sql`): in the rows it updated,
  paired by key, the columns its ``DO UPDATE SET`` assigns, and the rows it
  inserted;
- a statement with a data-modifying ``WITH``: each write runs in a clone
  of its own as it would alone (`Guard.parts`), the statement reading what
  they return; an UPDATE or DELETE (one at most) is replayed alone, before
  the other writes' rows are written, so that it sees none of them.

Statements it cannot answer get no guard, and their conflict is reported at
the statement: ``MERGE``, a data-modifying ``WITH`` whose writes change one
table twice, hold two UPDATEs or DELETEs or two upserts, or whose UPDATE
or DELETE reads another write's rows (through a plain CTE too), a locking
clause in a data-modifying ``WITH`` or in an INSERT's source; so are
statements the relay does not guard (see `_relay`).

What this does not reproduce:

- A refused write happens only at COMMIT: later statements of the (doomed)
  transaction do not see it, and the ``RETURNING`` values of an UPDATE or a
  DELETE are computed from the snapshot (an ``UPDATE ... FROM`` or ``DELETE
  ... USING`` counts a target row once per joined row, and assigned
  parameters are read as text).
- An INSERT's clone has no index and no trigger: a duplicate key within the
  refused INSERT, or a value a ``BEFORE`` trigger changes (DSQL has no
  triggers), shows only at the replay, whose error fails the COMMIT as a
  conflict. The refused attempt consumed sequence values that are then
  skipped, as any rolled-back insert's are. In an UPDATE's clone, generated
  columns keep the values they had before it.
- An upsert's clone copies the whole table. Its replay cannot pair the rows
  a ``DO UPDATE`` changed without a key (primary, or unique on NOT NULL
  columns), or when it changed the key:
  it fails the COMMIT. A ``DO NOTHING`` that found its row in the snapshot
  writes nothing, and conflicts with nothing.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, NamedTuple

_CACHE_TEXT_LIMIT = 16_384
# Cheap test before parsing: the words every guarded statement holds.
_WORDS = re.compile(r"\b(?:update|delete|insert|share)\b", re.IGNORECASE)
_PARAM = re.compile(r"\$(\d+)")


class Guard(NamedTuple):
    """How to answer a statement from a plain read when its write is refused."""

    read: str
    """A SELECT of the rows the statement touches, with the same parameters;
    for an INSERT into `target`, the same INSERT into its clone."""
    verb: str
    """The command tag before the row count: ``UPDATE``, ``INSERT 0``..."""
    rows: bool
    """The statement returns rows (the read's columns are its columns)."""
    target: str = ""
    """An ``INSERT ... RETURNING``, or an ``UPDATE ... RETURNING`` that only
    running can answer: its table, as written (see `clone_sql`)."""
    fill: str = ""
    """For such an UPDATE: a SELECT of the rows it touches, with the same
    parameters, that go into the clone before the UPDATE runs there."""
    upsert: bool = False
    """An ``INSERT ... ON CONFLICT``: it runs in a clone holding the table's
    rows and unique constraints (see `clone_sql`, `upsert_rows_sql`)."""
    assigned: tuple[str, ...] = ()
    """An upsert's ``DO UPDATE SET`` columns: the only ones its replay
    writes in the rows it updated."""
    parts: tuple[Guard, ...] = ()
    """A statement of several writes (data-modifying ``WITH``): each write's
    own clone, in order; an UPDATE's or DELETE's `read` is the write alone,
    its replay, which runs before the other parts' rows are written (there
    is one at most)."""


# The clone of an INSERT's table that answers it (see `clone_sql`): numbered
# by the relay, as a transaction may have several.
_CLONE = "dsql_local_rows"
_CLONE_MARK = f"pg_temp.{_CLONE} "

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
    return f"INSERT INTO pg_temp.{_CLONE}_{int(number)} {found.fill}"


def drop_clone_sql(number: int) -> str:
    """Drop clone `number` (an UPDATE's, once replayed: its rows count nowhere)."""
    return f"DROP TABLE IF EXISTS pg_temp.{_CLONE}_{int(number)}"


def answer_sql(found: Guard, number: int) -> str:
    """The statement answering `found`'s write: for an INSERT, into clone `number`."""
    if found.parts:
        text = found.read
        for k in range(len(found.parts)):
            clone = f"pg_temp.{_CLONE}_{int(number) + k} "
            text = text.replace(f"pg_temp.{_CLONE}__{k} ", clone, 1)
        return text
    if not found.target:
        return found.read
    return found.read.replace(_CLONE_MARK, f"pg_temp.{_CLONE}_{int(number)} ", 1)


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


def guard(sql: str) -> Guard | None:
    """The guard of `sql`, a single statement; None if it needs none or has none."""
    if _WORDS.search(sql) is None:
        return None
    if len(sql) > _CACHE_TEXT_LIMIT:
        return _guard(sql)
    return _guard_cached(sql)


def _guard(sql: str) -> Guard | None:
    try:
        from pglast import ast, enums, parse_sql  # noqa: PLC0415  # optional: local extra
    except ModuleNotFoundError:
        return None
    try:
        statements = parse_sql(sql)
    except Exception:  # the backend will say what is wrong
        return None
    if len(statements) != 1:
        return None
    return _guard_of(statements[0].stmt, sql, ast, enums, parse_sql)


def _guard_of(
    stmt: Any, sql: str, ast: Any, enums: Any, parse_sql: Any
) -> Guard | None:
    """The guard of `stmt`, parsed from `sql`."""
    if getattr(stmt, "withClause", None) is not None and _modifies(stmt.withClause):
        return _with_into_clone(stmt, sql, ast, parse_sql)
    if isinstance(stmt, ast.InsertStmt) and stmt.onConflictClause is not None:
        return _upsert_into_clone(stmt, ast)
    found = _read_of(stmt, ast, enums)
    if found is not None:
        read, verb, rows, target = found
        if not target:
            _unlock(read, ast)
        return Guard(_taking_every_parameter(read, sql, ast), verb, rows, target)
    if isinstance(stmt, ast.UpdateStmt) and stmt.returningClause is not None:
        # Its RETURNING needs the row as updated: the UPDATE runs in a
        # clone (parsed afresh: the substitution tried changed the tree).
        return _update_into_clone(parse_sql(sql)[0].stmt, sql, ast)
    return None


def _taking_every_parameter(read: Any, sql: str, ast: Any) -> str:
    """The text of `read`, made to take every parameter `sql` takes."""
    from pglast.stream import RawStream  # noqa: PLC0415

    text = RawStream()(read)
    used = {int(n) for n in _PARAM.findall(text)}
    unused = [n for n in range(1, max(used, default=0) + 1) if n not in used]
    unused += [int(n) for n in _PARAM.findall(sql) if int(n) not in used]
    if unused:
        # The client binds every parameter of its statement: the read must
        # take them all, and an unused one would have no type.
        refs = tuple(
            ast.ResTarget(
                val=ast.TypeCast(
                    arg=ast.ParamRef(number=n),
                    typeName=ast.TypeName(names=(ast.String(sval="text"),)),
                )
            )
            for n in sorted(set(unused))
        )
        cte = ast.CommonTableExpr(
            ctename="dsql_local_params", ctequery=ast.SelectStmt(targetList=refs)
        )
        ctes = read.withClause.ctes if read.withClause else ()
        recursive = read.withClause.recursive if read.withClause else False
        read.withClause = ast.WithClause(ctes=(cte, *ctes), recursive=recursive)
        text = RawStream()(read)
    return text


_guard_cached = functools.lru_cache(maxsize=1_024)(_guard)


def _read_of(stmt: Any, ast: Any, enums: Any) -> tuple[Any, str, bool, str] | None:
    """The read answering `stmt`, its tag's verb, whether it returns rows and
    the table of an INSERT answered by its clone."""
    name = type(stmt).__name__
    found: tuple[Any, str, bool] | None = None
    if name == "SelectStmt":
        found = _read_of_select(stmt, ast)
    elif getattr(stmt, "withClause", None) is not None and _modifies(stmt.withClause):
        return None
    elif name in ("UpdateStmt", "DeleteStmt"):
        found = _read_of_change(name, stmt, ast, enums)
    elif name == "InsertStmt" and stmt.returningClause is None:
        found = _read_of_insert(stmt, ast)
    elif name == "InsertStmt":
        return _insert_into_clone(stmt, ast)
    return None if found is None else (*found, "")


def _read_of_select(stmt: Any, ast: Any) -> tuple[Any, str, bool] | None:
    """The same query without its locking clauses."""
    if "LockingClause" not in repr(stmt):
        return None
    _unlock(stmt, ast)
    return stmt, "SELECT", True


def _unlock(node: Any, ast: Any) -> None:
    """Leave out the locking clauses in `node`'s tree (`FOR UPDATE` in a
    subquery or CTE, too): a read that answers a write must not wait. The
    replay, the statement itself, takes the locks."""
    if isinstance(node, tuple):
        for item in node:
            _unlock(item, ast)
        return
    if not isinstance(node, ast.Node):
        return
    if isinstance(node, ast.SelectStmt):
        node.lockingClause = None
    for attr in node:
        _unlock(getattr(node, attr), ast)


def _read_of_insert(stmt: Any, ast: Any) -> tuple[Any, str, bool]:
    """One row per row the INSERT's source gives."""
    source = stmt.selectStmt
    if source is None:  # DEFAULT VALUES: one row
        return ast.SelectStmt(), "INSERT 0", False
    read = ast.SelectStmt(
        fromClause=(
            ast.RangeSubselect(
                subquery=source, alias=ast.Alias(aliasname="dsql_local_rows")
            ),
        ),
        withClause=stmt.withClause,
    )
    return read, "INSERT 0", False


def _insert_into_clone(stmt: Any, ast: Any) -> tuple[Any, str, bool, str] | None:
    """An ``INSERT ... RETURNING``: the same INSERT, into a clone of its table.

    Only running it gives the rows it returns (defaults, identity values,
    generated columns): the clone, named as the table is (or by the client's
    alias), takes them. Not with ``ON CONFLICT``, whose outcome depends on
    the table's rows.
    """
    if stmt.onConflictClause is not None:
        return None
    from pglast.stream import RawStream  # noqa: PLC0415

    target = RawStream()(_plain(stmt.relation, ast))
    _retarget(stmt, ast)
    return stmt, "INSERT 0", True, target


def _upsert_into_clone(stmt: Any, ast: Any) -> Guard | None:
    """An ``INSERT ... ON CONFLICT``: the same statement, into a clone of its
    table holding the table's rows in the snapshot and its unique constraints.

    DSQL's statement sees its snapshot: a key only another transaction's
    uncommitted write holds is free there, so the upsert inserts it, and the
    clash is found at COMMIT. In the clone it meets exactly the snapshot's
    rows; the replay writes what it wrote there (`upsert_rows_sql`).
    """
    if stmt.withClause is not None and _modifies(stmt.withClause):
        return None
    from pglast.stream import RawStream  # noqa: PLC0415

    target = RawStream()(_plain(stmt.relation, ast))
    rows = stmt.returningClause is not None
    assigned = tuple(item.name for item in stmt.onConflictClause.targetList or ())
    _retarget(stmt, ast)
    return Guard(
        RawStream()(stmt), "INSERT 0", rows, target, upsert=True, assigned=assigned
    )


def _update_into_clone(
    stmt: Any, sql: str, ast: Any, outer: tuple[Any, ...] = ()
) -> Guard | None:
    """An ``UPDATE ... RETURNING`` whose values only running it gives
    (``RETURNING *``, a multi-column or DEFAULT assignment): the rows it
    touches go into a clone of its table, where the same UPDATE runs.

    So does a DELETE in a data-modifying ``WITH``; `outer` are the plain
    CTEs of the statement around it, which its condition may read.
    """
    if stmt.withClause is not None and _modifies(stmt.withClause):
        return None
    from pglast.stream import RawStream  # noqa: PLC0415

    relation = stmt.relation
    name = relation.alias.aliasname if relation.alias else relation.relname
    joined = stmt.usingClause if isinstance(stmt, ast.DeleteStmt) else stmt.fromClause
    ctes = (*outer, *(stmt.withClause.ctes if stmt.withClause else ()))
    fill = ast.SelectStmt(
        targetList=(
            ast.ResTarget(
                val=ast.ColumnRef(fields=(ast.String(sval=name), ast.A_Star()))
            ),
        ),
        fromClause=(relation, *(joined or ())),
        whereClause=stmt.whereClause,
        withClause=ast.WithClause(ctes=ctes) if ctes else None,
    )
    _unlock(fill, ast)  # (its condition is the UPDATE's: unlocked there too)
    fill_text = _taking_every_parameter(fill, sql, ast)
    target = RawStream()(_plain(relation, ast))
    _retarget(stmt, ast)
    return Guard(RawStream()(stmt), "UPDATE", True, target, fill_text)


def _with_into_clone(stmt: Any, sql: str, ast: Any, parse_sql: Any) -> Guard | None:
    """A statement with a data-modifying ``WITH``.

    Each write runs in a clone as it would alone (an INSERT into an empty
    one, an upsert in one holding the table's rows, an UPDATE or DELETE in
    one holding the rows it touches) and the statement around reads what
    they return there; the replay is the INSERT's or the upsert's rows, or
    for an UPDATE or DELETE the whole statement again (when it is the only
    write, under a SELECT) or the write alone.
    """
    from pglast.stream import RawStream  # noqa: PLC0415

    ctes = stmt.withClause.ctes
    writes = [cte for cte in ctes if not isinstance(cte.ctequery, ast.SelectStmt)]
    if "LockingClause" in repr(stmt):
        return None
    if len(writes) != 1 or not isinstance(stmt, ast.SelectStmt):
        return _writes_into_clones(stmt, sql, ast, parse_sql)
    write = writes[0].ctequery
    found: Guard | None = None
    if isinstance(write, ast.InsertStmt) and write.onConflictClause is not None:
        found = _upsert_into_clone(write, ast)
    elif isinstance(write, ast.InsertStmt):
        found = _insert_guard(write, ast)
    elif isinstance(write, (ast.UpdateStmt, ast.DeleteStmt)):
        plain = tuple(cte for cte in ctes if cte is not writes[0])
        used = _used_ctes(write, plain, {writes[0].ctename}, ast)
        if used is None:
            return None
        found = _update_into_clone(write, sql, ast, tuple(plain[i] for i in used))
    if found is None:
        return None
    return found._replace(read=RawStream()(stmt), verb="SELECT", rows=True)


_VERBS = {
    "SelectStmt": "SELECT",
    "InsertStmt": "INSERT 0",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
}


def _writes_into_clones(stmt: Any, sql: str, ast: Any, parse_sql: Any) -> Guard | None:
    """Several writes in one statement, each into a clone of its own table.

    An UPDATE or DELETE is replayed alone: it may read the statement's
    plain CTEs, not what another write returns. It is replayed before the
    other writes' rows are written (see `_write_guard`): as in the
    statement, it sees none of them. So there is one at most: two would
    each see the other's rows at the replay (through a view or a function
    too, which no reading of the text rules out). Two writes of one table
    (or of two tables of one name in two schemas) are not guarded either,
    nor two upserts: an upsert's clone leaves out the unique constraints of
    the clones before it (see ``CLONE_FOR_UPSERT_SQL``), which the other's
    ``ON CONFLICT`` needs.
    """
    from pglast.stream import RawStream  # noqa: PLC0415

    kind = type(stmt).__name__
    if kind not in _VERBS:
        return None
    fresh = parse_sql(sql)[0].stmt  # for the text of each write alone
    ctes, fresh_ctes = stmt.withClause.ctes, fresh.withClause.ctes
    writing = [
        i for i, cte in enumerate(ctes) if not isinstance(cte.ctequery, ast.SelectStmt)
    ]
    names = {ctes[i].ctename for i in writing}
    plain = tuple(cte for i, cte in enumerate(ctes) if i not in writing)
    fresh_plain = tuple(cte for i, cte in enumerate(fresh_ctes) if i not in writing)
    pairs = [(ctes[i].ctequery, fresh_ctes[i].ctequery) for i in writing]
    if kind != "SelectStmt":
        pairs.append((stmt, fresh))
    changes = [w for w, _ in pairs if isinstance(w, (ast.UpdateStmt, ast.DeleteStmt))]
    upserts = [w for w, _ in pairs if getattr(w, "onConflictClause", None)]
    if len(changes) > 1 or len(upserts) > 1:
        return None
    parts: list[Guard] = []
    # A table is told by its name alone: s.t and t may be one table.
    tables: set[str] = set()
    for k, (write, alone) in enumerate(pairs):
        table = write.relation.relname
        main = write is stmt
        saved = write.withClause
        if main:  # its own WITH is the statement's
            write.withClause = alone.withClause = None
        part = _part_into_clone(
            write, alone, sql, ast, plain=(plain, fresh_plain), names=names
        )
        write.withClause = saved
        if part is None or table in tables:
            return None
        tables.add(table)
        write.relation.relname = f"{_CLONE}__{k}"
        parts.append(part)
    rows = kind == "SelectStmt" or stmt.returningClause is not None
    return Guard(RawStream()(stmt), _VERBS[kind], rows, parts=tuple(parts))


def _part_into_clone(
    write: Any,
    alone: Any,
    sql: str,
    ast: Any,
    *,
    plain: tuple[tuple[Any, ...], tuple[Any, ...]],
    names: set[str],
) -> Guard | None:
    """One write of a statement of several, into its clone (see above).

    `alone` is the same write parsed afresh, `plain` the statement's plain
    CTEs (in its tree, and in the fresh one), `names` those of its writes.
    """
    if isinstance(write, ast.InsertStmt) and write.onConflictClause is not None:
        return _upsert_into_clone(write, ast)
    if isinstance(write, ast.InsertStmt):
        return _insert_guard(write, ast)
    if not isinstance(write, (ast.UpdateStmt, ast.DeleteStmt)):
        return None
    used = _used_ctes(write, plain[0], names, ast)
    if used is None:
        return None  # it reads what another write returns: it cannot run alone
    own = alone.withClause.ctes if alone.withClause else ()
    ctes = (*(plain[1][i] for i in used), *own)
    alone.withClause = ast.WithClause(ctes=ctes) if ctes else None
    alone.returningClause = None
    text = _taking_every_parameter(alone, sql, ast)
    found = _update_into_clone(write, sql, ast, tuple(plain[0][i] for i in used))
    return None if found is None else found._replace(read=text)


def _used_ctes(
    write: Any, plain: tuple[Any, ...], writes: set[str], ast: Any
) -> list[int] | None:
    """The indexes in `plain` (a statement's plain CTEs) of those `write`
    reads, directly or through one another, in order: they go with it into
    its fill and its replay. None if one of them reads a CTE named in
    `writes` (another write's rows, which neither has)."""
    index = {cte.ctename: i for i, cte in enumerate(plain)}
    used: set[int] = set()
    todo = [write]
    while todo:
        refs = {ref.relname for ref in _range_vars(todo.pop(), ast)}
        if refs & writes:
            return None
        for name in refs:
            i = index.get(name)
            if i is not None and i not in used:
                used.add(i)
                todo.append(plain[i].ctequery)
    return sorted(used)


def _range_vars(node: Any, ast: Any) -> list[Any]:
    """The RangeVar nodes in `node`'s tree (the relations it names)."""
    if isinstance(node, tuple):
        return [ref for item in node for ref in _range_vars(item, ast)]
    if not isinstance(node, ast.Node):
        return []
    if isinstance(node, ast.RangeVar):
        return [node]
    return [ref for attr in node for ref in _range_vars(getattr(node, attr), ast)]


def _insert_guard(stmt: Any, ast: Any) -> Guard | None:
    """An INSERT in a data-modifying ``WITH``: into an empty clone."""
    if stmt.withClause is not None and _modifies(stmt.withClause):
        return None
    found = _insert_into_clone(stmt, ast)
    return None if found is None else Guard("", "INSERT 0", True, found[3])


def _plain(relation: Any, ast: Any) -> Any:
    """`relation` without its alias."""
    return ast.RangeVar(
        catalogname=relation.catalogname,
        schemaname=relation.schemaname,
        relname=relation.relname,
        inh=True,
        relpersistence="p",
    )


def _retarget(stmt: Any, ast: Any) -> None:
    """Point `stmt` (an INSERT or UPDATE) at the clone, named as its table."""
    relation = stmt.relation
    name = relation.alias.aliasname if relation.alias else relation.relname
    stmt.relation = ast.RangeVar(
        schemaname="pg_temp",
        relname=_CLONE,
        inh=relation.inh,
        relpersistence="p",
        alias=ast.Alias(aliasname=name),
    )
    # A column named through the table's schema names it through the alias.
    clauses = (stmt.returningClause, getattr(stmt, "onConflictClause", None))
    for node in _column_refs(clauses, ast):
        fields = node.fields
        if len(fields) > 2 and getattr(fields[-2], "sval", None) == relation.relname:
            node.fields = (ast.String(sval=name), fields[-1])


def _column_refs(node: Any, ast: Any) -> list[Any]:
    """The ColumnRef nodes in `node`'s tree."""
    if isinstance(node, tuple):
        return [ref for item in node for ref in _column_refs(item, ast)]
    if not isinstance(node, ast.Node):
        return []
    if isinstance(node, ast.ColumnRef):
        return [node]
    return [ref for attr in node for ref in _column_refs(getattr(node, attr), ast)]


def _read_of_change(
    name: str, stmt: Any, ast: Any, enums: Any
) -> tuple[Any, str, bool] | None:
    """The read answering an UPDATE or a DELETE."""
    joined = stmt.fromClause if name == "UpdateStmt" else stmt.usingClause
    returning = stmt.returningClause.exprs if stmt.returningClause else None
    if returning and name == "UpdateStmt":
        returning = _substitute(stmt, returning, ast, enums)
        if returning is None:
            return None
    read = ast.SelectStmt(
        targetList=returning,
        fromClause=(stmt.relation, *(joined or ())),
        whereClause=stmt.whereClause,
        withClause=stmt.withClause,
    )
    return read, name[:6].upper(), bool(returning)


def _substitute(
    stmt: Any, returning: Any, ast: Any, enums: Any
) -> tuple[Any, ...] | None:
    """RETURNING expressions with assigned columns replaced by their new values."""
    assigned: dict[str, Any] = {}
    for target in stmt.targetList:
        if isinstance(target.val, (ast.MultiAssignRef, ast.SetToDefault)):
            return None
        if target.indirection:
            return None
        assigned[target.name] = target.val
    alias = stmt.relation.alias.aliasname if stmt.relation.alias else None
    qualifiers = {alias or stmt.relation.relname}

    def visit(node: Any) -> Any:
        if isinstance(node, tuple):
            return tuple(visit(item) for item in node)
        if not isinstance(node, ast.Node):
            return node
        if isinstance(node, ast.ColumnRef):
            fields = [getattr(f, "sval", None) for f in node.fields]
            names = [f for f in fields if isinstance(f, str)]
            if len(names) != len(fields):  # a star
                raise LookupError
            if len(names) == 1 or (len(names) == 2 and names[0] in qualifiers):
                value = assigned.get(names[-1])
                if value is not None:
                    # A scalar subquery keeps the expression in one piece, and
                    # its column name is the column's, as PostgreSQL names
                    # the RETURNING column.
                    return ast.SubLink(
                        subLinkType=enums.SubLinkType.EXPR_SUBLINK,
                        subselect=ast.SelectStmt(
                            targetList=(ast.ResTarget(val=value, name=names[-1]),)
                        ),
                    )
            return node
        for attr in node:
            value = getattr(node, attr)
            if isinstance(value, (ast.Node, tuple)):
                setattr(node, attr, visit(value))
        return node

    try:
        return tuple(visit(item) for item in returning)
    except LookupError:
        return None


def _modifies(with_clause: Any) -> bool:
    return any(type(cte.ctequery).__name__ != "SelectStmt" for cte in with_clause.ctes)


# Statements a query text may not be split around: their place in the
# transaction is what they are about.
_TRANSACTION_CONTROL = re.compile(
    r"\s*(?:begin|start|commit|end|rollback|abort|savepoint|release|prepare"
    r"|set\s+(?:session\s+characteristics|transaction)|set\s+constraints)\b",
    re.IGNORECASE,
)


_SPLITTABLE = frozenset({"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"})


def is_transaction_control(sql: str) -> bool:
    """Whether `sql` begins, ends or marks a transaction (BEGIN, COMMIT...)."""
    return _TRANSACTION_CONTROL.match(sql) is not None


def statements(sql: str) -> tuple[str, ...] | None:
    """The statements of a query text to run one by one, each guarded.

    PostgreSQL runs a Query of several statements in one go, so none of them
    could be answered as DSQL answers it once another transaction's row
    stops it. In a transaction block the relay may run them one Query each
    instead (the same statements, in order, an error ending the rest):
    when there are several, at least one has a guard, and none begins or
    ends a transaction. None otherwise, or if pglast cannot split the text.
    """
    if ";" not in sql or _WORDS.search(sql) is None:
        return None
    if len(sql) > _CACHE_TEXT_LIMIT:
        return _statements(sql)
    return _statements_cached(sql)


def _statements(sql: str) -> tuple[str, ...] | None:
    try:
        from pglast import parser  # noqa: PLC0415  # optional: local extra
    except ModuleNotFoundError:
        return None
    try:
        found: list[dict[str, Any]] = json.loads(parser.parse_sql_json(sql)).get(
            "stmts", []
        )
    except parser.ParseError:
        return None
    # Plain reads and writes only: the policy checks each part again.
    kinds = {next(iter(raw["stmt"]), "") for raw in found}
    if len(found) < 2 or not kinds <= _SPLITTABLE:
        return None
    data = sql.encode()
    texts = []
    for raw in found:
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0)
        text = (data[start : start + length] if length else data[start:]).decode()
        texts.append(text.strip())
    if any(is_transaction_control(text) for text in texts):
        return None
    if all(guard(text) is None for text in texts):
        return None
    return tuple(texts)


_statements_cached = functools.lru_cache(maxsize=1_024)(_statements)
