"""Read SQL text statement by statement: DDL or DML, refused or rewritten.

The text is parsed by PostgreSQL's own grammar (libpg_query, through
``pglast.parser.parse_sql_json``); the JSON tree is walked as plain dicts and
lists, which costs a fraction of building pglast's Python node objects. Each
node is judged by the rules of `_strict_rules` for its type, parents before
children, so a statement's first problem is the one DSQL reports.

DSQL's own syntax is rewritten into SQL the backend runs (`_strict_sql`):
``CREATE [UNIQUE] INDEX ASYNC`` and ``ALTER TABLE ASYNC ... VALIDATE
CONSTRAINT`` become calls that answer a job id (the client sees DSQL's
command tag), ``SET disable_sync_create_index`` sets the backend's own
stand-in, and ``ALTER TABLE ... DROP COLUMN / DROP CONSTRAINT`` runs through a
procedure that first refuses what DSQL refuses about primary keys. In
strict mode a locking clause's ``SKIP LOCKED`` is left out: DSQL locks no
row, so it skips none. The cuts of the text these take are
`_strict_rewrites`'s.

Results depend on the text alone, so `analyse` caches them per text.
"""

from __future__ import annotations

import enum
import functools
import json
from typing import Any, NamedTuple

from pglast import parser

from ._strict_rewrites import (
    move_storage,
    relation,
    set_sync_index,
    strip_async,
    without_skip_locked,
)
from ._strict_rules import (
    STATEMENT_RULES,
    SYNTAX_ERROR,
    Node,
    strings,
)
from ._strict_sql import (
    async_index_call,
    checked_alter_call,
    validate_constraint_call,
)

# The PostgreSQL whose grammar reads the statements (pglast's libpg_query).
PARSER_MAJOR: int = parser.get_postgresql_version()[0]
# Texts longer than this are analysed every time rather than kept in the cache.
CACHE_TEXT_LIMIT = 16_384
CACHE_SIZE = 4_096


class Problem(NamedTuple):
    """Why DSQL refuses a statement: its SQLSTATE, message and rule."""

    sqlstate: str
    message: str
    rule: str


class Kind(enum.Enum):
    """What a statement means to DSQL's transaction rules."""

    BEGIN = "begin"
    END = "end"  # COMMIT or ROLLBACK
    DDL = "ddl"
    DML = "dml"
    OTHER = "other"


class Statement(NamedTuple):
    """One statement of a query text."""

    kind: Kind
    problem: Problem | None = None
    copy_from: bool = False
    since_16: str | None = None
    """What the statement uses that came with PostgreSQL 16 (DSQL runs it; an
    older backend cannot), in words; None when nothing."""


class Analysis(NamedTuple):
    """Every statement of a query text; the text to run instead, if any.

    ``command_tags`` has, when some statement is rewritten into one whose
    command tag differs, the tag DSQL gives for each statement (None: the
    backend's own).
    """

    statements: tuple[Statement, ...]
    replacement: str | None = None
    command_tags: tuple[str | None, ...] = ()
    syntax_error: str | None = None
    """The parser's message when the text does not parse."""
    plain: Kind | None = None
    """The kind of the text's one statement when nothing else is to be done
    about it (no problem, no rewrite, nothing from PostgreSQL 16, no COPY
    FROM, not BEGIN, COMMIT or ROLLBACK): what lets the policy judge it in a
    few steps. None otherwise."""


def _plain(statements: tuple[Statement, ...]) -> Kind | None:
    """`Analysis.plain` for a text of `statements` that is run as it is."""
    if len(statements) != 1:
        return None
    (statement,) = statements
    if (
        statement.problem is not None
        or statement.copy_from
        or statement.since_16 is not None
        or statement.kind in (Kind.BEGIN, Kind.END)
    ):
        return None
    return statement.kind


_DML = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
_NEUTRAL = frozenset(
    {
        "SelectStmt",
        "VariableSetStmt",
        "VariableShowStmt",
        "ExplainStmt",
        "PrepareStmt",
        "ExecuteStmt",
        "DeallocateStmt",
        "CallStmt",
        "DiscardStmt",
        "CheckPointStmt",
        "LoadStmt",
        "FetchStmt",
        "ClosePortalStmt",
        "LockStmt",
        "ConstraintsSetStmt",
        "VacuumStmt",
        "ListenStmt",
        "UnlistenStmt",
        "NotifyStmt",
        "DoStmt",
        "DeclareCursorStmt",
        "CopyStmt",
        "TruncateStmt",
    }
)
_TRANSACTION_KINDS = {
    "TRANS_STMT_BEGIN": Kind.BEGIN,
    "TRANS_STMT_START": Kind.BEGIN,
    "TRANS_STMT_COMMIT": Kind.END,
    "TRANS_STMT_ROLLBACK": Kind.END,
}


def _nodes(tree: Node) -> list[tuple[str, Node]]:
    """List every typed node of `tree` as (type, fields), parents first.

    Siblings keep their order in the text.
    """
    found: list[tuple[str, Node]] = []
    stack: list[Any] = [tree]
    push, pop = stack.append, stack.pop
    while stack:
        item = pop()
        if type(item) is list:
            stack.extend(reversed(item))
        elif type(item) is dict:
            if len(item) == 1:
                ((key, value),) = item.items()
                if key[0].isupper():
                    found.append((key, value))
                push(value)
            else:
                stack.extend(reversed(item.values()))
    return found


def _problem(stmt: Node) -> Problem | None:
    """DSQL's first objection to `stmt`: its grammar's (42601) before the rest.

    PostgreSQL parses a statement whole before it judges any of it, so what
    DSQL's PostgreSQL 16 grammar cannot read is the answer, wherever it is.
    """
    nodes = _nodes(stmt)
    for syntax in (True, False):
        for name, node in nodes:
            for rule in STATEMENT_RULES.get(name, ()):
                if (rule.sqlstate == SYNTAX_ERROR) is not syntax:
                    continue
                assert rule.match is not None
                detail = rule.match(node)
                if detail is not None:
                    return Problem(rule.sqlstate, rule.text(detail), rule.name)
    return None


# What PostgreSQL 16 added that DSQL runs and an older backend cannot parse
# or run: node type, and the condition on it with the words for it.
_JSON_16 = frozenset(
    {
        "JsonIsPredicate",
        "JsonObjectConstructor",
        "JsonArrayConstructor",
        "JsonArrayQueryConstructor",
        "JsonObjectAgg",
        "JsonArrayAgg",
    }
)
_FUNCTIONS_16 = frozenset(
    {
        "any_value",
        "array_sample",
        "array_shuffle",
        "random_normal",
        "date_add",
        "date_subtract",
        "erf",
        "erfc",
        "pg_input_is_valid",
        "pg_input_error_info",
        "system_user",
    }
)


def _since_16(stmt: Node) -> str | None:
    """What `stmt` uses that came with PostgreSQL 16, in words, or None."""
    ((top, _),) = stmt.items()
    for name, node in _nodes(stmt):
        found = _node_since_16(top, name, node)
        if found is not None:
            return found
    return None


def _node_since_16(top: str, name: str, node: Node) -> str | None:
    found: str | None = None
    if name in _JSON_16:
        found = "the SQL/JSON constructors and IS JSON"
    elif name == "ColumnDef" and node.get("storage_name"):
        if str(node["storage_name"]).lower() == "default":
            found = "STORAGE DEFAULT"
        elif top == "CreateStmt":
            found = "a column's STORAGE in CREATE TABLE"
    elif name == "AlterTableCmd" and node.get("subtype") == "AT_SetStorage":
        value = node.get("def", {}).get("String", {}).get("sval", "")
        found = "STORAGE DEFAULT" if str(value).lower() == "default" else None
    elif name == "FuncCall":
        called = strings(node.get("funcname", []))
        builtin = len(called) == 1 or called[:1] == ["pg_catalog"]
        if builtin and called[-1] in _FUNCTIONS_16:
            found = f"the function {called[-1]}()"
    elif name in ("ExplainStmt", "CopyStmt"):
        options = {o.get("DefElem", {}).get("defname") for o in node.get("options", [])}
        if "generic_plan" in options:
            found = "EXPLAIN (GENERIC_PLAN)"
        elif name == "CopyStmt" and "default" in options:
            found = "COPY (DEFAULT ...)"
    return found


def _is_explain_analyze(node: Node) -> bool:
    return any(
        o.get("DefElem", {}).get("defname") == "analyze"
        for o in node.get("options", [])
    )


def _kind(stmt: Node) -> Kind:
    ((top, fields),) = stmt.items()
    if top == "TransactionStmt":
        return _TRANSACTION_KINDS.get(fields.get("kind", ""), Kind.OTHER)
    if top in _DML or (top == "CopyStmt" and fields.get("is_from")):
        return Kind.DML
    if top == "PrepareStmt" or (
        top == "ExplainStmt" and not _is_explain_analyze(fields)
    ):
        return Kind.OTHER
    if top in _NEUTRAL:
        mutates = any(name in _DML for name, _ in _nodes(stmt))
        return Kind.DML if mutates else Kind.OTHER
    return Kind.DDL


def _rewrite(stmt: Node, ddl: str, strict: bool) -> tuple[str | None, str | None]:
    """The SQL to run in place of `stmt` and the command tag DSQL gives.

    Not `strict`: only DSQL's own syntax, which PostgreSQL lacks.
    """
    ((top, fields),) = stmt.items()
    if top == "IndexStmt" and fields.get("async"):
        return async_index_call(ddl, fields.get("idxname")), "CREATE INDEX"
    if top == "AlterTableStmt" and fields.get("objtype") == "OBJECT_TABLE":
        moved = move_storage(ddl)
        ddl = moved or ddl
        cmds = [c.get("AlterTableCmd", {}) for c in fields.get("cmds", [])]
        table = relation(fields.get("relation", {}))
        if fields.get("async"):
            return (
                validate_constraint_call(ddl, table, cmds[0].get("name", "")),
                "ALTER TABLE",
            )
        columns = [
            c.get("name", "") for c in cmds if c.get("subtype") == "AT_DropColumn"
        ]
        constraints = [
            c.get("name", "") for c in cmds if c.get("subtype") == "AT_DropConstraint"
        ]
        if strict and (columns or constraints) and not fields.get("missing_ok"):
            return checked_alter_call(ddl, table, columns, constraints), "ALTER TABLE"
        return moved, None
    if top == "VariableSetStmt":
        return set_sync_index(fields), None
    skips = strict and "skip" in ddl.lower() and _skips_locked(stmt)
    return (without_skip_locked(ddl, stmt) if skips else None), None


def _skips_locked(stmt: Node) -> bool:
    return any(
        name == "LockingClause" and node.get("waitPolicy") == "LockWaitSkip"
        for name, node in _nodes(stmt)
    )


def _analyse(sql: str, strict: bool = True) -> Analysis:
    text, async_at, using_at = strip_async(sql)
    try:
        tree = json.loads(parser.parse_sql_json(text))
    except parser.ParseError as exc:
        # Let PostgreSQL itself report what is wrong with the text (without
        # DSQL's ASYNC, which would be the wrong thing to point at).
        return Analysis((), None if text == sql else text, syntax_error=str(exc))
    data = text.encode()
    async_bytes = [len(text[:offset].encode()) for offset in async_at]
    using_bytes = [len(text[:offset].encode()) for offset in using_at]
    statements = []
    out: list[str] = []
    tags: list[str | None] = []
    cursor = 0
    for raw in tree.get("stmts", []):
        stmt: Node = raw["stmt"]
        start = raw.get("stmt_location", 0)
        end = start + raw["stmt_len"] if raw.get("stmt_len") else len(data)
        ((top, fields),) = stmt.items()
        if any(start <= b < end for b in async_bytes):
            fields["async"] = True
        if top == "IndexStmt" and any(start <= b < end for b in using_bytes):
            fields["using"] = True
        problem = _problem(stmt) if strict else None
        copy_from = top == "CopyStmt" and bool(fields.get("is_from"))
        since_16 = _since_16(stmt) if problem is None else None
        statements.append(Statement(_kind(stmt), problem, copy_from, since_16))
        replacement, tag = (
            (None, None)
            if problem
            else _rewrite(stmt, data[start:end].decode().strip(), strict)
        )
        tags.append(tag)
        if replacement is not None:
            out.append(data[cursor:start].decode())
            out.append(replacement)
            cursor = end
    if not out:
        return Analysis(tuple(statements), plain=_plain(tuple(statements)))
    out.append(data[cursor:].decode())
    command_tags = tuple(tags) if any(tags) else ()
    return Analysis(tuple(statements), "".join(out), command_tags)


_analyse_cached = functools.lru_cache(maxsize=CACHE_SIZE)(_analyse)


def analyse(sql: str, *, strict: bool = True) -> Analysis:
    """Parse `sql` and judge each of its statements (not at all unless `strict`)."""
    if len(sql) > CACHE_TEXT_LIMIT:
        return _analyse(sql, strict)
    return _analyse_cached(sql, strict)
