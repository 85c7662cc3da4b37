"""The cuts and rewrites of statement text that `_strict_analysis` makes.

Before parsing, `strip_async` takes DSQL's ``ASYNC`` out of ``CREATE [UNIQUE]
INDEX ASYNC`` and ``ALTER TABLE ASYNC`` (PostgreSQL's grammar lacks it),
noting where it was. After, for a statement the backend would run otherwise
than DSQL: `move_storage` says ``ADD COLUMN ... STORAGE`` as PostgreSQL
before 16 can, `set_sync_index` gives the backend's stand-in for ``SET
disable_sync_create_index``, and `without_skip_locked` cuts a locking
clause's ``SKIP LOCKED`` (DSQL locks no row, so it skips none); `relation`
names a table as the calls of `_strict_sql` take it.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from pglast import parser

from ._strict_rules import SYNC_INDEX_SETTING, Node
from ._strict_sql import SYNC_INDEX_GUC, literal


def strip_async(sql: str) -> tuple[str, list[int], list[int]]:
    """Remove the ASYNC of ``CREATE [UNIQUE] INDEX ASYNC``, ``ALTER TABLE ASYNC``.

    Returns the text PostgreSQL can parse, the character offsets in that text
    where an ASYNC was removed, and those of the USING of a CREATE INDEX
    (the parse tree cannot tell ``USING btree`` from no USING at all).
    """
    lowered = sql.lower()
    if "async" not in lowered and "using" not in lowered:
        return sql, [], []
    try:
        tokens = parser.scan(sql)
    except parser.ParseError:
        return sql, [], []
    spans: list[tuple[int, int]] = []
    using: list[int] = []
    in_index = False  # between CREATE [UNIQUE] INDEX and its "("
    for i, token in enumerate(tokens):
        if token.name == "ASCII_40":
            in_index = False
        elif token.name == "USING" and in_index:
            using.append(token.start)
        elif token.name in ("INDEX", "TABLE") and 0 < i < len(tokens) - 1:
            before = tokens[i - 1]
            if token.name == "INDEX" and before.name == "UNIQUE" and i >= 2:
                before = tokens[i - 2]
            opener = "CREATE" if token.name == "INDEX" else "ALTER"
            if before.name != opener:
                continue
            in_index = token.name == "INDEX"
            word = tokens[i + 1]
            if (
                word.name == "IDENT"
                and sql[word.start : word.end + 1].lower() == "async"
            ):
                end = word.end + 1
                while end < len(sql) and sql[end].isspace():
                    end += 1
                spans.append((word.start, end))
    pieces, removed_at, cursor, removed = [], [], 0, 0
    for start, end in spans:
        pieces.append(sql[cursor:start])
        removed_at.append(start - removed)
        removed += end - start
        cursor = end
    pieces.append(sql[cursor:])
    using_at = [u - sum(e - s for s, e in spans if s < u) for u in using]
    return "".join(pieces), removed_at, using_at


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def relation(node: Node) -> str:
    """A RangeVar as a qualified, quoted name."""
    parts = [node.get("schemaname"), node.get("relname", "")]
    return ".".join(_quote_ident(p) for p in parts if p)


def move_storage(ddl: str) -> str | None:
    """Say ``ADD COLUMN c t STORAGE s`` as PostgreSQL before 16 can.

    That is ``ADD COLUMN c t, ALTER COLUMN c SET STORAGE s``; None when the
    ALTER TABLE has no STORAGE in a column definition.
    """
    if "storage" not in ddl.lower():
        return None
    tree = json.loads(parser.parse_sql_json(ddl))
    fields = tree["stmts"][0]["stmt"].get("AlterTableStmt", {})
    added = [
        (column.get("location", -1), column.get("colname", ""))
        for cmd in fields.get("cmds", [])
        if cmd.get("AlterTableCmd", {}).get("subtype") == "AT_AddColumn"
        for column in [cmd["AlterTableCmd"].get("def", {}).get("ColumnDef", {})]
    ]
    tokens = parser.scan(ddl)
    cuts: list[tuple[int, int]] = []
    moves: list[str] = []
    for i, token in enumerate(tokens[1:-1], start=1):
        at = len(ddl[: token.start].encode())
        owners = [name for location, name in added if location < at]
        if token.name != "STORAGE" or tokens[i - 1].name == "SET" or not owners:
            continue
        word = tokens[i + 1]
        cuts.append((token.start, word.end + 1))
        storage = ddl[word.start : word.end + 1]
        moves.append(f"ALTER COLUMN {_quote_ident(owners[-1])} SET STORAGE {storage}")
    if not cuts:
        return None
    pieces, cursor = [], 0
    for start, end in cuts:
        pieces.append(ddl[cursor:start].rstrip())
        cursor = end
    pieces.append(ddl[cursor:])
    return "".join(pieces).rstrip().rstrip(";") + ", " + ", ".join(moves)


def set_sync_index(fields: Node) -> str | None:
    """The stand-in for ``SET disable_sync_create_index``, or None."""
    if str(fields.get("name", "")).lower() != SYNC_INDEX_SETTING:
        return None
    scope = "LOCAL " if fields.get("is_local") else ""
    kind = fields.get("kind")
    if kind in ("VAR_RESET", "VAR_SET_DEFAULT"):
        return f"SET {scope}{SYNC_INDEX_GUC} TO DEFAULT"
    args = fields.get("args", [])
    value = ""
    if args:
        const = args[0].get("A_Const", {})
        if "sval" in const:
            value = const["sval"].get("sval", "")
        elif "boolval" in const:
            value = "on" if const["boolval"].get("boolval") else "off"
        elif "ival" in const:
            value = str(const["ival"].get("ival", 0))
    return f"SET {scope}{SYNC_INDEX_GUC} TO {literal(value)}"


def _shape(tree: Any, *, blocking: bool = False) -> Any:
    """`tree` without locations; with `blocking`, SKIP LOCKED read as waiting."""
    if type(tree) is list:
        return [_shape(item, blocking=blocking) for item in tree]
    if type(tree) is not dict:
        return tree
    shaped = {
        key: _shape(value, blocking=blocking)
        for key, value in tree.items()
        if key != "location"
    }
    if blocking and shaped.get("waitPolicy") == "LockWaitSkip":
        shaped["waitPolicy"] = "LockWaitBlock"
    return shaped


def without_skip_locked(sql: str, stmt: Node) -> str | None:
    """`sql` without its SKIP LOCKED; None if it cannot be cut out cleanly.

    DSQL takes the clause, but it locks no row, so it skips none: every
    reader gets the rows, and the later of two to COMMIT fails (OC000).
    PostgreSQL would skip the rows another transaction holds.
    """
    tokens = parser.scan(sql)
    pieces, cursor = [], 0
    for skip, locked in itertools.pairwise(tokens):
        if skip.name == "SKIP" and locked.name == "LOCKED":
            pieces.append(sql[cursor : skip.start])
            cursor = locked.end + 1
    pieces.append(sql[cursor:])
    text = "".join(pieces)
    try:
        (cut,) = json.loads(parser.parse_sql_json(text))["stmts"]
    except (parser.ParseError, ValueError):
        return None
    # A column or alias named skip followed by one named locked is cut too:
    # then the statement is no longer the same, and is left as it is.
    if _shape(cut["stmt"]) != _shape(stmt, blocking=True):
        return None
    return text
