"""Scenario 8 of benchmarks/run.py: the asyncio client beside the blocking one.

- connect + first query, sequential and interleaved: ours blocking, ours
  asyncio, plain psycopg's AsyncConnection given exactly the parameters ours
  computes (token included, so only our code differs), and the official
  connector's ``DSQLAsyncConnection``; wall and client CPU per connect;
- signing in the event loop, on a connect whose credentials are fresh: the
  time the loop is held by signing inline (what `AsyncDsqlConnection` does
  when it knows signing cannot block) against a hop to a worker thread
  (``asyncio.to_thread``, what it does otherwise);
- hot-row writers at each K on one pool: threads on `create_pool` with
  ``transaction(pool).run``, tasks on `create_async_pool` with ``await
  transaction(pool).run``, and tasks on the official connector's
  ``create_async_pool`` with its ``run_transaction`` and default retries:
  success rate, attempts per commit, wall.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg

import dsql_psycopg as dsql
from dsql_psycopg import _auth as auth
from dsql_psycopg import _config as config

try:
    import aurora_dsql_psycopg as official
    from dsql_core.occ_retry import OCCRetryConfig
except ImportError:  # the run says so; these contenders are left out
    official = None

COUNTER_TABLE = "bench_counter"
SYNC = "ours, blocking"
ASYNC = "ours, asyncio"
SAME_PARAMS_ASYNC = "psycopg AsyncConnection, our parameters"
OFFICIAL_ASYNC = "official, asyncio"


def _rotated(items: Sequence[Any], i: int) -> list[Any]:
    k = i % len(items)
    return [*items[k:], *items[:k]]


# -- connect + first query -----------------------------------------------------------


def bench_connect(
    kwargs: dict[str, Any],
    url: str,
    n: int,
    official_on: bool,
    summary: Callable[[Sequence[float]], dict[str, float]],
) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    same = dsql.DsqlConnection._get_connection_params("", **kwargs)

    def sync_ours() -> None:
        with dsql.connect(**kwargs) as conn:
            conn.execute("SELECT 1").fetchone()

    async def first_query(connecting: Awaitable[psycopg.AsyncConnection[Any]]) -> None:
        conn = await connecting
        try:
            await (await conn.execute("SELECT 1")).fetchone()
        finally:
            await conn.close()

    contenders: dict[str, Callable[[], None]] = {
        SYNC: sync_ours,
        ASYNC: lambda: loop.run_until_complete(
            first_query(dsql.AsyncDsqlConnection.connect(**kwargs))
        ),
        SAME_PARAMS_ASYNC: lambda: loop.run_until_complete(
            first_query(psycopg.AsyncConnection.connect(**same))
        ),
    }
    if official_on:
        contenders[OFFICIAL_ASYNC] = lambda: loop.run_until_complete(
            first_query(official.DSQLAsyncConnection.connect(url))
        )
    try:
        for call in contenders.values():  # warm up: imports, client caches
            call()
        wall: dict[str, list[float]] = {name: [] for name in contenders}
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for i in range(n):
            for name in _rotated(names, i):
                cpu_started = time.process_time()
                started = time.perf_counter()
                contenders[name]()
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
    finally:
        loop.close()
    own = [a - b for a, b in zip(cpu[ASYNC], cpu[SAME_PARAMS_ASYNC], strict=True)]
    return {
        "n": n,
        "seconds": {name: summary(s) for name, s in wall.items()},
        "client_cpu_seconds": {name: summary(s) for name, s in cpu.items()},
        "our_async_cost_cpu_seconds": summary(own),
    }


# -- signing and the event loop ------------------------------------------------------


def bench_signing(
    kwargs: dict[str, Any],
    n: int,
    summary: Callable[[Sequence[float]], dict[str, float]],
) -> dict[str, Any]:
    """Microseconds the loop is held, and the wall of each way to sign."""
    params = config.parse(**kwargs)
    auth.make_token(params)  # the client is built: credentials are fresh
    may_block = auth.token_may_block(params)

    async def measure() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {
            "inline: loop held": [],
            "worker thread: wall of the await": [],
            "worker thread: the loop thread's own CPU": [],
            "whole parameter step (AsyncDsqlConnection)": [],
        }
        for i in range(n):
            for way in _rotated(["inline", "thread", "step"], i):
                if way == "inline":
                    started = time.perf_counter()
                    auth.make_token(params)
                    samples["inline: loop held"].append(time.perf_counter() - started)
                elif way == "thread":
                    # The loop's own time: between the await starting and
                    # ending, how long the loop could not run other callbacks.
                    held = _LoopHeld()
                    started = time.perf_counter()
                    await asyncio.to_thread(auth.make_token, params)
                    samples["worker thread: wall of the await"].append(
                        time.perf_counter() - started
                    )
                    samples["worker thread: the loop thread's own CPU"].append(
                        held.stop()
                    )
                else:
                    started = time.perf_counter()
                    await dsql.AsyncDsqlConnection._get_connection_params("", **kwargs)
                    samples["whole parameter step (AsyncDsqlConnection)"].append(
                        time.perf_counter() - started
                    )
        return samples

    samples = asyncio.run(measure())
    return {
        "n": n,
        "token_may_block_with_fresh_credentials": may_block,
        "microseconds": {
            name: summary([x * 1e6 for x in s]) for name, s in samples.items()
        },
    }


class _LoopHeld:
    """Time the event loop's thread spends outside `select` (approximately).

    Process CPU time of the loop's thread between start and stop: what a
    worker-thread hop costs the loop itself, as opposed to its wall time.
    """

    def __init__(self) -> None:
        self._started = time.thread_time()

    def stop(self) -> float:
        return time.thread_time() - self._started


# -- hot-row writers -----------------------------------------------------------------


class _Tally:
    def __init__(self) -> None:
        self.runs = 0
        self.commits = 0
        self.failures = 0


def _sync_round(pool: Any, writers: int, each: int) -> tuple[list[_Tally], float]:
    tallies = [_Tally() for _ in range(writers)]
    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def body(conn: psycopg.Connection[Any], tally: _Tally) -> None:
        tally.runs += 1
        row = conn.execute(f"SELECT value FROM {COUNTER_TABLE} WHERE id = 1").fetchone()
        assert row is not None
        conn.execute(
            f"UPDATE {COUNTER_TABLE} SET value = %s WHERE id = 1", (row[0] + 1,)
        )

    def writer(tally: _Tally) -> None:
        barrier.wait()
        for _ in range(each):
            try:
                dsql.transaction(pool).run(body, tally)
                tally.commits += 1
            except Exception as ex:
                if not dsql.is_occ_error(ex):
                    errors.append(ex)
                    return
                tally.failures += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in tallies]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"a writer failed with a non-conflict error: {errors[0]!r}")
    return tallies, wall


async def _async_round(
    pool: Any, writers: int, each: int, theirs: bool
) -> tuple[list[_Tally], float]:
    tallies = [_Tally() for _ in range(writers)]

    async def body(conn: psycopg.AsyncConnection[Any], tally: _Tally) -> None:
        tally.runs += 1
        cursor = await conn.execute(f"SELECT value FROM {COUNTER_TABLE} WHERE id = 1")
        row = await cursor.fetchone()
        assert row is not None
        await conn.execute(
            f"UPDATE {COUNTER_TABLE} SET value = %s WHERE id = 1", (row[0] + 1,)
        )

    async def writer(tally: _Tally) -> None:
        for _ in range(each):
            try:
                if theirs:
                    await pool.run_transaction(
                        lambda conn: body(conn, tally), retry=OCCRetryConfig()
                    )
                else:
                    await dsql.transaction(pool).run(body, tally)
                tally.commits += 1
            except Exception as ex:
                if not dsql.is_occ_error(ex):
                    raise
                tally.failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(t) for t in tallies))
    return tallies, time.perf_counter() - started


def bench_contention(
    url: str,
    kwargs: dict[str, Any],
    writer_counts: Sequence[int],
    each: int,
    reps: int,
    official_on: bool,
    summary: Callable[[Sequence[float]], dict[str, float]],
) -> dict[str, Any]:
    with dsql.connect(**kwargs, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {COUNTER_TABLE}"
            " (id int PRIMARY KEY, value int NOT NULL)"
        )
        conn.execute(
            f"INSERT INTO {COUNTER_TABLE} VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
        )
    contenders = [SYNC, ASYNC] + ([OFFICIAL_ASYNC] if official_on else [])
    results: dict[str, dict[str, Any]] = {name: {} for name in contenders}
    loop = asyncio.new_event_loop()
    try:
        for k in writer_counts:
            size = {"min_size": k, "max_size": k}
            with contextlib.ExitStack() as stack:
                sync_pool = stack.enter_context(dsql.create_pool(url, **size))
                pools: dict[str, Any] = {SYNC: sync_pool}
                pools[ASYNC] = dsql.create_async_pool(url, **size)
                if official_on:
                    # Opened below, in the loop, as for ours.
                    pools[OFFICIAL_ASYNC] = official.create_async_pool(
                        url, open=False, **size
                    )
                for name in (ASYNC, OFFICIAL_ASYNC):
                    if name in pools:
                        loop.run_until_complete(pools[name].open(wait=True))
                try:
                    sync_pool.wait(60)
                    rounds: dict[str, list[dict[str, float]]] = {
                        name: [] for name in contenders
                    }
                    for i in range(reps):
                        for name in _rotated(contenders, i):
                            rounds[name].append(
                                _one_round(loop, name, pools[name], url, k, each)
                            )
                finally:
                    for name in (ASYNC, OFFICIAL_ASYNC):
                        if name in pools:
                            loop.run_until_complete(pools[name].close())
            for name, rs in rounds.items():
                commits = sum(r["commits"] for r in rs)
                runs = sum(r["runs"] for r in rs)
                total = k * each * len(rs)
                results[name][str(k)] = {
                    "success_rate": commits / total,
                    "attempts_per_commit": runs / commits if commits else None,
                    "wall_seconds": summary([r["wall"] for r in rs]),
                    "no_lost_updates": all(r["final_value_ok"] for r in rs),
                    "transactions": total,
                }
    finally:
        loop.close()
    return {
        "writers": list(writer_counts),
        "transactions_per_writer": each,
        "repetitions": reps,
        "contenders": results,
    }


def _one_round(
    loop: asyncio.AbstractEventLoop, name: str, pool: Any, url: str, k: int, each: int
) -> dict[str, float]:
    with dsql.connect(url, autocommit=True) as c:
        c.execute(f"UPDATE {COUNTER_TABLE} SET value = 0 WHERE id = 1")
    if name == SYNC:
        tallies, wall = _sync_round(pool, k, each)
    else:
        tallies, wall = loop.run_until_complete(
            _async_round(pool, k, each, theirs=name == OFFICIAL_ASYNC)
        )
    with dsql.connect(url, autocommit=True) as c:
        row = c.execute(f"SELECT value FROM {COUNTER_TABLE} WHERE id = 1").fetchone()
    assert row is not None
    commits = sum(t.commits for t in tallies)
    return {
        "commits": commits,
        "failures": sum(t.failures for t in tallies),
        "runs": sum(t.runs for t in tallies),
        "wall": wall,
        "final_value_ok": float(row[0] == commits),
    }


# -- report --------------------------------------------------------------------------


def render(r: dict[str, Any]) -> list[str]:
    def ms(s: dict[str, float]) -> str:
        return f"{s['median'] * 1e3:.2f} ({s['p10'] * 1e3:.2f}-{s['p90'] * 1e3:.2f})"

    c = r["connect"]
    out = [
        "",
        f"### 8. asyncio beside blocking (connect N = {c['n']})",
        "",
        "Connect + first query, sequential:",
        "",
        "| contender | wall median ms (p10-p90) | client CPU median ms (p10-p90) |",
        "|---|---|---|",
    ]
    for name, s in c["seconds"].items():
        out.append(f"| {name} | {ms(s)} | {ms(c['client_cpu_seconds'][name])} |")
    own = c["our_async_cost_cpu_seconds"]
    out.append(
        "\nour own CPU per asyncio connect (ours minus psycopg's AsyncConnection"
        f" given our parameters, paired): {ms(own)} ms"
    )
    s = r["signing"]
    out += [
        "",
        f"Signing on a connect with fresh credentials (N = {s['n']};"
        f" token_may_block: {s['token_may_block_with_fresh_credentials']}):",
        "",
        "| what | median µs (p10-p90) |",
        "|---|---|",
    ]
    for name, v in s["microseconds"].items():
        out.append(f"| {name} | {v['median']:.0f} ({v['p10']:.0f}-{v['p90']:.0f}) |")
    h = r["contention"]
    out += [
        "",
        f"Hot-row writers on one pool ({h['transactions_per_writer']} transactions"
        f" each, {h['repetitions']} repetitions, default retry settings):",
        "",
        "| contender | K | success | attempts per commit | wall median s"
        " (p10-p90) | no lost update |",
        "|---|---|---|---|---|---|",
    ]
    for name, per_k in h["contenders"].items():
        for k, v in per_k.items():
            apc = v["attempts_per_commit"]
            wall = v["wall_seconds"]
            out.append(
                f"| {name} | {k} | {v['success_rate']:.1%}"
                f" | {'-' if apc is None else f'{apc:.2f}'}"
                f" | {wall['median']:.2f} ({wall['p10']:.2f}-{wall['p90']:.2f})"
                f" | {v['no_lost_updates']} |"
            )
    return out
