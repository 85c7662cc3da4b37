"""The write guard: writes that meet another transaction's rows, as DSQL has them.

DSQL never makes a writer wait and lets the first transaction to COMMIT win
(see `_conflicts` and `_yield`). In a transaction, a write or locking read
that `_conflicts.guard` can answer runs after a hidden SAVEPOINT, its answer
held until its ReadyForQuery. If PostgreSQL refused it for another
transaction's sake (a lock timeout, or 40001 for a row changed since the
snapshot), the guard rolls back to the savepoint, runs the plain read that
answers it instead (extended protocol: with the client's parameters and
result formats), and keeps the write to run again right before the
transaction's COMMIT, which fails with 40001 ``(OC000)`` if the replay does:
the other transaction committed first. Client data waits meanwhile.

A transaction asked to give way to one that commits first (from another
relay's thread, see `_yield`) rolls back between units and begins a doomed
transaction in its place: its COMMIT will fail.

The writes kept to run again follow the client's own savepoints (with strict
mode off: DSQL has none): a ``ROLLBACK TO SAVEPOINT`` drops those kept since
that savepoint, and whether the transaction was doomed since, as it undoes
the writes; a ``RELEASE`` keeps them. The SQL of the read and of the replays,
and the reading of the savepoint commands, are `_replays`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import _messages as m
from . import _protocol as pq
from ._clones import answer_sql, clone_sql, fill_sql
from ._conflicts import Guard, guard
from ._limits import Limits
from ._replays import (
    REPLAY_LOCK_TIMEOUT,
    SAVEPOINT_WORDS,
    answer_query,
    replays_for,
    savepoint_commands,
    with_parameters,
)
from ._units import (
    ANSWER,
    GAVE_WAY,
    GUARD,
    HIDDEN,
    NEXT_PIECE,
    PART,
    QUIET,
    ROWS,
    SNAPSHOT,
    SPLIT,
    Units,
)
from ._yield import holder_check

logger = logging.getLogger("dsql_local")

# What a write's answer, or its row check, takes over from the write's unit:
# the end of a statement run in a unit of its own (see `_split`), of a piece
# of a Query split at its COMMITs (see `_commit_gate`).
_ENDS_STATEMENT = PART | SPLIT | NEXT_PIECE
_SAVEPOINT_NAME = "dsql_local_write"
_SAVEPOINT = pq.query(f"SAVEPOINT {_SAVEPOINT_NAME}")
# The same, as the first steps of an extended-protocol unit: the backend
# flushes its answers with the write's at the Sync, so the relay reads the
# unit in one go, not the savepoint's answer first. Its statement and portal
# have the relay's own name, so the client's unnamed ones stay as they are;
# those an earlier guarded write left are closed first (closing what does
# not exist is no error).
_SAVEPOINT_STEPS = (
    pq.message(b"C", b"P" + _SAVEPOINT_NAME.encode() + b"\0")
    + pq.message(b"C", b"S" + _SAVEPOINT_NAME.encode() + b"\0")
    + m.parse(_SAVEPOINT_NAME, f"SAVEPOINT {_SAVEPOINT_NAME}", m.parameter_types([]))
    + m.bind(
        _SAVEPOINT_NAME.encode(),
        _SAVEPOINT_NAME.encode(),
        m.INT16.pack(0) * 2,
        m.INT16.pack(0),
    )
    + pq.message(b"E", _SAVEPOINT_NAME.encode() + b"\0" + m.INT32.pack(0))
)
# What the backend answers them, in order; notices may come among them.
_SAVEPOINT_ANSWERS = b"3312C"
_ROLLBACK_TO = pq.query(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT_NAME}")
# What a refused extended-protocol write already answered that still holds.
_KEPT_AFTER_REFUSAL = frozenset(b"12tTn")


@dataclass
class Write:
    """A guarded write in flight: its answer waits until it is known."""

    guard: Guard
    sql: str
    bind: bytes | None = None
    """Extended protocol: the body of the client's Bind (its parameters)."""
    types: bytes = b"\0\0"
    """Extended protocol: the parameter types of the client's Parse."""
    sealed: bool = False
    """Its Sync (or its Query) is in: what the client sends next waits."""
    refused: bool = False
    own: bytes = b""
    """The kinds of the answers to the guard's own savepoint steps still to
    come, in order (hidden)."""
    holder_check: str | None = None
    """SQL checking that the row's holder did not commit first (see `_yield`)."""
    answer: bytearray = field(default_factory=bytearray)
    kept: bytearray = field(default_factory=bytearray)


class GuardHost(Protocol):
    """What the write guard needs from the relay around it."""

    def command_complete(
        self, action: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """The relay's handling of a CommandComplete (tags, limits)."""
        ...

    def statement_error(self, body: memoryview) -> bytes | None:
        """Note a client statement's error; the error to send, None as is."""
        ...

    def set_status(self, status: bytes) -> None:
        """Note the transaction status a ReadyForQuery reported."""
        ...

    def release_held(self) -> None:
        """Pass on the client data that waited, if it need wait no more."""
        ...

    def holding(self) -> bool:
        """Whether client data waits for the relay's own statements."""
        ...


class WriteGuard:
    """Guard one connection's writes; replay the refused ones; give way."""

    def __init__(
        self,
        units: Units,
        host: GuardHost,
        limits: Limits,
        alone: Callable[[int], bool] | None = None,
    ) -> None:
        self._units = units
        self._host = host
        self._limits = limits
        """Its row check after a write, its BEGIN after giving way."""
        self._alone = alone
        """Whether the write of a unit may go unguarded (see `_solo`)."""
        self.write: Write | None = None
        self.doomed = False
        """The transaction's COMMIT is to fail: another one wins."""
        self.replays: list[bytes] = []
        """Writes refused for another transaction's sake, to run again
        right before the COMMIT, which fails if one of them does."""
        self._look_for_holders = False
        self.transaction = 0
        """The number of this connection's current (or next) transaction."""
        self._give_way: int | None = None
        self._giving_way = False
        self.waker: Callable[[], None] | None = None
        self._savepoints: list[tuple[str, int, bool]] = []
        """The client's savepoints: name, how many replays and whether the
        transaction was doomed when it was set."""

    def holding(self) -> bool:
        """Whether client data waits for the guard's own statements."""
        write = self.write
        return self._giving_way or (write is not None and write.sealed)

    def seal(self) -> None:
        """The unit of the write in flight is complete (its Sync is in)."""
        if self.write is not None:
            self.write.sealed = True

    def idle(self, ended: bool) -> None:
        """The connection is idle; `ended`: its transaction just ended."""
        if ended:
            self.transaction += 1
        self.replays.clear()
        self.doomed = False
        self._savepoints.clear()

    def savepoints(self, sql: str) -> None:
        """Follow the client's savepoint commands in `sql`, a statement (or
        text) the client sends: a refused write undone by a ``ROLLBACK TO
        SAVEPOINT`` is not run again at COMMIT."""
        first = sql.lstrip()[:9].lower()
        if not first.startswith(SAVEPOINT_WORDS) and ";" not in sql:
            return  # (cheap: every statement sent comes here)
        for setting, releasing, name in savepoint_commands(sql):
            self._savepoint(setting, releasing, name)

    def _savepoint(self, setting: bool, releasing: bool, name: str) -> None:
        marks = self._savepoints
        if setting:
            marks.append((name, len(self.replays), self.doomed))
            return
        found = [at for at, mark in enumerate(marks) if mark[0] == name]
        if not found:
            return  # the backend refuses it: no such savepoint
        at = found[-1]
        if releasing:
            del marks[at:]  # what was written since stays
            return
        # Rolled back to it: what was written since is undone, and the
        # savepoint stays.
        del marks[at + 1 :]
        _, replays, doomed = marks[at]
        del self.replays[replays:]
        self.doomed = doomed

    # -- client -> backend -------------------------------------------------

    def guard_query(self, sql: str, wrapping: bool) -> bytes | None:
        """Guard `sql`, the Query just counted; None if it is not guarded."""
        units = self._units
        self.savepoints(sql)
        write = self._guard(sql, units.sent - 1, wrapping)
        if write is None:
            return None
        # The hidden SAVEPOINT takes the client's unit; the query the next.
        write.sealed = True
        units.add(units.sent, HIDDEN | QUIET)
        units.sent += 1
        units.add(units.sent, GUARD)
        return _SAVEPOINT + pq.query(sql)

    def guard_extended(
        self,
        sql: str,
        message: bytes,
        wrapping: bool,
        bind: Callable[[], bytes],
        types: bytes,
    ) -> bytes | None:
        """Guard the unit whose first message (Parse or Bind) is `message`.

        The savepoint's steps go first in the unit. `bind` gives the unit's
        Bind body and `types` its parameter types.
        """
        units = self._units
        self.savepoints(sql)
        write = self._guard(sql, units.sent, wrapping)
        if write is None:
            return None
        write.bind = bind()
        write.types = types
        write.own = _SAVEPOINT_ANSWERS
        units.add(units.sent + 1, GUARD)
        return _SAVEPOINT_STEPS + message

    def _guard(self, sql: str, units_before: int, wrapping: bool) -> Write | None:
        """Guard `sql`, sent in a transaction, if a refused write of it can be answered.

        Only when the status is known: every earlier unit answered, but
        hidden ones that leave it as it is.
        """
        units = self._units
        if units.status != b"T" or self.write is not None or wrapping:
            return None
        if not units.status_known(units_before):
            return None
        found = guard(sql)
        if found is None:
            return None
        if self._alone is not None and self._alone(units_before + 1):
            return None  # nothing can be in its way
        self.write = Write(found, sql)
        return self.write

    def before_commit(self, checkable: bool) -> list[bytes]:
        """The replays to run before a COMMIT, as the COMMIT's unit begins.

        The pump then looks for the holders they wait for, once.
        """
        if not self.replays:
            return []
        if checkable:
            self._look_for_holders = True
        return [REPLAY_LOCK_TIMEOUT, *self.replays]

    def look_for_holders(self) -> None:
        """Have the pump look for the holders that what was just sent waits for."""
        self._look_for_holders = True

    def take_holder_lookup(self) -> bool:
        """Whether the replays before a COMMIT were just sent (see `_yield`)."""
        wanted, self._look_for_holders = self._look_for_holders, False
        return wanted

    # -- backend -> client -------------------------------------------------

    def write_message(self, kind: int, view: memoryview, pos: int, end: int) -> bytes:
        """Hold a guarded write's answer until it is known to stand."""
        write = self.write
        assert write is not None
        own = write.own
        if own:
            if kind == own[0]:
                write.own = own[1:]
                return b""
            if kind == m.E:
                write.own = b""  # the savepoint failed: its error is the write's
        message = view[pos:end]
        if kind == m.E:
            fields = pq.parse_fields(view[pos + 5 : end])
            if fields.get("C") in m.CONFLICT_SQLSTATES and write.bind != b"":
                # (b"": its run never came; the error stands at the statement.)
                write.refused = True
                write.holder_check = holder_check(fields.get("W", ""))
                return b""
            rewritten = self._host.statement_error(view[pos + 5 : end])
            write.answer += message if rewritten is None else rewritten
            return b""
        if kind == m.PARSE_COMPLETE:
            self._units.parses_done += 1
        if kind in _KEPT_AFTER_REFUSAL:
            write.kept += message
        if kind == m.C:
            replaced = self._host.command_complete(0, view, pos, end)
            write.answer += message if replaced is None else replaced
        else:
            write.answer += message
        return b""

    def end_of_write(self, action: int, status: bytes) -> bytes | None:
        """At a guarded write's ReadyForQuery: send its answer, or answer it as DSQL.

        A write PostgreSQL refused for another transaction's sake is undone
        (to the savepoint before it) and answered by a plain read of the
        rows it would have touched; the transaction will fail at COMMIT.
        The read's own ReadyForQuery ends it.
        """
        write = self.write
        assert write is not None
        if not action & ANSWER and not write.refused and status == b"T":
            check = self._limits.rows_check()
            if check:
                # Its answer waits for the check (see `end_of_rows_check`).
                self._units.send(check, HIDDEN | ROWS | (action & _ENDS_STATEMENT))
                return b""
        if action & ANSWER or not write.refused:
            self.write = None
            self._host.set_status(status)
            self._host.release_held()
            if action & ANSWER:
                return None
            return bytes(write.answer) + pq.ready_for_query(status)
        if write.holder_check is None:
            self.doomed = True  # who held the row is not known: it wins
        elif write.holder_check:
            self.replays.append(pq.query(write.holder_check))
        found, number = write.guard, len(self.replays)
        # A statement of several writes has a clone for each (see `_conflicts`).
        parts = found.parts or (found,)
        # An UPDATE or DELETE (one at most) runs alone before the others'
        # rows are written: in the statement it did not see them.
        for n, part in sorted(enumerate(parts, number), key=lambda p: not p[1].fill):
            self.replays += replays_for(write, part, n, alone=bool(found.parts))
        self._units.send(_ROLLBACK_TO, HIDDEN | QUIET)
        for n, part in enumerate(parts, number):
            if part.target:
                self._units.send(pq.query(clone_sql(part, n)), HIDDEN | QUIET)
            if part.fill:
                self._units.send(
                    with_parameters(write, fill_sql(part, n)), HIDDEN | QUIET
                )
        read = answer_sql(found, number)
        # A statement run in a unit of its own ends with its answer.
        self._units.send(answer_query(write, read), ANSWER | (action & _ENDS_STATEMENT))
        # The extended protocol's ParseComplete, BindComplete and row
        # description stand; the rows come from the read.
        return bytes(write.kept) if write.bind is not None else b""

    def end_of_rows_check(self, status: bytes, error: bytes) -> bytes:
        """Send the checked write's answer, or the row limit's `error` instead."""
        write = self.write
        assert write is not None
        self.write = None
        self._host.set_status(status)
        self._host.release_held()
        return (error or bytes(write.answer)) + pq.ready_for_query(status)

    def answer_message(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """Pass on the read's rows, if the write returns rows, and its count."""
        write = self.write
        assert write is not None
        if kind == m.E:
            self._units.failed = True
            return m.rewrite_error(view[pos + 5 : end])
        if kind in (m.ROW_DESCRIPTION, m.DATA_ROW):
            return None if write.guard.rows else b""
        if kind == m.C:
            tag, _ = pq.cstring(view, pos + 5)
            tagged = pq.message(
                b"C", f"{write.guard.verb} {tag.rsplit(' ', 1)[-1]}".encode() + b"\0"
            )
            replaced = self._host.command_complete(
                0, memoryview(tagged), 0, len(tagged)
            )
            return tagged if replaced is None else replaced
        if kind in b"123":  # the read's own Close, Parse and Bind
            return b""
        return None

    # -- giving way to a transaction that commits first --------------------

    def give_way(self, transaction: int) -> None:
        """From another relay's thread: roll back `transaction` if still open."""
        self._give_way = transaction
        if self.waker is not None:
            self.waker()

    def try_giving_way(self) -> None:
        """Roll back the backend's transaction, asked to; begin a doomed one.

        Only between units (the backend idle in its transaction): else at
        the end of the units in flight. The client's data waits meanwhile.
        """
        wanted = self._give_way
        if wanted is None:
            return
        units = self._units
        if wanted != self.transaction or units.status == b"I":
            self._give_way = None  # it has ended meanwhile
            return
        if units.done != units.sent or self._host.holding():
            return
        self._give_way = None
        self._giving_way = True
        units.send(m.ROLLBACK, HIDDEN | QUIET)
        if units.status == b"E":
            units.send(self._limits.begin(), HIDDEN | SNAPSHOT)
            units.send(m.refusal_query(m.CONFLICT), HIDDEN | QUIET | GAVE_WAY)
        else:
            units.send(self._limits.begin(), HIDDEN | SNAPSHOT | GAVE_WAY)
        logger.debug("a transaction gave way to one that committed first")

    @property
    def asked_to_give_way(self) -> bool:
        return self._give_way is not None

    def gave_way(self) -> None:
        """The BEGIN after giving way is in: the transaction is doomed."""
        self.doomed = True
        self._giving_way = False
        self._savepoints.clear()  # rolled back with the rest
        self._host.release_held()
