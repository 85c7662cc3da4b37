"""The relay's backend side: each message the backend sends, as the client gets it.

`BackendAnswers` is the half of `_relay.Relay` that reads what the backend
answers (a base class, so that no call is added per message). It hands a
unit's messages to the part that sent it (see `_units`: a guarded write's
and its answer's to `_write_guard`, a BEGIN's snapshot and the limits' checks
to `_limits`, an autocommit batch's and a run again's to `_hidden`), and
does itself what is left:

- PostgreSQL's serialization and lock-timeout errors of statements not
  guarded become DSQL's 40001 ``(OC000)`` at the statement (in autocommit,
  the statement's end is its COMMIT), and refusals lose their PL/pgSQL
  context (`statement_error`);
- a statement the policy rewrote into one with another tag (``CREATE INDEX
  ASYNC`` runs as a SELECT) gets the tag DSQL gives (`command_complete`,
  `Session.command_tags`), counted toward the limits;
- each ReadyForQuery ends a unit: its action applied, the transaction status
  noted (`set_status`) and `_checks` told, so that the policy sees the
  session's state.
"""

from __future__ import annotations

from collections.abc import Callable

from . import _messages as m
from . import _protocol as pq
from ._checks import Checks
from ._commit_gate import CommitGate
from ._copy import CopyIn
from ._framing import Framer
from ._hidden import HiddenTransactions
from ._limits import Limits
from ._messages import EVERY_KIND
from ._solo import Presence
from ._split import Split
from ._units import (
    ANSWER,
    AS_IDLE,
    AUTOCOMMIT,
    BATCH,
    DROP_AT_COMMIT,
    GAVE_WAY,
    GUARD,
    HIDE_READY,
    NEXT_PIECE,
    PART,
    QUIET,
    RELEASE_TAG,
    RETRY,
    ROWS,
    SNAPSHOT,
    SPLIT,
    SWALLOW,
    UNAVAILABLE_AT_COMMIT,
    Units,
)
from ._write_guard import WriteGuard

_AT_COMMIT = DROP_AT_COMMIT | UNAVAILABLE_AT_COMMIT
# What the relay's own Parse and Bind (or Query) of a statement run again
# answers that the client has had (see `_hidden`).
_RETRY_OWN = frozenset(b"12")
# The client's last message (see `_relay._UNNOTED`) when, all answered in
# autocommit, the backend holds nothing: none yet, a Sync or a Query, a
# Terminate.
AT_REST = frozenset(b"\0SQX")


class BackendAnswers:
    """Read what the backend answers a relay's client (see `_relay.Relay`)."""

    # What `Relay` sets up.
    _units: Units
    _checks: Checks
    _limits: Limits
    _guard: WriteGuard
    _gate: CommitGate
    _hidden: HiddenTransactions
    _split: Split
    _copy: CopyIn
    _presence: Presence
    _held: bytearray
    _client_framer: Framer
    _backend_kinds: frozenset[int]
    release_held: Callable[[], None]

    def statement_error(self, body: memoryview) -> bytes | None:
        """An error of a client statement: noted, and as DSQL gives it."""
        self._units.failed = True
        self._checks.failed()
        return m.rewrite_error(body)

    def set_status(self, status: bytes) -> None:
        """Note the transaction status a ReadyForQuery reported."""
        units = self._units
        ended = status == b"I" and units.status != b"I"
        units.status = status
        self._checks.status(status)
        if status == b"I":
            self._guard.idle(ended)
            self._limits.idle()

    # -- backend -> client -------------------------------------------------

    def _backend_watches(self) -> frozenset[int] | None:
        if self._gate.dropping:
            return None
        if self._units.actions or self._limits.reading:
            return EVERY_KIND
        return self._backend_kinds

    def _backend_message(
        self, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        if kind == m.PARAMETER_STATUS:
            # What the policy cannot have seen (it refuses the SET).
            pq.check_parameter_status(view[pos + 5 : end])
        units = self._units
        unit = units.done + 1
        action = units.action(unit)
        if kind == m.Z:
            sent = self._end_of_unit_answer(unit, action, view[pos + 5 : pos + 6])
            presence = self._presence
            if presence.flying or units.done == units.sent:
                idle = (
                    units.done == units.sent
                    and units.status == b"I"
                    and not self._held
                    # (Else an implicit transaction may still be open.)
                    and self._client_framer.last in AT_REST
                )
                presence.answered(units.done, idle)
            return sent
        late = self._limits.late_refusal is not None
        if late or action & (GUARD | ANSWER | SNAPSHOT | RETRY | BATCH):
            return self._conflict_message(action, kind, view, pos, end)
        if kind == m.PARSE_COMPLETE:
            return b"" if units.parse_complete(unit, action) else None
        if kind == m.E:
            return self._backend_error(action, view, pos, end)
        if kind == m.COPY_IN and action & AUTOCOMMIT:
            # COPY FROM STDIN in a hidden transaction: let its data through.
            self._copy.started()
            self.release_held()
        swallow = action & SWALLOW
        if kind == m.C and (not swallow or self._limits.commit_error):
            return self.command_complete(action, view, pos, end)
        return b"" if swallow else None

    def _conflict_message(
        self, action: int, kind: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """A message of a guarded write, of its answer, of a BEGIN's snapshot,
        of an autocommit write run again, or of an autocommit batch.

        After a late refusal, the rest of the unit's answer waits for its end.
        """
        if self._limits.late_refusal is not None:
            return self._limits.hold(view[pos:end])
        if action & (GUARD | ANSWER | BATCH):
            guard = self._guard
            part = (
                guard.write_message
                if action & GUARD
                else guard.answer_message
                if action & ANSWER
                else self._hidden.batch_message
            )
            return part(kind, view, pos, end)
        # The snapshot's, or what a run again answers that the client has.
        hidden = (
            kind in _RETRY_OWN
            if action & RETRY
            else self._limits.snapshot_hides(action, kind, view, pos, end)
        )
        if hidden:
            return b""
        if kind == m.E:
            return self._backend_error(action, view, pos, end)
        return self.command_complete(action, view, pos, end) if kind == m.C else None

    def _backend_error(
        self, action: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        if action & QUIET or self._limits.own_error(action, view[pos + 5 : end]):
            return b""
        if action & AUTOCOMMIT and self._hidden.conflict(view[pos + 5 : end]):
            return b""  # it runs again (see `_hidden`)
        return self.statement_error(view[pos + 5 : end])

    def command_complete(
        self, action: int, view: memoryview, pos: int, end: int
    ) -> bytes | None:
        """A CommandComplete: the tag DSQL gives, counted toward the limits."""
        limits = self._limits
        if limits.commit_error:
            # The limits' check failed: the backend rolled back.
            self._units.failed = True
            return limits.take_commit_error()
        tag, replacement = self._units.command_tag(view, pos)
        if action & _AT_COMMIT and tag == "COMMIT":
            return self._gate.committed(action)
        self._checks.command_done(tag)
        if limits.command_done(tag, replacement or view[pos:end]):
            return b""  # whether it can still fail is known at the unit's end
        if action & AUTOCOMMIT:
            # Confirmed only once the hidden COMMIT has succeeded.
            self._hidden.hold_tag(replacement or bytes(view[pos:end]))
            return b""
        return replacement

    def _end_of_unit_answer(
        self, unit: int, action: int, status_byte: memoryview
    ) -> bytes | None:
        """Handle a ReadyForQuery, of a unit refused late too (see `_limits`)."""
        status = bytes(status_byte)
        if self._limits.late_refusal is None:
            return self._ready_for_query(unit, action, status)
        write = self._guard.write
        held = write.answer if write is not None and action & GUARD else None
        first, status = self._limits.end_late(unit, action, status, held)
        replaced = self._ready_for_query(unit, action, status)
        return first + (pq.ready_for_query(status) if replaced is None else replaced)

    def _ready_for_query(self, unit: int, action: int, status: bytes) -> bytes | None:
        """End a unit: apply its action and note the transaction status."""
        failed = self._units.end(unit, action)
        self._copy.ended()  # a failed COPY ends before its data does
        if action & (GUARD | ANSWER | PART | SPLIT | ROWS):
            return self._end_of_statement(action, status, failed)
        self.set_status(b"I" if action & AS_IDLE else status)
        if action & GAVE_WAY:
            self._guard.gave_way()
        if action & NEXT_PIECE and self._gate.after_piece(failed):
            return b""
        if action & (AUTOCOMMIT | BATCH):
            return self._hidden.unit_end(action, status, failed)
        if action & HIDE_READY:
            return b""
        if action & RELEASE_TAG:
            return self._hidden.release_tag(status, failed)
        return pq.ready_for_query(b"I") if action & AS_IDLE else None

    def _end_of_statement(
        self, action: int, status: bytes, failed: bool
    ) -> bytes | None:
        """The end of a guarded write or of its answer, or of a statement
        run in a unit of its own (see `_split`), perhaps a piece's last."""
        guard = self._guard
        if action & (GUARD | ANSWER):
            sent = guard.end_of_write(action, status)
        elif action & ROWS:
            error = self._limits.take_rows_error()
            sent = guard.end_of_rows_check(status, error)
            failed = bool(error)
        else:
            self.set_status(status)
            sent = None
        writing = guard.write is not None
        sent = self._split.end(sent, action, status, failed=failed, writing=writing)
        if action & NEXT_PIECE and not writing and not self._split.running_piece:
            # The last statement of a piece of a Query split at its COMMITs.
            return self._gate.after_statement_piece(sent, status, failed)
        return sent
