"""Measure `select 1` round trips per second: through DSQL Local vs direct.

Run: python tests/dsql_local/bench_relay.py [seconds] [--no-strict] [--in-process]

Not a test (nothing is asserted about speed). By default DSQL Local runs in a
process of its own (its CLI), as in a benchmark of a real application; it
prints both rates, their ratio and the endpoint's CPU time per query.
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


def rate(conn: psycopg.Connection[Any], seconds: float) -> tuple[float, int]:
    cur = conn.cursor()
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(100):
            cur.execute("select 1")
            cur.fetchone()
        count += 100
    return count / seconds, count


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
    with endpoint(strict, in_process) as (url, backend_dsn, pid):
        host = psycopg.conninfo.conninfo_to_dict(url)["host"]
        token = boto3.client(
            "dsql", region_name="us-east-1"
        ).generate_db_connect_admin_auth_token(str(host), "us-east-1")
        with psycopg.connect(backend_dsn, autocommit=True) as direct:
            direct_rate, _ = rate(direct, seconds)
        with psycopg.connect(
            url, password=token, sslmode="verify-full", autocommit=True
        ) as relayed:
            before = cpu_seconds(pid)
            relayed_rate, count = rate(relayed, seconds)
            relay_cpu = (cpu_seconds(pid) - before) / count
    where = "in-process" if in_process else "own process"
    sys.stdout.write(
        f"direct unix socket: {direct_rate:8.0f} queries/s\n"
        f"through DSQL Local: {relayed_rate:8.0f} queries/s "
        f"(strict={strict}, {where})\n"
        f"ratio: {relayed_rate / direct_rate:.2f}\n"
        + (
            f"endpoint CPU per query: {relay_cpu * 1e6:.0f} us\n"
            if not in_process
            else ""
        )
    )


if __name__ == "__main__":
    main()
