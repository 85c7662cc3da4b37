"""How to answer a write that lost a row to another transaction, as DSQL would.

In Aurora DSQL nothing waits: two transactions may write the same row, both
statements succeed, and the later COMMIT fails with 40001 ``(OC000)``.
PostgreSQL instead makes the second writer wait for the first one's row lock
until that transaction ends (then, under REPEATABLE READ, fails it with 40001
if it committed) or the backend's 100 ms lock timeout ends the wait (55P03),
and fails it at once with 40001 when the row changed after its snapshot. The
relay runs each such statement after a hidden savepoint; when PostgreSQL
refuses it, the relay rolls back to the savepoint, answers the statement with
what DSQL would have answered, and fails the transaction at COMMIT.

`guard` finds that answer for one statement: a plain read (no row locks) of
the rows the statement would have touched, in the transaction's snapshot. It
gives the command tag's row count and, where DSQL returns rows (``RETURNING``,
``SELECT ... FOR UPDATE``), the rows themselves:

- ``SELECT ... FOR UPDATE / FOR KEY SHARE``: the same query without its
  locking clause;
- ``UPDATE``/``DELETE ... WHERE``: ``SELECT FROM`` the target (and ``FROM``/
  ``USING`` list) with the same condition; ``RETURNING`` expressions are read
  with each assigned column replaced by the expression assigned to it;
- ``INSERT`` without ``RETURNING``: one row per row of its source.

Statements it cannot answer this way get no guard, and their conflict is
reported at the statement: ``MERGE``, ``INSERT ... RETURNING``, ``UPDATE ...
RETURNING *``, ``RETURNING`` after a multi-column assignment, data-modifying
``WITH`` and locking clauses below the top level; so are statements sent in
pipeline mode or in a query text of several statements.

What this does not reproduce:

- The winner is the transaction that wrote the row first, not the first to
  commit: if the refused one commits first, DSQL would commit it and fail
  the other; here it fails, and the other commits. A transaction refused
  for a writer that then rolls back still fails at COMMIT.
- A refused write does not happen: later statements of the (doomed)
  transaction do not see it, and its ``RETURNING`` values are computed from
  the snapshot (an ``UPDATE ... FROM`` or ``DELETE ... USING`` counts a
  target row once per joined row, and assigned parameters are read as text).
- A writer still waits for the row's holder, until it ends or for 100 ms
  (a shorter lock timeout would also end PostgreSQL's own brief waits, such
  as for a table's extension, in false conflicts).
- An autocommit write that meets a row another transaction holds fails:
  its COMMIT is its end. In DSQL it would commit, and the other transaction
  would fail.
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

_CACHE_TEXT_LIMIT = 16_384
# Cheap test before parsing: the words every guarded statement holds.
_WORDS = re.compile(r"\b(?:update|delete|insert|share)\b", re.IGNORECASE)
_PARAM = re.compile(r"\$(\d+)")


class Guard(NamedTuple):
    """How to answer a statement from a plain read when its write is refused."""

    read: str
    """A SELECT of the rows the statement touches, with the same parameters."""
    verb: str
    """The command tag before the row count: ``UPDATE``, ``INSERT 0``..."""
    rows: bool
    """The statement returns rows (the read's columns are its columns)."""


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
        from pglast.stream import RawStream  # noqa: PLC0415
    except ModuleNotFoundError:
        return None
    try:
        statements = parse_sql(sql)
    except Exception:  # the backend will say what is wrong
        return None
    if len(statements) != 1:
        return None
    stmt = statements[0].stmt
    found = _read_of(stmt, ast, enums)
    if found is None:
        return None
    read, verb, rows = found
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
    return Guard(text, verb, rows)


_guard_cached = functools.lru_cache(maxsize=1_024)(_guard)


def _read_of(stmt: Any, ast: Any, enums: Any) -> tuple[Any, str, bool] | None:
    """The read answering `stmt`, its tag's verb and whether it returns rows."""
    name = type(stmt).__name__
    if name == "SelectStmt":
        return _read_of_select(stmt)
    if getattr(stmt, "withClause", None) is not None and _modifies(stmt.withClause):
        return None
    if name in ("UpdateStmt", "DeleteStmt"):
        return _read_of_change(name, stmt, ast, enums)
    if name == "InsertStmt" and stmt.returningClause is None:
        return _read_of_insert(stmt, ast)
    return None


def _read_of_select(stmt: Any) -> tuple[Any, str, bool] | None:
    """The same query without its locking clause."""
    if not stmt.lockingClause:
        return None
    stmt.lockingClause = None
    if "LockingClause" in repr(stmt):  # in a subquery or CTE: not guarded
        return None
    return stmt, "SELECT", True


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
        if type(target.val).__name__ in ("MultiAssignRef", "SetToDefault"):
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
