"""Several statements in one unit, run one by one so that each can be guarded.

The write guard (see `_write_guard`) needs a statement alone in its unit: it
runs it after a hidden SAVEPOINT, and when another transaction's row stops
it, rolls back and answers it before anything else runs. Two client forms
put several statements in one unit; in a transaction block (where a Sync
commits nothing) this part runs them one at a time instead:

- a Query whose text holds several statements, at least one of them with a
  guard and none beginning or ending a transaction
  (`statements`): one Query per statement, each sent when the
  one before has been answered (`Unit.PART`); an error ends the rest, as
  PostgreSQL ends it. A text that opens the transaction block (`BEGIN;
  UPDATE ...`, `opening_statements`) runs so too, its BEGIN first;
- a pipeline (extended protocol, several Executes before a Sync, as
  psycopg's ``executemany()`` and ``conn.pipeline()`` send): each Execute
  followed by more gets a hidden Sync of its own (`Unit.SPLIT`), whose
  ReadyForQuery is hidden; what the client sends next waits for its answer.
  After an error, what the client sends up to its own Sync is skipped, as
  the backend would skip it, and its Sync's ReadyForQuery reports the
  failed transaction. A BEGIN opening the pipeline is split off too, so that
  the statements after it run in the transaction block it opens.
"""

from __future__ import annotations

import functools
import json
import re
from collections import deque
from typing import Any, Protocol

from . import _messages as m
from . import _protocol as pq
from ._conflicts import GUARD_WORDS, guard
from ._copy import is_copy
from ._units import NEXT_PIECE, PART, SPLIT, Units
from ._write_guard import WriteGuard

_X = ord("X")  # Terminate: never skipped
_CACHE_TEXT_LIMIT = 16_384


@functools.cache
@functools.cache
def _with_execute(kinds: frozenset[int]) -> frozenset[int]:
    return kinds | {m.EXECUTE}


class SplitHost(Protocol):
    """What the split needs from the relay around it."""

    def query_message(self, view: memoryview, pos: int, end: int) -> bytes | None:
        """Handle a client's Query (counted); what to send, None as it is."""
        ...

    def release_held(self) -> None:
        """Pass on the client data that waited, if it need wait no more."""
        ...


class Split:
    """Run one connection's multi-statement units one statement at a time."""

    def __init__(self, units: Units, host: SplitHost, guard: WriteGuard) -> None:
        self._units = units
        self._host = host
        self._guard = guard
        self._parts: deque[str] = deque()
        self._waiting = False
        """A pipeline's statement has a hidden Sync whose answer is awaited."""
        self.skipping = False
        """After an error in a split pipeline: skip to the client's Sync."""
        self._then_next_piece = False
        """The text split is a piece of a Query split at its COMMITs (see
        `_commit_gate`): its last statement's end sends the next piece."""
        self._last_sql = ""
        self._last_begins = False

    def holding(self) -> bool:
        """Whether client data waits for a statement this part split off."""
        return self._waiting or bool(self._parts)

    def client_kinds(self, kinds: frozenset[int], sql: str) -> frozenset[int]:
        """The client messages to read: `kinds`, and those the split reads.

        `sql` is the statement in flight: its Execute is read in a
        transaction block, or if it is a BEGIN; after an error, every
        message up to the client's Sync.
        """
        if self.skipping:
            return m.EVERY_KIND
        if self._units.status == b"T" or self._is_begin(sql):
            return _with_execute(kinds)
        return kinds

    def _is_begin(self, sql: str) -> bool:
        """Whether `sql` is a BEGIN (asked for each message: the last kept)."""
        if sql is not self._last_sql:
            self._last_sql = sql
            self._last_begins = m.BEGIN_RE.match(sql) is not None
        return self._last_begins

    # -- client -> backend -------------------------------------------------

    def query(self, sql: str, units_before: int) -> bytes | None:
        """Run a Query's text, counted, a statement at a time, if it need be."""
        if ";" not in sql:
            return None
        units = self._units
        if units.status == b"T" and units.status_known(units_before):
            parts = statements(sql)
        elif units.idle_after(units_before):
            # A text opening the transaction block: its BEGIN first.
            parts = opening_statements(sql)
        else:
            return None
        if parts is None:
            return None
        self._parts.extend(parts[1:])
        return self._part(parts[0])

    def _part(self, sql: str) -> bytes:
        """Send one statement of a split Query text (its unit counted)."""
        message = pq.query(sql)
        sent = self._host.query_message(memoryview(message), 0, len(message))
        # (The relay sends the next piece once the last statement ends.)
        action = PART | (NEXT_PIECE if self._then_next_piece else 0)
        self._units.add(self._units.sent, action)
        return message if sent is None else sent

    def run_piece(self, sql: str, *, more: bool) -> bytes | None:
        """Run a piece of a Query split at its COMMITs (its unit counted) as a
        Query of its own, each statement guarded, if it runs in a transaction
        block or opens one; None otherwise. `more`: pieces follow, sent when
        it ends (`Unit.NEXT_PIECE` on its last unit)."""
        units = self._units
        before = units.sent - 1
        if not (units.status == b"T" and units.status_known(before)) and not (
            units.idle_after(before) and opening_statements(sql) is not None
        ):
            return None
        message = pq.query(sql)
        self._then_next_piece = more
        sent = self._host.query_message(memoryview(message), 0, len(message))
        if not self._parts:  # not split: one statement, perhaps guarded
            self._then_next_piece = False
            if more:
                units.add(units.sent, NEXT_PIECE)
        return message if sent is None else sent

    @property
    def running_piece(self) -> bool:
        """Whether statements of a piece (see `run_piece`) are still to end."""
        return self._then_next_piece

    def synced(self) -> None:
        """The client's Sync: what follows it is read again."""
        self.skipping = False

    def client_message(
        self,
        kind: int,
        view: memoryview,
        pos: int,
        end: int,
        sql: str,
        *,
        wrapping: bool,
    ) -> bytes | None:
        """An Execute of `sql`, or a message while skipping to the client's Sync.

        A skipped message is dropped (b""), but a Terminate. An Execute
        followed by more gets a hidden Sync of its own (see `_execute`); its
        guarded write, if any, is sealed.
        """
        if self.skipping:
            return None if kind == _X else b""
        sent = self._execute(sql, view, pos, end, wrapping=wrapping)
        if sent is not None:
            self._guard.seal()
        return sent

    def _execute(
        self, sql: str, view: memoryview, pos: int, end: int, *, wrapping: bool
    ) -> bytes | None:
        """Give the Execute of `sql` a hidden Sync of its own, if more follow.

        Only in a transaction block, whose status is known, and for a
        statement that neither begins nor ends a transaction; or for the
        BEGIN that opens one, the connection known idle. Returns what to send
        in its place (None: as it is).
        """
        units = self._units
        if wrapping or sync_follows(view, end) or is_copy(sql):
            # (A COPY's data follows its Execute: the backend would ignore
            # a Sync sent in between.)
            return None
        if m.BEGIN_RE.match(sql):
            if not units.idle_after(units.sent):
                return None
        elif (
            units.status != b"T"
            or is_transaction_control(sql)
            or not units.status_known(units.sent)
        ):
            return None
        units.open()
        units.add(units.sent, SPLIT)
        self._waiting = True
        return bytes(view[pos:end]) + m.SYNC

    # -- backend -> client -------------------------------------------------

    def end(
        self,
        sent: bytes | None,
        action: int,
        status: bytes,
        *,
        failed: bool,
        writing: bool,
    ) -> bytes | None:
        """End a statement run in a unit of its own, if it is one.

        `sent` is what its end sends the client (None: its ReadyForQuery);
        `writing`: a guarded write goes on (its answer, a check), which ends
        the statement later. The ReadyForQuery is hidden but after the last
        statement of a query text, or an error there, which ends the rest as
        PostgreSQL's would. The client data that waited is released.
        """
        if not action & (PART | SPLIT) or writing:
            return sent
        sent = self._end(sent, action, status, failed)
        self._host.release_held()
        return sent

    def _end(
        self, sent: bytes | None, action: int, status: bytes, failed: bool
    ) -> bytes:
        ready = pq.ready_for_query(status)
        if sent is None:
            sent = ready
        if action & SPLIT:
            # The client's own Sync answers for the pipeline.
            self._waiting = False
            if failed or status == b"E":
                self.skipping = True
        elif failed or status != b"T" or not self._parts:
            self._parts.clear()
            self._then_next_piece = False
            return sent
        else:
            self._units.to_backend += self._next_part()
        return sent[: -len(ready)] if sent.endswith(ready) else sent

    def _next_part(self) -> bytes:
        self._units.open()
        return self._part(self._parts.popleft())


def sync_follows(view: memoryview, end: int) -> bool:
    """Whether a Sync (after Flushes, if any) follows `end` in `view`."""
    pos, n = end, len(view)
    while n - pos >= 5:
        kind = view[pos]
        if kind == m.S:
            return True
        if kind != m.FLUSH:
            return False
        pos += 1 + m.UNPACK_LEN(view, pos + 1)[0]
    return False


def one_statement(view: memoryview, end: int) -> bool:
    """Whether the unit whose first message ends at `end` runs one statement.

    That is: its Sync is in `view`, with no Parse before it and one Execute
    at most (libpq's statement, or its prepare, outside pipeline mode).
    """
    pos, n = end, len(view)
    executes = 0
    while n - pos >= 5:
        kind = view[pos]
        if kind == m.S:
            return True
        executes += kind == m.EXECUTE
        if kind == m.PARSE or executes > 1:
            return False
        pos += 1 + m.UNPACK_LEN(view, pos + 1)[0]
    return False


def executes_next(view: memoryview, end: int) -> bool:
    """Whether the client data after `end` runs one statement, all received.

    That is: Bind and Describe messages up to one Execute, which is in view.
    """
    pos, n = end, len(view)
    while n - pos >= 5:
        kind = view[pos]
        pos += 1 + m.UNPACK_LEN(view, pos + 1)[0]
        if pos > n:
            return False
        if kind == m.EXECUTE:
            return True
        if kind not in (m.B, m.DESCRIBE, m.FLUSH):
            return False
    return False


def nothing_next(view: memoryview, end: int) -> bool:
    """Whether no client data follows `end` but Flushes."""
    pos, n = end, len(view)
    while n - pos >= 5:
        if view[pos] != m.FLUSH:
            return False
        pos += 1 + m.UNPACK_LEN(view, pos + 1)[0]
    return pos == n


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
    if ";" not in sql or GUARD_WORDS.search(sql) is None:
        return None
    if len(sql) > _CACHE_TEXT_LIMIT:
        return _statements(sql)
    return _statements_cached(sql)


def _statements(sql: str, *, opening: bool = False) -> tuple[str, ...] | None:
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
    if opening:
        # Its BEGIN (or START TRANSACTION), then what runs in its block.
        first = found[0]["stmt"].get("TransactionStmt", {}) if found else {}
        if first.get("kind") not in _OPENING:
            return None
    # Plain reads and writes only: the policy checks each part again.
    kinds = {next(iter(raw["stmt"]), "") for raw in found[opening:]}
    if len(found) < 2 or not kinds <= _SPLITTABLE:
        return None
    data = sql.encode()
    texts = []
    for raw in found:
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0)
        text = (data[start : start + length] if length else data[start:]).decode()
        texts.append(text.strip())
    control = any(is_transaction_control(text) for text in texts[opening:])
    if control or all(guard(text) is None for text in texts):
        return None
    return tuple(texts)


_statements_cached = functools.lru_cache(maxsize=1_024)(_statements)
_OPENING = frozenset({"TRANS_STMT_BEGIN", "TRANS_STMT_START"})
# (After comments, if any: `/* c */ BEGIN; ...`.)
_BEGINS = re.compile(
    rf"{m.LEADING_COMMENTS}(?:begin|start\s+transaction)\b", re.IGNORECASE | re.DOTALL
)


def opening_statements(sql: str) -> tuple[str, ...] | None:
    """The statements of a query text that opens a transaction block, to
    run one by one: its BEGIN, then plain reads and writes, at least one
    with a guard (see `statements`). None otherwise."""
    if GUARD_WORDS.search(sql) is None or _BEGINS.match(sql) is None:
        return None
    if len(sql) > _CACHE_TEXT_LIMIT:
        return _statements(sql, opening=True)
    return _opening_cached(sql)


_opening_cached = functools.lru_cache(maxsize=1_024)(
    functools.partial(_statements, opening=True)
)


def plain_statements(sql: str) -> int:
    """How many statements `sql` holds, if each is a plain read or write.

    That is a SELECT (but ``SELECT ... INTO``), INSERT, UPDATE or DELETE:
    what can run again, in a transaction block, as it ran in an implicit
    transaction (see `_hidden`). 0 otherwise, or if pglast cannot parse it.
    """
    if len(sql) > _CACHE_TEXT_LIMIT:
        return _plain_statements(sql)
    return _plain_statements_cached(sql)


def _plain_statements(sql: str) -> int:
    try:
        from pglast import parser  # noqa: PLC0415  # optional: local extra
    except ModuleNotFoundError:
        return 0
    try:
        found: list[dict[str, Any]] = json.loads(parser.parse_sql_json(sql)).get(
            "stmts", []
        )
    except parser.ParseError:
        return 0
    for raw in found:
        kind, node = next(iter(raw["stmt"].items()), ("", {}))
        if kind not in _SPLITTABLE or (kind == "SelectStmt" and "intoClause" in node):
            return 0
    return len(found)


_plain_statements_cached = functools.lru_cache(maxsize=1_024)(_plain_statements)
