"""Walks and rewrites of a statement's pglast tree, for a guard's answer.

`_conflicts` makes the read or write that answers a refused statement out
of the statement's own tree: these find the relations and columns it names,
tell whether its ``WITH`` writes, leave out its locking clauses, point it at
a clone of its table, put the values an UPDATE assigns in place of its
columns, and make the result take every parameter the client binds. Those
that change the tree change it in place. `ast` and `enums` are pglast's
modules (an optional extra: the caller imports them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ._clones import CLONE

_PARAM = re.compile(r"\$(\d+)")


def modifies(with_clause: Any) -> bool:
    """Whether `with_clause` holds a write (a CTE that is not a SELECT)."""
    return any(type(cte.ctequery).__name__ != "SelectStmt" for cte in with_clause.ctes)


def nodes(node: Any, ast: Any) -> Iterator[Any]:
    """Every node in `node`'s tree (a node, a tuple, or a leaf), itself first."""
    if isinstance(node, tuple):
        for item in node:
            yield from nodes(item, ast)
    elif isinstance(node, ast.Node):
        yield node
        for attr in node:
            yield from nodes(getattr(node, attr), ast)


def range_vars(node: Any, ast: Any) -> list[Any]:
    """The RangeVar nodes in `node`'s tree (the relations it names)."""
    return [found for found in nodes(node, ast) if isinstance(found, ast.RangeVar)]


def unaliased(relation: Any, ast: Any) -> Any:
    """`relation` without its alias."""
    return ast.RangeVar(
        catalogname=relation.catalogname,
        schemaname=relation.schemaname,
        relname=relation.relname,
        inh=True,
        relpersistence="p",
    )


def retarget(stmt: Any, ast: Any) -> None:
    """Point `stmt` (an INSERT or UPDATE) at the clone, named as its table."""
    relation = stmt.relation
    name = relation.alias.aliasname if relation.alias else relation.relname
    stmt.relation = ast.RangeVar(
        schemaname="pg_temp",
        relname=CLONE,
        inh=relation.inh,
        relpersistence="p",
        alias=ast.Alias(aliasname=name),
    )
    # A column named through the table's schema names it through the alias.
    clauses = (stmt.returningClause, getattr(stmt, "onConflictClause", None))
    for node in nodes(clauses, ast):
        if not isinstance(node, ast.ColumnRef):
            continue
        fields = node.fields
        if len(fields) > 2 and getattr(fields[-2], "sval", None) == relation.relname:
            node.fields = (ast.String(sval=name), fields[-1])


def locks(node: Any, ast: Any) -> bool:
    """Whether `node`'s tree has a locking clause (`FOR UPDATE`, ...), anywhere."""
    return any(
        isinstance(found, ast.SelectStmt) and found.lockingClause
        for found in nodes(node, ast)
    )


def unlock(node: Any, ast: Any) -> None:
    """Leave out the locking clauses in `node`'s tree (`FOR UPDATE` in a
    subquery or CTE, too): a read that answers a write must not wait. The
    replay, the statement itself, takes the locks."""
    for found in nodes(node, ast):
        if isinstance(found, ast.SelectStmt):
            found.lockingClause = None


def substitute(
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


def taking_every_parameter(read: Any, sql: str, ast: Any) -> str:
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
