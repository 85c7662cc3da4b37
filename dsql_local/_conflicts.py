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
  table, into an empty clone of the table (see `_clones`) that keeps the
  rows until the replay inserts exactly them: the values the client was
  answered are the ones committed;
- ``UPDATE ... RETURNING`` whose values substitution cannot give (``*``, a
  multi-column or ``DEFAULT`` assignment): the rows it touches go into an
  empty clone of the table, where the same UPDATE runs; the replay is the
  UPDATE itself;
- ``INSERT ... ON CONFLICT``: DSQL's statement sees its snapshot, where a
  key only another transaction's uncommitted write holds is free. It runs
  in a clone holding the table's rows and unique constraints (``ON
  CONFLICT`` meets exactly the snapshot's rows there), and the replay
  writes what it wrote there (see `_clones`): in the rows it updated,
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
- What a clone of the table does not reproduce: see `_clones`.
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

from ._clones import CLONE
from ._rewrite import (
    locks,
    modifies,
    range_vars,
    retarget,
    substitute,
    taking_every_parameter,
    unaliased,
    unlock,
)

_CACHE_TEXT_LIMIT = 16_384
# Cheap test before parsing: the words every guarded statement holds.
GUARD_WORDS = re.compile(r"\b(?:update|delete|insert|share)\b", re.IGNORECASE)


class Guard(NamedTuple):
    """How to answer a statement from a plain read when its write is refused."""

    stand_in: str
    """What runs in the statement's place: mostly the read answering it, a
    SELECT of the rows it touches with the same parameters (for an INSERT
    into `target`, the same INSERT into its clone; for a statement of
    several writes, the same statement writing into their clones); for an
    UPDATE or DELETE among the `parts` of such a statement, the write
    alone, which replays it."""
    verb: str
    """The command tag before the row count: ``UPDATE``, ``INSERT 0``..."""
    rows: bool
    """The statement returns rows (the read's columns are its columns)."""
    target: str = ""
    """An ``INSERT ... RETURNING``, or an ``UPDATE ... RETURNING`` that only
    running can answer: its table, as written (see `_clones.clone_sql`)."""
    fill: str = ""
    """For such an UPDATE: a SELECT of the rows it touches, with the same
    parameters, that go into the clone before the UPDATE runs there."""
    upsert: bool = False
    """An ``INSERT ... ON CONFLICT``: it runs in a clone holding the table's
    rows and unique constraints (see `_clones`)."""
    assigned: tuple[str, ...] = ()
    """An upsert's ``DO UPDATE SET`` columns: the only ones its replay
    writes in the rows it updated."""
    parts: tuple[Guard, ...] = ()
    """A statement of several writes (data-modifying ``WITH``): each write's
    own clone, in order; an UPDATE's or DELETE's `stand_in` is the write alone,
    its replay, which runs before the other parts' rows are written (there
    is one at most)."""


def guard(sql: str) -> Guard | None:
    """The guard of `sql`, a single statement; None if it needs none or has none."""
    if GUARD_WORDS.search(sql) is None:
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
    if getattr(stmt, "withClause", None) is not None and modifies(stmt.withClause):
        return _with_into_clone(stmt, sql, ast, parse_sql)
    if isinstance(stmt, ast.InsertStmt) and stmt.onConflictClause is not None:
        return _upsert_into_clone(stmt, ast)
    found = _read_of(stmt, ast, enums)
    if found is not None:
        read, verb, rows, target = found
        if not target:
            unlock(read, ast)
        return Guard(taking_every_parameter(read, sql, ast), verb, rows, target)
    if isinstance(stmt, ast.UpdateStmt) and stmt.returningClause is not None:
        # Its RETURNING needs the row as updated: the UPDATE runs in a
        # clone (parsed afresh: the substitution tried changed the tree).
        return _update_into_clone(parse_sql(sql)[0].stmt, sql, ast)
    return None


_guard_cached = functools.lru_cache(maxsize=1_024)(_guard)


def _read_of(stmt: Any, ast: Any, enums: Any) -> tuple[Any, str, bool, str] | None:
    """The read answering `stmt`, its tag's verb, whether it returns rows and
    the table of an INSERT answered by its clone."""
    name = type(stmt).__name__
    found: tuple[Any, str, bool] | None = None
    if name == "SelectStmt":
        found = _read_of_select(stmt, ast)
    elif getattr(stmt, "withClause", None) is not None and modifies(stmt.withClause):
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
    if not locks(stmt, ast):
        return None
    unlock(stmt, ast)
    return stmt, "SELECT", True


def _read_of_change(
    name: str, stmt: Any, ast: Any, enums: Any
) -> tuple[Any, str, bool] | None:
    """The read answering an UPDATE or a DELETE."""
    joined = stmt.fromClause if name == "UpdateStmt" else stmt.usingClause
    returning = stmt.returningClause.exprs if stmt.returningClause else None
    if returning and name == "UpdateStmt":
        returning = substitute(stmt, returning, ast, enums)
        if returning is None:
            return None
    read = ast.SelectStmt(
        targetList=returning,
        fromClause=(stmt.relation, *(joined or ())),
        whereClause=stmt.whereClause,
        withClause=stmt.withClause,
    )
    return read, name[:6].upper(), bool(returning)


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

    target = RawStream()(unaliased(stmt.relation, ast))
    retarget(stmt, ast)
    return stmt, "INSERT 0", True, target


def _upsert_into_clone(stmt: Any, ast: Any) -> Guard | None:
    """An ``INSERT ... ON CONFLICT``: the same statement, into a clone of its
    table holding the table's rows in the snapshot and its unique constraints.

    DSQL's statement sees its snapshot: a key only another transaction's
    uncommitted write holds is free there, so the upsert inserts it, and the
    clash is found at COMMIT. In the clone it meets exactly the snapshot's
    rows; the replay writes what it wrote there (`_clones.upsert_rows_sql`).
    """
    if stmt.withClause is not None and modifies(stmt.withClause):
        return None
    from pglast.stream import RawStream  # noqa: PLC0415

    target = RawStream()(unaliased(stmt.relation, ast))
    rows = stmt.returningClause is not None
    assigned = tuple(item.name for item in stmt.onConflictClause.targetList or ())
    retarget(stmt, ast)
    return Guard(
        RawStream()(stmt), "INSERT 0", rows, target, upsert=True, assigned=assigned
    )


def _update_into_clone(
    stmt: Any, sql: str, ast: Any, outer: tuple[Any, ...] = (), recursive: bool = False
) -> Guard | None:
    """An ``UPDATE ... RETURNING`` whose values only running it gives
    (``RETURNING *``, a multi-column or DEFAULT assignment): the rows it
    touches go into a clone of its table, where the same UPDATE runs.

    So does a DELETE in a data-modifying ``WITH``; `outer` are the plain
    CTEs of the statement around it, which its condition may read, and
    `recursive` tells that its ``WITH`` is ``WITH RECURSIVE``.
    """
    if stmt.withClause is not None and modifies(stmt.withClause):
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
        withClause=ast.WithClause(ctes=ctes, recursive=_recursive(stmt) or recursive)
        if ctes
        else None,
    )
    unlock(fill, ast)  # (its condition is the UPDATE's: unlocked there too)
    fill_text = taking_every_parameter(fill, sql, ast)
    target = RawStream()(unaliased(relation, ast))
    retarget(stmt, ast)
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
    if locks(stmt, ast):
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
        outer = tuple(plain[i] for i in used)
        found = _update_into_clone(write, sql, ast, outer, _recursive(stmt))
    if found is None:
        return None
    return found._replace(stand_in=RawStream()(stmt), verb="SELECT", rows=True)


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
    the clones before it (see ``_clones.CLONE_FOR_UPSERT_SQL``), which the other's
    ``ON CONFLICT`` needs.
    """
    from pglast.stream import RawStream  # noqa: PLC0415

    kind = type(stmt).__name__
    if kind not in _VERBS:
        return None
    recursive = _recursive(stmt)
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
            write,
            alone,
            sql,
            ast,
            plain=(plain, fresh_plain),
            names=names,
            recursive=recursive,
        )
        write.withClause = saved
        if part is None or table in tables:
            return None
        tables.add(table)
        write.relation.relname = f"{CLONE}__{k}"
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
    recursive: bool,
) -> Guard | None:
    """One write of a statement of several, into its clone (see above).

    `alone` is the same write parsed afresh, `plain` the statement's plain
    CTEs (in its tree, and in the fresh one), `names` those of its writes;
    `recursive`: the statement's ``WITH`` is ``WITH RECURSIVE``.
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
    recursive = recursive or _recursive(alone)
    alone.withClause = ast.WithClause(ctes=ctes, recursive=recursive) if ctes else None
    alone.returningClause = None
    text = taking_every_parameter(alone, sql, ast)
    outer = tuple(plain[0][i] for i in used)
    found = _update_into_clone(write, sql, ast, outer, recursive)
    return None if found is None else found._replace(stand_in=text)


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
        refs = {ref.relname for ref in range_vars(todo.pop(), ast)}
        if refs & writes:
            return None
        for name in refs:
            i = index.get(name)
            if i is not None and i not in used:
                used.add(i)
                todo.append(plain[i].ctequery)
    return sorted(used)


def _recursive(stmt: Any) -> bool:
    """Whether `stmt`'s ``WITH`` is ``WITH RECURSIVE`` (its CTEs, carried
    into another statement, need it)."""
    return bool(stmt.withClause is not None and stmt.withClause.recursive)


def _insert_guard(stmt: Any, ast: Any) -> Guard | None:
    """An INSERT in a data-modifying ``WITH``: into an empty clone."""
    if stmt.withClause is not None and modifies(stmt.withClause):
        return None
    found = _insert_into_clone(stmt, ast)
    return None if found is None else Guard("", "INSERT 0", True, found[3])
