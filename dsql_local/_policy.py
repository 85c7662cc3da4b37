"""The statement policy hook: lets DSQL Local refuse or rewrite statements.

The relay calls a policy for every statement a client sends (simple and
extended query protocol). A refusal is raised by the backend itself, so the
transaction state afterwards is exactly what a server-side error leaves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from typing_extensions import Protocol


class Refusal(NamedTuple):
    """Refuse a statement with this SQLSTATE and message."""

    sqlstate: str
    message: str


@dataclass
class Session:
    """What the relay knows about one client connection."""

    user: str
    backend_major: int | None = None
    """The major version of the backend's PostgreSQL (from its greeting)."""
    in_transaction: bool = False
    """From the last ReadyForQuery: inside a transaction block ('T' or 'E')."""
    transaction_started_at: float | None = None
    """Monotonic time of the first statement of the current explicit transaction."""
    scratch: dict[str, object] = field(default_factory=dict)
    """The policy's per-transaction state; cleared when a transaction ends."""
    run_in_transaction: bool = False
    """Set by check_statement to ask that the statement, sent outside a
    transaction, run in a hidden transaction of its own, so that check_commit
    judges it before it commits. Reset before each check."""
    command_tags: tuple[str | None, ...] = ()
    """Set by check_statement when it rewrites a statement into one with
    another command tag: for each statement of the text, the tag the client
    is to see (None: the backend's own). Reset before each check."""


class StatementPolicy(Protocol):
    """Decide, statement by statement, what the backend gets to run."""

    @property
    def bootstrap_sql(self) -> Sequence[str]:
        """SQL run once on the backend after it is created.

        It runs as the superuser that installs DSQL Local's own objects
        (event triggers need one), before anyone connects; what it creates
        is not admin's: grant clients what they need.
        """
        ...

    def check_startup(self, parameters: Mapping[str, str]) -> Refusal | None:
        """Return a Refusal to fail a connection (FATAL) for its startup parameters."""
        ...

    def check_statement(self, sql: str, session: Session) -> Refusal | str | None:
        """Return a Refusal to refuse, a string to run instead, None to pass."""
        ...

    def statement_done(self, command_tag: str, session: Session) -> Refusal | None:
        """Observe each CommandComplete (e.g. ``INSERT 0 3``).

        A Refusal fails the statement after it ran (its transaction aborts):
        DSQL's row limit. An optional ``transaction_size_limit`` attribute
        (bytes) has the relay check DSQL's size limit right before each
        COMMIT of a transaction that wrote.
        """
        ...

    def check_commit(self, session: Session) -> Refusal | None:
        """Return a Refusal to fail the COMMIT (the transaction is rolled back)."""
        ...
