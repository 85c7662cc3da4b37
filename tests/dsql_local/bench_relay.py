"""Measure statements per second: through DSQL Local vs direct.

Run: python tests/dsql_local/bench_relay.py [seconds] [--no-strict] [--in-process]

Not a test (nothing is asserted about speed). By default DSQL Local runs in a
process of its own (its CLI), as in a benchmark of a real application. Four
workloads, each measured direct (unix socket) and through DSQL Local:
``select 1`` and a one-row UPDATE in autocommit, and the same two inside
transactions of ten statements each (BEGIN and COMMIT not counted). It prints
both rates, their ratio and the endpoint's CPU time per statement.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import psycopg

from dsql_local import DsqlLocal

_TABLE = "bench_relay"
_UPDATE = f"update {_TABLE} set n = n + 1 where id = %s"
# name: (statement, parameters, statements per transaction; 0: autocommit)
WORKLOADS: dict[str, tuple[str, tuple[int, ...], int]] = {
    "select 1, autocommit": ("select 1", (), 0),
    "update, autocommit": (_UPDATE, (1,), 0),
    "select 1, in a transaction": ("select 1", (), 10),
    "update, in a transaction": (_UPDATE, (1,), 10),
}


def rate(
    conn: psycopg.Connection[Any],
    seconds: float,
    statement: str,
    params: tuple[int, ...],
    per_transaction: int,
) -> tuple[float, int]:
    """Run `statement` for `seconds`; return statements per second and count."""
    cur = conn.cursor()
    count = 0
    batch = per_transaction or 100
    elapsed = 0.0
    while elapsed < seconds:
        start = time.perf_counter()
        if per_transaction:
            cur.execute("begin")
        for _ in range(batch):
            cur.execute(statement, params or None)
        if per_transaction:
            cur.execute("commit")
        elapsed += time.perf_counter() - start
        count += batch
    return count / elapsed, count


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def endpoint(strict: bool, in_process: bool) -> Iterator[tuple[str, str, int]]:
    """Yield (url, backend_dsn, pid of the endpoint process)."""
    if in_process:
        with DsqlLocal(strict=strict) as local:
            yield local.url, local.backend_dsn, os.getpid()
        return
    cmd = [sys.executable, "-m", "dsql_local"]
    if not strict:
        cmd.append("--no-strict")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = next(line[5:].strip() for line in proc.stdout if line.startswith("URL: "))
        for line in proc.stdout:
            if line.startswith("Press Ctrl-C"):
                break
        # The backend socket directory is not printed; find it by the process.
        out = subprocess.run(
            ["ps", "-o", "args=", "--ppid", str(proc.pid)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"-k (\S+)", out)
        assert match, out
        yield url, f"host={match.group(1)} dbname=postgres user=admin", proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait()


def main() -> None:
    seconds = float(next((a for a in sys.argv[1:] if a[0].isdigit()), "3"))
    strict = "--no-strict" not in sys.argv
    in_process = "--in-process" in sys.argv
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIABENCHMARK")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark-secret")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    where = "in-process" if in_process else "own process"
    sys.stdout.write(
        f"{seconds:g} s per workload and route (strict={strict}, {where})\n"
        f"{'workload':<28} {'direct/s':>9} {'relayed/s':>10} {'ratio':>6}"
        f" {'endpoint CPU/stmt':>18}\n"
    )
    with endpoint(strict, in_process) as (url, backend_dsn, pid):
        host = psycopg.conninfo.conninfo_to_dict(url)["host"]
        token = boto3.client(
            "dsql", region_name="us-east-1"
        ).generate_db_connect_admin_auth_token(str(host), "us-east-1")
        with (
            psycopg.connect(backend_dsn, autocommit=True) as direct,
            psycopg.connect(
                url, password=token, sslmode="verify-full", autocommit=True
            ) as relayed,
        ):
            relayed.execute(
                f"create table {_TABLE} (id int primary key, n bigint not null)"
            )
            relayed.execute(f"insert into {_TABLE} values (1, 0)")
            for name, (statement, params, per_transaction) in WORKLOADS.items():
                direct_rate, _ = rate(
                    direct, seconds, statement, params, per_transaction
                )
                before = cpu_seconds(pid)
                relayed_rate, count = rate(
                    relayed, seconds, statement, params, per_transaction
                )
                relay_cpu = (cpu_seconds(pid) - before) / count
                cpu = "" if in_process else f"{relay_cpu * 1e6:.0f} us"
                sys.stdout.write(
                    f"{name:<28} {direct_rate:9.0f} {relayed_rate:10.0f}"
                    f" {relayed_rate / direct_rate:6.2f} {cpu:>18}\n"
                )
            relayed.execute(f"drop table {_TABLE}")


if __name__ == "__main__":
    main()
