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
PROTOCOL_VIOLATION = "08P01"
INVALID_PARAMETER_VALUE = "22023"
UNDEFINED_OBJECT = "42704"
UNDEFINED_FUNCTION = "42883"
UNDEFINED_TABLE = "42P01"
SYNTAX_ERROR = "42601"
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


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One thing DSQL refuses, and how it says so: a row of the surface sheet.

    Rows are written with named fields only, so each reads like the sheet
    it came from.
    """

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


# -- PostgreSQL 17 and 18 -----------------------------------------------------------
# DSQL is PostgreSQL 16 ("16.15", recorded); DSQL Local's parser and backend may
# be newer. What they add, DSQL answers as PostgreSQL 16 does: mostly a syntax
# error at the first word its grammar does not take.

NEWER_FUNCTIONS: tuple[str, ...] = (
    # PostgreSQL 17
    "to_bin(integer)",
    "to_bin(bigint)",
    "to_oct(integer)",
    "to_oct(bigint)",
    "random(integer, integer)",
    "random(bigint, bigint)",
    "random(numeric, numeric)",
    "uuid_extract_timestamp(uuid)",
    "uuid_extract_version(uuid)",
    "pg_basetype(regtype)",
    "to_regtypemod(text)",
    "unicode_version()",
    "icu_unicode_version()",
    "unicode_assigned(text)",
    'pg_column_toast_chunk_id("any")',
    "pg_get_wait_events()",
    # PostgreSQL 18
    "uuidv4()",
    "uuidv7()",
    "uuidv7(interval)",
    "casefold(text)",
    "array_reverse(anyarray)",
    "array_sort(anyarray)",
    "array_sort(anyarray, boolean)",
    "array_sort(anyarray, boolean, boolean)",
    "crc32(bytea)",
    "crc32c(bytea)",
    "gamma(double precision)",
    "lgamma(double precision)",
    "reverse(bytea)",
    "json_strip_nulls(json, boolean)",
    "jsonb_strip_nulls(jsonb, boolean)",
    "has_largeobject_privilege(oid, text)",
    "has_largeobject_privilege(oid, oid, text)",
    "has_largeobject_privilege(name, oid, text)",
    "pg_get_acl(oid, oid, integer)",
    "pg_get_loaded_modules()",
    "pg_numa_available()",
)
"""Built-in functions PostgreSQL 17 and 18 added (signatures); hidden in strict
mode, so that a call gets PostgreSQL 16's 42883 and a function of the same
name that a user creates is the one called, as on DSQL."""
NEWER_AGGREGATES: tuple[str, ...] = (
    "max(bytea)",
    "min(bytea)",
    "max(record)",
    "min(record)",
)


NEWER_SETTINGS = frozenset(
    {
        # PostgreSQL 17
        "allow_alter_system",
        "commit_timestamp_buffers",
        "enable_group_by_reordering",
        "event_triggers",
        "huge_pages_status",
        "io_combine_limit",
        "max_notify_queue_pages",
        "multixact_member_buffers",
        "multixact_offset_buffers",
        "notify_buffers",
        "serializable_buffers",
        "subtransaction_buffers",
        "summarize_wal",
        "sync_replication_slots",
        "synchronized_standby_slots",
        "trace_connection_negotiation",
        "transaction_buffers",
        "transaction_timeout",
        "wal_summary_keep_time",
        # PostgreSQL 18
        "autovacuum_vacuum_max_threshold",
        "autovacuum_worker_slots",
        "enable_distinct_reordering",
        "enable_self_join_elimination",
        "file_copy_method",
        "idle_replication_slot_timeout",
        "io_max_combine_limit",
        "io_max_concurrency",
        "io_method",
        "io_workers",
        "log_lock_failures",
        "max_active_replication_origins",
        "md5_password_warnings",
        "num_os_semaphores",
        "track_cost_delay_timing",
        "vacuum_max_eager_freeze_failure_rate",
        "vacuum_truncate",
    }
)
"""Settings PostgreSQL 17 and 18 added: DSQL's 16 does not know them."""


def _newer_setting(node: Node) -> str | None:
    """SHOW or current_setting() (without missing_ok) of a newer setting."""
    if "funcname" in node:
        args = node.get("args", [])
        if _function_name(node) != "current_setting" or len(args) != 1:
            return None
        name = _const_text(args[0])
    else:
        name = node.get("name")
    name = str(name or "").lower()
    return name if name in NEWER_SETTINGS else None


def _syntax_error_at(word: str) -> Match:
    return lambda node: word


_JSON_BEHAVIORS = {
    "JSON_BEHAVIOR_NULL": "NULL",
    "JSON_BEHAVIOR_ERROR": "ERROR",
    "JSON_BEHAVIOR_EMPTY": "EMPTY",
    "JSON_BEHAVIOR_TRUE": "TRUE",
    "JSON_BEHAVIOR_FALSE": "FALSE",
    "JSON_BEHAVIOR_UNKNOWN": "UNKNOWN",
    "JSON_BEHAVIOR_EMPTY_ARRAY": "EMPTY",
    "JSON_BEHAVIOR_EMPTY_OBJECT": "EMPTY",
    "JSON_BEHAVIOR_DEFAULT": "DEFAULT",
}


def _json_clause(node: Node) -> str | None:
    """The first SQL/JSON clause word PostgreSQL 16 cannot read, if any."""
    if node.get("passing"):
        return "PASSING"
    if node.get("output"):
        return "RETURNING"
    wrapper = node.get("wrapper", "JSW_UNSPEC")
    if wrapper not in ("JSW_UNSPEC", None):
        return "WITHOUT" if wrapper == "JSW_NONE" else "WITH"
    quotes = node.get("quotes", "JS_QUOTES_UNSPEC")
    if quotes not in ("JS_QUOTES_UNSPEC", None):
        return "KEEP" if quotes == "JS_QUOTES_KEEP" else "OMIT"
    for key in ("on_empty", "on_error"):
        behavior = node.get(key)
        if behavior:
            fields = behavior.get("JsonBehavior", behavior)
            return _JSON_BEHAVIORS.get(fields.get("btype"), "ON")
    return None


_JSON_FUNCTIONS = {
    "JSON_QUERY_OP": "json_query",
    "JSON_VALUE_OP": "json_value",
    "JSON_EXISTS_OP": "json_exists",
}


def _json_function_call(node: Node) -> str | None:
    """JSON_QUERY/VALUE/EXISTS with no clause: PostgreSQL 16 calls a function."""
    if _json_clause(node) is not None:
        return None
    return _JSON_FUNCTIONS.get(node.get("op", ""))


def _json_table_word(node: Node) -> str:
    if (
        node.get("pathspec", {})
        .get("JsonTablePathSpec", node.get("pathspec", {}))
        .get("name")
    ):
        return "AS"
    return "PASSING" if node.get("passing") else "COLUMNS"


_NEWER_COPY_OPTIONS = frozenset({"on_error", "log_verbosity", "reject_limit"})
_NEWER_EXPLAIN_OPTIONS = frozenset({"serialize", "memory"})


def _newer_option(names: frozenset[str]) -> Match:
    def match(node: Node) -> str | None:
        for option in node.get("options", []):
            name = option.get("DefElem", {}).get("defname")
            if name in names:
                return str(name)
        return None

    return match


def _newer_constraint(node: Node) -> str | None:
    contype = node.get("contype")
    checks = (
        (
            contype == "CONSTR_GENERATED" and node.get("generated_kind") == "v",
            "VIRTUAL",
        ),
        (bool(node.get("without_overlaps")), "WITHOUT"),
        (bool(node.get("fk_with_period") or node.get("pk_with_period")), "PERIOD"),
        (contype in ("CONSTR_ATTR_ENFORCED", "CONSTR_ATTR_NOT_ENFORCED"), "ENFORCED"),
        # NOT ENFORCED on a table constraint leaves is_enforced unset.
        (
            contype in ("CONSTR_CHECK", "CONSTR_FOREIGN")
            and not node.get("is_enforced"),
            "ENFORCED",
        ),
        (contype == "CONSTR_NOTNULL" and bool(node.get("is_no_inherit")), "NO"),
    )
    return next((word for found, word in checks if found), None)


def _table_not_null(node: Node) -> str | None:
    for element in node.get("tableElts", []):
        if element.get("Constraint", {}).get("contype") == "CONSTR_NOTNULL":
            return "NOT"
    return None


def _returning_old_new(node: Node) -> str | None:
    """``RETURNING old.*, new.*`` (18): PostgreSQL 16 has no such tables."""
    clause = node.get("returningClause")
    if not isinstance(clause, dict) or clause.get("options"):
        return None
    relation = node.get("relation", {})
    names = {relation.get("relname"), relation.get("alias", {}).get("aliasname")}
    for name, found in _walk(clause.get("exprs", [])):
        if name != "ColumnRef":
            continue
        fields = strings(found.get("fields", []))
        if len(fields) > 1 and fields[0] in ("old", "new") and fields[0] not in names:
            return fields[0]
    return None


def _walk(tree: Any) -> list[tuple[str, Node]]:
    """Every typed node below `tree` (a small walk for a clause)."""
    found: list[tuple[str, Node]] = []
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            if len(item) == 1:
                ((key, value),) = item.items()
                if key[:1].isupper():
                    found.append((key, value))
            stack.extend(reversed(item.values()))
    return found


def _returning_with(node: Node) -> str | None:
    clause = node.get("returningClause")
    return "WITH" if isinstance(clause, dict) and clause.get("options") else None


def _at_local(node: Node) -> str | None:
    names = strings(node.get("funcname", []))
    one_arg = len(node.get("args", [])) == 1
    sql_syntax = node.get("funcformat") == "COERCE_SQL_SYNTAX"
    return "LOCAL" if names[-1:] == ["timezone"] and one_arg and sql_syntax else None


def _analyze_only(node: Node) -> str | None:
    for rel in node.get("rels", []):
        relation = rel.get("VacuumRelation", {}).get("relation", {})
        if relation and not relation.get("inh"):
            return "ONLY"
    return None


_REFUSED_OBJECTS = {
    "OBJECT_AGGREGATE": "aggregate",
    "OBJECT_OPERATOR": "operator",
    "OBJECT_OPCLASS": "operator class",
    "OBJECT_OPFAMILY": "operator family",
    "OBJECT_COLLATION": "collation",
    "OBJECT_CONVERSION": "conversion",
    "OBJECT_TABLESPACE": "tablespace",
    "OBJECT_FDW": "foreign-data wrapper",
    "OBJECT_FOREIGN_SERVER": "server",
    "OBJECT_PUBLICATION": "publication",
    "OBJECT_SUBSCRIPTION": "subscription",
    "OBJECT_RULE": "rule",
    "OBJECT_EVENT_TRIGGER": "event trigger",
    "OBJECT_LANGUAGE": "language",
    "OBJECT_TSPARSER": "text search parser",
    "OBJECT_TSDICTIONARY": "text search dictionary",
    "OBJECT_TSTEMPLATE": "text search template",
    "OBJECT_TSCONFIGURATION": "text search configuration",
}


def _alter_refused_object(node: Node) -> str | None:
    """RENAME, OWNER TO or SET SCHEMA of a kind of object DSQL does not have."""
    if "renameType" in node:
        return "RENAME" if node["renameType"] in _REFUSED_OBJECTS else None
    if node.get("objectType") not in _REFUSED_OBJECTS:
        return None
    return "ALTER OWNER" if "newowner" in node else "ALTER SCHEMA"


_DEFINED = {
    "OBJECT_AGGREGATE": "AGGREGATE",
    "OBJECT_OPERATOR": "OPERATOR",
    "OBJECT_COLLATION": "COLLATION",
    "OBJECT_TSPARSER": "TEXT SEARCH PARSER",
    "OBJECT_TSDICTIONARY": "TEXT SEARCH DICTIONARY",
    "OBJECT_TSTEMPLATE": "TEXT SEARCH TEMPLATE",
    "OBJECT_TSCONFIGURATION": "TEXT SEARCH CONFIGURATION",
}


def _define_refused(node: Node) -> str | None:
    return _DEFINED.get(node.get("kind", ""))


def _tablespace_clause(node: Node) -> str | None:
    return "" if node.get("tablespacename") or node.get("tableSpace") else None


# -- the table -----------------------------------------------------------------

_SPIKE = "T-SPIKE, live cluster, 2026-09-23"
_REC = "recorded on a real cluster, 2026-09-18"
_REC16 = "recorded on a real cluster, 2026-09-16"
_OURS = "no source gives DSQL's text; DSQL Local's own"
# AWS's tests run against live clusters (DSQL-FACTS: "What AWS's own client
# tests expect"); line numbers are those of the stored file at the commit.
_PY_CONNECTOR = "awslabs/aurora-dsql-python-connector tests/integration/"
_SQLALCHEMY = "awslabs/aurora-dsql-orms python/sqlalchemy/test/"
# DSQL names a statement it does not run by its parse-tree node, less "Stmt"
# ("unsupported statement: Truncate", "...: CreateTableSpace", recorded); the
# rows made by `_statement` follow that pattern where no source gives the text.
_NEWER = (
    "DSQL is PostgreSQL 16 (server_version 16.15, recorded 2026-09-16); the"
    " construct came later (PostgreSQL 17/18 release notes), so DSQL answers as"
    " PostgreSQL 16's grammar or catalog does"
)
_PATTERN = "DSQL's 'unsupported statement: <node>' pattern (recorded for 14 kinds)"


def _statement(node: str, *, name: str, example: str, source: str, **more: Any) -> Rule:
    """A statement DSQL does not run at all, refused in DSQL's words."""
    return Rule(
        name=name,
        node=node,
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message=f"unsupported statement: {node.removesuffix('Stmt')}",
        source=f"{source}; the text follows {_PATTERN}",
        confirmed=False,
        example=example,
        match=_always,
        **more,
    )


RULES: tuple[Rule, ...] = (
    # Statements DSQL does not run at all.
    Rule(
        name="truncate",
        node="TruncateStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: Truncate",
        source=f"{_REC}; {_SPIKE}",
        confirmed=True,
        example="TRUNCATE t",
        allowed="DELETE FROM t",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_always,
    ),
    Rule(
        name="create-extension",
        node="CreateExtensionStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: CreateExtension",
        source=f"{_REC}; {_SPIKE}",
        confirmed=True,
        example="CREATE EXTENSION IF NOT EXISTS plpgsql",
        match=_always,
    ),
    Rule(
        name="alter-extension",
        node="AlterExtensionStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="ALTER EXTENSION not supported",
        source=_OURS,
        confirmed=False,
        example="ALTER EXTENSION plpgsql UPDATE",
        match=_always,
    ),
    Rule(
        name="create-trigger",
        node="CreateTrigStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="CREATE TRIGGER not supported",
        source=f"{_REC}; {_SPIKE}",
        confirmed=True,
        example="CREATE TRIGGER t_noop BEFORE UPDATE ON t FOR EACH ROW"
        " EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_always,
    ),
    Rule(
        name="create-event-trigger",
        node="CreateEventTrigStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="EVENT TRIGGER not supported",
        source=_OURS,
        confirmed=False,
        example="CREATE EVENT TRIGGER et ON ddl_command_end EXECUTE FUNCTION f()",
        match=_always,
    ),
    Rule(
        name="create-language",
        node="CreatePLangStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="CREATE LANGUAGE not supported",
        source=_OURS,
        confirmed=False,
        example="CREATE LANGUAGE plperl HANDLER plperl_call_handler",
        match=_always,
    ),
    Rule(
        name="do-block",
        node="DoStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="DO block not supported",
        source=_OURS,
        confirmed=False,
        example="DO $$ BEGIN PERFORM 1; END $$",
        match=_always,
    ),
    Rule(
        name="declare-cursor",
        node="DeclareCursorStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="DECLARE CURSOR not supported",
        source=_OURS,
        confirmed=False,
        example="DECLARE c CURSOR FOR SELECT 1",
        match=_always,
    ),
    Rule(
        name="listen",
        node="ListenStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: Listen",
        source=_REC,
        confirmed=True,
        example="LISTEN channel",
        match=_always,
    ),
    Rule(
        name="unlisten",
        node="UnlistenStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: Unlisten",
        source=_REC,
        confirmed=True,
        example="UNLISTEN channel",
        match=_always,
    ),
    Rule(
        name="notify",
        node="NotifyStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: Notify",
        source=_REC,
        confirmed=True,
        example="NOTIFY channel, 'hello'",
        match=_always,
    ),
    Rule(
        name="alter-system",
        node="AlterSystemStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: AlterSystem",
        source=_REC,
        confirmed=True,
        example="ALTER SYSTEM SET work_mem = '4MB'",
        match=_always,
    ),
    Rule(
        name="create-database",
        node="CreatedbStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: Createdb",
        source=_REC,
        confirmed=True,
        example="CREATE DATABASE other",
        match=_always,
    ),
    Rule(
        name="create-tablespace",
        node="CreateTableSpaceStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: CreateTableSpace",
        source=_REC,
        confirmed=True,
        example="CREATE TABLESPACE ts LOCATION '/tmp/ts'",
        match=_always,
    ),
    Rule(
        name="create-foreign-table",
        node="CreateForeignTableStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: CreateForeignTable",
        source=_REC,
        confirmed=True,
        example="CREATE FOREIGN TABLE ft (id int) SERVER srv",
        match=_always,
    ),
    Rule(
        name="create-policy",
        node="CreatePolicyStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: CreatePolicy",
        source="T-PIST, live cluster, 2026-07-23",
        confirmed=True,
        example="CREATE POLICY p ON t USING (true)",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_always,
    ),
    Rule(
        name="lock-table",
        node="LockStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: Lock",
        source="PGDP (awslabs/aurora-dsql-tools), 2026-08",
        confirmed=True,
        example="LOCK TABLE t",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_always,
    ),
    Rule(
        name="merge",
        node="MergeStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement type: MERGE",
        source=_REC,
        confirmed=True,
        example="MERGE INTO t USING (SELECT 1 AS id) AS s ON t.id = s.id"
        " WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
        allowed="INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_always,
    ),
    Rule(
        name="vacuum",
        node="VacuumStmt",
        condition="VACUUM (ANALYZE alone runs)",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported VACUUM statement",
        source=_REC,
        confirmed=True,
        example="VACUUM t",
        allowed="ANALYZE t",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_when(lambda n: bool(n.get("is_vacuumcmd"))),
    ),
    Rule(
        name="materialized-view",
        node="CreateTableAsStmt",
        condition="MATERIALIZED VIEW",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: CreateTableAs",
        source=_REC,
        confirmed=True,
        example="CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x",
        allowed="CREATE VIEW v AS SELECT 1 AS x",
        match=_when(lambda n: n.get("objtype") == "OBJECT_MATVIEW"),
    ),
    Rule(
        name="create-table-as",
        node="CreateTableAsStmt",
        condition="CREATE TABLE ... AS",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: CreateTableAs",
        source=_REC,
        confirmed=True,
        example="CREATE TABLE t2 AS SELECT 1 AS x",
        match=_always,
    ),
    Rule(
        name="refresh-materialized-view",
        node="RefreshMatViewStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="MATERIALIZED VIEW not supported",
        source=_OURS,
        confirmed=False,
        example="REFRESH MATERIALIZED VIEW mv",
        match=_always,
    ),
    Rule(
        name="select-into",
        node="SelectStmt",
        condition="has INTO",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="SELECT INTO not supported",
        source=_OURS,
        confirmed=False,
        example="SELECT 1 AS x INTO t2",
        allowed="SELECT 1 AS x",
        match=_when(lambda n: "intoClause" in n),
    ),
    # Types.
    Rule(
        name="create-enum",
        node="CreateEnumStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="CREATE TYPE not supported",
        source=f"{_REC16} (T-PIST, 2026-07-23, saw"
        " 'unsupported statement: CreateEnum')",
        confirmed=True,
        example="CREATE TYPE mood AS ENUM ('sad', 'ok')",
        allowed="CREATE DOMAIN mood AS text CHECK (VALUE IN ('sad', 'ok'))",
        match=_always,
    ),
    Rule(
        name="create-composite-type",
        node="CompositeTypeStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: CompositeType",
        source=_REC,
        confirmed=True,
        example="CREATE TYPE pair AS (a int, b int)",
        match=_always,
    ),
    Rule(
        name="create-range-type",
        node="CreateRangeStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported statement: CreateRange",
        source=_REC,
        confirmed=True,
        example="CREATE TYPE r AS RANGE (subtype = int4)",
        match=_always,
    ),
    Rule(
        name="create-base-type",
        node="DefineStmt",
        condition="CREATE TYPE (base or shell)",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="CREATE TYPE not supported",
        source=_OURS,
        confirmed=False,
        example="CREATE TYPE shell_t",
        match=_when(lambda n: n.get("kind") == "OBJECT_TYPE"),
    ),
    Rule(
        name="alter-enum",
        node="AlterEnumStmt",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="ALTER TYPE not supported",
        source=_REC16,
        confirmed=True,
        example="ALTER TYPE mood ADD VALUE 'meh'",
        match=_always,
    ),
    Rule(
        name="rename-type",
        node="RenameStmt",
        condition="ALTER TYPE ... RENAME",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported object in RENAME statement",
        source=_REC16,
        confirmed=True,
        example="ALTER TYPE mood RENAME TO feeling",
        allowed="ALTER TABLE t RENAME TO t2",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_when(lambda n: n.get("renameType") == "OBJECT_TYPE"),
    ),
    Rule(
        name="drop-type",
        node="DropStmt",
        condition="DROP TYPE, DROP MATERIALIZED VIEW",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported object in DROP statement",
        source=f"{_REC16}; LINT (materialized views)",
        confirmed=True,
        example="DROP TYPE IF EXISTS mood",
        allowed="DROP DOMAIN IF EXISTS mood",
        match=_drop_of("OBJECT_TYPE", "OBJECT_MATVIEW"),
    ),
    # Transactions.
    Rule(
        name="savepoint",
        node="TransactionStmt",
        condition="SAVEPOINT",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported transaction statement: SAVEPOINT",
        source=_REC,
        confirmed=True,
        example="SAVEPOINT sp",
        match=_transaction("TRANS_STMT_SAVEPOINT"),
    ),
    Rule(
        name="rollback-to-savepoint",
        node="TransactionStmt",
        condition="ROLLBACK TO SAVEPOINT",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported transaction statement: ROLLBACK TO",
        source=_REC,
        confirmed=True,
        example="ROLLBACK TO SAVEPOINT sp",
        allowed="ROLLBACK",
        match=_transaction("TRANS_STMT_ROLLBACK_TO"),
    ),
    Rule(
        name="release-savepoint",
        node="TransactionStmt",
        condition="RELEASE SAVEPOINT",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported transaction statement: RELEASE",
        source=f"{_OURS}, after the recorded SAVEPOINT and ROLLBACK TO",
        confirmed=False,
        example="RELEASE SAVEPOINT sp",
        match=_transaction("TRANS_STMT_RELEASE"),
    ),
    Rule(
        name="prepare-transaction",
        node="TransactionStmt",
        condition="PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported transaction statement: PREPARE TRANSACTION",
        source=_OURS,
        confirmed=False,
        example="PREPARE TRANSACTION 'tx'",
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
        name="isolation-level",
        node="TransactionStmt",
        condition="BEGIN/START TRANSACTION with an isolation level but REPEATABLE READ",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="Unsupported isolation level: {}",
        source=_REC,
        confirmed=True,
        example="BEGIN ISOLATION LEVEL SERIALIZABLE",
        allowed="BEGIN ISOLATION LEVEL REPEATABLE READ",
        match=_begin_isolation,
    ),
    Rule(
        name="set-isolation-level",
        node="VariableSetStmt",
        condition="SET TRANSACTION (or SESSION CHARACTERISTICS) with an isolation level"
        " but REPEATABLE READ",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="Unsupported isolation level: {}",
        source=_REC,
        confirmed=True,
        example="SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        match=_set_transaction_isolation,
    ),
    Rule(
        name="set",
        node="VariableSetStmt",
        condition="SET, SET SESSION, RESET of a setting outside DSQL's list"
        f" ({', '.join(sorted(SETTABLE))}; role with SET LOCAL only);"
        " SET TRANSACTION",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message='setting configuration parameter "{}" not supported',
        source=f"{_REC}; ACC (accessing.html), 2026-09-11",
        confirmed=True,
        example="SET statement_timeout = 1000",
        allowed="SET search_path = public",
        match=_unsettable,
    ),
    Rule(
        name="startup-setting",
        node="startup packet",
        condition="a parameter, or an options -c/-- setting, outside DSQL's list"
        " (role included)",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message='setting configuration parameter "{}" not supported',
        source="T-PIST, live cluster, 2026-07-23 (FATAL); ACC",
        confirmed=True,
        example="options=-c statement_timeout=1000",
        allowed="options=-c search_path=app",
        verdict=Verdict.STARTUP,
    ),
    # Connections: DSQL Local answers these whether strict or not.
    Rule(
        name="plaintext-startup",
        node="startup packet",
        condition="sent without TLS (strict or not)",
        sqlstate=PROTOCOL_VIOLATION,
        message="unable to accept connection, SSL is mandatory",
        source=f"{_PY_CONNECTOR} test_integration_asyncpg.py:195"
        " test_basic_connection_ssl_false and :362"
        " test_connect_with_dsn_sslmode_disable (commit 04ebd6d): asyncpg's"
        " ProtocolViolationError (08P01), text containing 'SSL is mandatory';"
        " the words before it follow DSQL's other refusals at connect (§10)",
        confirmed=False,
        example="sslmode=disable",
        allowed="sslmode=verify-full",
        verdict=Verdict.STARTUP,
    ),
    Rule(
        name="unknown-role",
        node="startup packet",
        condition="a valid token for a role that does not exist (strict or not)",
        sqlstate=PROTOCOL_VIOLATION,
        message="unable to accept connection, access denied",
        source=f"{_PY_CONNECTOR} test_integration_asyncpg.py:150"
        " test_invalid_user_fails (commit 04ebd6d): asyncpg's"
        " ProtocolViolationError (08P01); the text is DSQL's refused-token"
        " answer (AP, observed 2026-10-01), with PostgreSQL's as DETAIL",
        confirmed=False,
        example="user=nobody_made_me",
        allowed="user=admin",
        verdict=Verdict.STARTUP,
    ),
    Rule(
        name="token-expires",
        node="IAM token",
        condition="X-Amz-Expires over 604800 (one week; strict or not)",
        sqlstate="28000",
        message="X-Amz-Expires must be less than a week (in seconds)",
        source=f"{_PY_CONNECTOR} test_integration_psycopg_common.py:193"
        " test_custom_token_duration (assert at line 210): psycopg's"
        " OperationalError with this text for 604801; SQLSTATE not shown,"
        " DSQL Local's own",
        confirmed=False,
        example="X-Amz-Expires=604801",
        allowed="X-Amz-Expires=604800",
        verdict=Verdict.STARTUP,
    ),
    Rule(
        name="show-removed-setting",
        node="VariableShowStmt",
        condition="lc_collate, lc_ctype",
        sqlstate=UNDEFINED_OBJECT,
        message='unrecognized configuration parameter "{}"',
        source=_REC16,
        confirmed=True,
        example="SHOW lc_collate",
        allowed="SHOW timezone",
        match=lambda n: n.get("name") if n.get("name") in _REMOVED_SETTINGS else None,
    ),
    Rule(
        name="alter-role-set",
        node="AlterRoleSetStmt, AlterDatabaseSetStmt",
        condition="ALTER ROLE/USER/DATABASE ... SET or RESET"
        " (a later session's settings)",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="ALTER ... SET of a setting not supported",
        source="LINT (ALTER ROLE ... SET unsupported); RESET chosen refused too:"
        " the same statement (AlterRoleSetStmt), no source has it run, and with"
        f" no SET to undo it has nothing to reset; {_OURS}",
        confirmed=False,
        example="ALTER ROLE admin SET work_mem = '64MB'",
        allowed="SET enable_seqscan = off",
        match=_always,
    ),
    Rule(
        name="set-config",
        node="FuncCall",
        condition="set_config()",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="function set_config not supported",
        source=f"PGDP and AP say so; {_OURS}",
        confirmed=False,
        example="SELECT set_config('work_mem', '64MB', false)",
        allowed="SELECT current_setting('search_path')",
        match=_named_function("set_config"),
    ),
    # Tables.
    Rule(
        name="temporary-table",
        node="CreateStmt",
        condition="TEMPORARY or TEMP",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="TEMPORARY or TEMP table not supported for CREATE TABLE",
        source=f"{_REC}; {_SPIKE}",
        confirmed=True,
        example="CREATE TEMPORARY TABLE tmp (id int)",
        allowed="CREATE TABLE tmp (id int)",
        match=_persistence("t"),
    ),
    Rule(
        name="unlogged-table",
        node="CreateStmt",
        condition="UNLOGGED",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="UNLOGGED table not supported for CREATE TABLE",
        source=_REC,
        confirmed=True,
        example="CREATE UNLOGGED TABLE u (id int)",
        match=_persistence("u"),
    ),
    Rule(
        name="partition-by",
        node="CreateStmt",
        condition="PARTITION BY",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="PARTITION BY clause not supported for CREATE TABLE",
        source="T-PIST, live cluster, 2026-07-23",
        confirmed=True,
        example="CREATE TABLE p (id int, at date) PARTITION BY RANGE (at)",
        match=_when(lambda n: "partspec" in n),
    ),
    Rule(
        name="partition-of",
        node="CreateStmt",
        condition="PARTITION OF",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="PARTITION OF clause not supported for CREATE TABLE",
        source="T-PIST, live cluster, 2026-07-23",
        confirmed=True,
        example="CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (1) TO (2)",
        match=_when(lambda n: "partbound" in n),
    ),
    Rule(
        name="inherits",
        node="CreateStmt",
        condition="INHERITS",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="INHERITS not supported",
        source=_OURS,
        confirmed=False,
        example="CREATE TABLE c (x int) INHERITS (t)",
        match=_when(lambda n: "inhRelations" in n),
    ),
    Rule(
        name="temporary-view",
        node="ViewStmt",
        condition="TEMPORARY",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="TEMPORARY VIEW not supported",
        source=f"CV says only permanent views; {_OURS}",
        confirmed=False,
        example="CREATE TEMP VIEW tv AS SELECT 1 AS x",
        allowed="CREATE VIEW tv AS SELECT 1 AS x",
        match=_persistence("t", "view"),
    ),
    Rule(
        name="serial",
        node="ColumnDef",
        condition="type serial, bigserial, smallserial (serial2/4/8)",
        sqlstate=UNDEFINED_OBJECT,
        message='type "{}" does not exist',
        source=f"{_REC}; T-JP 2026-07-05; AP 2026-10-01",
        confirmed=True,
        example="CREATE TABLE s (id serial PRIMARY KEY)",
        allowed="CREATE TABLE s (id bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 1)"
        " PRIMARY KEY)",
        match=_serial,
    ),
    Rule(
        name="array-column",
        node="ColumnDef",
        condition="an array type",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="datatype {} not supported",
        source=_REC16,
        confirmed=True,
        example="CREATE TABLE a (v text[])",
        allowed="SELECT ARRAY['a', 'b']",
        match=_array_column,
    ),
    Rule(
        name="column-type",
        node="ColumnDef",
        condition="a built-in type DSQL has no column of: "
        + ", ".join(sorted(_UNSUPPORTED_TYPES)),
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="datatype {} not supported",
        source=_REC16,
        confirmed=True,
        example="CREATE TABLE m (v money)",
        allowed="SELECT '127.0.0.1'::inet",
        match=_unsupported_type,
    ),
    Rule(
        name="identity-type",
        node="ColumnDef",
        condition="an identity column not of type bigint",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="datatype {} not supported, identity column type must be bigint",
        source=_REC,
        confirmed=True,
        example="CREATE TABLE i (id integer GENERATED BY DEFAULT AS IDENTITY"
        " (CACHE 1))",
        allowed="CREATE TABLE i (id bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 1))",
        match=_identity_not_bigint,
    ),
    Rule(
        name="identity-cache-missing",
        node="Constraint",
        condition="GENERATED ... AS IDENTITY without CACHE",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="identity column is not supported without an explicit cache size."
        f" {CACHE_HINT}",
        source=_REC,
        confirmed=True,
        example="CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY)",
        allowed="CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 65536))",
        match=_identity_without_cache,
    ),
    Rule(
        name="identity-cache",
        node="Constraint",
        condition="GENERATED ... AS IDENTITY with CACHE 2 to 65535",
        sqlstate=INVALID_PARAMETER_VALUE,
        message=f"CACHE ({{}}) must be {CACHE_RANGE}",
        source="T-MIG, live cluster, before 2026-08-25 (the text, no SQLSTATE);"
        f" {_SQLALCHEMY}test_serial_primary_key.py:93 test_invalid_cache_size"
        " (commit 031dfd3; CACHE 2, 1000, 65535): DataError, SQLSTATE class 22,"
        " and this text; 22023 is PostgreSQL's code for a bad sequence option",
        confirmed=False,
        example="CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 100))",
        allowed="CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1))",
        match=_identity_bad_cache,
    ),
    # ALTER TABLE (AT, release notes 2026-07-06, 2026-08-03, 2026-08-26).
    Rule(
        name="add-column-constraint",
        node="AlterTableStmt",
        condition="ADD COLUMN with a constraint, default, identity or generated column",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="ALTER TABLE ADD COLUMN with constraint not supported",
        source=f"{_REC}; {_SPIKE}",
        confirmed=True,
        example="ALTER TABLE t ADD COLUMN n int DEFAULT 7",
        allowed="ALTER TABLE t ADD COLUMN n int",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_add_column_with_constraint,
    ),
    Rule(
        name="add-constraint",
        node="AlterTableStmt",
        condition="ADD CONSTRAINT but CHECK ... NOT VALID, FOREIGN KEY ... NOT VALID"
        " and UNIQUE USING INDEX",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported ALTER TABLE ADD CONSTRAINT statement",
        source=_REC,
        confirmed=True,
        example="ALTER TABLE t ADD CONSTRAINT positive CHECK (id > 0)",
        allowed="ALTER TABLE t ADD CONSTRAINT positive CHECK (id > 0) NOT VALID",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_add_constraint,
    ),
    Rule(
        name="validate-constraint",
        node="AlterTableStmt",
        condition="VALIDATE CONSTRAINT without ASYNC",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported ALTER TABLE VALIDATE CONSTRAINT statement",
        source=_REC,
        confirmed=True,
        example="ALTER TABLE t VALIDATE CONSTRAINT positive",
        allowed="ALTER TABLE ASYNC t VALIDATE CONSTRAINT positive",
        setup=(
            "CREATE TABLE t (id int PRIMARY KEY)",
            "ALTER TABLE t ADD CONSTRAINT positive CHECK (id > 0) NOT VALID",
        ),
        match=_sync_validate,
    ),
    Rule(
        name="alter-table-async",
        node="AlterTableStmt",
        condition="ASYNC with anything but one VALIDATE CONSTRAINT",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported ALTER TABLE ASYNC statement",
        source=f"AT: ASYNC is for VALIDATE only; {_OURS}",
        confirmed=False,
        example="ALTER TABLE ASYNC t ADD COLUMN n int",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_async_other_than_validate,
    ),
    Rule(
        name="set-not-null",
        node="AlterTableStmt",
        condition="ALTER COLUMN ... SET NOT NULL",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported ALTER TABLE ALTER COLUMN ... SET NOT NULL statement",
        source="T-LEPIN 2026-05-15, T-PIST 2026-07-23 (no SQLSTATE printed)",
        confirmed=False,
        example="ALTER TABLE t ALTER COLUMN n SET NOT NULL",
        allowed="ALTER TABLE t ALTER COLUMN n DROP NOT NULL",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        match=_has("AT_SetNotNull"),
    ),
    Rule(
        name="alter-column-type",
        node="AlterTableStmt",
        condition="ALTER COLUMN ... [SET DATA] TYPE",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported ALTER TABLE ALTER COLUMN ... SET DATA TYPE statement",
        source=f"{_REC}; {_SPIKE}",
        confirmed=True,
        example="ALTER TABLE t ALTER COLUMN n TYPE bigint",
        allowed="ALTER TABLE t ALTER COLUMN n SET DEFAULT 0",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        match=_has("AT_AlterColumnType"),
    ),
    Rule(
        name="set-statistics",
        node="AlterTableStmt",
        condition="ALTER COLUMN ... SET STATISTICS",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported ALTER TABLE ALTER COLUMN ... SET STATISTICS statement",
        source="AP, live cluster, 2026-10-01",
        confirmed=True,
        example="ALTER TABLE t ALTER COLUMN n SET STATISTICS 100",
        allowed="ALTER TABLE t ALTER COLUMN n SET STORAGE PLAIN",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        match=_has("AT_SetStatistics"),
    ),
    Rule(
        name="row-security",
        node="AlterTableStmt",
        condition="ENABLE/DISABLE/FORCE ROW LEVEL SECURITY",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported ALTER TABLE ENABLE ROW SECURITY statement",
        source="T-PIST, live cluster, 2026-07-23",
        confirmed=True,
        example="ALTER TABLE t ENABLE ROW LEVEL SECURITY",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_has(
            "AT_EnableRowSecurity",
            "AT_DisableRowSecurity",
            "AT_ForceRowSecurity",
            "AT_NoForceRowSecurity",
        ),
    ),
    Rule(
        name="alter-table-other",
        node="AlterTableStmt",
        condition="SET EXPRESSION, SET/RESET (options), SET COMPRESSION, ALTER COLUMN"
        " OPTIONS, INHERIT, ATTACH/DETACH PARTITION, REPLICA IDENTITY,"
        " SET LOGGED/UNLOGGED, SET TABLESPACE, SET ACCESS METHOD, CLUSTER ON",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported ALTER TABLE statement",
        source=f"AT grammar lacks them; {_OURS}",
        confirmed=False,
        example="ALTER TABLE t SET UNLOGGED",
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
        name="drop-primary-key-column",
        node="ALTER TABLE ... DROP COLUMN",
        condition="the column is part of the primary key",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="cannot drop primary key column {}",
        source=_REC,
        confirmed=True,
        example="ALTER TABLE t DROP COLUMN id",
        allowed="ALTER TABLE t DROP COLUMN n",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        verdict=Verdict.BACKEND,
    ),
    Rule(
        name="drop-primary-key",
        node="ALTER TABLE ... DROP CONSTRAINT",
        condition="the constraint is the primary key",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported ALTER TABLE DROP CONSTRAINT statement",
        source="T-PIST, live cluster, 2026-07-23",
        confirmed=True,
        example="ALTER TABLE t DROP CONSTRAINT t_pkey",
        allowed="ALTER TABLE t DROP CONSTRAINT t_n_check",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int CHECK (n > 0))",),
        verdict=Verdict.BACKEND,
    ),
    # Indexes (CI, AI; partial and expression indexes run since 2026-08/09).
    Rule(
        name="index-sort-order",
        node="IndexStmt",
        condition="a key with ASC or DESC",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="specifying sort order not supported for index keys",
        source="AP, live cluster, 2026-10-01",
        confirmed=True,
        example="CREATE INDEX ASYNC t_n ON t (n DESC)",
        allowed="CREATE INDEX ASYNC t_n ON t (n NULLS FIRST)",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        match=_sort_order,
    ),
    Rule(
        name="index-opclass",
        node="IndexStmt",
        condition="a key with an operator class",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="opclass not supported for index keys",
        source="AP, live cluster, 2026-10-01",
        confirmed=True,
        example="CREATE INDEX ASYNC t_s ON t (s text_pattern_ops)",
        allowed="CREATE INDEX ASYNC t_s ON t (s)",
        setup=("CREATE TABLE t (id int PRIMARY KEY, s text)",),
        match=_opclass,
    ),
    Rule(
        name="index-concurrently",
        node="IndexStmt",
        condition="CONCURRENTLY",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="CONCURRENTLY not supported for CREATE INDEX",
        source="AP, live cluster, 2026-10-01",
        confirmed=True,
        example="CREATE INDEX CONCURRENTLY t_n ON t (n)",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        match=_when(lambda n: bool(n.get("concurrent"))),
    ),
    Rule(
        name="index-using",
        node="IndexStmt",
        condition="USING an access method (even btree)",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="USING not supported for CREATE INDEX",
        source="T-JP 2026-07-05, T-LEPIN 2026-05-15, T-PIST 2026-07-23",
        confirmed=True,
        example="CREATE INDEX ASYNC t_n ON t USING btree (n)",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        match=_when(lambda n: bool(n.get("using"))),
    ),
    Rule(
        name="index-keys",
        node="IndexStmt",
        condition=f"more than {MAX_INDEX_KEYS} key columns",
        sqlstate=TOO_MANY_COLUMNS,
        message=f"more than {MAX_INDEX_KEYS} column keys in an index are not supported",
        source="Q (CHAP_quotas.html), AP 2026-10-01",
        confirmed=True,
        example="CREATE INDEX ASYNC t_k ON t (a, b, c, d, e, f, g, h, i)",
        allowed="CREATE INDEX ASYNC t_k ON t (a, b, c, d, e, f, g, h)",
        setup=(
            "CREATE TABLE t (a int, b int, c int, d int, e int, f int, g int, h int,"
            " i int)",
        ),
        match=_too_many_keys,
    ),
    Rule(
        name="index-not-async",
        node="CREATE INDEX",
        condition=f"without ASYNC, unless the session set {SYNC_INDEX_SETTING} = off",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported mode. please use CREATE INDEX ASYNC.",
        source=f"{_REC16}; {_SPIKE}; ACC for the setting",
        confirmed=True,
        example="CREATE INDEX t_n ON t (n)",
        allowed="CREATE INDEX ASYNC t_n ON t (n)",
        setup=("CREATE TABLE t (id int PRIMARY KEY, n int)",),
        verdict=Verdict.BACKEND,
    ),
    Rule(
        name="index-not-async-on-rows",
        node="CREATE INDEX",
        condition=f"without ASYNC after {SYNC_INDEX_SETTING} = off,"
        " on a table with rows",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="CREATE INDEX on a table with rows not supported,"
        " use CREATE INDEX ASYNC",
        source=f"TS says ASYNC is needed on tables with rows; {_OURS}",
        confirmed=False,
        example="CREATE INDEX t_n ON t (n)",
        allowed="CREATE INDEX ASYNC t_n ON t (n)",
        setup=(
            "CREATE TABLE t (id int PRIMARY KEY, n int)",
            "INSERT INTO t VALUES (1, 1)",
            f"SET {SYNC_INDEX_SETTING} = off",
        ),
        verdict=Verdict.BACKEND,
    ),
    Rule(
        name="indexes-per-table",
        node="CREATE INDEX",
        condition=f"the table has {MAX_INDEXES_PER_TABLE} indexes"
        " (its primary key included)",
        sqlstate=PROGRAM_LIMIT_EXCEEDED,
        message=f"more than {MAX_INDEXES_PER_TABLE} indexes per table are not allowed",
        source="Q (CHAP_quotas.html), AP 2026-10-01",
        confirmed=True,
        example="CREATE INDEX ASYNC t_25 ON t (id)",
        allowed="",
        setup=(
            "CREATE TABLE t (id int PRIMARY KEY)",
            *(f"CREATE INDEX ASYNC t_{n} ON t (id)" for n in range(2, 25)),
        ),
        verdict=Verdict.BACKEND,
    ),
    # Sequences (CS, release notes 2026-02-13).
    Rule(
        name="sequence-cache-missing",
        node="CreateSeqStmt",
        condition="no CACHE",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="CREATE SEQUENCE is not supported without an explicit cache size."
        f" {CACHE_HINT}",
        source=f"{_REC}; {_SPIKE}",
        confirmed=True,
        example="CREATE SEQUENCE s",
        allowed="CREATE SEQUENCE s CACHE 1",
        match=_sequence_without_cache,
    ),
    Rule(
        name="sequence-cache",
        node="CreateSeqStmt, AlterSeqStmt",
        condition="CACHE 2 to 65535",
        sqlstate=INVALID_PARAMETER_VALUE,
        message=f"CACHE ({{}}) must be {CACHE_RANGE}",
        source="T-MIG, live cluster, before 2026-08-25 (the text, no SQLSTATE);"
        " the SQLSTATE as for an identity column's CACHE (rule identity-cache:"
        " class 22 in AWS's SQLAlchemy tests), whose sequence it is",
        confirmed=False,
        example="CREATE SEQUENCE s CACHE 100",
        allowed="CREATE SEQUENCE s CACHE 65536",
        match=_sequence_bad_cache,
    ),
    Rule(
        name="sequence-type",
        node="CreateSeqStmt, AlterSeqStmt",
        condition="AS a type but bigint",
        sqlstate=INVALID_PARAMETER_VALUE,
        message="datatype {} not supported, sequence type must be bigint",
        source=f"CS says bigint only; {_SQLALCHEMY}test_sequence.py:164"
        " test_unsupported_decimal_seq (commit 19049f8; AS DECIMAL(10, 0)"
        " CACHE 65536): DataError, SQLSTATE class 22, text containing 'sequence"
        " type must be bigint'; the words before it follow the identity"
        " message, 22023 is PostgreSQL's code for a bad sequence type",
        confirmed=False,
        example="CREATE SEQUENCE s AS integer CACHE 1",
        allowed="CREATE SEQUENCE s AS bigint CACHE 1",
        match=_sequence_not_bigint,
    ),
    Rule(
        name="temporary-sequence",
        node="CreateSeqStmt",
        condition="TEMPORARY",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="TEMPORARY SEQUENCE not supported",
        source=_OURS,
        confirmed=False,
        example="CREATE TEMP SEQUENCE s CACHE 1",
        match=_persistence("t", "sequence"),
    ),
    # Functions (CF).
    Rule(
        name="procedure",
        node="CreateFunctionStmt",
        condition="CREATE PROCEDURE",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="PROCEDURE is not supported",
        source="CF; AP 2026-10-01",
        confirmed=True,
        example="CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$",
        allowed="CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        match=_when(lambda n: bool(n.get("is_procedure"))),
    ),
    Rule(
        name="function-language",
        node="CreateFunctionStmt",
        condition="LANGUAGE other than sql",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="CREATE FUNCTION with language {} not supported",
        source=f"{_REC}; {_SPIKE}",
        confirmed=True,
        example="CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN 1; END $$",
        allowed="CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1",
        match=_language,
    ),
    # Roles, functions and other objects DSQL has not (§7 of the surface sheet).
    _statement(
        "AlterRoleStmt",
        name="alter-role",
        example="ALTER ROLE admin WITH PASSWORD 'secret'",
        allowed="ALTER ROLE r RENAME TO r2",
        setup=("DROP ROLE IF EXISTS r", "DROP ROLE IF EXISTS r2", "CREATE ROLE r"),
        source="surface sheet §7: ALTER ROLE ... WITH options, VALID UNTIL,"
        " (NO)SUPERUSER, CREATEROLE, CONNECTION LIMIT unsupported (UF, MG, LINT);"
        " RENAME TO runs since 2026-04-24 (RN); DSQL logs in with IAM tokens,"
        " no passwords (TS)",
    ),
    _statement(
        "AlterFunctionStmt",
        name="alter-function",
        example="ALTER FUNCTION f() IMMUTABLE",
        allowed="ALTER FUNCTION f() RENAME TO g",
        setup=("CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1",),
        source="AF (alter-function-syntax-support.html): only RENAME TO, OWNER TO"
        " and SET SCHEMA; LINT: property changes unsupported",
    ),
    _statement(
        "DropTableSpaceStmt",
        name="drop-tablespace",
        example="DROP TABLESPACE IF EXISTS ts",
        source="UF (tablespaces unsupported); GRAM has no tablespace clause",
    ),
    _statement(
        "AlterTableSpaceOptionsStmt",
        name="alter-tablespace",
        example="ALTER TABLESPACE pg_default SET (seq_page_cost = 1)",
        source="UF (tablespaces unsupported)",
    ),
    _statement(
        "AlterTableMoveAllStmt",
        name="move-to-tablespace",
        example="ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE pg_default",
        source="UF (tablespaces unsupported)",
    ),
    Rule(
        name="tablespace-clause",
        node="CreateStmt, IndexStmt",
        condition="a TABLESPACE clause",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="TABLESPACE clause not supported",
        source="UF (tablespaces unsupported); GRAM: OptTableSpace empty (the"
        f" grammar of what ran on a real cluster, 2026-08-07); {_OURS}",
        confirmed=False,
        example="CREATE TABLE t (id int PRIMARY KEY) TABLESPACE pg_default",
        allowed="CREATE TABLE t (id int PRIMARY KEY)",
        match=_tablespace_clause,
    ),
    Rule(
        name="create-table-with",
        node="CreateStmt",
        condition="WITH (storage parameters)",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="WITH clause not supported for CREATE TABLE",
        source="chosen: GRAM's CREATE TABLE takes WITHOUT OIDS only (OptWith;"
        " the grammar of what ran on a real cluster, 2026-08-07) and ALTER TABLE"
        f" SET (storage parameters) is outside AT's grammar; {_OURS}, after"
        " DSQL's CREATE TABLE refusals",
        confirmed=False,
        example="CREATE TABLE t (id int PRIMARY KEY) WITH (fillfactor = 70)",
        allowed="CREATE TABLE t (id int PRIMARY KEY)",
        match=_when(lambda n: bool(n.get("options"))),
    ),
    Rule(
        name="column-collate",
        node="ColumnDef",
        condition="COLLATE (DSQL collates in C only)",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="COLLATE clause not supported for column definitions",
        source="UF ('CREATE TABLE COLLATE'); AP (DDL refuses even COLLATE \"C\");"
        f" {_OURS}",
        confirmed=False,
        example='CREATE TABLE t (id int PRIMARY KEY, s text COLLATE "en_US")',
        allowed="CREATE TABLE t (id int PRIMARY KEY, s text)",
        match=_when(lambda n: "collClause" in n),
    ),
    *(
        _statement(node, name=name, example=example, source=source)
        for node, name, example, source in (
            (
                "CreateForeignServerStmt",
                "create-server",
                "CREATE SERVER srv FOREIGN DATA WRAPPER fdw",
                "LINT: CREATE SERVER unsupported; sheet §7",
            ),
            (
                "CreateFdwStmt",
                "create-foreign-data-wrapper",
                "CREATE FOREIGN DATA WRAPPER fdw",
                "UF (postgres_fdw unavailable); sheet §7",
            ),
            (
                "CreateUserMappingStmt",
                "create-user-mapping",
                "CREATE USER MAPPING FOR admin SERVER srv",
                "UF (postgres_fdw unavailable); sheet §7",
            ),
            (
                "ImportForeignSchemaStmt",
                "import-foreign-schema",
                "IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public",
                "UF (postgres_fdw unavailable); sheet §7",
            ),
            (
                "CreateCastStmt",
                "create-cast",
                "CREATE CAST (int AS text) WITH INOUT",
                "sheet §7: CREATE CAST in no AWS list of what runs",
            ),
            (
                "CreateOpClassStmt",
                "create-operator-class",
                "CREATE OPERATOR CLASS c FOR TYPE int USING btree AS OPERATOR 1 <",
                "sheet §7: CREATE OPERATOR in no AWS list of what runs",
            ),
            (
                "CreateConversionStmt",
                "create-conversion",
                "CREATE CONVERSION c FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8",
                "sheet §7 (no AWS list has it)",
            ),
            (
                "RuleStmt",
                "create-rule",
                "CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING",
                "sheet §7: CREATE RULE in no AWS list of what runs",
            ),
            (
                "CreatePublicationStmt",
                "create-publication",
                "CREATE PUBLICATION pub FOR ALL TABLES",
                "sheet §7 (no AWS list has it; DSQL's CDC is its own)",
            ),
            (
                "CreateSubscriptionStmt",
                "create-subscription",
                "CREATE SUBSCRIPTION sub CONNECTION 'host=x' PUBLICATION pub",
                "sheet §7 (no AWS list has it)",
            ),
            (
                "ClusterStmt",
                "cluster",
                "CLUSTER t USING t_pkey",
                "sheet §7: CLUSTER in no AWS list of what runs",
            ),
            (
                "ReindexStmt",
                "reindex",
                "REINDEX TABLE t",
                "sheet §7: REINDEX in no AWS list of what runs",
            ),
            (
                "CheckPointStmt",
                "checkpoint",
                "CHECKPOINT",
                "sheet §7: CHECKPOINT in no AWS list of what runs",
            ),
        )
    ),
    Rule(
        name="create-other-object",
        node="DefineStmt",
        condition="CREATE AGGREGATE, OPERATOR, COLLATION, TEXT SEARCH ...",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="CREATE {} not supported",
        source=f"sheet §7 (LINT: ALTER AGGREGATE unsupported); {_OURS}",
        confirmed=False,
        example="CREATE AGGREGATE mysum(int) (SFUNC = int4pl, STYPE = int)",
        allowed="CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1",
        match=_define_refused,
    ),
    Rule(
        name="alter-other-object",
        node="RenameStmt, AlterOwnerStmt, AlterObjectSchemaStmt",
        condition="RENAME, OWNER TO, SET SCHEMA of an aggregate, operator,"
        " collation, tablespace, server, publication... (kinds DSQL has not)",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="unsupported object in {} statement",
        source="LINT: ALTER AGGREGATE unsupported; the text follows DSQL's"
        f" recorded 'unsupported object in RENAME statement' ({_REC16})",
        confirmed=False,
        example="ALTER AGGREGATE max(int) RENAME TO biggest",
        allowed="ALTER FUNCTION f() RENAME TO g",
        setup=("CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1",),
        match=_alter_refused_object,
    ),
    # SQL-level prepared statements: the sheet's only source is LINT (AWS's
    # linter, stale in places); nothing sourced says DSQL runs them, and
    # protocol-level prepared statements (what drivers use) are untouched.
    _statement(
        "PrepareStmt",
        name="prepare",
        example="PREPARE p AS SELECT 1",
        source="LINT (SQL-level PREPARE/EXECUTE unsupported; the protocol's"
        " Parse/Bind/Execute run)",
    ),
    _statement(
        "ExecuteStmt",
        name="execute",
        example="EXECUTE p",
        source="LINT (SQL-level PREPARE/EXECUTE unsupported)",
    ),
    _statement(
        "DiscardStmt",
        name="discard",
        example="DISCARD ALL",
        allowed="DEALLOCATE ALL",
        source="LINT (DISCARD unsupported); GRAM has DEALLOCATE ALL (ran on a"
        " real cluster, 2026-08-07)",
    ),
    # Newer PostgreSQL than DSQL's 16: what 17 and 18 added, DSQL answers as 16.
    Rule(
        name="pg17-json-table",
        node="JsonTable",
        condition="JSON_TABLE (PostgreSQL 17)",
        sqlstate=SYNTAX_ERROR,
        message='syntax error at or near "{}"',
        source=_NEWER,
        confirmed=False,
        example="SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (a int PATH '$'))",
        allowed="SELECT * FROM jsonb_to_recordset('[{\"a\": 1}]') AS r (a int)",
        match=_json_table_word,
    ),
    Rule(
        name="pg17-json-query-function",
        node="JsonFuncExpr",
        condition="JSON_QUERY, JSON_VALUE, JSON_EXISTS without clauses"
        " (PostgreSQL 17; 16 looks for a function of that name)",
        sqlstate=UNDEFINED_FUNCTION,
        message="function {}(unknown, unknown) does not exist",
        source=_NEWER,
        confirmed=False,
        example="SELECT JSON_VALUE('{\"a\": 1}', '$.a')",
        allowed="SELECT jsonb_path_query_first('{\"a\": 1}', '$.a')",
        match=_json_function_call,
    ),
    Rule(
        name="pg17-json-query-clause",
        node="JsonFuncExpr",
        condition="JSON_QUERY, JSON_VALUE, JSON_EXISTS with PASSING, RETURNING,"
        " WRAPPER, QUOTES or ON EMPTY/ERROR (PostgreSQL 17)",
        sqlstate=SYNTAX_ERROR,
        message='syntax error at or near "{}"',
        source=_NEWER,
        confirmed=False,
        example="SELECT JSON_VALUE('{\"a\": 1}', '$.a' RETURNING int)",
        match=_json_clause,
    ),
    Rule(
        name="pg17-json-scalar",
        node="JsonScalarExpr",
        condition="JSON_SCALAR (PostgreSQL 17)",
        sqlstate=UNDEFINED_FUNCTION,
        message="function json_scalar({}) does not exist",
        source=_NEWER,
        confirmed=False,
        example="SELECT JSON_SCALAR(1)",
        allowed="SELECT to_json(1)",
        match=lambda n: (
            "integer" if "ival" in n.get("expr", {}).get("A_Const", {}) else "unknown"
        ),
    ),
    Rule(
        name="pg17-json-serialize",
        node="JsonSerializeExpr",
        condition="JSON_SERIALIZE (PostgreSQL 17)",
        sqlstate=UNDEFINED_FUNCTION,
        message="function json_serialize(unknown) does not exist",
        source=_NEWER,
        confirmed=False,
        example="SELECT JSON_SERIALIZE('{}')",
        allowed="SELECT '{}'::json::text",
        match=_always,
    ),
    Rule(
        name="pg17-json-unique-keys",
        node="JsonParseExpr",
        condition="JSON(... WITH UNIQUE KEYS) (PostgreSQL 17; JSON(text) alone"
        " is a cast in 16, and runs)",
        sqlstate=SYNTAX_ERROR,
        message='syntax error at or near "WITH"',
        source=_NEWER,
        confirmed=False,
        example="SELECT JSON('{\"a\": 1}' WITH UNIQUE KEYS)",
        allowed="SELECT JSON('{\"a\": 1}')",
        match=_when(lambda n: bool(n.get("unique_keys"))),
    ),
    Rule(
        name="pg17-copy-option",
        node="CopyStmt",
        condition="ON_ERROR, LOG_VERBOSITY (PostgreSQL 17), REJECT_LIMIT (18)",
        sqlstate=SYNTAX_ERROR,
        message='option "{}" not recognized',
        source=_NEWER,
        confirmed=False,
        example="COPY t FROM STDIN (ON_ERROR ignore)",
        allowed="COPY t TO STDOUT (FORMAT csv)",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_newer_option(_NEWER_COPY_OPTIONS),
    ),
    Rule(
        name="pg17-explain-option",
        node="ExplainStmt",
        condition="SERIALIZE, MEMORY (PostgreSQL 17)",
        sqlstate=SYNTAX_ERROR,
        message='unrecognized EXPLAIN option "{}"',
        source=_NEWER,
        confirmed=False,
        example="EXPLAIN (MEMORY) SELECT 1",
        allowed="EXPLAIN (COSTS OFF) SELECT 1",
        match=_newer_option(_NEWER_EXPLAIN_OPTIONS),
    ),
    Rule(
        name="pg17-at-local",
        node="FuncCall",
        condition="AT LOCAL (PostgreSQL 17)",
        sqlstate=SYNTAX_ERROR,
        message='syntax error at or near "{}"',
        source=_NEWER,
        confirmed=False,
        example="SELECT now() AT LOCAL",
        allowed="SELECT now() AT TIME ZONE current_setting('timezone')",
        match=_at_local,
    ),
    Rule(
        name="pg18-constraint",
        node="Constraint",
        condition="virtual generated columns, WITHOUT OVERLAPS, PERIOD,"
        " [NOT] ENFORCED, NOT NULL NO INHERIT (PostgreSQL 18)",
        sqlstate=SYNTAX_ERROR,
        message='syntax error at or near "{}"',
        source=_NEWER,
        confirmed=False,
        example="CREATE TABLE g (a int PRIMARY KEY, b int GENERATED ALWAYS AS (a * 2)"
        " VIRTUAL)",
        allowed="CREATE TABLE g (a int PRIMARY KEY, b int GENERATED ALWAYS AS (a * 2)"
        " STORED)",
        match=_newer_constraint,
    ),
    Rule(
        name="pg18-table-not-null",
        node="CreateStmt",
        condition="NOT NULL as a table constraint (PostgreSQL 18)",
        sqlstate=SYNTAX_ERROR,
        message='syntax error at or near "{}"',
        source=_NEWER,
        confirmed=False,
        example="CREATE TABLE n (a int, CONSTRAINT a_nn NOT NULL a)",
        allowed="CREATE TABLE n (a int CONSTRAINT a_nn NOT NULL)",
        match=_table_not_null,
    ),
    Rule(
        name="pg18-returning-with",
        node="InsertStmt, UpdateStmt, DeleteStmt",
        condition="RETURNING WITH (OLD/NEW AS ...) (PostgreSQL 18)",
        sqlstate=SYNTAX_ERROR,
        message='syntax error at or near "{}"',
        source=_NEWER,
        confirmed=False,
        example="DELETE FROM t RETURNING WITH (OLD AS o) o.id",
        allowed="DELETE FROM t RETURNING id",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_returning_with,
    ),
    Rule(
        name="pg18-returning-old-new",
        node="InsertStmt, UpdateStmt, DeleteStmt",
        condition="RETURNING old.* or new.* (PostgreSQL 18)",
        sqlstate=UNDEFINED_TABLE,
        message='missing FROM-clause entry for table "{}"',
        source=_NEWER,
        confirmed=False,
        example="UPDATE t SET id = id RETURNING old.id, new.id",
        allowed="UPDATE t SET id = id RETURNING t.id",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_returning_old_new,
    ),
    Rule(
        name="pg18-analyze-only",
        node="VacuumStmt",
        condition="ANALYZE ONLY (PostgreSQL 18)",
        sqlstate=SYNTAX_ERROR,
        message='syntax error at or near "{}"',
        source=_NEWER,
        confirmed=False,
        example="ANALYZE ONLY t",
        allowed="ANALYZE t",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_analyze_only,
    ),
    Rule(
        name="newer-setting",
        node="VariableShowStmt, FuncCall",
        condition="SHOW or current_setting() of a setting PostgreSQL 17 or 18 added: "
        + ", ".join(sorted(NEWER_SETTINGS)),
        sqlstate=UNDEFINED_OBJECT,
        message='unrecognized configuration parameter "{}"',
        source=f"{_NEWER}; as DSQL answers SHOW lc_collate, which 16 removed"
        f" ({_REC16})",
        confirmed=False,
        example="SHOW transaction_timeout",
        allowed="SHOW statement_timeout",
        match=_newer_setting,
    ),
    Rule(
        name="newer-function",
        node="function call",
        condition="a function PostgreSQL 17 or 18 added: "
        + ", ".join(
            sorted({f.split("(")[0] for f in (*NEWER_FUNCTIONS, *NEWER_AGGREGATES)})
        ),
        sqlstate=UNDEFINED_FUNCTION,
        message="function {}() does not exist",
        source=f"{_NEWER}; hidden in the backend, so a function a user makes"
        " with one of these names is the one called, as on DSQL",
        confirmed=False,
        example="SELECT uuidv7()",
        allowed="SELECT gen_random_uuid()",
        verdict=Verdict.BACKEND,
    ),
    # Queries.
    Rule(
        name="locking-clause",
        node="LockingClause",
        condition="FOR SHARE, FOR NO KEY UPDATE",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported",
        source=f"{_REC16}; MS1442, MS1567",
        confirmed=True,
        example="SELECT * FROM t FOR SHARE",
        allowed="SELECT * FROM t FOR KEY SHARE",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_locking,
    ),
    Rule(
        name="tablesample",
        node="RangeTableSample",
        condition="any",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="TABLESAMPLE clause not supported",
        source=_REC,
        confirmed=True,
        example="SELECT * FROM t TABLESAMPLE SYSTEM (1)",
        allowed="SELECT * FROM t",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_always,
    ),
    Rule(
        name="advisory-lock",
        node="FuncCall",
        condition="pg_advisory_*(), pg_try_advisory_*()",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="function {} not supported",
        source="GOOSE 2025-08-04, GMIG 2025-06-19, T-LEPIN 2026-05-15",
        confirmed=True,
        example="SELECT pg_advisory_lock(42)",
        match=_advisory,
    ),
    Rule(
        name="pg-notify",
        node="FuncCall",
        condition="pg_notify()",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="function pg_notify not supported",
        source=f"AP lists it unsupported; {_OURS}",
        confirmed=False,
        example="SELECT pg_notify('channel', 'hello')",
        match=_named_function("pg_notify"),
    ),
    Rule(
        name="geometric-function",
        node="FuncCall",
        condition="point(), line(), lseg(), box(), path(), polygon(), circle()",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="datatype {} not supported",
        source=f"{_REC} (line, circle; the others follow)",
        confirmed=True,
        example="SELECT line('{1,2,3}')",
        match=_named_function(
            "point", "line", "lseg", "box", "path", "polygon", "circle"
        ),
    ),
    Rule(
        name="text-search-config",
        node="FuncCall",
        condition="to_tsvector() and the like with a configuration name as a literal",
        sqlstate=UNDEFINED_OBJECT,
        message='text search configuration "{}" does not exist',
        source=_REC,
        confirmed=True,
        example="SELECT to_tsvector('english', 'hello world')",
        allowed="SELECT 'hello world' ILIKE '%world%'",
        match=_text_search_config,
    ),
    Rule(
        name="copy-file",
        node="CopyStmt",
        condition="to or from a server file or PROGRAM",
        sqlstate=FEATURE_NOT_SUPPORTED,
        message="COPY to or from a file or program not supported",
        source=f"LINT (STDIN/STDOUT only); {_OURS}",
        confirmed=False,
        example="COPY t FROM '/tmp/t.csv'",
        allowed="COPY t TO STDOUT",
        setup=("CREATE TABLE t (id int PRIMARY KEY)",),
        match=_copy_file,
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
        "fails). The rules on connecting apply in lax mode too. A rule not",
        "*confirmed* has no source giving DSQL's exact text or SQLSTATE: DSQL",
        "Local's own is used (its source says what is known). Transaction",
        "rules (one DDL per transaction, no DDL with DML, 3,000 rows, 300",
        "seconds) are on",
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
