"""Classify SQL text statement by statement: what DSQL refuses, DDL or DML.

The text is parsed by PostgreSQL's own grammar (libpg_query, through
``pglast.parser.parse_sql_json``); the JSON tree is walked as plain dicts and
lists, which costs a fraction of building pglast's Python node objects.
Results depend on the text alone, so `analyse` caches them per text.
"""

from __future__ import annotations

import enum
import functools
import json
from typing import Any, NamedTuple

from pglast import parser

from ._strict_sql import async_index_call

Node = dict[str, Any]

# Texts longer than this are analysed every time rather than kept in the cache.
CACHE_TEXT_LIMIT = 16_384
CACHE_SIZE = 4_096

FEATURE_NOT_SUPPORTED = "0A000"


class Problem(NamedTuple):
    """Why DSQL refuses a statement: its SQLSTATE and message."""

    sqlstate: str
    message: str


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


class Analysis(NamedTuple):
    """Every statement of a query text, and the text to run in its place if any."""

    statements: tuple[Statement, ...]
    replacement: str | None = None


def _unsupported(feature: str) -> Problem:
    return Problem(FEATURE_NOT_SUPPORTED, f"{feature} not supported")


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
# Statements refused whatever their details.
_REFUSED_STATEMENTS = {
    "TruncateStmt": _unsupported("TRUNCATE"),
    "CreateExtensionStmt": _unsupported("CREATE EXTENSION"),
    "AlterExtensionStmt": _unsupported("ALTER EXTENSION"),
    "AlterExtensionContentsStmt": _unsupported("ALTER EXTENSION"),
    "CreateTrigStmt": _unsupported("TRIGGER"),
    "CreateEventTrigStmt": _unsupported("EVENT TRIGGER"),
    "CreatePLangStmt": _unsupported("CREATE LANGUAGE"),
    "DoStmt": _unsupported("DO block"),
    "RefreshMatViewStmt": _unsupported("MATERIALIZED VIEW"),
    "DeclareCursorStmt": _unsupported("DECLARE CURSOR"),
    "ListenStmt": _unsupported("LISTEN"),
    "UnlistenStmt": _unsupported("UNLISTEN"),
    "NotifyStmt": _unsupported("NOTIFY"),
    "AlterSystemStmt": _unsupported("ALTER SYSTEM"),
    "CreatedbStmt": _unsupported("CREATE DATABASE"),
    "CreateTableSpaceStmt": _unsupported("CREATE TABLESPACE"),
}
_TRANSACTION_STATEMENTS = {
    "TRANS_STMT_BEGIN": Statement(Kind.BEGIN),
    "TRANS_STMT_START": Statement(Kind.BEGIN),
    "TRANS_STMT_COMMIT": Statement(Kind.END),
    "TRANS_STMT_ROLLBACK": Statement(Kind.END),
    "TRANS_STMT_SAVEPOINT": Statement(Kind.OTHER, _unsupported("SAVEPOINT")),
    "TRANS_STMT_RELEASE": Statement(Kind.OTHER, _unsupported("RELEASE SAVEPOINT")),
    "TRANS_STMT_ROLLBACK_TO": Statement(
        Kind.OTHER, _unsupported("ROLLBACK TO SAVEPOINT")
    ),
    "TRANS_STMT_PREPARE": Statement(Kind.OTHER, _unsupported("PREPARE TRANSACTION")),
    "TRANS_STMT_COMMIT_PREPARED": Statement(
        Kind.OTHER, _unsupported("COMMIT PREPARED")
    ),
    "TRANS_STMT_ROLLBACK_PREPARED": Statement(
        Kind.OTHER, _unsupported("ROLLBACK PREPARED")
    ),
}
_ALTER_COLUMN = frozenset(
    {
        "AT_ColumnDefault",
        "AT_DropNotNull",
        "AT_SetNotNull",
        "AT_SetExpression",
        "AT_DropExpression",
        "AT_SetStatistics",
        "AT_SetOptions",
        "AT_ResetOptions",
        "AT_SetStorage",
        "AT_SetCompression",
        "AT_AlterColumnType",
        "AT_AlterColumnGenericOptions",
        "AT_AddIdentity",
        "AT_SetIdentity",
        "AT_DropIdentity",
    }
)
_ALTER_TABLE_REFUSED = {
    "AT_AttachPartition": _unsupported("ATTACH PARTITION"),
    "AT_DetachPartition": _unsupported("DETACH PARTITION"),
    "AT_DetachPartitionFinalize": _unsupported("DETACH PARTITION"),
    "AT_AddInherit": _unsupported("INHERIT"),
}
_SERIAL_TYPES = frozenset(
    {"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"}
)
_SEQUENCE_TYPES = frozenset({"int8", "bigint"})
_MIN_LARGE_CACHE = 65_536
_ADVISORY_PREFIXES = ("pg_advisory_", "pg_try_advisory_")


def _strings(nodes: list[Node]) -> list[str]:
    return [n["String"].get("sval", "") for n in nodes if "String" in n]


def _type_name(type_name: Node) -> str:
    names = _strings(type_name.get("names", []))
    return names[-1].lower() if names else ""


def _integer(value: Node) -> int | None:
    if "Integer" in value:
        return int(value["Integer"].get("ival", 0))
    if "Float" in value:  # literals beyond 32 bits
        return int(float(value["Float"].get("fval", "0")))
    return None


def _sequence_options(options: list[Node]) -> Problem | None:
    for option in options:
        elem = option.get("DefElem", {})
        name, arg = elem.get("defname"), elem.get("arg", {})
        if name == "cache":
            cache = _integer(arg)
            if cache is not None and cache != 1 and cache < _MIN_LARGE_CACHE:
                return Problem(
                    FEATURE_NOT_SUPPORTED,
                    f"sequence CACHE {cache} not supported: use CACHE 1 or >= 65536",
                )
        elif name == "as" and "TypeName" in arg:
            type_name = _type_name(arg["TypeName"])
            if type_name not in _SEQUENCE_TYPES:
                return Problem(
                    FEATURE_NOT_SUPPORTED,
                    f"sequence of type {type_name} not supported: use BIGINT",
                )
    return None


def _check_constraint(node: Node) -> Problem | None:
    contype = node.get("contype")
    if contype == "CONSTR_FOREIGN":
        return _unsupported("FOREIGN KEY constraint")
    if contype == "CONSTR_EXCLUSION":
        return _unsupported("EXCLUDE constraint")
    if contype == "CONSTR_IDENTITY":
        return _sequence_options(node.get("options", []))
    return None


def _check_column(node: Node) -> Problem | None:
    type_name = node.get("typeName", {})
    names = _strings(type_name.get("names", []))
    if len(names) == 1 and names[0].lower() in _SERIAL_TYPES:
        return _unsupported(names[0].upper())
    is_identity = any(
        c.get("Constraint", {}).get("contype") == "CONSTR_IDENTITY"
        for c in node.get("constraints", [])
    )
    if is_identity and _type_name(type_name) not in _SEQUENCE_TYPES:
        return Problem(
            FEATURE_NOT_SUPPORTED,
            f"IDENTITY column of type {_type_name(type_name)} not supported:"
            " use BIGINT",
        )
    return None


def _check_function_call(node: Node) -> Problem | None:
    names = [n.lower() for n in _strings(node.get("funcname", []))]
    if not names or (len(names) > 1 and names[0] != "pg_catalog"):
        return None
    if names[-1].startswith(_ADVISORY_PREFIXES):
        return _unsupported(f"advisory lock function {names[-1]}")
    if names[-1] == "pg_notify":
        return _unsupported("NOTIFY")
    return None


def _check_create_table(node: Node) -> Problem | None:
    if node.get("relation", {}).get("relpersistence") == "t":
        return _unsupported("TEMPORARY TABLE")
    if "partspec" in node:
        return _unsupported("PARTITION BY")
    if "partbound" in node:
        return _unsupported("PARTITION OF")
    if "inhRelations" in node:
        return _unsupported("INHERITS")
    return None


def _check_create_table_as(node: Node) -> Problem | None:
    if node.get("objtype") == "OBJECT_MATVIEW":
        return _unsupported("MATERIALIZED VIEW")
    return _unsupported("CREATE TABLE AS")


def _check_select(node: Node) -> Problem | None:
    if "intoClause" in node:
        return _unsupported("SELECT INTO")
    return None


def _check_view(node: Node) -> Problem | None:
    if node.get("view", {}).get("relpersistence") == "t":
        return _unsupported("TEMPORARY VIEW")
    return None


def _check_sequence(node: Node) -> Problem | None:
    if node.get("sequence", {}).get("relpersistence") == "t":
        return _unsupported("TEMPORARY SEQUENCE")
    return _sequence_options(node.get("options", []))


def _check_function(node: Node) -> Problem | None:
    language = "sql"
    for option in node.get("options", []):
        elem = option.get("DefElem", {})
        if elem.get("defname") == "language":
            language = elem.get("arg", {}).get("String", {}).get("sval", "").lower()
    if language != "sql":
        return _unsupported(f"LANGUAGE {language}")
    return None


def _check_alter_table(node: Node) -> Problem | None:
    for cmd in node.get("cmds", []):
        subtype = cmd.get("AlterTableCmd", {}).get("subtype", "")
        if subtype in _ALTER_COLUMN:
            return _unsupported("ALTER TABLE ... ALTER COLUMN")
        if subtype in _ALTER_TABLE_REFUSED:
            return _ALTER_TABLE_REFUSED[subtype]
    return None


def _check_vacuum(node: Node) -> Problem | None:
    return _unsupported("VACUUM") if node.get("is_vacuumcmd") else None


_NODE_CHECKS = {
    "Constraint": _check_constraint,
    "ColumnDef": _check_column,
    "FuncCall": _check_function_call,
    "CreateStmt": _check_create_table,
    "CreateTableAsStmt": _check_create_table_as,
    "SelectStmt": _check_select,
    "ViewStmt": _check_view,
    "CreateSeqStmt": _check_sequence,
    "AlterSeqStmt": _check_sequence,
    "CreateFunctionStmt": _check_function,
    "AlterTableStmt": _check_alter_table,
    "VacuumStmt": _check_vacuum,
}


def _nodes(tree: Node) -> list[tuple[str, Node]]:
    """List every typed node below and including `tree` as (type, fields)."""
    found: list[tuple[str, Node]] = []
    stack: list[Any] = [tree]
    push, pop = stack.append, stack.pop
    while stack:
        item = pop()
        if type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            if len(item) == 1:
                ((key, value),) = item.items()
                if key[0].isupper():
                    found.append((key, value))
                push(value)
            else:
                stack.extend(item.values())
    return found


def _is_explain_analyze(node: Node) -> bool:
    return any(
        o.get("DefElem", {}).get("defname") == "analyze"
        for o in node.get("options", [])
    )


def _classify(stmt: Node) -> Statement:
    ((top, fields),) = stmt.items()
    if top == "TransactionStmt":
        return _TRANSACTION_STATEMENTS.get(
            fields.get("kind", ""), Statement(Kind.OTHER)
        )
    problem = _REFUSED_STATEMENTS.get(top)
    mutates = top in _DML
    for name, node in _nodes(stmt):
        if problem is None:
            check = _NODE_CHECKS.get(name)
            problem = check(node) if check else None
        mutates = mutates or name in _DML
    copy_from = top == "CopyStmt" and bool(fields.get("is_from"))
    if top in _DML or copy_from:
        kind = Kind.DML
    elif top == "PrepareStmt" or (
        top == "ExplainStmt" and not _is_explain_analyze(fields)
    ):
        kind = Kind.OTHER
    elif top in _NEUTRAL:
        kind = Kind.DML if mutates else Kind.OTHER
    else:
        kind = Kind.DDL
    return Statement(kind, problem, copy_from)


def _strip_async(sql: str) -> tuple[str, list[int]]:
    """Remove DSQL's ASYNC from ``CREATE [UNIQUE] INDEX ASYNC``.

    Returns the text PostgreSQL can parse and the character offsets, in that
    text, where an ASYNC was removed.
    """
    if "async" not in sql.lower():
        return sql, []
    try:
        tokens = parser.scan(sql)
    except parser.ParseError:
        return sql, []
    spans: list[tuple[int, int]] = []
    for i, token in enumerate(tokens):
        if token.name != "INDEX" or i == 0 or i + 1 >= len(tokens):
            continue
        before = tokens[i - 1]
        if before.name == "UNIQUE" and i >= 2:
            before = tokens[i - 2]
        word = tokens[i + 1]
        text = sql[word.start : word.end + 1]
        if before.name == "CREATE" and word.name == "IDENT" and text.lower() == "async":
            end = word.end + 1
            while end < len(sql) and sql[end].isspace():
                end += 1
            spans.append((word.start, end))
    if not spans:
        return sql, []
    pieces, removed_at, cursor, removed = [], [], 0, 0
    for start, end in spans:
        pieces.append(sql[cursor:start])
        removed_at.append(start - removed)
        removed += end - start
        cursor = end
    pieces.append(sql[cursor:])
    return "".join(pieces), removed_at


def _analyse(sql: str) -> Analysis:
    text, async_at = _strip_async(sql)
    try:
        tree = json.loads(parser.parse_sql_json(text))
    except parser.ParseError:
        # Let PostgreSQL itself report what is wrong with the text.
        return Analysis(())
    raw_stmts: list[Node] = tree.get("stmts", [])
    statements = tuple(_classify(raw["stmt"]) for raw in raw_stmts)
    if not async_at:
        return Analysis(statements)
    return Analysis(statements, _rewrite_async(text, async_at, raw_stmts))


def _rewrite_async(text: str, async_at: list[int], raw_stmts: list[Node]) -> str:
    """Replace each statement that had ASYNC by a call that builds the index."""
    data = text.encode()
    async_bytes = [len(text[:offset].encode()) for offset in async_at]
    out, cursor = [], 0
    for raw in raw_stmts:
        start = raw.get("stmt_location", 0)
        end = start + raw["stmt_len"] if raw.get("stmt_len") else len(data)
        index = raw["stmt"].get("IndexStmt")
        if index is None or not any(start <= b < end for b in async_bytes):
            continue
        ddl = data[start:end].decode().strip()
        out.append(data[cursor:start].decode())
        out.append(async_index_call(ddl, index.get("idxname")))
        cursor = end
    out.append(data[cursor:].decode())
    return "".join(out)


_analyse_cached = functools.lru_cache(maxsize=CACHE_SIZE)(_analyse)


def analyse(sql: str) -> Analysis:
    """Parse `sql` and classify each of its statements."""
    if len(sql) > CACHE_TEXT_LIMIT:
        return _analyse(sql)
    return _analyse_cached(sql)
