"""What the write guard sends for a refused write, and which replays stay.

A write PostgreSQL refused for another transaction's sake (see
`_write_guard`) is answered by a plain read, `answer_query`, and run again
right before the transaction's COMMIT: `replays_for` gives what runs then, in
the clones of `_clones` where it was answered in one; `with_parameters` runs
a statement with the client's parameters. The client's savepoint commands
(`savepoint_commands`) decide which of the replays kept so far stay: a
``ROLLBACK TO SAVEPOINT`` undoes those written since.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import _messages as m
from . import _protocol as pq
from ._clones import drop_clone_sql, insert_rows_sql, upsert_rows_sql
from ._conflicts import Guard

if TYPE_CHECKING:
    from ._write_guard import Write

_ANSWER_STATEMENT = b"dsql_local_answer"
# A replay waits for the holders it makes give way (see `_yield`).
REPLAY_LOCK_TIMEOUT = pq.query("SET LOCAL lock_timeout = '2s'")
# The client's savepoint commands, and the savepoint's name.
_SAVEPOINT_COMMAND = re.compile(
    r"\s*(?:(savepoint)|(release)(?:\s+savepoint)?"
    r"|rollback(?:\s+(?:work|transaction))?\s+to(?:\s+savepoint)?)"
    r"\s+(\"(?:[^\"]|\"\")+\"|[^\s;\"]+)\s*\Z",
    re.IGNORECASE,
)
# The first word of a statement that may be one (see `savepoint_commands`).
SAVEPOINT_WORDS = ("savepoint", "release", "rollback")


def replays_for(write: Write, found: Guard, number: int, *, alone: bool) -> list[bytes]:
    """What runs again before the COMMIT for `found`'s write, answered in
    clone `number`; `alone`: one write of several, whose `stand_in` replays it."""
    if found.upsert:
        # An upsert is answered in a clone of its table holding its rows;
        # what it wrote there is written at the replay.
        return [pq.query(upsert_rows_sql(found, number))]
    if found.target and not found.fill:
        # An INSERT ... RETURNING is answered by the same INSERT into a
        # clone of its table; the clone's rows go in at the replay.
        return [pq.query(insert_rows_sql(found, number))]
    replay = with_parameters(write, found.stand_in if alone else write.sql)
    if not found.fill:
        return [replay]
    # An UPDATE answered in a clone: the clone goes once it replayed.
    return [replay, pq.query(drop_clone_sql(number))]


def with_parameters(write: Write, sql: str) -> bytes:
    """`sql` (the refused write itself, say, to run again before the COMMIT),
    with the write's parameters, no rows asked for."""
    if write.bind is None:
        return pq.query(sql)
    params, _ = m.split_bind(write.bind)
    return (
        m.parse("", sql, write.types)
        + m.bind(b"", b"", params, m.INT16.pack(0))
        + m.execute()
        + m.SYNC
    )


def answer_query(write: Write, read: str) -> bytes:
    """The read that answers a refused write, with the client's parameters."""
    if write.bind is None:
        return pq.query(read)
    name = _ANSWER_STATEMENT
    params, formats = m.split_bind(write.bind)
    if not write.guard.rows:
        formats = m.INT16.pack(0)
    return (
        pq.message(b"C", b"S" + name + b"\0")
        + m.parse(name.decode(), read, write.types)
        + m.bind(b"", name, params, formats)
        + m.execute()
        + m.SYNC
    )


def savepoint_commands(sql: str) -> Iterator[tuple[bool, bool, str]]:
    """The savepoint commands among the statements of `sql`, in order:
    (setting one, releasing one, its name); else a ``ROLLBACK TO``."""
    for statement in sql.split(";"):
        found = _SAVEPOINT_COMMAND.match(statement)
        if found is not None:
            setting, releasing, name = found.groups()
            yield bool(setting), bool(releasing), _name(name)


def _name(written: str) -> str:
    """A savepoint's name as PostgreSQL has it: unquoted, folded to lower case."""
    if written.startswith('"'):
        return written[1:-1].replace('""', '"')
    return written.lower()
