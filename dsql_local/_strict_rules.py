"""DSQL's rules, as data: what strict mode refuses, with DSQL's own answer.

`RULES` is the one table strict mode reads. Each row says which parse-tree
node it looks at (PostgreSQL's own node names, as libpg_query gives them),
the condition on that node, and what DSQL answers: SQLSTATE and exact
message. ``source`` names where the answer comes from and when it was seen;
``confirmed`` is False where no source printed DSQL's exact message or
SQLSTATE, so the text is DSQL Local's own. Where an AWS page and a recording
of a real cluster disagree, the recording wins (it says so in ``source``).

Most rules are judged on the statement before it runs (`Verdict.STATEMENT`).
The few that depend on data or the catalog (rows in a table, the indexes it
has, its primary key) are judged by the backend (`Verdict.BACKEND`): their
SQL in `_strict_sql` takes its SQLSTATE and message from this table.

To follow a DSQL release: change, add or drop a row, with its example, and
the test that replays every row's examples does the rest. The docs page
"What DSQL Local refuses" (``docs/refused.md``) is made from this table by
`rules_page`, and a test keeps it in step.

What the table does not list runs as PostgreSQL runs it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Node = dict[str, Any]
Match = Callable[[Node], "str | None"]
"""Return None when the rule does not apply; else the text for ``{}``."""

FEATURE_NOT_SUPPORTED = "0A000"
UNDEFINED_OBJECT = "42704"
PROGRAM_LIMIT_EXCEEDED = "54000"
TOO_MANY_COLUMNS = "54011"
CACHE_RANGE = "greater than or equal to 65536 or equal to 1"
CACHE_HINT = f"please define CACHE {CACHE_RANGE}"
MIN_LARGE_CACHE = 65_536
MAX_INDEX_KEYS = 8
MAX_INDEXES_PER_TABLE = 24


class Verdict(enum.Enum):
    """Where a rule is judged."""

    STATEMENT = "statement"
    """On the statement's parse tree, before it runs."""
    BACKEND = "backend"
    """By the backend as the statement runs: it needs the data or catalog."""
    STARTUP = "startup"
    """On the startup packet: the connection fails with FATAL."""


@dataclass(frozen=True)
class Rule:
    """One thing DSQL refuses, and how it says so."""

    name: str
    node: str
    """The parse-tree node looked at (or, for BACKEND rules, the statement)."""
    condition: str
    """The condition on the node, in words (the docs page shows it)."""
    sqlstate: str
    message: str
    """DSQL's exact text; ``{}`` takes what `match` returned."""
    source: str
    confirmed: bool
    example: str
    """A statement the rule refuses."""
    allowed: str = ""
    """A close statement DSQL runs ("" when there is none)."""
    setup: tuple[str, ...] = ()
    """Statements the examples need first (each runs on DSQL as well)."""
    match: Match | None = None
    verdict: Verdict = Verdict.STATEMENT

    def text(self, detail: str = "") -> str:
        """The message, completed with `detail`."""
        return self.message.replace("{}", detail)


# -- reading nodes -------------------------------------------------------------


def strings(nodes: list[Node]) -> list[str]:
    """The values of a list of String nodes."""
    return [n["String"].get("sval", "") for n in nodes if "String" in n]


def _const_text(node: Node) -> str | None:
    """The text of a string constant node (A_Const), else None."""
    const = node.get("A_Const", {})
    sval = const.get("sval")
    return sval.get("sval", "") if isinstance(sval, dict) else None


def _integer(value: Node) -> int | None:
    if "Integer" in value:
        return int(value["Integer"].get("ival", 0))
    if "Float" in value:  # literals beyond 32 bits
        return int(float(value["Float"].get("fval", "0")))
    return None


# PostgreSQL's names for the types the grammar spells in its own way, as
# DSQL prints them (format_type).
_TYPE_NAMES = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "character varying",
    "bpchar": "character",
    "varbit": "bit varying",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "timetz": "time with time zone",
    "time": "time without time zone",
}


def type_name(type_node: Node) -> str:
    """A TypeName as DSQL prints it (``integer``, ``text[]``, ``my_type``)."""
    names = strings(type_node.get("names", []))
    name = names[-1].lower() if names else ""
    if len(names) == 1 or (len(names) == 2 and names[0] == "pg_catalog"):
        name = _TYPE_NAMES.get(name, name)
    return name + "[]" * len(type_node.get("arrayBounds", []))


def _builtin(type_node: Node) -> str | None:
    """The lower-case name of an unqualified or pg_catalog type, else None."""
    names = [n.lower() for n in strings(type_node.get("names", []))]
    if len(names) == 1 or (len(names) == 2 and names[0] == "pg_catalog"):
        return names[-1]
    return None


def _option(options: list[Node], name: str) -> Node | None:
    for option in options:
        elem = option.get("DefElem", {})
        if elem.get("defname") == name:
            arg: Node = elem.get("arg", {})
            return arg
    return None


def _function_name(node: Node) -> str | None:
    """The name of a called built-in function (unqualified or pg_catalog)."""
    names = [n.lower() for n in strings(node.get("funcname", []))]
    if len(names) == 1 or (len(names) == 2 and names[0] == "pg_catalog"):
        return names[-1]
    return None


def _commands(node: Node, *subtypes: str) -> list[Node]:
    """The ALTER TABLE commands of `node` of the given subtypes."""
    if node.get("objtype", "OBJECT_TABLE") != "OBJECT_TABLE":
        return []
    found = []
    for cmd in node.get("cmds", []):
        fields = cmd.get("AlterTableCmd", {})
        if fields.get("subtype") in subtypes:
            found.append(fields)
    return found


def _when(test: Callable[[Node], bool]) -> Match:
    """A match for a yes/no condition, with nothing to fill in."""
    return lambda node: "" if test(node) else None


def _always(_: Node) -> str:
    return ""


# -- conditions ------------------------------------------------------------------


def _isolation(options: list[Node]) -> str | None:
    """The isolation level named in `options` unless REPEATABLE READ."""
    level = _option(options, "transaction_isolation")
    text = _const_text(level) if level is not None else None
    if text is None or text.lower() == "repeatable read":
        return None
    return text.upper()


# The settings DSQL lets a session change (ACC, 2026-09-11).
SETTABLE = frozenset(
    {
        "application_name",
        "client_encoding",
        "datestyle",
        "extra_float_digits",
        "intervalstyle",
        "timezone",
        "search_path",
        "enable_bitmapscan",
        "enable_hashjoin",
        "enable_indexonlyscan",
        "enable_indexscan",
        "enable_material",
        "enable_mergejoin",
        "enable_nestloop",
        "dsql.enable_batched_nestloop",
        "enable_seqscan",
        "disable_sync_create_index",
    }
)
SYNC_INDEX_SETTING = "disable_sync_create_index"


def settable(name: str, *, local: bool = False) -> bool:
    """Whether DSQL lets a session set `name` (``role`` only with SET LOCAL)."""
    name = name.lower()
    return name in SETTABLE or (local and name == "role")


def _unsettable(node: Node) -> str | None:
    if node.get("kind") == "VAR_RESET_ALL":
        return None
    name = str(node.get("name", ""))
    return None if settable(name, local=bool(node.get("is_local"))) else name


_SERIALS = frozenset(
    {"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"}
)


def _serial(node: Node) -> str | None:
    names = strings(node.get("typeName", {}).get("names", []))
    return (
        names[0].lower() if len(names) == 1 and names[0].lower() in _SERIALS else None
    )


def _array_column(node: Node) -> str | None:
    type_node = node.get("typeName", {})
    return type_name(type_node) if type_node.get("arrayBounds") else None


# PostgreSQL's built-in types that DSQL has no column type for (DT). The
# recording shows the pattern for each of the named ones; the rest follow it.
_UNSUPPORTED_TYPES = frozenset(
    {
        "money",
        "xml",
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "point",
        "line",
        "lseg",
        "box",
        "path",
        "polygon",
        "circle",
        "tsvector",
        "tsquery",
        "int4range",
        "int8range",
        "numrange",
        "tsrange",
        "tstzrange",
        "daterange",
        "int4multirange",
        "int8multirange",
        "nummultirange",
        "tsmultirange",
        "tstzmultirange",
        "datemultirange",
        "bit",
        "varbit",
        "pg_lsn",
        "pg_snapshot",
        "txid_snapshot",
        "jsonpath",
    }
)


def _unsupported_type(node: Node) -> str | None:
    type_node = node.get("typeName", {})
    name = _builtin(type_node)
    if name in _UNSUPPORTED_TYPES and not type_node.get("arrayBounds"):
        return type_name(type_node)
    return None


def _identity(node: Node) -> Node | None:
    for constraint in node.get("constraints", []):
        fields: Node = constraint.get("Constraint", {})
        if fields.get("contype") == "CONSTR_IDENTITY":
            return fields
    return None


def _identity_not_bigint(node: Node) -> str | None:
    if _identity(node) is None:
        return None
    name = type_name(node.get("typeName", {}))
    return None if name == "bigint" else name


def _cache(options: list[Node]) -> int | None:
    arg = _option(options, "cache")
    return _integer(arg) if arg is not None else None


def _identity_without_cache(node: Node) -> str | None:
    if node.get("contype") != "CONSTR_IDENTITY":
        return None
    return "" if _cache(node.get("options", [])) is None else None


def _bad_cache(options: list[Node]) -> str | None:
    cache = _cache(options)
    if cache is None or cache == 1 or cache >= MIN_LARGE_CACHE:
        return None
    return str(cache)


def _identity_bad_cache(node: Node) -> str | None:
    if node.get("contype") != "CONSTR_IDENTITY":
        return None
    return _bad_cache(node.get("options", []))


def _sequence_without_cache(node: Node) -> str | None:
    return "" if _cache(node.get("options", [])) is None else None


def _sequence_bad_cache(node: Node) -> str | None:
    return _bad_cache(node.get("options", []))


def _sequence_not_bigint(node: Node) -> str | None:
    arg = _option(node.get("options", []), "as")
    if arg is None or "TypeName" not in arg:
        return None
    name = type_name(arg["TypeName"])
    return None if name == "bigint" else name


def _language(node: Node) -> str | None:
    arg = _option(node.get("options", []), "language")
    language = arg.get("String", {}).get("sval", "sql").lower() if arg else "sql"
    return None if language == "sql" else language


def _add_column_with_constraint(node: Node) -> str | None:
    for cmd in _commands(node, "AT_AddColumn"):
        if cmd.get("def", {}).get("ColumnDef", {}).get("constraints"):
            return ""
    return None


def _addable(constraint: Node) -> bool:
    """Whether DSQL adds `constraint` to an existing table."""
    contype = constraint.get("contype")
    if contype == "CONSTR_FOREIGN":
        return bool(constraint.get("skip_validation"))
    if contype == "CONSTR_CHECK":
        return not constraint.get("initially_valid")
    return contype == "CONSTR_UNIQUE" and "indexname" in constraint


def _add_constraint(node: Node) -> str | None:
    for cmd in _commands(node, "AT_AddConstraint"):
        if not _addable(cmd.get("def", {}).get("Constraint", {})):
            return ""
    return None


def _has(*subtypes: str) -> Match:
    return _when(lambda node: bool(_commands(node, *subtypes)))


def _async_other_than_validate(node: Node) -> str | None:
    if not node.get("async"):
        return None
    cmds = node.get("cmds", [])
    only_validate = len(cmds) == 1 and bool(_commands(node, "AT_ValidateConstraint"))
    return None if only_validate else ""


def _sync_validate(node: Node) -> str | None:
    if node.get("async"):
        return None
    return "" if _commands(node, "AT_ValidateConstraint") else None


def _locking(node: Node) -> str | None:
    strength = node.get("strength")
    return None if strength in ("LCS_FORUPDATE", "LCS_FORKEYSHARE") else ""


def _sort_order(node: Node) -> str | None:
    for param in node.get("indexParams", []):
        ordering = param.get("IndexElem", {}).get("ordering", "SORTBY_DEFAULT")
        if ordering != "SORTBY_DEFAULT":
            return ""
    return None


def _opclass(node: Node) -> str | None:
    for param in node.get("indexParams", []):
        if param.get("IndexElem", {}).get("opclass"):
            return ""
    return None


def _too_many_keys(node: Node) -> str | None:
    return "" if len(node.get("indexParams", [])) > MAX_INDEX_KEYS else None


def _advisory(node: Node) -> str | None:
    name = _function_name(node)
    if name and name.startswith(("pg_advisory_", "pg_try_advisory_")):
        return name
    return None


def _named_function(*names: str) -> Match:
    wanted = frozenset(names)

    def match(node: Node) -> str | None:
        name = _function_name(node)
        return name if name in wanted else None

    return match


_TEXT_SEARCH = frozenset(
    {
        "to_tsvector",
        "to_tsquery",
        "plainto_tsquery",
        "phraseto_tsquery",
        "websearch_to_tsquery",
        "json_to_tsvector",
        "jsonb_to_tsvector",
        "ts_headline",
    }
)


def _text_search_config(node: Node) -> str | None:
    if _function_name(node) not in _TEXT_SEARCH:
        return None
    args = node.get("args", [])
    return _const_text(args[0]) if len(args) >= 2 else None


def _drop_of(*kinds: str) -> Match:
    return _when(lambda node: node.get("removeType") in kinds)


def _transaction(kind: str) -> Match:
    return _when(lambda node: node.get("kind") == kind)


def _begin_isolation(node: Node) -> str | None:
    if node.get("kind") not in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
        return None
    return _isolation(node.get("options", []))


def _set_transaction_isolation(node: Node) -> str | None:
    if node.get("name") not in ("TRANSACTION", "SESSION CHARACTERISTICS"):
        return None
    return _isolation(node.get("args", []))


def _persistence(kind: str, key: str = "relation") -> Match:
    return _when(lambda node: node.get(key, {}).get("relpersistence") == kind)


def _copy_file(node: Node) -> str | None:
    return "" if node.get("filename") is not None or node.get("is_program") else None


_REMOVED_SETTINGS = frozenset({"lc_collate", "lc_ctype"})


# -- the table -----------------------------------------------------------------

_SPIKE = "T-SPIKE, live cluster, 2026-09-23"
_REC = "recorded on a real cluster, 2026-09-18"
_REC16 = "recorded on a real cluster, 2026-09-16"
_OURS = "no source gives DSQL's text; DSQL Local's own"

RULES: tuple[Rule, ...] = (
    # Statements DSQL does not run at all.
    Rule(
        "truncate",
        "TruncateStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: Truncate",
        f"{_REC}; {_SPIKE}",
        True,
        "TRUNCATE t",
        "DELETE FROM t",
        ("CREATE TABLE t (id int PRIMARY KEY)",),
        _always,
    ),
    Rule(
        "create-extension",
        "CreateExtensionStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: CreateExtension",
        f"{_REC}; {_SPIKE}",
        True,
        "CREATE EXTENSION IF NOT EXISTS plpgsql",
        match=_always,
    ),
    Rule(
        "alter-extension",
        "AlterExtensionStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "ALTER EXTENSION not supported",
        _OURS,
        False,
        "ALTER EXTENSION plpgsql UPDATE",
        match=_always,
    ),
    Rule(
        "create-trigger",
        "CreateTrigStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "CREATE TRIGGER not supported",
        f"{_REC}; {_SPIKE}",
        True,
        "CREATE TRIGGER t_noop BEFORE UPDATE ON t FOR EACH ROW"
        " EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_always,
    ),
    Rule(
        "create-event-trigger",
        "CreateEventTrigStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "EVENT TRIGGER not supported",
        _OURS,
        False,
        "CREATE EVENT TRIGGER et ON ddl_command_end EXECUTE FUNCTION f()",
        match=_always,
    ),
    Rule(
        "create-language",
        "CreatePLangStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "CREATE LANGUAGE not supported",
        _OURS,
        False,
        "CREATE LANGUAGE plperl HANDLER plperl_call_handler",
        match=_always,
    ),
    Rule(
        "do-block",
        "DoStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "DO block not supported",
        _OURS,
        False,
        "DO $$ BEGIN PERFORM 1; END $$",
        match=_always,
    ),
    Rule(
        "declare-cursor",
        "DeclareCursorStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "DECLARE CURSOR not supported",
        _OURS,
        False,
        "DECLARE c CURSOR FOR SELECT 1",
        match=_always,
    ),
    Rule(
        "listen",
        "ListenStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: Listen",
        _REC,
        True,
        "LISTEN channel",
        match=_always,
    ),
    Rule(
        "unlisten",
        "UnlistenStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: Unlisten",
        _REC,
        True,
        "UNLISTEN channel",
        match=_always,
    ),
    Rule(
        "notify",
        "NotifyStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: Notify",
        _REC,
        True,
        "NOTIFY channel, 'hello'",
        match=_always,
    ),
    Rule(
        "alter-system",
        "AlterSystemStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: AlterSystem",
        _REC,
        True,
        "ALTER SYSTEM SET work_mem = '4MB'",
        match=_always,
    ),
    Rule(
        "create-database",
        "CreatedbStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: Createdb",
        _REC,
        True,
        "CREATE DATABASE other",
        match=_always,
    ),
    Rule(
        "create-tablespace",
        "CreateTableSpaceStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: CreateTableSpace",
        _REC,
        True,
        "CREATE TABLESPACE ts LOCATION '/tmp/ts'",
        match=_always,
    ),
    Rule(
        "create-foreign-table",
        "CreateForeignTableStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: CreateForeignTable",
        _REC,
        True,
        "CREATE FOREIGN TABLE ft (id int) SERVER srv",
        match=_always,
    ),
    Rule(
        "create-policy",
        "CreatePolicyStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: CreatePolicy",
        "T-PIST, live cluster, 2026-07-23",
        True,
        "CREATE POLICY p ON t USING (true)",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_always,
    ),
    Rule(
        "lock-table",
        "LockStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: Lock",
        "PGDP (awslabs/aurora-dsql-tools), 2026-08",
        True,
        "LOCK TABLE t",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_always,
    ),
    Rule(
        "merge",
        "MergeStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement type: MERGE",
        _REC,
        True,
        "MERGE INTO t USING (SELECT 1 AS id) AS s ON t.id = s.id"
        " WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
        "INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING",
        ("CREATE TABLE t (id int PRIMARY KEY)",),
        _always,
    ),
    Rule(
        "vacuum",
        "VacuumStmt",
        "VACUUM (ANALYZE alone runs)",
        FEATURE_NOT_SUPPORTED,
        "unsupported VACUUM statement",
        _REC,
        True,
        "VACUUM t",
        "ANALYZE t",
        ("CREATE TABLE t (id int PRIMARY KEY)",),
        _when(lambda n: bool(n.get("is_vacuumcmd"))),
    ),
    Rule(
        "materialized-view",
        "CreateTableAsStmt",
        "MATERIALIZED VIEW",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: CreateTableAs",
        _REC,
        True,
        "CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x",
        "CREATE VIEW v AS SELECT 1 AS x",
        match=_when(lambda n: n.get("objtype") == "OBJECT_MATVIEW"),
    ),
    Rule(
        "create-table-as",
        "CreateTableAsStmt",
        "CREATE TABLE ... AS",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: CreateTableAs",
        _REC,
        True,
        "CREATE TABLE t2 AS SELECT 1 AS x",
        match=_always,
    ),
    Rule(
        "refresh-materialized-view",
        "RefreshMatViewStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "MATERIALIZED VIEW not supported",
        _OURS,
        False,
        "REFRESH MATERIALIZED VIEW mv",
        match=_always,
    ),
    Rule(
        "select-into",
        "SelectStmt",
        "has INTO",
        FEATURE_NOT_SUPPORTED,
        "SELECT INTO not supported",
        _OURS,
        False,
        "SELECT 1 AS x INTO t2",
        "SELECT 1 AS x",
        match=_when(lambda n: "intoClause" in n),
    ),
    # Types.
    Rule(
        "create-enum",
        "CreateEnumStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "CREATE TYPE not supported",
        f"{_REC16} (T-PIST, 2026-07-23, saw 'unsupported statement: CreateEnum')",
        True,
        "CREATE TYPE mood AS ENUM ('sad', 'ok')",
        "CREATE DOMAIN mood AS text CHECK (VALUE IN ('sad', 'ok'))",
        match=_always,
    ),
    Rule(
        "create-composite-type",
        "CompositeTypeStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: CompositeType",
        _REC,
        True,
        "CREATE TYPE pair AS (a int, b int)",
        match=_always,
    ),
    Rule(
        "create-range-type",
        "CreateRangeStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "unsupported statement: CreateRange",
        _REC,
        True,
        "CREATE TYPE r AS RANGE (subtype = int4)",
        match=_always,
    ),
    Rule(
        "create-base-type",
        "DefineStmt",
        "CREATE TYPE (base or shell)",
        FEATURE_NOT_SUPPORTED,
        "CREATE TYPE not supported",
        _OURS,
        False,
        "CREATE TYPE shell_t",
        match=_when(lambda n: n.get("kind") == "OBJECT_TYPE"),
    ),
    Rule(
        "alter-enum",
        "AlterEnumStmt",
        "any",
        FEATURE_NOT_SUPPORTED,
        "ALTER TYPE not supported",
        _REC16,
        True,
        "ALTER TYPE mood ADD VALUE 'meh'",
        match=_always,
    ),
    Rule(
        "rename-type",
        "RenameStmt",
        "ALTER TYPE ... RENAME",
        FEATURE_NOT_SUPPORTED,
        "unsupported object in RENAME statement",
        _REC16,
        True,
        "ALTER TYPE mood RENAME TO feeling",
        "ALTER TABLE t RENAME TO t2",
        ("CREATE TABLE t (id int PRIMARY KEY)",),
        _when(lambda n: n.get("renameType") == "OBJECT_TYPE"),
    ),
    Rule(
        "drop-type",
        "DropStmt",
        "DROP TYPE, DROP MATERIALIZED VIEW",
        FEATURE_NOT_SUPPORTED,
        "unsupported object in DROP statement",
        f"{_REC16}; LINT (materialized views)",
        True,
        "DROP TYPE IF EXISTS mood",
        "DROP DOMAIN IF EXISTS mood",
        match=_drop_of("OBJECT_TYPE", "OBJECT_MATVIEW"),
    ),
    # Transactions.
    Rule(
        "savepoint",
        "TransactionStmt",
        "SAVEPOINT",
        FEATURE_NOT_SUPPORTED,
        "unsupported transaction statement: SAVEPOINT",
        _REC,
        True,
        "SAVEPOINT sp",
        match=_transaction("TRANS_STMT_SAVEPOINT"),
    ),
    Rule(
        "rollback-to-savepoint",
        "TransactionStmt",
        "ROLLBACK TO SAVEPOINT",
        FEATURE_NOT_SUPPORTED,
        "unsupported transaction statement: ROLLBACK TO",
        _REC,
        True,
        "ROLLBACK TO SAVEPOINT sp",
        "ROLLBACK",
        match=_transaction("TRANS_STMT_ROLLBACK_TO"),
    ),
    Rule(
        "release-savepoint",
        "TransactionStmt",
        "RELEASE SAVEPOINT",
        FEATURE_NOT_SUPPORTED,
        "unsupported transaction statement: RELEASE",
        f"{_OURS}, after the recorded SAVEPOINT and ROLLBACK TO",
        False,
        "RELEASE SAVEPOINT sp",
        match=_transaction("TRANS_STMT_RELEASE"),
    ),
    Rule(
        "prepare-transaction",
        "TransactionStmt",
        "PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED",
        FEATURE_NOT_SUPPORTED,
        "unsupported transaction statement: PREPARE TRANSACTION",
        _OURS,
        False,
        "PREPARE TRANSACTION 'tx'",
        match=_when(
            lambda n: (
                n.get("kind")
                in (
                    "TRANS_STMT_PREPARE",
                    "TRANS_STMT_COMMIT_PREPARED",
                    "TRANS_STMT_ROLLBACK_PREPARED",
                )
            )
        ),
    ),
    Rule(
        "isolation-level",
        "TransactionStmt",
        "BEGIN/START TRANSACTION with an isolation level but REPEATABLE READ",
        FEATURE_NOT_SUPPORTED,
        "Unsupported isolation level: {}",
        _REC,
        True,
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        match=_begin_isolation,
    ),
    Rule(
        "set-isolation-level",
        "VariableSetStmt",
        "SET TRANSACTION (or SESSION CHARACTERISTICS) with an isolation level"
        " but REPEATABLE READ",
        FEATURE_NOT_SUPPORTED,
        "Unsupported isolation level: {}",
        _REC,
        True,
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        match=_set_transaction_isolation,
    ),
    Rule(
        "set",
        "VariableSetStmt",
        "SET, SET SESSION, RESET of a setting outside DSQL's list"
        f" ({', '.join(sorted(SETTABLE))}; role with SET LOCAL only);"
        " SET TRANSACTION",
        FEATURE_NOT_SUPPORTED,
        'setting configuration parameter "{}" not supported',
        f"{_REC}; ACC (accessing.html), 2026-09-11",
        True,
        "SET statement_timeout = 1000",
        "SET search_path = public",
        match=_unsettable,
    ),
    Rule(
        "startup-setting",
        "startup packet",
        "a parameter, or an options -c/-- setting, outside DSQL's list (role included)",
        FEATURE_NOT_SUPPORTED,
        'setting configuration parameter "{}" not supported',
        "T-PIST, live cluster, 2026-07-23 (FATAL); ACC",
        True,
        "options=-c statement_timeout=1000",
        "options=-c search_path=app",
        verdict=Verdict.STARTUP,
    ),
    Rule(
        "show-removed-setting",
        "VariableShowStmt",
        "lc_collate, lc_ctype",
        UNDEFINED_OBJECT,
        'unrecognized configuration parameter "{}"',
        _REC16,
        True,
        "SHOW lc_collate",
        "SHOW timezone",
        match=lambda n: n.get("name") if n.get("name") in _REMOVED_SETTINGS else None,
    ),
    Rule(
        "alter-role-set",
        "AlterRoleSetStmt, AlterDatabaseSetStmt",
        "ALTER ROLE/USER/DATABASE ... SET or RESET (a later session's settings)",
        FEATURE_NOT_SUPPORTED,
        "ALTER ... SET of a setting not supported",
        f"LINT (ALTER ROLE ... SET unsupported); {_OURS}",
        False,
        "ALTER ROLE admin SET work_mem = '64MB'",
        "SET enable_seqscan = off",
        match=_always,
    ),
    Rule(
        "set-config",
        "FuncCall",
        "set_config()",
        FEATURE_NOT_SUPPORTED,
        "function set_config not supported",
        f"PGDP and AP say so; {_OURS}",
        False,
        "SELECT set_config('work_mem', '64MB', false)",
        "SELECT current_setting('search_path')",
        match=_named_function("set_config"),
    ),
    # Tables.
    Rule(
        "temporary-table",
        "CreateStmt",
        "TEMPORARY or TEMP",
        FEATURE_NOT_SUPPORTED,
        "TEMPORARY or TEMP table not supported for CREATE TABLE",
        f"{_REC}; {_SPIKE}",
        True,
        "CREATE TEMPORARY TABLE tmp (id int)",
        "CREATE TABLE tmp (id int)",
        match=_persistence("t"),
    ),
    Rule(
        "unlogged-table",
        "CreateStmt",
        "UNLOGGED",
        FEATURE_NOT_SUPPORTED,
        "UNLOGGED table not supported for CREATE TABLE",
        _REC,
        True,
        "CREATE UNLOGGED TABLE u (id int)",
        match=_persistence("u"),
    ),
    Rule(
        "partition-by",
        "CreateStmt",
        "PARTITION BY",
        FEATURE_NOT_SUPPORTED,
        "PARTITION BY clause not supported for CREATE TABLE",
        "T-PIST, live cluster, 2026-07-23",
        True,
        "CREATE TABLE p (id int, at date) PARTITION BY RANGE (at)",
        match=_when(lambda n: "partspec" in n),
    ),
    Rule(
        "partition-of",
        "CreateStmt",
        "PARTITION OF",
        FEATURE_NOT_SUPPORTED,
        "PARTITION OF clause not supported for CREATE TABLE",
        "T-PIST, live cluster, 2026-07-23",
        True,
        "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (1) TO (2)",
        match=_when(lambda n: "partbound" in n),
    ),
    Rule(
        "inherits",
        "CreateStmt",
        "INHERITS",
        FEATURE_NOT_SUPPORTED,
        "INHERITS not supported",
        _OURS,
        False,
        "CREATE TABLE c (x int) INHERITS (t)",
        match=_when(lambda n: "inhRelations" in n),
    ),
    Rule(
        "temporary-view",
        "ViewStmt",
        "TEMPORARY",
        FEATURE_NOT_SUPPORTED,
        "TEMPORARY VIEW not supported",
        f"CV says only permanent views; {_OURS}",
        False,
        "CREATE TEMP VIEW tv AS SELECT 1 AS x",
        "CREATE VIEW tv AS SELECT 1 AS x",
        match=_persistence("t", "view"),
    ),
    Rule(
        "serial",
        "ColumnDef",
        "type serial, bigserial, smallserial (serial2/4/8)",
        UNDEFINED_OBJECT,
        'type "{}" does not exist',
        f"{_REC}; T-JP 2026-07-05; AP 2026-10-01",
        True,
        "CREATE TABLE s (id serial PRIMARY KEY)",
        "CREATE TABLE s (id bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 1)"
        " PRIMARY KEY)",
        match=_serial,
    ),
    Rule(
        "array-column",
        "ColumnDef",
        "an array type",
        FEATURE_NOT_SUPPORTED,
        "datatype {} not supported",
        _REC16,
        True,
        "CREATE TABLE a (v text[])",
        "SELECT ARRAY['a', 'b']",
        match=_array_column,
    ),
    Rule(
        "column-type",
        "ColumnDef",
        "a built-in type DSQL has no column of: "
        + ", ".join(sorted(_UNSUPPORTED_TYPES)),
        FEATURE_NOT_SUPPORTED,
        "datatype {} not supported",
        _REC16,
        True,
        "CREATE TABLE m (v money)",
        "SELECT '127.0.0.1'::inet",
        match=_unsupported_type,
    ),
    Rule(
        "identity-type",
        "ColumnDef",
        "an identity column not of type bigint",
        FEATURE_NOT_SUPPORTED,
        "datatype {} not supported, identity column type must be bigint",
        _REC,
        True,
        "CREATE TABLE i (id integer GENERATED BY DEFAULT AS IDENTITY (CACHE 1))",
        "CREATE TABLE i (id bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 1))",
        match=_identity_not_bigint,
    ),
    Rule(
        "identity-cache-missing",
        "Constraint",
        "GENERATED ... AS IDENTITY without CACHE",
        FEATURE_NOT_SUPPORTED,
        "identity column is not supported without an explicit cache size."
        f" {CACHE_HINT}",
        _REC,
        True,
        "CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY)",
        "CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 65536))",
        match=_identity_without_cache,
    ),
    Rule(
        "identity-cache",
        "Constraint",
        "GENERATED ... AS IDENTITY with CACHE 2 to 65535",
        FEATURE_NOT_SUPPORTED,
        f"CACHE ({{}}) must be {CACHE_RANGE}",
        "T-MIG, live cluster, before 2026-08-25 (no SQLSTATE printed)",
        False,
        "CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 100))",
        "CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1))",
        match=_identity_bad_cache,
    ),
    # ALTER TABLE (AT, release notes 2026-07-06, 2026-08-03, 2026-08-26).
    Rule(
        "add-column-constraint",
        "AlterTableStmt",
        "ADD COLUMN with a constraint, default, identity or generated column",
        FEATURE_NOT_SUPPORTED,
        "ALTER TABLE ADD COLUMN with constraint not supported",
        f"{_REC}; {_SPIKE}",
        True,
        "ALTER TABLE t ADD COLUMN n int DEFAULT 7",
        "ALTER TABLE t ADD COLUMN n int",
        ("CREATE TABLE t (id int PRIMARY KEY)",),
        _add_column_with_constraint,
    ),
    Rule(
        "add-constraint",
        "AlterTableStmt",
        "ADD CONSTRAINT but CHECK ... NOT VALID, FOREIGN KEY ... NOT VALID and"
        " UNIQUE USING INDEX",
        FEATURE_NOT_SUPPORTED,
        "unsupported ALTER TABLE ADD CONSTRAINT statement",
        _REC,
        True,
        "ALTER TABLE t ADD CONSTRAINT positive CHECK (id > 0)",
        "ALTER TABLE t ADD CONSTRAINT positive CHECK (id > 0) NOT VALID",
        ("CREATE TABLE t (id int PRIMARY KEY)",),
        _add_constraint,
    ),
    Rule(
        "validate-constraint",
        "AlterTableStmt",
        "VALIDATE CONSTRAINT without ASYNC",
        FEATURE_NOT_SUPPORTED,
        "unsupported ALTER TABLE VALIDATE CONSTRAINT statement",
        _REC,
        True,
        "ALTER TABLE t VALIDATE CONSTRAINT positive",
        "ALTER TABLE ASYNC t VALIDATE CONSTRAINT positive",
        (
            "CREATE TABLE t (id int PRIMARY KEY)",
            "ALTER TABLE t ADD CONSTRAINT positive CHECK (id > 0) NOT VALID",
        ),
        _sync_validate,
    ),
    Rule(
        "alter-table-async",
        "AlterTableStmt",
        "ASYNC with anything but one VALIDATE CONSTRAINT",
        FEATURE_NOT_SUPPORTED,
        "unsupported ALTER TABLE ASYNC statement",
        f"AT: ASYNC is for VALIDATE only; {_OURS}",
        False,
        "ALTER TABLE ASYNC t ADD COLUMN n int",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_async_other_than_validate,
    ),
    Rule(
        "set-not-null",
        "AlterTableStmt",
        "ALTER COLUMN ... SET NOT NULL",
        FEATURE_NOT_SUPPORTED,
        "unsupported ALTER TABLE ALTER COLUMN ... SET NOT NULL statement",
        "T-LEPIN 2026-05-15, T-PIST 2026-07-23 (no SQLSTATE printed)",
        False,
        "ALTER TABLE t ALTER COLUMN n SET NOT NULL",
        "ALTER TABLE t ALTER COLUMN n DROP NOT NULL",
        ("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        _has("AT_SetNotNull"),
    ),
    Rule(
        "alter-column-type",
        "AlterTableStmt",
        "ALTER COLUMN ... [SET DATA] TYPE",
        FEATURE_NOT_SUPPORTED,
        "unsupported ALTER TABLE ALTER COLUMN ... SET DATA TYPE statement",
        f"{_REC}; {_SPIKE}",
        True,
        "ALTER TABLE t ALTER COLUMN n TYPE bigint",
        "ALTER TABLE t ALTER COLUMN n SET DEFAULT 0",
        ("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        _has("AT_AlterColumnType"),
    ),
    Rule(
        "set-statistics",
        "AlterTableStmt",
        "ALTER COLUMN ... SET STATISTICS",
        FEATURE_NOT_SUPPORTED,
        "unsupported ALTER TABLE ALTER COLUMN ... SET STATISTICS statement",
        "AP, live cluster, 2026-10-01",
        True,
        "ALTER TABLE t ALTER COLUMN n SET STATISTICS 100",
        "ALTER TABLE t ALTER COLUMN n SET STORAGE PLAIN",
        ("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        _has("AT_SetStatistics"),
    ),
    Rule(
        "row-security",
        "AlterTableStmt",
        "ENABLE/DISABLE/FORCE ROW LEVEL SECURITY",
        FEATURE_NOT_SUPPORTED,
        "unsupported ALTER TABLE ENABLE ROW SECURITY statement",
        "T-PIST, live cluster, 2026-07-23",
        True,
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_has(
            "AT_EnableRowSecurity",
            "AT_DisableRowSecurity",
            "AT_ForceRowSecurity",
            "AT_NoForceRowSecurity",
        ),
    ),
    Rule(
        "alter-table-other",
        "AlterTableStmt",
        "SET EXPRESSION, SET/RESET (options), SET COMPRESSION, ALTER COLUMN"
        " OPTIONS, INHERIT, ATTACH/DETACH PARTITION, REPLICA IDENTITY,"
        " SET LOGGED/UNLOGGED, SET TABLESPACE, SET ACCESS METHOD, CLUSTER ON",
        FEATURE_NOT_SUPPORTED,
        "unsupported ALTER TABLE statement",
        f"AT grammar lacks them; {_OURS}",
        False,
        "ALTER TABLE t SET UNLOGGED",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_has(
            "AT_SetExpression",
            "AT_SetOptions",
            "AT_ResetOptions",
            "AT_SetRelOptions",
            "AT_ResetRelOptions",
            "AT_SetCompression",
            "AT_AlterColumnGenericOptions",
            "AT_AddInherit",
            "AT_DropInherit",
            "AT_AttachPartition",
            "AT_DetachPartition",
            "AT_DetachPartitionFinalize",
            "AT_ReplicaIdentity",
            "AT_SetLogged",
            "AT_SetUnLogged",
            "AT_SetTableSpace",
            "AT_SetAccessMethod",
            "AT_ClusterOn",
        ),
    ),
    Rule(
        "drop-primary-key-column",
        "ALTER TABLE ... DROP COLUMN",
        "the column is part of the primary key",
        FEATURE_NOT_SUPPORTED,
        "cannot drop primary key column {}",
        _REC,
        True,
        "ALTER TABLE t DROP COLUMN id",
        "ALTER TABLE t DROP COLUMN n",
        ("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        verdict=Verdict.BACKEND,
    ),
    Rule(
        "drop-primary-key",
        "ALTER TABLE ... DROP CONSTRAINT",
        "the constraint is the primary key",
        FEATURE_NOT_SUPPORTED,
        "unsupported ALTER TABLE DROP CONSTRAINT statement",
        "T-PIST, live cluster, 2026-07-23",
        True,
        "ALTER TABLE t DROP CONSTRAINT t_pkey",
        "ALTER TABLE t DROP CONSTRAINT t_n_check",
        ("CREATE TABLE t (id int PRIMARY KEY, n int CHECK (n > 0))",),
        verdict=Verdict.BACKEND,
    ),
    # Indexes (CI, AI; partial and expression indexes run since 2026-08/09).
    Rule(
        "index-sort-order",
        "IndexStmt",
        "a key with ASC or DESC",
        FEATURE_NOT_SUPPORTED,
        "specifying sort order not supported for index keys",
        "AP, live cluster, 2026-10-01",
        True,
        "CREATE INDEX ASYNC t_n ON t (n DESC)",
        "CREATE INDEX ASYNC t_n ON t (n NULLS FIRST)",
        ("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        _sort_order,
    ),
    Rule(
        "index-opclass",
        "IndexStmt",
        "a key with an operator class",
        FEATURE_NOT_SUPPORTED,
        "opclass not supported for index keys",
        "AP, live cluster, 2026-10-01",
        True,
        "CREATE INDEX ASYNC t_s ON t (s text_pattern_ops)",
        "CREATE INDEX ASYNC t_s ON t (s)",
        ("CREATE TABLE t (id int PRIMARY KEY, s text)",),
        _opclass,
    ),
    Rule(
        "index-concurrently",
        "IndexStmt",
        "CONCURRENTLY",
        FEATURE_NOT_SUPPORTED,
        "CONCURRENTLY not supported for CREATE INDEX",
        "AP, live cluster, 2026-10-01",
        True,
        "CREATE INDEX CONCURRENTLY t_n ON t (n)",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        match=_when(lambda n: bool(n.get("concurrent"))),
    ),
    Rule(
        "index-using",
        "IndexStmt",
        "USING an access method (even btree)",
        FEATURE_NOT_SUPPORTED,
        "USING not supported for CREATE INDEX",
        "T-JP 2026-07-05, T-LEPIN 2026-05-15, T-PIST 2026-07-23",
        True,
        "CREATE INDEX ASYNC t_n ON t USING btree (n)",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        match=_when(lambda n: bool(n.get("using"))),
    ),
    Rule(
        "index-keys",
        "IndexStmt",
        f"more than {MAX_INDEX_KEYS} key columns",
        TOO_MANY_COLUMNS,
        f"more than {MAX_INDEX_KEYS} column keys in an index are not supported",
        "Q (CHAP_quotas.html), AP 2026-10-01",
        True,
        "CREATE INDEX ASYNC t_k ON t (a, b, c, d, e, f, g, h, i)",
        "CREATE INDEX ASYNC t_k ON t (a, b, c, d, e, f, g, h)",
        (
            "CREATE TABLE t (a int, b int, c int, d int, e int, f int, g int, h int,"
            " i int)",
        ),
        _too_many_keys,
    ),
    Rule(
        "index-not-async",
        "CREATE INDEX",
        f"without ASYNC, unless the session set {SYNC_INDEX_SETTING} = off",
        FEATURE_NOT_SUPPORTED,
        "unsupported mode. please use CREATE INDEX ASYNC.",
        f"{_REC16}; {_SPIKE}; ACC for the setting",
        True,
        "CREATE INDEX t_n ON t (n)",
        "CREATE INDEX ASYNC t_n ON t (n)",
        ("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        verdict=Verdict.BACKEND,
    ),
    Rule(
        "index-not-async-on-rows",
        "CREATE INDEX",
        f"without ASYNC after {SYNC_INDEX_SETTING} = off, on a table with rows",
        FEATURE_NOT_SUPPORTED,
        "CREATE INDEX on a table with rows not supported, use CREATE INDEX ASYNC",
        f"TS says ASYNC is needed on tables with rows; {_OURS}",
        False,
        "CREATE INDEX t_n ON t (n)",
        "CREATE INDEX ASYNC t_n ON t (n)",
        (
            "CREATE TABLE t (id int PRIMARY KEY, n int)",
            "INSERT INTO t VALUES (1, 1)",
            f"SET {SYNC_INDEX_SETTING} = off",
        ),
        verdict=Verdict.BACKEND,
    ),
    Rule(
        "indexes-per-table",
        "CREATE INDEX",
        f"the table has {MAX_INDEXES_PER_TABLE} indexes (its primary key included)",
        PROGRAM_LIMIT_EXCEEDED,
        f"more than {MAX_INDEXES_PER_TABLE} indexes per table are not allowed",
        "Q (CHAP_quotas.html), AP 2026-10-01",
        True,
        "CREATE INDEX ASYNC t_25 ON t (id)",
        "",
        (
            "CREATE TABLE t (id int PRIMARY KEY)",
            *(f"CREATE INDEX ASYNC t_{n} ON t (id)" for n in range(2, 25)),
        ),
        verdict=Verdict.BACKEND,
    ),
    # Sequences (CS, release notes 2026-02-13).
    Rule(
        "sequence-cache-missing",
        "CreateSeqStmt",
        "no CACHE",
        FEATURE_NOT_SUPPORTED,
        "CREATE SEQUENCE is not supported without an explicit cache size."
        f" {CACHE_HINT}",
        f"{_REC}; {_SPIKE}",
        True,
        "CREATE SEQUENCE s",
        "CREATE SEQUENCE s CACHE 1",
        match=_sequence_without_cache,
    ),
    Rule(
        "sequence-cache",
        "CreateSeqStmt, AlterSeqStmt",
        "CACHE 2 to 65535",
        FEATURE_NOT_SUPPORTED,
        f"CACHE ({{}}) must be {CACHE_RANGE}",
        "T-MIG, live cluster, before 2026-08-25 (no SQLSTATE printed)",
        False,
        "CREATE SEQUENCE s CACHE 100",
        "CREATE SEQUENCE s CACHE 65536",
        match=_sequence_bad_cache,
    ),
    Rule(
        "sequence-type",
        "CreateSeqStmt, AlterSeqStmt",
        "AS a type but bigint",
        FEATURE_NOT_SUPPORTED,
        "datatype {} not supported, sequence type must be bigint",
        f"CS says bigint only; {_OURS} (after the identity message)",
        False,
        "CREATE SEQUENCE s AS integer CACHE 1",
        "CREATE SEQUENCE s AS bigint CACHE 1",
        match=_sequence_not_bigint,
    ),
    Rule(
        "temporary-sequence",
        "CreateSeqStmt",
        "TEMPORARY",
        FEATURE_NOT_SUPPORTED,
        "TEMPORARY SEQUENCE not supported",
        _OURS,
        False,
        "CREATE TEMP SEQUENCE s CACHE 1",
        match=_persistence("t", "sequence"),
    ),
    # Functions (CF).
    Rule(
        "procedure",
        "CreateFunctionStmt",
        "CREATE PROCEDURE",
        FEATURE_NOT_SUPPORTED,
        "PROCEDURE is not supported",
        "CF; AP 2026-10-01",
        True,
        "CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        match=_when(lambda n: bool(n.get("is_procedure"))),
    ),
    Rule(
        "function-language",
        "CreateFunctionStmt",
        "LANGUAGE other than sql",
        FEATURE_NOT_SUPPORTED,
        "CREATE FUNCTION with language {} not supported",
        f"{_REC}; {_SPIKE}",
        True,
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1",
        match=_language,
    ),
    # Queries.
    Rule(
        "locking-clause",
        "LockingClause",
        "FOR SHARE, FOR NO KEY UPDATE",
        FEATURE_NOT_SUPPORTED,
        "locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported",
        f"{_REC16}; MS1442, MS1567",
        True,
        "SELECT * FROM t FOR SHARE",
        "SELECT * FROM t FOR KEY SHARE",
        ("CREATE TABLE t (id int PRIMARY KEY)",),
        _locking,
    ),
    Rule(
        "tablesample",
        "RangeTableSample",
        "any",
        FEATURE_NOT_SUPPORTED,
        "TABLESAMPLE clause not supported",
        _REC,
        True,
        "SELECT * FROM t TABLESAMPLE SYSTEM (1)",
        "SELECT * FROM t",
        ("CREATE TABLE t (id int PRIMARY KEY)",),
        _always,
    ),
    Rule(
        "advisory-lock",
        "FuncCall",
        "pg_advisory_*(), pg_try_advisory_*()",
        FEATURE_NOT_SUPPORTED,
        "function {} not supported",
        "GOOSE 2025-08-04, GMIG 2025-06-19, T-LEPIN 2026-05-15",
        True,
        "SELECT pg_advisory_lock(42)",
        match=_advisory,
    ),
    Rule(
        "pg-notify",
        "FuncCall",
        "pg_notify()",
        FEATURE_NOT_SUPPORTED,
        "function pg_notify not supported",
        f"AP lists it unsupported; {_OURS}",
        False,
        "SELECT pg_notify('channel', 'hello')",
        match=_named_function("pg_notify"),
    ),
    Rule(
        "geometric-function",
        "FuncCall",
        "point(), line(), lseg(), box(), path(), polygon(), circle()",
        FEATURE_NOT_SUPPORTED,
        "datatype {} not supported",
        f"{_REC} (line, circle; the others follow)",
        True,
        "SELECT line('{1,2,3}')",
        match=_named_function(
            "point", "line", "lseg", "box", "path", "polygon", "circle"
        ),
    ),
    Rule(
        "text-search-config",
        "FuncCall",
        "to_tsvector() and the like with a configuration name as a literal",
        UNDEFINED_OBJECT,
        'text search configuration "{}" does not exist',
        _REC,
        True,
        "SELECT to_tsvector('english', 'hello world')",
        "SELECT 'hello world' ILIKE '%world%'",
        match=_text_search_config,
    ),
    Rule(
        "copy-file",
        "CopyStmt",
        "to or from a server file or PROGRAM",
        FEATURE_NOT_SUPPORTED,
        "COPY to or from a file or program not supported",
        f"LINT (STDIN/STDOUT only); {_OURS}",
        False,
        "COPY t FROM '/tmp/t.csv'",
        "COPY t TO STDOUT",
        ("CREATE TABLE t (id int PRIMARY KEY)",),
        _copy_file,
    ),
)

RULES_BY_NAME = {rule.name: rule for rule in RULES}
STATEMENT_RULES: dict[str, tuple[Rule, ...]] = {}
for _rule in RULES:
    if _rule.verdict is Verdict.STATEMENT:
        for _node in _rule.node.split(", "):
            STATEMENT_RULES[_node] = (*STATEMENT_RULES.get(_node, ()), _rule)
del _rule, _node


_VERDICT_WORDS = {
    Verdict.STATEMENT: "the statement",
    Verdict.BACKEND: "the backend",
    Verdict.STARTUP: "the connection",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rules_page() -> str:
    """The docs page "What DSQL Local refuses", made from `RULES`."""
    lines = [
        "# What DSQL Local refuses",
        "",
        "<!-- Made from dsql_local/_strict_rules.py by rules_page(); a test",
        "     checks it is current. Do not edit by hand. -->",
        "",
        "In strict mode (the default) DSQL Local refuses what Aurora DSQL refuses,",
        "with DSQL's SQLSTATE and message. This page lists every rule it applies;",
        "what it does not list runs as PostgreSQL runs it. *Judged on* says what",
        "decides: the statement's parse tree, the backend (which sees rows and",
        "the catalog), or the connection's startup parameters (the connection",
        "fails). A rule not *confirmed* has no source giving DSQL's exact text or",
        "SQLSTATE: DSQL Local's own is used. Transaction rules (one DDL per",
        "transaction, no DDL with DML, 3,000 rows, 300 seconds) are on",
        "[DSQL Local and testing](testing.md).",
        "",
        "| Rule | Refuses | Judged on | SQLSTATE | Message | Example | Source |"
        " Confirmed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        refuses = f"`{rule.node}`: {rule.condition}"
        lines.append(
            "| "
            + " | ".join(
                _cell(cell)
                for cell in (
                    rule.name,
                    refuses,
                    _VERDICT_WORDS[rule.verdict],
                    rule.sqlstate,
                    f"`{rule.message}`",
                    f"`{rule.example}`",
                    rule.source,
                    "yes" if rule.confirmed else "no",
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"
