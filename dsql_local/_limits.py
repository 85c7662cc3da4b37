"""DSQL's per-transaction limits: rows changed and bytes written.

A CommandComplete that takes the transaction past the policy's row limit
(`StatementPolicy.statement_done`) becomes the error: the rest of its unit's
answer waits for the unit's end, when it is known whether the statement can
still fail (see `Relay`); if so, a hidden refusal fails the backend's
transaction too. Rows that foreign key actions change show in no command
tag: while a foreign key with actions exists, the backend's count of rows
changed is read at the snapshot and checked again after each guarded UPDATE
or DELETE in a transaction (whose answer waits for it: DSQL fails the
statement that crosses the limit) and before the COMMIT (see `_yield`).
That count takes each change, of a row changed twice too: how DSQL counts
such a row is not sourced, and counting each change is the conservative
choice. Before the COMMIT of a transaction that wrote, a hidden check of the
size limit runs too; its error, if any, answers the COMMIT.

Every transaction's snapshot is taken right after its BEGIN, as DSQL takes
it, by a hidden SELECT whose answer the limits count from: where the WAL
stood (which bounds what the transaction can have written) and, while
foreign keys with actions exist, the rows changed so far.
"""

from __future__ import annotations

import re

from . import _messages as m
from . import _protocol as pq
from ._policy import Refusal, Session, StatementPolicy
from ._units import (
    AUTOCOMMIT,
    HIDDEN,
    PRE_COMMIT,
    QUIET,
    REPLAY,
    ROWS,
    SNAPSHOT,
    SWALLOW,
    Units,
)
from ._yield import FK_DDL_TAGS, Holders

_MUTATING_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})
_FK_VERBS = frozenset({"UPDATE", "DELETE"})  # may set off foreign key actions
_TAKE_SNAPSHOT = "SELECT pg_catalog.pg_current_wal_insert_lsn()"
_TAKE_SNAPSHOT_ROWS = (
    "SELECT pg_catalog.pg_current_wal_insert_lsn()::text"
    " || ' ' || dsql_local.rows_changed()"
)
_BEGIN = pq.query(f"BEGIN;{_TAKE_SNAPSHOT}")
_BEGIN_ROWS = pq.query(f"BEGIN;{_TAKE_SNAPSHOT_ROWS}")
_LSN = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")


class Limits:
    """One connection's count toward DSQL's limits, transaction by transaction."""

    def __init__(
        self,
        units: Units,
        policy: StatementPolicy | None,
        holders: Holders | None,
        session: Session,
    ) -> None:
        self._units = units
        self._policy = policy
        self._holders = holders
        self._session = session
        self.late_refusal: Refusal | None = None
        """A statement past the row limit, failed at its unit's end."""
        self.late_answer = bytearray()
        """What the backend answered from its CommandComplete on."""
        self.commit_error = b""
        """The error of the check before a COMMIT, to answer it with."""
        self._rows_error = b""
        """The error of the row limit's check after a write, to fail it with."""
        self._wrote = False
        self._rows_due = False
        self._start_lsn = ""
        self._start_rows: int | None = None

    @property
    def reading(self) -> bool:
        """Whether every backend message is to be read: a unit fails late."""
        return bool(self.commit_error) or self.late_refusal is not None

    def idle(self) -> None:
        """The connection is idle: the next transaction counts afresh."""
        self._wrote = self._rows_due = False
        self._start_lsn = ""
        self._start_rows = None

    # -- the snapshot ------------------------------------------------------

    def fk_actions(self) -> bool:
        """Whether rows changed by foreign key actions are to be counted."""
        if getattr(self._policy, "transaction_row_limit", None) is None:
            return False
        holders = self._holders
        return holders is not None and holders.fk_actions()

    def begin(self) -> bytes:
        """A hidden BEGIN and the query taking its snapshot."""
        return _BEGIN_ROWS if self.fk_actions() else _BEGIN

    def snapshot_after(self, begin: str) -> bytes:
        """The Query of a client's lone BEGIN (counted), the snapshot after it."""
        self._units.add(self._units.sent, SNAPSHOT)
        take = _TAKE_SNAPSHOT_ROWS if self.fk_actions() else _TAKE_SNAPSHOT
        # A comment at the end of `begin` ends with the line.
        return pq.query(f"{begin}\n;{take}")

    def snapshot_hides(
        self, action: int, kind: int, view: memoryview, pos: int, end: int
    ) -> bool:
        """Read the snapshot's row; whether the message is the snapshot's."""
        if kind == m.DATA_ROW:
            # One text column: (count 1, length, value).
            lsn, _, rows = (
                bytes(view[pos + 11 : end]).decode("ascii", "replace").partition(" ")
            )
            self._start_lsn = lsn if _LSN.fullmatch(lsn) else ""
            self._start_rows = int(rows) if rows.isdigit() else None
            return True
        return (
            kind == m.ROW_DESCRIPTION
            or (kind == m.C and bytes(view[pos + 5 : pos + 11]) == b"SELECT")
            or bool(action & SWALLOW and kind != m.E)
        )

    # -- statements --------------------------------------------------------

    def command_done(self, tag: str, answer: bytes | memoryview) -> bool:
        """Count a CommandComplete; True if past the row limit (it waits).

        `answer` is the CommandComplete as the client is to see it.
        """
        if tag in FK_DDL_TAGS and self._holders is not None:
            self._holders.tables_changed()
        verb, _, count = tag.rpartition(" ")
        if count.isdigit() and count != "0" and verb.split(" ", 1)[0] in _MUTATING_TAGS:
            self._wrote = True
            self._rows_due = self._start_rows is not None and verb in _FK_VERBS
        if self._policy is None:
            return False
        refusal = self._policy.statement_done(tag, self._session)
        if refusal is None:
            return False
        self.late_refusal = refusal
        self.late_answer = bytearray(answer)
        return True

    def hold(self, message: memoryview) -> bytes:
        """Keep a message of a unit failed late, until the unit's end."""
        self.late_answer += message
        return b""

    def end_late(
        self, unit: int, action: int, status: bytes, held: bytearray | None
    ) -> tuple[bytes, bytes]:
        """End a unit refused late: what precedes its ReadyForQuery, its status.

        The statement fails if its transaction can still be failed: a hidden
        one, or one still open with nothing sent after the unit; a hidden
        refusal fails the backend's transaction too. Otherwise (it committed,
        or a pipeline goes on) it stands as the backend answered. `held` is
        the answer of a guarded write that waits: the error goes after it.
        """
        refusal, self.late_refusal = self.late_refusal, None
        answer, self.late_answer = bytes(self.late_answer), bytearray()
        assert refusal is not None
        units = self._units
        if status != b"T" or not (action & AUTOCOMMIT or unit == units.sent):
            return answer, status
        error = pq.error_response(refusal.sqlstate, refusal.message)
        units.failed = True
        if not action & AUTOCOMMIT:
            # The backend's transaction fails as the client is told.
            units.send(m.refusal_query(refusal), HIDDEN | QUIET)
            status = b"E"
        if held is None:
            return error, status
        held += error
        return b"", status

    @property
    def counts_fk_rows(self) -> bool:
        """Whether the transaction counts the rows foreign key actions change."""
        return self._start_rows is not None

    def rows_check(self) -> bytes:
        """The Query checking the row limit after a write, if one is due.

        Due after an UPDATE or DELETE that changed rows while foreign keys
        with actions exist: the rows those changed count, and DSQL fails the
        statement that crosses the limit.
        """
        due, self._rows_due = self._rows_due, False
        rows = getattr(self._policy, "transaction_row_limit", None)
        if not due or rows is None:
            return b""
        return pq.query(
            f"SELECT dsql_local.check_rows({int(rows)}, {self._start_rows})"
        )

    def own_error(self, action: int, body: memoryview) -> bool:
        """Keep the error of a check of the limits; whether `action` is one."""
        if action & PRE_COMMIT:
            self._pre_commit_error(action, body)
            return True
        if action & ROWS:
            # The row limit's check: its own context left out.
            fields = pq.parse_fields(body)
            fields.pop("W", None)
            self._rows_error = pq.build_fields(b"E", fields)
            return True
        return False

    def take_rows_error(self) -> bytes:
        """The error of the row limit's check after a write, if any."""
        error, self._rows_error = self._rows_error, b""
        return error

    # -- before a COMMIT ---------------------------------------------------

    def commit_check(self) -> bytes:
        """The Query checking DSQL's limits before a COMMIT, if one is due.

        The size: measuring costs a scan of each table written; it is skipped
        when the whole server wrote less WAL than the limit since the
        transaction's snapshot (the WAL holds every row version written, as
        stored). The rows, counting those foreign key actions changed: only
        while a foreign key with actions exists (see `_yield`).
        """
        if not self._wrote:
            return b""
        checks = []
        rows = getattr(self._policy, "transaction_row_limit", None)
        if rows is not None and self._start_rows is not None:
            checks.append(
                f"SELECT dsql_local.check_rows({int(rows)}, {self._start_rows})"
            )
        limit = getattr(self._policy, "transaction_size_limit", None)
        if limit is not None:
            check = f"dsql_local.check_commit({int(limit)})"
            if self._start_lsn:
                checks.append(
                    "SELECT CASE WHEN pg_catalog.pg_current_wal_insert_lsn()"
                    f" - '{self._start_lsn}'::pg_catalog.pg_lsn > {int(limit)}"
                    f" THEN {check} END"
                )
            else:
                checks.append(f"SELECT {check}")
        return pq.query(";".join(checks)) if checks else b""

    def _pre_commit_error(self, action: int, body: memoryview) -> None:
        """Keep the first error before a COMMIT: the COMMIT answers with it.

        A replay's means another transaction committed the row first.
        """
        if self.commit_error:
            return
        if action & REPLAY:
            self.commit_error = pq.error_response(*m.CONFLICT)
        else:
            self.commit_error = pq.build_fields(b"E", pq.parse_fields(body))

    def take_commit_error(self) -> bytes:
        error, self.commit_error = self.commit_error, b""
        return error
