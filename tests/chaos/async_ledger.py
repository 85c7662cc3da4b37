"""The chaos workload on the asyncio driver: `Ledger`'s books, async writers.

The writers are tasks on one event loop sharing a `create_async_pool` pool;
each records ledger entries through ``await transaction(pool, ...).run(...)``
exactly as `Ledger`'s threads do through the blocking driver. The fault and
the waits for progress run in a worker thread, so they never stall the loop.
The audit is `Ledger`'s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool

import dsql_psycopg as dsql
from tests.chaos.ledger import (
    COMMITS_AFTER,
    STALL_TIMEOUT,
    WARM_UP_COMMITS,
    WRITERS,
    Ack,
    Ledger,
    Outcome,
)


async def record(conn: psycopg.AsyncConnection[Any], entry: uuid.UUID) -> None:
    """Insert the entry and count it: not safe to run twice."""
    await conn.execute("INSERT INTO ledger VALUES (%s)", (entry,))
    await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")


async def record_once(conn: psycopg.AsyncConnection[Any], entry: uuid.UUID) -> None:
    """Insert the entry and count it, unless it is there already."""
    cursor = await conn.execute(
        "INSERT INTO ledger VALUES (%s) ON CONFLICT (id) DO NOTHING RETURNING id",
        (entry,),
    )
    if await cursor.fetchone() is not None:
        await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")


class AsyncLedger(Ledger):
    """`Ledger` with its writers as asyncio tasks on `create_async_pool`."""

    async def _async_writer(
        self, pool: psycopg_pool.AsyncConnectionPool[Any], idempotent: bool
    ) -> None:
        record_entry = record_once if idempotent else record
        endpoint = ""

        async def body(conn: dsql.AsyncDsqlConnection[Any], entry: uuid.UUID) -> None:
            nonlocal endpoint
            endpoint = conn.endpoint
            await record_entry(conn, entry)

        while not self._stop.is_set():
            entry = uuid.uuid4()
            try:
                await dsql.transaction(
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

    def _drive(
        self,
        fault: Callable[[], float],
        until: tuple[str, Callable[[list[Ack]], bool]] | None,
    ) -> None:
        # In a worker thread: blocking waits are fine here.
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

    async def _run_async(
        self,
        fault: Callable[[], float],
        pool_kwargs: dict[str, Any],
        until: tuple[str, Callable[[list[Ack]], bool]] | None,
    ) -> None:
        async with dsql.create_async_pool(
            self.conninfo,
            min_size=WRITERS,
            max_size=WRITERS,
            timeout=STALL_TIMEOUT,
            **pool_kwargs,
        ) as pool:
            await pool.wait(timeout=STALL_TIMEOUT)
            loop = asyncio.get_running_loop()
            writers = [
                loop.create_task(self._async_writer(pool, n % 2 == 0))
                for n in range(WRITERS)
            ]
            try:
                await asyncio.to_thread(self._drive, fault, until)
            finally:
                self._stop.set()
                await asyncio.wait_for(asyncio.gather(*writers), STALL_TIMEOUT)

    def run(
        self,
        fault: Callable[[], float],
        *,
        pool_kwargs: dict[str, Any] | None = None,
        until: tuple[str, Callable[[list[Ack]], bool]] | None = None,
    ) -> Outcome:
        """Warm up, call `fault` (in a thread), then audit; as `Ledger.run`."""
        asyncio.run(self._run_async(fault, pool_kwargs or {}, until))
        self._audit()
        return self.outcome
