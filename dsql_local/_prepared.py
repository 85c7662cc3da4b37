"""Prepared statements: the extended protocol's Parse and Bind, checked.

A Parse is checked like a Query's statement; a named (prepared) statement
is checked again each time a Bind runs it, but the first, which its Parse
checked. What the policy refuses is replaced by a statement raising the
refusal: at a Parse, one with the client's parameter count, so that its Bind
still fits; at a Bind, an extra unnamed statement the portal is bound to
instead, whose ParseComplete is hidden. A COMMIT goes through the gate (see
`_commit_gate`). A statement run alone in its Sync (as libpq sends one
outside pipeline mode), or in a transaction block alone up to its Execute
(a pipeline's, which `_split` gives a Sync of its own), is guarded (see
`_write_guard`) or wrapped in a hidden transaction (see `_hidden`) at its
first message: at its Parse when its first Bind follows in the same Sync,
else at its Bind.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import NamedTuple

from . import _messages as m
from . import _protocol as pq
from ._commit_gate import Checker, CommitGate
from ._copy import is_copy
from ._hidden import HiddenTransactions, run_again
from ._policy import Refusal, Session
from ._split import executes_next, nothing_next, one_statement
from ._units import Units
from ._write_guard import WriteGuard

_PARAM_RE = re.compile(r"\$(\d+)")
_NO_PARAMETERS = m.INT16.pack(0) * 3  # no formats, no values, no result formats


class Statement(NamedTuple):
    """A named statement the client prepared."""

    sql: str
    fresh: bool
    """Not run yet: its Parse checked it."""
    wanted: bool
    """The policy wants it in a hidden transaction."""
    tags: tuple[str | None, ...]
    """The command tags DSQL gives it (see `Session.command_tags`)."""
    types: bytes
    """Its parameter types, as its Parse ends."""


class PreparedStatements:
    """Check one connection's Parses and Binds; know its named statements."""

    def __init__(
        self,
        units: Units,
        relay: Checker,
        session: Session,
        *,
        gate: CommitGate,
        guard: WriteGuard,
        hidden: HiddenTransactions,
    ) -> None:
        self._units = units
        self._relay = relay
        self._session = session
        self._gate = gate
        self._guard = guard
        self._hidden = hidden
        self.statements: dict[str, Statement] = {}
        self.current_sql = ""
        """The SQL of the statement last parsed or bound (see `_split`)."""

    def parse_message(self, view: memoryview, pos: int, end: int) -> bytes | None:
        """A Parse (counted): what to send in its place, None as it is."""
        body = bytes(view[pos + 5 : end])
        name, at = pq.cstring(body, 0)
        sql, at = pq.cstring(body, at)
        types = body[at:]
        units = self._units
        self.current_sql = sql
        if not name and m.COMMIT_RE.match(sql):
            return self._commit_parse(sql, bytes(view[pos:end]))
        verdict = self._relay.check(sql)
        wanted = self._wanted(sql)
        if name:
            # Wrapped or guarded, if need be, where it runs: at its Bind.
            tags = self._session.command_tags
            self.statements[name] = Statement(sql, True, wanted, tags, types)
        elif not isinstance(verdict, Refusal):
            units.note_tags(units.sent + 1, self._session.command_tags)
        if isinstance(verdict, Refusal):
            return m.parse(name, self._refusal_sql(verdict, sql, types), types)
        if units.parses_sent == 1 and self._runs_alone(view, end, named=bool(name)):
            # A named statement's first run, when its Bind follows in the
            # same Sync, is guarded or wrapped here: its Bind comes too late.
            message = (
                bytes(view[pos:end])
                if verdict is None
                else m.parse(name, verdict, types)
            )
            enclosed = self._enclose(
                sql if verdict is None else verdict,
                message,
                wanted,
                lambda: m.next_bind(view, end) if executes_next(view, end) else b"",
                types,
            )
            if enclosed is not None:
                return enclosed
        elif units.parses_sent == 1 and not one_statement(view, end):
            # The first of statements sent together (see `_hidden`).
            self._hidden.start_batch(sql if verdict is None else verdict, m.PARSE)
        return None if verdict is None else m.parse(name, verdict, types)

    def _commit_parse(self, sql: str, message: bytes) -> bytes | None:
        """An unnamed Parse of COMMIT: refused, or after the checks before it."""
        units = self._units
        refusal = self._gate.refusal(units.sent + 1, checkable=units.parses_sent == 1)
        if refusal is None:
            return self._gate.take_prefix(message)
        self._gate.rollback_after_sync()
        return m.parse("", m.refusal_sql(refusal), m.parameter_types([]))

    @staticmethod
    def _refusal_sql(refusal: Refusal, sql: str, types: bytes) -> str:
        """The refusal, keeping the parameter count so that the Bind still fits."""
        (count,) = m.INT16.unpack_from(types, 0)
        oids = struct.unpack_from(f"!{count}I", types, 2)
        used = max((int(n) for n in _PARAM_RE.findall(sql)), default=0)
        undeclared = [
            i + 1 for i in range(max(count, used)) if i >= count or oids[i] == 0
        ]
        return m.refusal_sql(refusal, undeclared)

    def bind_message(self, view: memoryview, pos: int, end: int) -> bytes | None:
        """Check a prepared statement again each time it runs."""
        body = bytes(view[pos + 5 : end])
        portal, at = pq.cstring(body, 0)
        name, _ = pq.cstring(body, at)
        known = self.statements.get(name)
        if known is None:
            return None
        units = self._units
        sql, wanted = known.sql, known.wanted
        self.current_sql = sql
        write = self._guard.write
        if write is not None and write.bind == b"" and known.fresh:
            write.bind = body  # the guarded Parse's run, sent after it
        if m.COMMIT_RE.match(sql):
            return self._commit_bind(portal, bytes(view[pos:end]))
        if known.fresh:
            # Its first run was checked at its Parse, which psycopg sends
            # right before (in the same Sync or the previous one).
            self.statements[name] = known._replace(fresh=False)
        else:
            verdict = self._relay.check(sql)
            if isinstance(verdict, Refusal):
                return self._refuse_bind(portal, verdict)
            # A rewrite cannot apply to a prepared statement: it runs as prepared.
            wanted = self._wanted(sql)
        units.note_tags(units.sent + 1, known.tags)
        if units.parses_sent == 0:
            if self._runs_alone(view, end):
                message = bytes(view[pos:end])
                return self._enclose(sql, message, wanted, lambda: body, known.types)
            if not one_statement(view, end):
                self._hidden.start_batch(sql, m.B)
        return None

    def _runs_alone(self, view: memoryview, end: int, *, named: bool = False) -> bool:
        """Whether the statement whose message ends at `end` runs alone in its unit.

        Either a Sync follows its Execute, or, in a transaction block, its
        Execute is in: it gets a hidden Sync of its own (see `_split`). A
        named statement's Parse in a transaction block may also come before
        its Bind is sent (psycopg's pipeline mode): its Bind and Execute,
        when they come, end its unit.
        """
        if m.synced_alone(view, end):
            return True
        if self._units.status != b"T":
            return False
        return executes_next(view, end) or (named and nothing_next(view, end))

    def _commit_bind(self, portal: str, message: bytes) -> bytes | None:
        """A Bind of a prepared COMMIT: refused, or after the checks before it."""
        units = self._units
        refusal = self._gate.refusal(units.sent + 1, checkable=units.parses_sent == 0)
        if refusal is None:
            return self._gate.take_prefix(message)
        self._gate.rollback_after_sync()
        return self._refuse_bind(portal, refusal)

    def _refuse_bind(self, portal: str, refusal: Refusal) -> bytes:
        """Bind `portal` to an extra unnamed statement raising `refusal`.

        The backend answers the extra Parse too: its ParseComplete is hidden.
        """
        self._units.hide_parse(self._units.sent + 1)
        parse = m.parse("", m.refusal_sql(refusal), m.parameter_types([]))
        return parse + pq.message(b"B", portal.encode() + b"\0\0" + _NO_PARAMETERS)

    def _wanted(self, sql: str) -> bool:
        """Whether the policy wants `sql`, sent by Parse, in a hidden transaction.

        Never a COPY (see `_copy`).
        """
        return self._session.run_in_transaction and not is_copy(sql)

    def _enclose(
        self,
        sql: str,
        message: bytes,
        wanted: bool,
        bind: Callable[[], bytes],
        types: bytes,
    ) -> bytes | None:
        """Guard the unit's statement, or wrap it in a hidden transaction.

        `message` is the unit's first (a Parse or a Bind), `wanted` whether
        the policy wants it wrapped, `bind` gives the unit's Bind body and
        `types` its parameter types.
        """
        hidden = self._hidden
        guarded = self._guard.guard_extended(
            sql, message, hidden.wrap_at_sync, bind, types
        )
        if guarded is not None:
            return guarded
        if hidden.may_wrap(wanted, self._units.sent):
            return hidden.wrap_extended(message, run_again(sql, bind(), types))
        return None
