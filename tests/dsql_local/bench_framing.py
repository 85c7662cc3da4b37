"""Measure the relay's CPU per message, without sockets or a server.

Run: python tests/dsql_local/bench_framing.py [rounds]

Not a test (nothing is asserted about speed). Feeds a relay the messages of
`select 1` round trips (client: Query; backend: RowDescription, DataRow,
CommandComplete, ReadyForQuery), in reads of 64 KiB as the pump would, and
prints the best of several rounds, which load on the machine disturbs least.
"""

from __future__ import annotations

import sys
import time

from dsql_local import _protocol as pq
from dsql_local._faults import Faults
from dsql_local._policy import Session
from dsql_local._relay import Relay
from dsql_local.strict import StrictPolicy

_READ = 64 * 1024


class _Host:
    """What a Relay reads from its server, with the strict policy on."""

    policy = StrictPolicy()
    schema_clock = None
    faults = Faults()
    latency = 0.0
    max_connection_age = 3600.0

    def take_conflict(self) -> None:
        return None

    def take_commit_drop(self) -> bool:
        return False


def _chunks(stream: bytes) -> list[bytes]:
    return [stream[i : i + _READ] for i in range(0, len(stream), _READ)]


def _round(queries: int) -> float:
    """Seconds of CPU for `queries` round trips through one relay."""
    query = pq.query("select 1")
    answer = (
        pq.message(
            b"T", b"\0\1?column?\0" + b"\0" * 6 + b"\0\0\0\x17\0\4\xff\xff\xff\xff\0\0"
        )
        + pq.message(b"D", b"\0\1\0\0\0\1" + b"1")
        + pq.message(b"C", b"SELECT 1\0")
        + pq.ready_for_query(b"I")
    )
    client = _chunks(query * queries)
    backend = _chunks(answer * queries)
    relay = Relay(_Host(), Session(user="admin"))
    start = time.thread_time()
    for data in client:
        relay.from_client(data)
        relay.to_backend.clear()
    for data in backend:
        relay.from_backend(data)
        relay.to_client.clear()
    return time.thread_time() - start


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    queries = 50_000
    best = min(_round(queries) for _ in range(rounds))
    sys.stdout.write(
        f"relay CPU per select-1 round trip (5 messages): "
        f"{best / queries * 1e6:.2f} us (best of {rounds})\n"
    )


if __name__ == "__main__":
    main()
