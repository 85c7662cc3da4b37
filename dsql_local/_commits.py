"""Find the COMMITs inside a multi-statement query text.

PostgreSQL runs every statement of a simple Query message in one go, so a
COMMIT in the middle of ``BEGIN; UPDATE ...; COMMIT`` would commit before the
relay could look at what the statements before it did. The relay runs such a
text in pieces instead, one Query each, a COMMIT alone in its piece, and
checks each piece when its turn comes. Statement boundaries come from PostgreSQL's own
parser (pglast), which knows quoting, dollar quoting and comments.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from typing import Any, NamedTuple

# Texts longer than this are split every time rather than kept in the cache.
_CACHE_TEXT_LIMIT = 16_384
_COMMIT_WORD = re.compile(r"\b(?:commit|end)\b", re.IGNORECASE)
_COMMIT = "TRANS_STMT_COMMIT"  # COMMIT or END, not COMMIT PREPARED


class Piece(NamedTuple):
    """Consecutive statements of a query text, run as one Query."""

    sql: str
    commit: bool
    """The piece is one COMMIT (or END) statement."""


def commit_pieces(sql: str) -> tuple[Piece, ...] | None:
    """Split `sql` around each COMMIT (or END) statement it holds.

    Each COMMIT becomes a piece of its own, so that the statements of each
    transaction are told apart by the ReadyForQuery that ends every piece.

    None when there is nothing to split: a single statement, no COMMIT, a
    text the parser rejects (the backend will say why) or no pglast.
    """
    if ";" not in sql or _COMMIT_WORD.search(sql) is None:
        return None
    if len(sql) > _CACHE_TEXT_LIMIT:
        return _split(sql)
    return _split_cached(sql)


def _split(sql: str) -> tuple[Piece, ...] | None:
    try:
        from pglast import parser  # noqa: PLC0415  # optional: the local extra
    except ModuleNotFoundError:
        return None
    try:
        stmts: list[dict[str, Any]] = json.loads(parser.parse_sql_json(sql)).get(
            "stmts", []
        )
    except parser.ParseError:
        return None
    kinds = [raw["stmt"].get("TransactionStmt", {}).get("kind") for raw in stmts]
    if len(stmts) < 2 or _COMMIT not in kinds:
        return None
    # Where each statement's piece of text begins: just past the semicolon
    # that ends the statement before it.
    starts = [0]
    for raw in stmts[:-1]:
        starts.append(raw.get("stmt_location", 0) + raw.get("stmt_len", 0) + 1)
    cuts: list[int] = []
    for index, kind in enumerate(kinds):
        if kind == _COMMIT:
            cuts += [i for i in (index, index + 1) if 0 < i < len(stmts)]
    bounds = sorted({0, *cuts})
    data = sql.encode()
    return tuple(
        Piece(
            data[starts[a] : starts[b] if b < len(stmts) else len(data)].decode(),
            kinds[a] == _COMMIT and b == a + 1,
        )
        for a, b in itertools.pairwise([*bounds, len(stmts)])
    )


_split_cached = functools.lru_cache(maxsize=1_024)(_split)
