"""Several statements in one unit, run one by one so that each can be guarded.

The write guard (see `_write_guard`) needs a statement alone in its unit: it
runs it after a hidden SAVEPOINT, and when another transaction's row stops
it, rolls back and answers it before anything else runs. Two client forms
put several statements in one unit; in a transaction block (where a Sync
commits nothing) this part runs them one at a time instead:

- a Query whose text holds several statements, at least one of them with a
  guard and none beginning or ending a transaction
  (`_conflicts.statements`): one Query per statement, each sent when the
  one before has been answered (`Unit.PART`); an error ends the rest, as
  PostgreSQL ends it;
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

from collections import deque
from collections.abc import Callable

from . import _messages as m
from . import _protocol as pq
from ._conflicts import is_transaction_control, statements
from ._copy import is_copy
from ._units import PART, SPLIT, Units

_X = ord("X")  # Terminate: never skipped


class Split:
    """Run one connection's multi-statement units one statement at a time."""

    def __init__(self, units: Units, run_query: Callable[[str], bytes]) -> None:
        self._units = units
        self._run_query = run_query
        """Handle a Query of one statement (counted) as the client's; its bytes."""
        self._parts: deque[str] = deque()
        self._waiting = False
        """A pipeline's statement has a hidden Sync whose answer is awaited."""
        self.skipping = False
        """After an error in a split pipeline: skip to the client's Sync."""

    def holding(self) -> bool:
        """Whether client data waits for a statement this part split off."""
        return self._waiting or bool(self._parts)

    def watches_execute(self, sql: str) -> bool:
        """Whether to read the Execute of `sql`, the statement in flight."""
        return self._units.status == b"T" or m.BEGIN_RE.match(sql) is not None

    # -- client -> backend -------------------------------------------------

    def query(self, sql: str, units_before: int) -> bytes | None:
        """Run a Query's text, counted, a statement at a time, if it need be."""
        units = self._units
        if units.status != b"T" or not units.status_known(units_before):
            return None
        parts = statements(sql)
        if parts is None:
            return None
        self._parts.extend(parts[1:])
        return self._part(parts[0])

    def _part(self, sql: str) -> bytes:
        """Send one statement of a split Query text (its unit counted)."""
        sent = self._run_query(sql)
        self._units.add(self._units.sent, PART)
        return sent

    def skipped(self, kind: int) -> bytes | None:
        """A client message while skipping to its Sync: dropped (b"") but X."""
        return None if kind == _X else b""

    def execute(
        self, sql: str, view: memoryview, pos: int, end: int, *, wrapping: bool
    ) -> bytes | None:
        """Give the Execute of `sql` a hidden Sync of its own, if more follow.

        Only in a transaction block, whose status is known, and for a
        statement that neither begins nor ends a transaction; or for the
        BEGIN that opens one, the connection known idle. Returns what to send
        in its place (None: as it is); the caller seals the guarded write.
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
        self, sent: bytes | None, action: int, status: bytes, failed: bool
    ) -> bytes:
        """End a statement run in a unit of its own.

        `sent` is what its end sends the client (None: its ReadyForQuery).
        The ReadyForQuery is hidden but after the last statement of a query
        text, or an error there, which ends the rest as PostgreSQL's would.
        The caller releases the client data that waited.
        """
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
