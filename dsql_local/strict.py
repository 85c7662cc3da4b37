"""Strict mode: DSQL Local refuses what Aurora DSQL refuses.

Without it (`LaxPolicy`), DSQL Local refuses nothing but still speaks DSQL's
own syntax: ``CREATE [UNIQUE] INDEX ASYNC``, ``sys.jobs`` and
``CALL sys.wait_for_job(id)``, so code written for DSQL runs either way.

`StrictPolicy` is the statement policy DSQL Local's relay consults for every
statement a client sends. It refuses what DSQL refuses, as the table of
`_strict_rules` says (SQLSTATE and message as DSQL gives them), refuses
startup parameters DSQL does not let a session set, enforces DSQL's
transaction rules (no DDL with DML, one DDL per transaction, 3,000 mutated
rows, 300 s) and accepts DSQL's own ``CREATE [UNIQUE] INDEX ASYNC`` and
``ALTER TABLE ASYNC ... VALIDATE CONSTRAINT``, which it runs at once and
answers with a job id.

Statements are read with PostgreSQL's own parser: `pglast` embeds libpg_query,
the parser source of the PostgreSQL server compiled as a library. Its verdict
on what a statement is matches the server's, down to comments, quoting, dollar
quoting and nested statements, where regular expressions would guess. Parses
are cached per statement text, so a repeated statement costs a dict lookup.

DSQL's limits apply where DSQL applies them. The row limit is counted from
the command tags the relay reports: the statement that crosses it fails with
54000 (`statement_done`), after it ran, and its transaction is aborted. Rows
that foreign-key actions change are not in the tags, and not counted. The
age limit and the size limit apply at COMMIT.
The size is measured by the relay's check before each COMMIT of a
transaction that wrote: the size of the row versions the transaction wrote
and still sees, as PostgreSQL stores them (compressed where it compresses),
which leaves out deleted rows, index entries and per-row overhead DSQL may
count. The check scans each table written, so it runs only when the server
wrote more WAL than the limit since the transaction began.

A lone data-modifying statement sent outside a transaction is run by the
relay in a hidden transaction of its own (`Session.run_in_transaction`), so
past the limit it fails with 54000 as in DSQL and commits nothing; this costs
one more backend round trip per such statement (about a third fewer
autocommit writes per second through DSQL Local). That includes ``COPY FROM
STDIN`` sent as a simple query, as psycopg sends it. Not covered, and
committed unchecked: several statements in one autocommit query text,
``COPY`` sent through the extended protocol, and a statement whose Sync is
not sent with it (pipeline mode; its transaction fails at COMMIT instead).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from ._errors import DsqlLocalError
from ._policy import Refusal, Session
from ._strict_analysis import PARSER_MAJOR, Analysis, Kind, Statement, analyse
from ._strict_rules import RULES_BY_NAME, settable
from ._strict_sql import BOOTSTRAP_SQL, SYS_SQL

__all__ = ["LaxPolicy", "StrictPolicy"]

logger = logging.getLogger("dsql_local.strict")

_LIMIT_EXCEEDED = "54000"
_MIXED = Refusal("0A000", "ddl and dml are not supported in the same transaction")
_TWO_DDL = Refusal("0A000", "multiple ddl statements not supported in a transaction")
_ROW_LIMIT = Refusal(_LIMIT_EXCEEDED, "transaction row limit exceeded")

# Keys of Session.scratch, the per-transaction state the relay clears.
_DDL = "strict.ddl"
_DML = "strict.dml"
_ROWS = "strict.rows"
_COPY_FROM = "strict.copy_from"  # COPY FROM statements awaiting their tag

_MUTATING_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})
# Startup parameters that are not settings.
_NOT_SETTINGS = frozenset({"user", "database", "options", "replication"})


def startup_settings(parameters: Mapping[str, str]) -> Iterator[str]:
    """Name each setting a startup packet sets, ``options`` (-c, --) included."""
    for key in parameters:
        if key.startswith("_pq_."):
            continue  # protocol extensions
        if key not in _NOT_SETTINGS:
            yield key
    words = _split_options(parameters.get("options", ""))
    for i, word in enumerate(words):
        if word.startswith("--"):
            setting = word[2:]
        elif word.startswith("-c"):
            setting = word[2:] or (words[i + 1] if i + 1 < len(words) else "")
        else:
            continue
        yield setting.split("=", 1)[0].replace("-", "_")


def _split_options(text: str) -> list[str]:
    """Split ``options`` as PostgreSQL does: at spaces, backslash escaping."""
    words: list[str] = []
    word: list[str] = []
    escaped = False
    for char in text:
        if escaped or (char != "\\" and not char.isspace()):
            word.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return words


def check_startup_settings(parameters: Mapping[str, str]) -> Refusal | None:
    """Refuse a startup packet that sets what DSQL does not let a session set."""
    rule = RULES_BY_NAME["startup-setting"]
    for name in startup_settings(parameters):
        if not settable(name):
            return Refusal(rule.sqlstate, rule.text(name))
    return None


class StrictPolicy:
    """Refuse statements and transactions that Aurora DSQL would refuse.

    ``transaction_age_limit`` (seconds), ``transaction_row_limit`` and
    ``transaction_size_limit`` (bytes) are DSQL's; lower them to test the
    limits quickly. ``clock`` must be the clock of
    ``Session.transaction_started_at`` (the relay uses `time.monotonic`).
    """

    bootstrap_sql: Sequence[str] = BOOTSTRAP_SQL

    def __init__(
        self,
        *,
        transaction_age_limit: float = 300.0,
        transaction_row_limit: int = 3_000,
        transaction_size_limit: int = 10 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not transaction_age_limit > 0:
            raise DsqlLocalError(
                f"transaction_age_limit must be a positive number of seconds,"
                f" not {transaction_age_limit!r}"
            )
        if transaction_row_limit < 0:
            raise DsqlLocalError(
                f"transaction_row_limit must be zero or more,"
                f" not {transaction_row_limit!r}"
            )
        if transaction_size_limit < 0:
            raise DsqlLocalError(
                f"transaction_size_limit must be zero or more bytes,"
                f" not {transaction_size_limit!r}"
            )
        self.transaction_age_limit = transaction_age_limit
        self.transaction_row_limit = transaction_row_limit
        self.transaction_size_limit = transaction_size_limit
        self._clock = clock
        self._age_refusal = Refusal(
            _LIMIT_EXCEEDED,
            f"transaction age limit of {transaction_age_limit:g}s exceeded",
        )

    def __repr__(self) -> str:
        return (
            f"StrictPolicy(transaction_age_limit={self.transaction_age_limit!r},"
            f" transaction_row_limit={self.transaction_row_limit!r},"
            f" transaction_size_limit={self.transaction_size_limit!r})"
        )

    def check_startup(self, parameters: Mapping[str, str]) -> Refusal | None:
        """Refuse settings DSQL does not let a connection make."""
        return check_startup_settings(parameters)

    def check_statement(self, sql: str, session: Session) -> Refusal | str | None:
        """Refuse `sql`, give the SQL to run instead, or let it pass (None)."""
        refusal = self._check_statement(sql, session)
        if isinstance(refusal, Refusal):
            logger.debug("refused a statement of %s: %s", session.user, refusal.message)
        return refusal

    def _check_statement(self, sql: str, session: Session) -> Refusal | str | None:
        analysis = analyse(sql)
        kind = analysis.plain
        if kind is not None:
            # The common case, in short: what the loop below does with one
            # statement that is neither refused nor rewritten.
            session.command_tags = ()
            if session.in_transaction:
                return _apply_transaction_rules(kind, session.scratch)
            session.run_in_transaction = kind is Kind.DML
            return None
        return self._check_statements(analysis, session)

    def _check_statements(
        self, analysis: Analysis, session: Session
    ) -> Refusal | str | None:
        explicit = session.in_transaction
        # Several statements in one query run as one implicit transaction.
        in_block = explicit or len(analysis.statements) > 1
        state = session.scratch if explicit else {}
        gap = _backend_gap(analysis, session.backend_major)
        if gap is not None:
            return gap
        for statement in analysis.statements:
            if statement.problem is not None:
                return Refusal(statement.problem.sqlstate, statement.problem.message)
            if statement.copy_from:
                session.scratch[_COPY_FROM] = _count(session.scratch, _COPY_FROM) + 1
            if statement.kind is Kind.BEGIN:
                if not explicit:
                    explicit = in_block = True
                    state = {}
            elif statement.kind is Kind.END:
                explicit = False
                state = {}
            elif in_block:
                refusal = _apply_transaction_rules(statement.kind, state)
                if refusal is not None:
                    return refusal
        if explicit and state is not session.scratch:
            # The query leaves open a transaction it began: carry its state.
            session.scratch.update(state)
        if not session.in_transaction:
            # So that the row limit applies to it too.
            session.run_in_transaction = _mutates_alone(analysis.statements)
        session.command_tags = analysis.command_tags
        return analysis.replacement

    def statement_done(self, command_tag: str, session: Session) -> Refusal | None:
        """Count the rows a statement mutated; refuse the one past the limit."""
        # Summed per statement: a row written twice counts twice. Whether DSQL
        # counts distinct rows instead is unsourced (see docs/testing.md).
        words = command_tag.split()
        if not words or not words[-1].isdigit():
            return None
        scratch = session.scratch
        if words[0] == "COPY" and _count(scratch, _COPY_FROM) > 0:
            scratch[_COPY_FROM] = _count(scratch, _COPY_FROM) - 1
        elif words[0] not in _MUTATING_TAGS:
            return None
        before = _count(scratch, _ROWS)
        after = before + int(words[-1])
        scratch[_ROWS] = after
        limit = self.transaction_row_limit
        if before <= limit < after:
            logger.debug("refused a statement of %s: %s", session.user, _ROW_LIMIT)
            return _ROW_LIMIT
        return None

    def check_commit(self, session: Session) -> Refusal | None:
        """Refuse to commit a transaction past DSQL's age or row limit.

        The row limit fails the statement that crosses it; here it catches
        the statements the relay could not fail in time (pipeline mode).
        """
        if not session.in_transaction:
            return None
        if self._too_old(session):
            refusal: Refusal | None = self._age_refusal
        elif _count(session.scratch, _ROWS) > self.transaction_row_limit:
            refusal = _ROW_LIMIT
        else:
            refusal = None
        if refusal is not None:
            logger.debug("refused COMMIT of %s: %s", session.user, refusal.message)
        return refusal

    def _too_old(self, session: Session) -> bool:
        started = session.transaction_started_at
        return started is not None and (
            self._clock() - started > self.transaction_age_limit
        )


class LaxPolicy:
    """Refuse nothing; accept DSQL's own syntax on top of PostgreSQL's.

    ``CREATE [UNIQUE] INDEX ASYNC`` and ``ALTER TABLE ASYNC ... VALIDATE
    CONSTRAINT`` run at once and answer a job id, and the ``sys`` schema is
    there (``sys.jobs``, ``CALL sys.wait_for_job``).
    Plain ``CREATE INDEX`` works on any table, and no transaction rule or
    limit applies. What ``DsqlLocal(strict=False)`` uses.
    """

    bootstrap_sql: Sequence[str] = SYS_SQL

    def __repr__(self) -> str:
        return "LaxPolicy()"

    def check_startup(self, parameters: Mapping[str, str]) -> Refusal | None:
        """Let every connection through."""
        return None

    def check_statement(self, sql: str, session: Session) -> Refusal | str | None:
        """Give the SQL to run in place of DSQL's own syntax; else None."""
        lowered = sql.lower()
        old_backend = session.backend_major is not None and session.backend_major < 16
        # Spares nearly every statement a parse.
        if (
            not old_backend
            and "async" not in lowered
            and "disable_sync_create_index" not in lowered
        ):
            return None
        analysis = analyse(sql, strict=False)
        gap = _backend_gap(analysis, session.backend_major)
        if gap is not None:
            return gap
        session.command_tags = analysis.command_tags
        return analysis.replacement

    def statement_done(self, command_tag: str, session: Session) -> Refusal | None:
        """Nothing to count."""
        return None

    def check_commit(self, session: Session) -> Refusal | None:
        """Let every COMMIT through."""
        return None


_DSQL_MAJOR = 16


def _backend_gap(analysis: Analysis, backend_major: int | None) -> Refusal | None:
    """Say so when the backend's PostgreSQL, not DSQL, cannot run the text.

    An older backend than DSQL's PostgreSQL 16 lacks what 16 added; a newer
    one than the parser's may run what the parser (and so DSQL) cannot read.
    """
    if backend_major is None:
        return None
    if analysis.syntax_error is not None and backend_major > PARSER_MAJOR:
        return Refusal("42601", analysis.syntax_error)
    if backend_major >= _DSQL_MAJOR:
        return None
    for statement in analysis.statements:
        if statement.since_16 is not None:
            return Refusal(
                "0A000",
                f"DSQL Local's PostgreSQL {backend_major} cannot run"
                f" {statement.since_16}, which came with PostgreSQL {_DSQL_MAJOR}"
                f" and which DSQL runs: run DSQL Local on PostgreSQL {_DSQL_MAJOR}"
                " or later (install it, or name its bin directory in"
                " DSQL_LOCAL_PG_BINDIR)",
            )
    return None


def _mutates_alone(statements: tuple[Statement, ...]) -> bool:
    """Whether `statements` are one statement that mutates rows."""
    return len(statements) == 1 and statements[0].kind is Kind.DML


def _count(scratch: dict[str, object], key: str) -> int:
    value = scratch.get(key, 0)
    return value if isinstance(value, int) else 0


def _apply_transaction_rules(kind: Kind, state: dict[str, object]) -> Refusal | None:
    """Record a DDL or DML statement in `state`; refuse a forbidden mix."""
    if kind is Kind.DDL:
        if state.get(_DML):
            return _MIXED
        if state.get(_DDL):
            return _TWO_DDL
        state[_DDL] = True
    elif kind is Kind.DML:
        if state.get(_DDL):
            return _MIXED
        state[_DML] = True
    return None
