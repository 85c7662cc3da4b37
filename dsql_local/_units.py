"""Response units: which answer of the backend is which, and what each must do.

Every Query, Sync and FunctionCall gets exactly one ReadyForQuery, so unit k
is everything the backend sends after the (k-1)-th ReadyForQuery up to and
including the k-th. Counting the units sent and answered lets the relay
swallow the answer to a statement it injected without tracking every
message. Within a unit, ParseCompletes are counted too, to hide those of
Parses the relay added.
"""

from __future__ import annotations

import enum

from . import _protocol as pq


class Unit(enum.IntFlag):
    """What the relay does with one response unit (see the module's docstring)."""

    AS_IDLE = 1
    """Rewrite the unit's ReadyForQuery status to 'I'."""
    SWALLOW = 2
    """Hide the unit's messages but its errors and ReadyForQuery."""
    DROP_AT_COMMIT = 4
    """Close the client connection instead of confirming COMMIT."""
    NEXT_PIECE = 8
    """At ReadyForQuery, hide it and send the query's next piece."""
    HIDE_READY = 16
    """Hide the unit's ReadyForQuery."""
    AUTOCOMMIT = 32
    """Hold its CommandComplete; at ReadyForQuery, end the hidden transaction
    around the unit."""
    RELEASE_TAG = 64
    """The hidden COMMIT: send the held CommandComplete first."""
    UNAVAILABLE_AT_COMMIT = 128
    """Answer a COMMIT that committed with an error."""
    QUIET = 256
    """Hidden, errors too, and leaves the transaction status as it is."""
    GUARD = 512
    """A write after a hidden savepoint: its answer waits in the write guard."""
    ANSWER = 1024
    """The plain read answering a write PostgreSQL refused."""
    SNAPSHOT = 2048
    """A lone BEGIN, followed by a hidden snapshot-taking SELECT."""
    PRE_COMMIT = 4096
    """The limits' check before a COMMIT: keep its error for it."""
    REPLAY = 8192
    """A refused write, run again before its COMMIT: an error is OC000."""
    GAVE_WAY = 16384
    """The BEGIN after giving way: the new transaction is doomed."""
    PART = 32768
    """A statement of a split query text: at ReadyForQuery, hide it and send
    the next one, if any (see `_split`)."""
    SPLIT = 65536
    """A statement of a pipeline, given a hidden Sync of its own: hide its
    ReadyForQuery; after an error, skip to the client's Sync (see `_split`)."""
    ROWS = 131072
    """The row limit's check after a guarded UPDATE or DELETE whose foreign
    key actions may have changed rows: its error fails the write."""
    RETRY = 262144
    """An autocommit write run again once the transactions holding the row
    it met were made to give way (see `_hidden`): its ParseComplete and
    BindComplete are the relay's."""
    BATCH = 524288
    """Statements sent together in autocommit (see `_hidden`): their answers
    wait for the unit's end, so that the batch can run again."""


NONE = Unit(0)
# Each unit's record is a `Unit`; the parts test its bits as plain ints
# (`int(action)`, the names below): an IntFlag's own operators build a new
# member each time, which costs microseconds per message.
AS_IDLE = Unit.AS_IDLE.value
SWALLOW = Unit.SWALLOW.value
DROP_AT_COMMIT = Unit.DROP_AT_COMMIT.value
NEXT_PIECE = Unit.NEXT_PIECE.value
HIDE_READY = Unit.HIDE_READY.value
AUTOCOMMIT = Unit.AUTOCOMMIT.value
RELEASE_TAG = Unit.RELEASE_TAG.value
UNAVAILABLE_AT_COMMIT = Unit.UNAVAILABLE_AT_COMMIT.value
QUIET = Unit.QUIET.value
GUARD = Unit.GUARD.value
ANSWER = Unit.ANSWER.value
SNAPSHOT = Unit.SNAPSHOT.value
PRE_COMMIT = Unit.PRE_COMMIT.value
REPLAY = Unit.REPLAY.value
GAVE_WAY = Unit.GAVE_WAY.value
PART = Unit.PART.value
SPLIT = Unit.SPLIT.value
ROWS = Unit.ROWS.value
RETRY = Unit.RETRY.value
BATCH = Unit.BATCH.value
HIDDEN = SWALLOW | HIDE_READY
"""A unit the client never sees but its errors."""


class Units:
    """The units sent and answered on one connection, and their records.

    It also holds the transaction status the last ReadyForQuery reported
    and the bytes queued for the backend, which every part that sends a
    hidden statement appends to.
    """

    __slots__ = (
        "actions",
        "done",
        "failed",
        "hidden_parses",
        "parses_done",
        "parses_sent",
        "sent",
        "status",
        "tags",
        "to_backend",
    )

    def __init__(self, to_backend: bytearray) -> None:
        self.to_backend = to_backend
        self.status = b"I"
        self.sent = 0
        self.done = 0
        self.actions: dict[int, Unit] = {}
        self.failed = False
        """The unit being answered has had an error."""
        self.parses_sent = 0
        """Parses sent in the unit being sent."""
        self.parses_done = 0
        """ParseCompletes received in the unit being answered."""
        self.hidden_parses: dict[int, set[int]] = {}
        """The ParseCompletes to hide: {unit: {index of an added Parse}}."""
        self.tags: dict[int, list[str | None]] = {}
        """The command tags DSQL gives for rewritten statements, per unit, in
        the order of the unit's CommandCompletes (None: the backend's own)."""

    def open(self) -> None:
        """Count a unit sent: a Query, Sync or FunctionCall."""
        self.sent += 1
        self.parses_sent = 0

    def add(self, unit: int, action: int) -> None:
        """Add `action` to what `unit` must do."""
        self.actions[unit] = Unit(int(self.actions.get(unit, NONE)) | action)

    def action(self, unit: int) -> int:
        return int(self.actions.get(unit, NONE))

    def hidden(self, message: bytes, action: int) -> bytes:
        """Count `message`, a unit of the relay's own, with its action."""
        self.open()
        self.add(self.sent, action)
        return message

    def send(self, message: bytes, action: int) -> None:
        """Queue `message`, a unit of the relay's own, for the backend."""
        self.to_backend += self.hidden(message, action)

    def status_known(self, units_before: int) -> bool:
        """Whether `status` holds for what follows unit `units_before`.

        Every unit up to it is answered, but hidden ones that leave the
        status as it is.
        """
        actions = self.actions
        for unit in range(self.done + 1, units_before + 1):
            if not int(actions.get(unit, NONE)) & QUIET:
                return False
        return True

    def idle_after(self, units_before: int) -> bool:
        """Whether the connection is known idle after unit `units_before`."""
        return self.status == b"I" and self.done == units_before

    def note_tags(self, unit: int, tags: tuple[str | None, ...]) -> None:
        """Remember the command tags DSQL gives for a statement of `unit`."""
        if tags or unit in self.tags:
            self.tags.setdefault(unit, []).extend(tags or (None,))

    def command_tag(self, view: memoryview, pos: int) -> tuple[str, bytes | None]:
        """The tag of the CommandComplete at `pos`, as DSQL gives it.

        And the CommandComplete to send in its place: None for the backend's.
        """
        tags = self.tags.get(self.done + 1)
        wanted = tags.pop(0) if tags else None
        if wanted is None:
            return pq.cstring(view, pos + 5)[0], None
        return wanted, pq.message(b"C", wanted.encode() + b"\0")

    def hide_parse(self, unit: int) -> None:
        """The next Parse of `unit` is the relay's: hide its ParseComplete."""
        self.hidden_parses.setdefault(unit, set()).add(self.parses_sent)
        self.parses_sent += 1

    def parse_complete(self, unit: int, action: int) -> bool:
        """Count a ParseComplete of `unit`: whether to hide it."""
        index = self.parses_done
        self.parses_done += 1
        return bool(action & SWALLOW) or index in self.hidden_parses.get(unit, ())

    def end(self, unit: int, action: int) -> bool:
        """Close `unit` at its ReadyForQuery: whether it had an error."""
        self.done = unit
        self.parses_done = 0
        self.hidden_parses.pop(unit, None)
        self.tags.pop(unit, None)
        if action:
            del self.actions[unit]
        failed, self.failed = self.failed, False
        return failed
