"""Statements sent together in autocommit: what one batch keeps and holds.

A query text of several statements, or a pipeline's statements before one
Sync, sent in autocommit, is one implicit transaction in PostgreSQL, which
commits at its end: in DSQL too, and it wins over an open transaction
holding a row it writes. `_hidden` runs such a batch as sent and, when a
statement meets another transaction's row, runs it again, whole, in a
hidden transaction while the holders give way. A `Batch` is what that
takes, without I/O: the client's messages as they went to the backend
(`keep`), the answers held (`hold`), and the answers the client was given
before the batch's end (`give`), which its run again must answer alike
(`match`).

The client may ask for answers before the Sync (a Flush: psycopg's
``executemany(returning=True)``, a fetch inside ``pipeline()``), and then
waits for them before it sends the Sync. An answer given cannot be taken
back: the run again drops its answers to what the client was given, as
long as each is the one given, byte for byte; an answer that differs
(a read that now sees another row, a sequence's next value) fails the
batch with 40001 ``(OC000)`` in its place, the rest of the run again
unanswered and rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import _messages as m
from . import _protocol as pq
from ._split import plain_statements
from ._yield import holder_check

# A batch's answers held (or given before its end) beyond this: it will not
# run again.
HOLD_LIMIT = 1 << 20
# Nor does a batch that sends more than this.
RECORD_LIMIT = 16 << 20
# What a batch's run again does not answer again: a notification, a setting.
_NOT_ANSWERS = frozenset(b"AS")
_ASIDE = frozenset(b"ASN")  # and a notice: which may come before any answer
_NOTICE = ord("N")
P, B, QUERY = b"PBQ"
FLUSH = pq.message(b"H")
# The answer a batch's first message gets first: else it was not the first.
_FIRST_ANSWER = {P: m.PARSE_COMPLETE, B: ord("2")}
# What a run again answers in place of an answer that differs from the one
# the client was given.
CONFLICT_ERROR = pq.build_fields(
    b"E", {"S": "ERROR", "V": "ERROR", "C": "40001", "M": m.OC000_MESSAGE}
)


@dataclass
class Batch:
    """Statements sent together in autocommit: one implicit transaction."""

    unit: int
    """Its unit: its ReadyForQuery ends it."""
    first: int
    """The type of its first message (a Query, Parse or Bind)."""
    again: bytearray = field(default_factory=bytearray)
    """What it sent the backend, to run it again."""
    recording: bool = False
    """Extended protocol: its messages are coming, up to its Sync."""
    holding: bool = True
    """Its answers wait, so that it can run again."""
    can_run_again: bool = True
    names: list[bytes] = field(default_factory=list)
    """The statements it prepared (Parse with a name)."""
    held: bytearray = field(default_factory=bytearray)
    given: bytearray = field(default_factory=bytearray)
    """The answers passed to the client before its end (a Flush asked),
    notices and the like left out: its run again must answer alike."""
    conflict: bytes = b""
    """The error of a statement that met another transaction's row."""
    check: str = ""
    """What checks, as its run again begins, that the row it met is as it
    met it (see `_yield.kept_check`)."""
    ended: bool = False
    """The relay ended its first run with a Sync of its own: the client
    asked for answers and waits for them, its Sync still to come."""
    to_match: bytes = b""
    """A run again: the answers the client was given, still to be answered."""
    matched: int = 0
    broken: bool = False
    """A run again answered otherwise than the client was given: its
    answers are dropped, and it is rolled back."""

    def keep(self, kind: int, message: bytes | memoryview, sql: str) -> bool:
        """Keep a message, as it went to the backend: whether the batch can
        still run again. `sql` is the statement a Parse or Bind brings."""
        if not self.can_run_again:
            return False
        self.again += message
        if len(self.again) > RECORD_LIMIT:
            return False
        if kind == P:
            name, _ = pq.cstring(message, 5)
            if name:
                self.names.append(name.encode())
        if kind in (P, B):
            # (A Bind the policy refused comes with a Parse of the relay's.)
            return message[0] == kind and plain_statements(sql) == 1
        # A Close, a Query cannot run again as they ran.
        return kind in (m.DESCRIBE, m.EXECUTE, m.FLUSH)

    def hold(self, message: bytes | memoryview) -> bool:
        """Hold an answer: whether they still fit."""
        self.held += message
        return len(self.held) <= HOLD_LIMIT

    def give_held(self) -> bytes:
        """The answers held, passed on now: the client asked for them."""
        held = bytes(self.held)
        self.held.clear()
        self.holding = False
        self.give(held)
        return held

    def give(self, answers: bytes | memoryview) -> None:
        """Note answers passed on before the batch's end."""
        if not self.can_run_again:
            return
        self.given += answers_in(answers)
        if len(self.given) > HOLD_LIMIT:
            self.can_run_again = False
            self.given.clear()

    def answer(
        self, kind: int, sent: bytes | None, message: memoryview
    ) -> bytes | None:
        """An answer, `sent` in its place (None: as it is): held, matched
        with one given (a run again), or passed (and noted as given)."""
        if sent == b"":
            return sent
        answer = message if sent is None else sent
        if self.holding:
            if not self.hold(answer):
                return self.let_go(b"", message)
            return b""
        if self.matching():
            return self.match(kind, answer)
        self.give(answer)
        return sent

    def let_go(self, sent: bytes | None, message: memoryview) -> bytes | None:
        """It will not run again: the answers held, then `sent` in place of
        `message` (None: as it is)."""
        self.can_run_again = False
        if not self.holding:
            return sent
        self.holding = False
        held = bytes(self.held)
        self.held.clear()
        return held + (bytes(message) if sent is None else sent)

    def give_up(self) -> bytes:
        """It will not run again, nor keep what the client sends next: what
        it held, to pass on."""
        self.can_run_again = False
        self.recording = False
        self.again.clear()
        passed = self.conflict
        self.conflict = b""
        if self.holding:
            self.holding = False
            passed = bytes(self.held) + passed
            self.held.clear()
        return passed

    def first_answer_ok(self) -> bool:
        """Whether its first answer was its first message's: else a message
        it did not keep came first, and it cannot run again."""
        expected = _FIRST_ANSWER.get(self.first)
        return expected is None or _first_answer(self.given + self.held) == expected

    def sent_again(self) -> bytes:
        """What its run again sends: what it sent, with a Flush after each
        message when it gave answers, so that the backend sends each answer
        as it comes, before a statement waits for a row (see `_hidden`)."""
        if not self.given:
            return bytes(self.again)
        sent = bytearray()
        pos, n = 0, len(self.again)
        while pos < n:
            end = pos + 1 + m.UNPACK_LEN(self.again, pos + 1)[0]
            sent += self.again[pos:end]
            if self.again[pos] != m.S:
                sent += FLUSH
            pos = end
        return bytes(sent)

    def run_again(self) -> Batch:
        """The batch of its run again, whose answers pass as they come, but
        those the client was given."""
        return Batch(
            self.unit,
            self.first,
            holding=False,
            can_run_again=False,
            to_match=bytes(self.given),
        )

    def matching(self) -> bool:
        """Whether the answers the client was given are still to come."""
        return self.matched < len(self.to_match)

    def match(self, kind: int, message: bytes | memoryview) -> bytes:
        """An answer of a run again, while those given are to come: what to
        send (see the module's docstring)."""
        if kind in _ASIDE:
            return b"" if kind == _NOTICE else bytes(message)
        end = self.matched + len(message)
        if self.to_match[self.matched : end] == message:
            self.matched = end
            return b""
        self.broken = True
        self.to_match = b""
        return CONFLICT_ERROR


def row_met(body: memoryview) -> str | None:
    """The context of an error that says that the statement met another
    transaction's row or key, and names it (see `_yield`); else None."""
    fields = pq.parse_fields(body)
    if fields.get("C") not in m.CONFLICT_SQLSTATES:
        return None
    context = fields.get("W", "")
    # No row named (NOWAIT): nothing tells who holds it.
    return None if holder_check(context) is None else context


def _first_answer(held: bytearray) -> int | None:
    """The type of the first message of `held` that answers a message (not
    a notice, a notification or a setting)."""
    pos, n = 0, len(held)
    while pos < n:
        if held[pos] not in _ASIDE:
            return held[pos]
        pos += 1 + m.UNPACK_LEN(held, pos + 1)[0]
    return None


def not_answers(held: bytes | bytearray) -> bytes:
    """What of `held` is not a statement's answer (a notification)."""
    return _pick(held, _NOT_ANSWERS, keep=True)


def answers_in(sent: bytes | memoryview) -> bytes:
    """What of `sent` answers a message (not a notice, a notification or a
    setting)."""
    return _pick(sent, _ASIDE, keep=False)


def parses_in(sent: bytes | bytearray) -> int:
    """The number of Parse messages in `sent`."""
    count, pos, n = 0, 0, len(sent)
    while pos < n:
        count += sent[pos] == P
        pos += 1 + m.UNPACK_LEN(sent, pos + 1)[0]
    return count


def _pick(
    data: bytes | bytearray | memoryview, kinds: frozenset[int], *, keep: bool
) -> bytes:
    """The messages of `data` whose type is in `kinds` (`keep`), or not."""
    kept = bytearray()
    pos, n = 0, len(data)
    while pos < n:
        end = pos + 1 + m.UNPACK_LEN(data, pos + 1)[0]
        if (data[pos] in kinds) == keep:
            kept += data[pos:end]
        pos = end
    return bytes(kept)
