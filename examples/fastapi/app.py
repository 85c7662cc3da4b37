"""FastAPI on a dsql_psycopg asyncio pool: one retried transaction per request.

Run it against a cluster (or DSQL Local: ``python -m dsql_local``)::

    DSQL_URL=postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres \
        uvicorn app:app

The pool lives as long as the app (FastAPI's lifespan). Each write runs in
``async for attempt in transaction(pool)``: on an optimistic-concurrency
conflict the body runs again in a fresh transaction, so the client gets its
answer instead of an error, and the event loop serves other requests while a
retry waits. Results are used after the loop, once the transaction committed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import dsql_psycopg as dsql

SCHEMA = """
    CREATE TABLE IF NOT EXISTS fastapi_stock (
        sku text PRIMARY KEY,
        available bigint NOT NULL CHECK (available >= 0)
    )
"""


class Quantity(BaseModel):
    """How many units to add or to reserve."""

    quantity: int = Field(gt=0)


class Stock(BaseModel):
    """What is left of one SKU."""

    sku: str
    available: int


def create_app(url: str | None = None, **pool_options: Any) -> FastAPI:
    """Build the app on an asyncio pool of DSQL connections to `url` ($DSQL_URL)."""
    # Every retry is recorded: a real app would count them in its metrics.
    retries: list[dsql.RetryEvent] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        options = {"min_size": 1, "max_size": 8, **pool_options}
        async with dsql.create_async_pool(
            url or os.environ["DSQL_URL"], **options
        ) as pool:
            async with pool.connection() as conn:
                await conn.execute(SCHEMA)  # alone in its transaction, as DSQL wants
                await conn.commit()
            app.state.pool = pool
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.retries = retries

    @app.post("/stock/{sku}/deliveries")
    async def deliver(sku: str, body: Quantity) -> Stock:
        async for attempt in dsql.transaction(app.state.pool, on_retry=retries.append):
            async with attempt as conn:
                cursor = await conn.execute(
                    "INSERT INTO fastapi_stock AS s (sku, available) VALUES (%s, %s)"
                    " ON CONFLICT (sku) DO UPDATE SET available = s.available + %s"
                    " RETURNING available",
                    (sku, body.quantity, body.quantity),
                )
                row = await cursor.fetchone()
        assert row is not None
        return Stock(sku=sku, available=row[0])

    @app.post("/stock/{sku}/reservations")
    async def reserve(sku: str, body: Quantity) -> Stock:
        # The decorated function runs again, whole, on a conflict; its
        # transaction is one attempt of the decorator's loop.
        @dsql.retry_on_occ(on_retry=retries.append)
        async def take() -> int | None:
            async with dsql.transaction(app.state.pool) as conn:
                cursor = await conn.execute(
                    "UPDATE fastapi_stock SET available = available - %s"
                    " WHERE sku = %s AND available >= %s RETURNING available",
                    (body.quantity, sku, body.quantity),
                )
                row = await cursor.fetchone()
            return None if row is None else int(row[0])

        left = await take()
        if left is None:
            raise HTTPException(409, "not enough stock")
        return Stock(sku=sku, available=left)

    @app.get("/stock/{sku}")
    async def stock(sku: str) -> Stock:
        async with app.state.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT available FROM fastapi_stock WHERE sku = %s", (sku,)
            )
            row = await cursor.fetchone()
        if row is None:
            raise HTTPException(404, "no such SKU")
        return Stock(sku=sku, available=row[0])

    return app


if os.environ.get("DSQL_URL"):
    app = create_app()
