"""Flask on a dsql_psycopg pool: one retried transaction per request.

Run it against a cluster (or DSQL Local: ``python -m dsql_local``)::

    DSQL_URL=postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres \
        flask --app pool_app run

Each handler runs its transaction in ``for attempt in transaction(pool)``: on
an optimistic-concurrency conflict the body runs again on a fresh
transaction, so the client gets its answer instead of an error. Results are
kept in variables and used after the loop, once the transaction committed.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, request

from dsql_psycopg.pool import create_pool
from dsql_psycopg.retry import RetryEvent, transaction

SCHEMA = """
    CREATE TABLE IF NOT EXISTS flask_accounts (
        name text PRIMARY KEY,
        balance bigint NOT NULL CHECK (balance >= 0)
    )
"""


def create_app(url: str | None = None, **pool_options: Any) -> Flask:
    """Build the app on a pool of DSQL connections to `url` (or $DSQL_URL)."""
    app = Flask(__name__)
    pool = create_pool(
        url or os.environ["DSQL_URL"], **{"min_size": 1, "max_size": 8, **pool_options}
    )
    # Every retry is recorded: a real app would count them in its metrics.
    retries: list[RetryEvent] = []
    app.extensions["dsql"] = {"pool": pool, "retries": retries}
    with pool.connection() as conn:
        conn.execute(SCHEMA)  # alone in its transaction, as DSQL requires

    @app.post("/accounts/<name>/deposits")
    def deposit(name: str) -> dict[str, Any]:
        amount = _amount()
        for attempt in transaction(pool, on_retry=retries.append):
            with attempt as conn:
                row = conn.execute(
                    "INSERT INTO flask_accounts AS a (name, balance) VALUES (%s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET balance = a.balance + %s"
                    " RETURNING balance",
                    (name, amount, amount),
                ).fetchone()
        assert row is not None
        return {"name": name, "balance": row[0]}

    @app.post("/transfers")
    def transfer() -> dict[str, Any]:
        body = request.get_json(force=True)
        source, target, amount = body["from"], body["to"], _amount()
        for attempt in transaction(pool, on_retry=retries.append):
            with attempt as conn:
                # Reading the row with FOR UPDATE makes a concurrent change to
                # it a conflict, so the balance check cannot go stale.
                row = conn.execute(
                    "SELECT balance FROM flask_accounts WHERE name = %s FOR UPDATE",
                    (source,),
                ).fetchone()
                if row is None or row[0] < amount:
                    abort(409, description="insufficient funds")
                conn.execute(
                    "UPDATE flask_accounts SET balance = balance - %s WHERE name = %s",
                    (amount, source),
                )
                conn.execute(
                    "INSERT INTO flask_accounts AS a (name, balance) VALUES (%s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET balance = a.balance + %s",
                    (target, amount, amount),
                )
        return {"from": source, "to": target, "amount": amount}

    @app.get("/accounts/<name>")
    def balance(name: str) -> dict[str, Any]:
        with pool.connection() as conn:
            row = conn.execute(
                "SELECT balance FROM flask_accounts WHERE name = %s", (name,)
            ).fetchone()
        if row is None:
            abort(404)
        return {"name": name, "balance": row[0]}

    return app


def _amount() -> int:
    amount = request.get_json(force=True).get("amount")
    if not isinstance(amount, int) or amount <= 0:
        abort(400, description="amount must be a positive integer")
    return amount
