"""What the relay tests without PostgreSQL share: a host, a policy, messages.

Each such test plays the client and the backend: it feeds a `Relay` (or one
of its parts) what they would send and checks what comes out on the other
side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dsql_local import _protocol as pq
from dsql_local._faults import Faults
from dsql_local._policy import Refusal, Session
from dsql_local._relay import Relay
from dsql_local._schema import SchemaClock
from dsql_local._solo import Activity

SNAPSHOT_SQL = "SELECT pg_catalog.pg_current_wal_insert_lsn()"
ROW_DESCRIPTION = pq.message(b"T", b"\0\0")  # its content is not read
IDLE, IN_TRANSACTION, FAILED = (pq.ready_for_query(s) for s in (b"I", b"T", b"E"))
SAVEPOINT_STEPS = ["C", "C", "P", "B", "E"]
"""The kinds of the first messages of a guarded extended-protocol write's unit."""
SAVEPOINT_ANSWERS = (
    pq.message(b"3")
    + pq.message(b"3")
    + pq.message(b"1")
    + pq.message(b"2")
    + pq.message(b"C", b"SAVEPOINT\0")
)
"""What the backend answers the savepoint steps, in the write's unit."""


@dataclass
class Policy:
    """A statement policy whose answers each test sets."""

    refused: dict[str, Refusal] = field(default_factory=dict)
    """Statement text -> its refusal."""
    rewritten: dict[str, str] = field(default_factory=dict)
    wrapped: set[str] = field(default_factory=set)
    """Statements to run in a hidden transaction."""
    tags: dict[str, tuple[str | None, ...]] = field(default_factory=dict)
    row_limit: int | None = None
    """Refuse a CommandComplete counting more rows than this."""
    commit_refusal: Refusal | None = None
    transaction_size_limit: int | None = None
    transaction_row_limit: int | None = None
    checked: list[str] = field(default_factory=list)

    @property
    def bootstrap_sql(self) -> Sequence[str]:
        return ()

    def check_startup(self, parameters: Mapping[str, str]) -> Refusal | None:
        return None

    def check_statement(self, sql: str, session: Session) -> Refusal | str | None:
        self.checked.append(sql)
        session.run_in_transaction = sql in self.wrapped
        session.command_tags = self.tags.get(sql, ())
        return self.refused.get(sql) or self.rewritten.get(sql)

    def statement_done(self, command_tag: str, session: Session) -> Refusal | None:
        count = command_tag.rsplit(" ", 1)[-1]
        limit = self.row_limit
        if limit is not None and count.isdigit() and int(count) > limit:
            return Refusal("54000", "transaction row limit exceeded")
        return None

    def check_commit(self, session: Session) -> Refusal | None:
        return self.commit_refusal


class Holders:
    """The endpoint's holders, as far as the limits ask them."""

    def __init__(
        self, fk_actions: bool = False, activity: Activity | None = None
    ) -> None:
        self.actions = fk_actions
        self.changed = 0
        self.activity = activity
        """Who is busy (see `_solo`); None: every write is guarded."""

    def fk_actions(self) -> bool:
        return self.actions

    def tables_changed(self) -> None:
        self.changed += 1


class Host:
    """What a Relay reads from its endpoint; conflicts injected at will."""

    def __init__(
        self,
        policy: Policy | None = None,
        holders: Holders | None = None,
        schema_clock: SchemaClock | None = None,
    ) -> None:
        self.policy = policy
        self.holders = holders
        self.schema_clock = schema_clock
        self.faults = Faults()
        self.conflicts: list[str] = []
        self.commit_drops = 0

    def take_conflict(self) -> str | None:
        return self.conflicts.pop(0) if self.conflicts else None

    def take_commit_drop(self) -> bool:
        if self.commit_drops:
            self.commit_drops -= 1
            return True
        return False


def make_relay(host: Host | None = None) -> Relay:
    return Relay(host or Host(), Session(user="admin"), backend_pid=4242)


def messages(buffer: bytearray) -> list[tuple[str, bytes]]:
    """Split what the relay queued into (kind, body) messages; clear it."""
    out, pos = [], 0
    while pos < len(buffer):
        size = int.from_bytes(buffer[pos + 1 : pos + 5], "big")
        out.append((chr(buffer[pos]), bytes(buffer[pos + 5 : pos + 1 + size])))
        pos += 1 + size
    buffer.clear()
    return out


def kinds(buffer: bytearray) -> str:
    """The message types the relay queued, in order; clears it."""
    return "".join(kind for kind, _ in messages(buffer))


def queries(buffer: bytearray) -> list[str]:
    """The SQL of each Query (or Parse) the relay queued; clears it."""
    found = []
    for kind, body in messages(buffer):
        if kind == "Q":
            found.append(body[:-1].decode())
        elif kind == "P":
            found.append(pq.cstring(body, pq.cstring(body, 0)[1])[0])
    return found


def error_fields(buffer: bytearray) -> list[dict[str, str]]:
    """The fields of each ErrorResponse the relay queued; clears it."""
    return [pq.parse_fields(body) for kind, body in messages(buffer) if kind == "E"]


def complete(tag: str) -> bytes:
    return pq.message(b"C", tag.encode() + b"\0")


def pg_error(sqlstate: str, message: str, context: str = "") -> bytes:
    fields = f"SERROR\0C{sqlstate}\0M{message}\0"
    if context:
        fields += f"W{context}\0"
    return pq.message(b"E", fields.encode() + b"\0")


def text_row(value: str) -> bytes:
    data = value.encode()
    return pq.message(b"D", b"\0\1" + len(data).to_bytes(4, "big") + data)


def snapshot(lsn: str = "0/16B3748") -> bytes:
    """The answer to a BEGIN followed by the hidden snapshot's SELECT."""
    return complete("BEGIN") + ROW_DESCRIPTION + text_row(lsn) + complete("SELECT 1")


def begin(relay: Relay) -> None:
    """A lone BEGIN, answered: the transaction is open."""
    relay.from_client(pq.query("BEGIN"))
    assert queries(relay.to_backend) == [f"BEGIN\n;{SNAPSHOT_SQL}"]
    relay.from_backend(snapshot() + IN_TRANSACTION)
    # The snapshot's SELECT is hidden from the client.
    assert messages(relay.to_client) == [("C", b"BEGIN\0"), ("Z", b"T")]


def extended(sql: str, name: str = "", *, parse: bool = True) -> bytes:
    """(Parse,) Bind (one text parameter), Describe, Execute, Sync."""
    statement = name.encode() + b"\0"
    return (
        (pq.message(b"P", statement + sql.encode() + b"\0\0\0") if parse else b"")
        + pq.message(b"B", b"\0" + statement + b"\0\0\0\1\0\0\0\1" + b"1" + b"\0\0")
        + pq.message(b"D", b"P\0")
        + pq.message(b"E", b"\0\0\0\0\0")
        + pq.message(b"S")
    )
