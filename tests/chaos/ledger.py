"""The chaos workload: writers recording ledger entries on one hot counter.

Each transaction inserts a unique id into ``ledger`` and increments the one
row of ``counter``, through `run_transaction` on a pool shared by the
writers. Half of the writers run an idempotent version (the increment only
happens if the id was not there yet) with ``idempotent=True``. While they
run, a fault fires; afterwards the books are checked: every acknowledged id
is present, the counter equals the number of rows, and ids whose COMMIT had
an unknown outcome are each present once or absent.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg
import psycopg_pool

import dsql_psycopg as dsql
from dsql_local import DsqlLocal

#: ``DSQL_CHAOS=full`` (``nox -s chaos``) runs the scenarios at full size;
#: otherwise a modest size fit for every test run.
FULL = os.environ.get("DSQL_CHAOS") == "full"
WRITERS = 8
WARM_UP_COMMITS = 40 if FULL else 10
COMMITS_AFTER = 400 if FULL else 40
# Safety net only: a scenario that makes no progress for this long fails.
STALL_TIMEOUT = 120.0

SCHEMA = (
    "CREATE TABLE ledger (id uuid PRIMARY KEY)",
    "CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL)",
    "INSERT INTO counter VALUES (1, 0)",
)


def record(conn: psycopg.Connection[Any], entry: uuid.UUID) -> None:
    """Insert the entry and count it: not safe to run twice."""
    conn.execute("INSERT INTO ledger VALUES (%s)", (entry,))
    conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")


def record_once(conn: psycopg.Connection[Any], entry: uuid.UUID) -> None:
    """Insert the entry and count it, unless it is there already."""
    inserted = conn.execute(
        "INSERT INTO ledger VALUES (%s) ON CONFLICT (id) DO NOTHING RETURNING id",
        (entry,),
    ).fetchone()
    if inserted is not None:
        conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")


@dataclass
class Outcome:
    """What happened to the writes of one scenario, and the books after it."""

    scenario: str
    committed: int = 0
    unknown_present: int = 0
    unknown_absent: int = 0
    lost: int = 0
    rows: int = 0
    counter: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    max_attempts: int = 0
    fault_seconds: float = 0.0
    first_commit_after: float | None = None
    notes: str = ""

    @property
    def double_applied(self) -> int:
        """Increments with no ledger row of their own (a body applied twice)."""
        return max(0, self.counter - self.rows)


class Ack(NamedTuple):
    """One acknowledged commit: when, what, through which endpoint."""

    at: float
    entry: uuid.UUID
    endpoint: str


class Ledger:
    """Run the writers against `local` while `fault` fires, then audit."""

    def __init__(
        self, local: DsqlLocal, scenario: str, conninfo: str | None = None
    ) -> None:
        self.local = local
        self.conninfo = conninfo or local.url
        self.outcome = Outcome(scenario)
        self._lock = threading.Lock()
        # (monotonic time, entry, endpoint) of each acknowledged commit.
        self._acked: list[Ack] = []
        self._unknown: list[uuid.UUID] = []
        self._stop = threading.Event()
        self._progress = threading.Condition(self._lock)
        with psycopg.connect(local.backend_dsn, autocommit=True) as conn:
            for statement in SCHEMA:
                conn.execute(statement)

    def _on_retry(self, event: dsql.RetryEvent) -> None:
        with self._lock:
            self.outcome.retries[event.reason] += 1
            self.outcome.max_attempts = max(self.outcome.max_attempts, event.attempt)

    def _writer(self, pool: psycopg_pool.ConnectionPool[Any], idempotent: bool) -> None:
        record_entry = record_once if idempotent else record
        endpoint = ""

        def body(conn: dsql.DsqlConnection[Any], entry: uuid.UUID) -> None:
            nonlocal endpoint
            endpoint = conn.endpoint  # the last attempt's is the one that counts
            record_entry(conn, entry)

        while not self._stop.is_set():
            entry = uuid.uuid4()
            try:
                dsql.transaction(
                    pool, idempotent=idempotent, on_retry=self._on_retry
                ).run(body, entry)
            except dsql.CommitOutcomeUnknown:
                with self._lock:
                    self._unknown.append(entry)
                    self.outcome.failures["CommitOutcomeUnknown"] += 1
                continue
            except Exception as ex:  # every failure is counted
                cause = ex.__cause__
                name = type(ex).__name__
                if cause is not None:
                    name += f" ({type(cause).__name__})"
                with self._lock:
                    self.outcome.failures[name] += 1
                continue
            with self._progress:
                self._acked.append(Ack(time.monotonic(), entry, endpoint))
                self._progress.notify_all()

    def _wait_for_commits(self, count: int, after: float = 0.0) -> None:
        """Wait until `count` commits acknowledged after `after` (monotonic)."""
        self.wait_for(
            f"{count} commits after the fault",
            lambda acked: sum(1 for a in acked if a.at > after) >= count,
        )

    def wait_for(self, what: str, done: Callable[[list[Ack]], bool]) -> None:
        """Wait until `done` holds for the commits acknowledged so far."""
        with self._progress:
            while not done(self._acked):
                if not self._progress.wait(STALL_TIMEOUT):
                    raise AssertionError(
                        f"{self.outcome.scenario}: no commit for {STALL_TIMEOUT:g} s"
                        f" (waiting for {what})"
                    )

    def acked(self) -> list[Ack]:
        """The commits acknowledged so far."""
        with self._lock:
            return list(self._acked)

    def run(
        self,
        fault: Callable[[], float],
        *,
        pool_kwargs: dict[str, Any] | None = None,
        until: tuple[str, Callable[[list[Ack]], bool]] | None = None,
    ) -> Outcome:
        """Warm up, call `fault` (it returns when the fault clears), then audit.

        `fault` returns the monotonic time the fault cleared at. With `until`
        (what, condition), the writers also go on until the condition holds.
        """
        pool = dsql.create_pool(
            self.conninfo,
            min_size=WRITERS,
            max_size=WRITERS,
            timeout=STALL_TIMEOUT,
            **(pool_kwargs or {}),
        )
        threads = [
            threading.Thread(
                target=self._writer, args=(pool, n % 2 == 0), name=f"writer-{n}"
            )
            for n in range(WRITERS)
        ]
        try:
            pool.wait(timeout=STALL_TIMEOUT)
            for thread in threads:
                thread.start()
            self._wait_for_commits(WARM_UP_COMMITS)
            started = time.monotonic()
            cleared = fault()
            self.outcome.fault_seconds = cleared - started
            self._wait_for_commits(COMMITS_AFTER, after=cleared)
            if until is not None:
                self.wait_for(*until)
            with self._lock:
                first = min(a.at for a in self._acked if a.at > cleared)
            self.outcome.first_commit_after = first - cleared
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=STALL_TIMEOUT)
            pool.close()
        self._audit()
        return self.outcome

    def _audit(self) -> None:
        outcome = self.outcome
        with psycopg.connect(self.local.backend_dsn) as conn:
            present = {row[0] for row in conn.execute("SELECT id FROM ledger")}
            row = conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()
        assert row is not None
        acked = {a.entry for a in self._acked}
        outcome.committed = len(acked)
        outcome.rows = len(present)
        outcome.counter = row[0]
        outcome.lost = len(acked - present)
        outcome.unknown_present = sum(1 for e in self._unknown if e in present)
        outcome.unknown_absent = len(self._unknown) - outcome.unknown_present
        # Nothing else may have been written: ids are random.
        stray = present - acked - set(self._unknown)
        assert not stray, f"{len(stray)} rows nobody wrote"

    def check(self) -> None:
        """Assert what every scenario must show."""
        outcome = self.outcome
        assert outcome.lost == 0, outcome
        assert outcome.counter == outcome.rows, outcome
        # No retry budget ran out (OCCRetryExhausted), no pool timed out: the
        # only failure allowed is an unknown COMMIT outcome without
        # idempotent=True, and each of those ids is there once or not at all.
        allowed = {"CommitOutcomeUnknown"}
        assert set(outcome.failures) <= allowed, outcome.failures
        unknown = outcome.unknown_present + outcome.unknown_absent
        assert outcome.failures["CommitOutcomeUnknown"] == unknown
        assert outcome.committed > 0
