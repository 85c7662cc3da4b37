"""Measure `select 1` round trips per second: through DSQL Local vs direct.

Run: python tests/local/bench_relay.py [seconds]
Not a test (no assertions on speed); it prints the two rates and their ratio.
"""

from __future__ import annotations

import os
import sys
import time

import boto3
import psycopg

from dsql_psycopg.local import DsqlLocal


def rate(conn: psycopg.Connection[tuple[object, ...]], seconds: float) -> float:
    cur = conn.cursor()
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(100):
            cur.execute("select 1")
            cur.fetchone()
        count += 100
    return count / seconds


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIABENCHMARK")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark-secret")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    strict = "--no-strict" not in sys.argv
    with DsqlLocal(strict=strict) as local:
        token = boto3.client(
            "dsql", region_name=local.region
        ).generate_db_connect_admin_auth_token(local.host, local.region)
        with psycopg.connect(local.backend_dsn, autocommit=True) as direct:
            direct_rate = rate(direct, seconds)
        with psycopg.connect(
            **local.connect_kwargs(),
            password=token,
            sslmode="verify-full",
            autocommit=True,
        ) as relayed:
            relayed_rate = rate(relayed, seconds)
    sys.stdout.write(
        f"direct unix socket: {direct_rate:8.0f} queries/s\n"
        f"through DSQL Local: {relayed_rate:8.0f} queries/s (strict={strict})\n"
        f"ratio: {relayed_rate / direct_rate:.2f}\n"
    )


if __name__ == "__main__":
    main()
