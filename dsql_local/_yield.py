"""First committer wins: make the holders of a committing writer's rows yield.

PostgreSQL keeps a row written by an open transaction locked until that
transaction ends; DSQL locks nothing, and of two transactions that wrote the
same row the first to COMMIT wins. The relay answers a write that met such a
lock as DSQL would and replays it right before its transaction's COMMIT (see
`_relay`). If the holder is still open then, the committing transaction is
the first committer: the holder must lose. `Holders.make_yield` finds the
backends the replay waits for (``dsql_local.blockers``, run on a connection
of its own) and asks each one's relay to give its rows up: that relay rolls
its backend's transaction back and begins another one in its place, doomed to
fail at COMMIT as DSQL fails the later committer.

One `Holders` serves every endpoint over the same PostgreSQL (the regional
endpoints of a multi-region cluster share their rows).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import weakref
from typing import Any, Protocol

import psycopg

from ._solo import Activity

logger = logging.getLogger("dsql_local")

# Rounds of looking for holders: each round finds the holders the replay
# waits for now (several writes may each wait for another one).
_ROUNDS = 8
# How long (in 10 ms rounds) to wait for a backend ended for its gone client.
_END_ROUNDS = 500

BLOCKERS_SQL = """CREATE FUNCTION dsql_local.blockers(
        waiter int, known int[], patience interval DEFAULT '200 ms',
        seen_open boolean DEFAULT false)
    RETURNS int[] LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
    DECLARE
        found int[];
        give_up timestamptz := clock_timestamp() + patience;
        began boolean := seen_open;
        open_now boolean;
    BEGIN
        -- Until the waiter waits for a backend not in `known`, or its
        -- transaction has ended, for at most `patience`: on a loaded
        -- machine the waiter may take tens of ms to reach the row it waits
        -- for, and a holder not found does not give way (the waiter then
        -- fails at its lock timeout). A transaction holds its virtualxid
        -- from its start to its end or its failure; the waiter may be
        -- asked about before it read the BEGIN of the transaction meant (a
        -- run again follows a failed first run): only a transaction seen
        -- open can end (`seen_open`: an earlier look found it waiting).
        -- The look-up runs beside the waiter's relay (a thread of its own),
        -- which goes on meanwhile.
        LOOP
            found := ARRAY(SELECT unnest(pg_blocking_pids(waiter))
                EXCEPT SELECT unnest(known));
            open_now := EXISTS (SELECT FROM pg_locks
                WHERE pid = waiter AND locktype = 'virtualxid');
            began := began OR open_now;
            IF found <> '{}' OR clock_timestamp() > give_up
                    OR (began AND NOT open_now) THEN
                RETURN found;
            END IF;
            PERFORM pg_sleep(0.0005);
        END LOOP;
    END $$"""


# A row a refused write met was held by a transaction that only locked it
# (FOR UPDATE, FOR KEY SHARE): once committed, PostgreSQL lets a replay
# through, but in DSQL that transaction committed first and wins. The row is
# named by the lock timeout's context: table name and tuple id.
HOLDER_CHECK_SQL = """CREATE FUNCTION dsql_local.check_holder(relation text, tuple tid)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
    DECLARE
        table_oid oid;
        holder xid;
        epoch bigint := (txid_current() >> 32) << 32;
        full_id xid8;
    BEGIN
        FOR table_oid IN SELECT oid FROM pg_class WHERE relname = relation
                AND relkind IN ('r', 'p')
                AND has_table_privilege(oid, 'SELECT') LOOP
            BEGIN
                EXECUTE format('SELECT xmax FROM ONLY %s WHERE ctid = $1',
                    table_oid::regclass) INTO holder USING tuple;
                full_id := (epoch + holder::text::bigint)::text::xid8;
                IF holder::text <> '0'
                        AND pg_xact_status(full_id) = 'committed'
                        AND NOT pg_visible_in_snapshot(full_id,
                            pg_current_snapshot()) THEN
                    RAISE EXCEPTION USING ERRCODE = '40001',
                        MESSAGE = 'the holder committed first';
                END IF;
            EXCEPTION WHEN invalid_parameter_value OR data_exception THEN
                NULL;  -- a multixact or a pruned tuple: the replay decides
            END;
        END LOOP;
    END $$"""

# An autocommit statement (or batch) that met a held row runs again in a
# transaction of its own (see `_hidden`), with a snapshot taken after the
# first run: if the holder committed in between, the run again would see its
# change and succeed, where DSQL fails it (its transaction began before the
# holder committed). Right after the run again's snapshot, this checks that
# the row version the first run met is still visible, that is that no
# transaction changed or deleted it and committed since; a holder that
# commits later fails the run again's write with a serialization error. Any
# table of that name where the version is visible lets it through (the lock
# timeout names the table without its schema); a holder that only locked
# the row (FOR UPDATE) and committed is not caught.
KEPT_CHECK_SQL = """CREATE FUNCTION dsql_local.check_kept(relation text, tuple tid)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
    DECLARE
        table_oid oid;
        seen bigint;
        looked boolean := false;
    BEGIN
        FOR table_oid IN SELECT oid FROM pg_class WHERE relname = relation
                AND relkind = 'r'
                AND has_table_privilege(oid, 'SELECT') LOOP
            EXECUTE format('SELECT count(*) FROM ONLY %s WHERE ctid = $1',
                table_oid::regclass) INTO seen USING tuple;
            IF seen > 0 THEN
                RETURN;
            END IF;
            looked := true;
        END LOOP;
        IF looked THEN  -- (by the refusal: it has no context of its own)
            CALL dsql_local.refuse('40001',
                'change conflicts with another transaction (OC000)');
        END IF;
    END $$"""

_HELD_TUPLE = re.compile(
    r'while (?:updating|deleting|locking) tuple (\(\d+,\d+\)) in relation "([^"]+)"'
)


_INSERTING = re.compile(r"while (?:inserting|checking uniqueness of) ")


def _held_row(context: str) -> tuple[str, str] | None:
    """The relation (quoted for an SQL literal) and tuple id that a lock
    timeout's `context` names, if it names a row."""
    found = _HELD_TUPLE.search(context)
    if found is None:
        return None
    tuple_id, relation = found.groups()
    return relation.replace("'", "''"), tuple_id


def holder_check(context: str) -> str | None:
    """SQL checking that the holder named in a lock timeout's `context` did
    not commit first: "" when the replay alone can tell (an INSERT's key),
    None when nothing can (``NOWAIT`` names no row)."""
    row = _held_row(context)
    if row is None:
        return "" if _INSERTING.search(context) else None
    relation, tuple_id = row
    return f"SELECT dsql_local.check_holder('{relation}', '{tuple_id}')"


def kept_check(context: str) -> str:
    """SQL checking that the row named in a lock timeout's `context` is as
    the statement met it (see `KEPT_CHECK_SQL`); "" when none is named."""
    row = _held_row(context)
    if row is None:
        return ""
    relation, tuple_id = row
    return f"SELECT dsql_local.check_kept('{relation}', '{tuple_id}')"


# DSQL counts the rows that foreign key actions (CASCADE, SET NULL, SET
# DEFAULT) change toward its row limit. They show in no command tag; the
# backend's statistics count them (each change of a row changed twice, too):
# while any such foreign key exists, the count is read at BEGIN and again
# right before a COMMIT of a transaction that wrote. (The counts are the
# backend's since it last reported them, which it does only between
# transactions: the difference is the transaction's.) The clones that
# answer refused writes (see `_clones`) are temporary tables, which DSQL
# has none of: their rows do not count.
ROWS_CHANGED_SQL = """CREATE FUNCTION dsql_local.rows_changed()
    RETURNS bigint LANGUAGE sql STABLE
    SET search_path = pg_catalog
    RETURN (SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)
        FROM pg_stat_xact_user_tables
        WHERE schemaname NOT LIKE 'pg\\_temp\\_%')"""
ROWS_CHECK_SQL = """CREATE FUNCTION dsql_local.check_rows(
        row_limit bigint, at_begin bigint)
    RETURNS void LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
    BEGIN
        IF dsql_local.rows_changed() - at_begin > row_limit THEN
            RAISE EXCEPTION USING ERRCODE = '54000',
                MESSAGE = 'transaction row limit exceeded';
        END IF;
    END $$"""
_FK_ACTIONS = (
    "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint WHERE contype = 'f'"
    " AND (confdeltype IN ('c', 'n', 'd') OR confupdtype IN ('c', 'n', 'd')))"
)
# Command tags after which a foreign key with actions may exist.
FK_DDL_TAGS = frozenset({"CREATE TABLE", "ALTER TABLE"})


class Yielder(Protocol):
    """A relay whose transaction may be asked to yield its rows."""

    @property
    def transaction(self) -> int:
        """The number of the relay's current transaction (it grows)."""
        ...

    def give_way(self, transaction: int) -> None:
        """Roll back transaction number `transaction`, if still open (thread-safe)."""
        ...

    def cancel_held(self, key: bytes) -> bool:
        """Cancel the statement it holds, if `key` is its backend's (thread-safe)."""
        ...


class Holders:
    """The relays over one PostgreSQL, by backend process id."""

    def __init__(self, backend_socket: str, user: str) -> None:
        self._socket = backend_socket
        self._user = user
        self._lock = threading.Lock()
        self._relays: dict[int, Yielder] = {}
        self._fk_actions: bool | None = None
        self.activity = Activity()
        """Which of the relays are busy (see `_solo`)."""

    def add(self, pid: int, relay: Yielder) -> None:
        with self._lock:
            self._relays[pid] = relay

    def cancel_held(self, key: bytes) -> bool:
        """Have the relay of the backend `key` names (a CancelRequest's
        process id and secret) cancel a statement it holds; whether it did."""
        if len(key) < 4:
            return False
        (pid,) = struct.unpack_from("!i", key)
        with self._lock:
            relay = self._relays.get(pid)
        return relay is not None and relay.cancel_held(key)

    def discard(self, pid: int) -> None:
        with self._lock:
            self._relays.pop(pid, None)

    def tables_changed(self) -> None:
        """A table was created or altered: foreign keys are looked up again."""
        self._fk_actions = None

    def fk_actions(self) -> bool:
        """Whether any foreign key has an action that changes rows."""
        known = self._fk_actions
        if known is not None:
            return known
        try:
            with self._connect() as conn:
                row = conn.execute(_FK_ACTIONS).fetchone()
        except psycopg.Error as exc:
            logger.warning("DSQL Local could not look for foreign keys: %s", exc)
            return True  # count them anyway
        found = bool(row and row[0])
        self._fk_actions = found
        return found

    def make_yield(self, waiter: int) -> None:
        """Have the transactions that `waiter`'s backend waits for give way.

        Looks until the waiter's transaction ends or nothing new blocks it
        (see `BLOCKERS_SQL`): the caller runs it in a thread of its own.
        """
        known: list[int] = []
        try:
            with self._connect() as conn:
                for _ in range(_ROUNDS):
                    row = conn.execute(
                        "SELECT dsql_local.blockers(%s, %s, seen_open => %s)",
                        [waiter, known, bool(known)],
                    ).fetchone()
                    found: list[int] = list(row[0]) if row and row[0] else []
                    if not found:
                        return
                    known += found
                    for pid in found:
                        with self._lock:
                            relay = self._relays.get(pid)
                        if relay is not None:
                            relay.give_way(relay.transaction)
        except psycopg.Error as exc:
            # The replay then waits for the holder, or fails at its lock timeout.
            logger.warning("DSQL Local could not look for a row's holder: %s", exc)

    def end_backend(self, pid: int) -> None:
        """End the backend `pid` (its client went): wait until it has ended.

        Its transaction is rolled back and a statement it runs stops now, as
        in DSQL, where a connection's transaction ends with it; meanwhile its
        relay counts as busy (see `_solo`).
        """
        try:
            with self._connect() as conn:
                conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", [pid])
                for _ in range(_END_ROUNDS):
                    row = conn.execute(
                        "SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = %s",
                        [pid],
                    ).fetchone()
                    if row is None:
                        return
                    time.sleep(0.01)
        except psycopg.Error as exc:
            logger.warning("DSQL Local could not end a backend: %s", exc)

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        directory, name = os.path.split(self._socket)
        return psycopg.connect(
            host=directory,
            port=int(name.rsplit(".", 1)[1]),
            user=self._user,
            dbname="postgres",
            autocommit=True,
        )


_SHARED: weakref.WeakValueDictionary[str, Holders] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def holders_for(backend_socket: str, user: str) -> Holders:
    """The `Holders` of the PostgreSQL listening on `backend_socket`."""
    with _SHARED_LOCK:
        found = _SHARED.get(backend_socket)
        if found is None:
            found = _SHARED[backend_socket] = Holders(backend_socket, user)
        return found
