"""dsql-psycopg in one command: DSQL Local, CRUD, and OCC retries under a race.

Starts DSQL Local (a local stand-in for an Aurora DSQL cluster: TLS, IAM
tokens, optimistic conflicts) and then, through dsql_psycopg's public API only:

1. runs CREATE / INSERT / SELECT / UPDATE / DELETE / DROP on a pool;
2. lets 5 threads read-then-increment one counter row at the same time, once
   with ``max_attempts=3`` and once with ``max_attempts=10``, printing each
   task's outcome and the final value (it must equal the number of successes:
   no lost and no double updates).

Run it with ``nox -s demo`` or ``python examples/demo.py``. Nothing reaches
AWS: without AWS credentials in the environment it uses a fake key pair.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import dsql_psycopg as dsql
from dsql_local import DsqlLocal

TASKS = 5
# DSQL Local answers in microseconds; a few milliseconds per round trip make
# the race look like a client talking to a real cluster in its region.
ROUND_TRIP = 0.005


def use_offline_credentials() -> None:
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        print("Using the AWS key pair from the environment (only DSQL Local sees it)")
        return
    os.environ["AWS_ACCESS_KEY_ID"] = "AKIADSQLPSYCOPGDEMO0"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "demo-secret-for-dsql-local"  # noqa: S105
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    print("No AWS credentials in the environment: using a fake key pair for DSQL Local")


def crud(pool: Any) -> None:
    print("\n== Verification 1: pool and CRUD ==")
    # DSQL runs DDL and DML in separate transactions: one block each.
    with pool.connection() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS test_items("
            " id UUID PRIMARY KEY DEFAULT gen_random_uuid(),"
            " name VARCHAR(100) NOT NULL,"
            " value INT NOT NULL)"
        )
    print("Created table test_items")
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO test_items(name, value) VALUES (%s, %s)", ("item-a", 42)
        )
    print("Inserted item-a")
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT name, value FROM test_items WHERE name = %s", ("item-a",)
        ).fetchone()
    assert row is not None
    print(f"Selected: name={row[0]}, value={row[1]}")
    with pool.connection() as conn:
        conn.execute(
            "UPDATE test_items SET value = %s WHERE name = %s", (100, "item-a")
        )
        row = conn.execute(
            "SELECT value FROM test_items WHERE name = %s", ("item-a",)
        ).fetchone()
    assert row is not None
    print(f"Updated: value={row[0]}")
    with pool.connection() as conn:
        deleted = conn.execute(
            "DELETE FROM test_items WHERE name = %s", ("item-a",)
        ).rowcount
    print(f"Deleted: {deleted} row(s)")
    with pool.connection() as conn:
        conn.execute("DROP TABLE test_items")
    print("Dropped table test_items")


def race(pool: Any, max_attempts: int) -> tuple[int, int]:
    """Run TASKS concurrent increments; return (successes, final value)."""
    title = f"{TASKS} concurrent increments, max_attempts={max_attempts}"
    print(f"\n== Verification 2: {title} ==")
    with pool.connection() as conn:
        conn.execute("UPDATE counter SET value = 0 WHERE id = 1")

    def increment(conn: Any, runs: list[int]) -> None:
        runs.append(1)  # one more run of the body: the transaction is re-run whole
        row = conn.execute("SELECT value FROM counter WHERE id = 1").fetchone()
        conn.execute("UPDATE counter SET value = %s WHERE id = 1", (row[0] + 1,))

    start = threading.Barrier(TASKS)
    outcomes: dict[int, str] = {}

    def task(number: int) -> None:
        runs: list[int] = []
        start.wait()
        try:
            dsql.transaction(pool, max_attempts=max_attempts).run(increment, runs)
        except dsql.OCCRetryExhausted as ex:
            outcomes[number] = f"Task {number} failed: {ex}"
        else:
            outcomes[number] = f"Task {number} succeeded after {len(runs)} attempt(s)"
        print(outcomes[number], flush=True)

    threads = [threading.Thread(target=task, args=(n,)) for n in range(TASKS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sum("succeeded" in line for line in outcomes.values())
    with pool.connection() as conn:
        row = conn.execute("SELECT value FROM counter WHERE id = 1").fetchone()
    assert row is not None
    final = int(row[0])
    print(f"Succeeded: {ok}, Failed: {TASKS - ok}, Final value: {final}")
    return ok, final


def main() -> int:
    print(f"dsql-psycopg {dsql.__version__} demo")
    use_offline_credentials()
    with DsqlLocal(region="us-east-1") as local:
        print(
            f"DSQL Local is up: {local.host} (127.0.0.1:{local.port}, TLS, IAM tokens)"
        )
        with dsql.create_pool(local.url, min_size=1, max_size=10) as pool:
            print("Pool connected successfully")
            crud(pool)
            with pool.connection() as conn:
                conn.execute(
                    "CREATE TABLE counter(id INT PRIMARY KEY, value INT NOT NULL)"
                )
            with pool.connection() as conn:
                conn.execute("INSERT INTO counter(id, value) VALUES (1, 0)")
            local.latency = ROUND_TRIP
            results = [race(pool, attempts) for attempts in (3, 10)]
            local.latency = 0.0
            with pool.connection() as conn:
                conn.execute("DROP TABLE counter")
    consistent = all(ok == final for ok, final in results)
    print(
        "\nThe counter always equals the number of successful tasks:"
        f" {'yes' if consistent else 'NO'} (no lost or double updates)"
    )
    return 0 if consistent else 1


if __name__ == "__main__":
    sys.exit(main())
