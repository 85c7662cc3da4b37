"""Tell, without a round trip, whether the server has closed a connection."""

from __future__ import annotations

import select
from typing import Any

import psycopg

# A server that ends a session sends a FATAL error, then closes: reading the
# error and then the end of the stream takes two reads. Bounded, in case a
# server keeps sending notices.
_READS = 4


def connection_lost(conn: psycopg.Connection[Any]) -> psycopg.OperationalError | None:
    """Return the error showing that `conn` is gone, or None if it looks alive.

    Only for a connection that is not running a query: an idle connection has
    nothing to read unless the server closed it (or sent a notice), so a
    zero-timeout poll costs one system call. Reading what is there marks a
    dead connection closed, so psycopg and its pools treat it as broken.
    """
    if conn.closed:
        return psycopg.OperationalError("the connection is closed")
    try:
        for _ in range(_READS):
            readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
            if not readable:
                break
            conn.pgconn.consume_input()
    except psycopg.OperationalError as ex:
        return ex
    except (OSError, ValueError) as ex:
        return psycopg.OperationalError(f"the connection's socket failed: {ex}")
    return None
