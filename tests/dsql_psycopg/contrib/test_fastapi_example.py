"""The FastAPI example (examples/fastapi/), through httpx's client on DSQL Local.

The app runs in the test's event loop (httpx's ASGI transport), its lifespan
entered by the fixture, as a server would.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx
from fastapi import FastAPI

import dsql_psycopg as dsql
from dsql_local import DsqlLocal

EXAMPLE = Path(__file__).parents[3] / "examples" / "fastapi" / "app.py"


def load() -> ModuleType:
    """Import examples/fastapi/app.py (the examples are not a package)."""
    spec = importlib.util.spec_from_file_location("fastapi_example_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app(dsql_local: DsqlLocal) -> FastAPI:
    application: FastAPI = load().create_app(dsql_local.url, max_size=4)
    return application


pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    app.state.retries.clear()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),  # the pool opens, and closes after
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


async def test_the_pool_is_ours_and_async(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    pool = app.state.pool
    assert pool.connection_class is dsql.AsyncDsqlConnection
    assert pool.max_size == 4


async def test_deliveries_reservations_and_reads(client: httpx.AsyncClient) -> None:
    first = await client.post("/stock/pen/deliveries", json={"quantity": 7})
    assert first.status_code == 200
    assert first.json() == {"sku": "pen", "available": 7}
    again = await client.post("/stock/pen/deliveries", json={"quantity": 3})
    assert again.json() == {"sku": "pen", "available": 10}
    taken = await client.post("/stock/pen/reservations", json={"quantity": 4})
    assert taken.json() == {"sku": "pen", "available": 6}
    refused = await client.post("/stock/pen/reservations", json={"quantity": 7})
    assert refused.status_code == 409
    assert (await client.get("/stock/pen")).json() == {"sku": "pen", "available": 6}
    assert (await client.get("/stock/nothing")).status_code == 404
    bad = await client.post("/stock/pen/deliveries", json={"quantity": -1})
    assert bad.status_code == 422


@pytest.mark.parametrize("route", ["deliveries", "reservations"])
async def test_a_request_answers_through_a_conflict(
    client: httpx.AsyncClient, app: FastAPI, dsql_local: DsqlLocal, route: str
) -> None:
    sku = f"ink-{route}"
    await client.post(f"/stock/{sku}/deliveries", json={"quantity": 10})
    dsql_local.inject_conflicts(1)
    response = await client.post(f"/stock/{sku}/{route}", json={"quantity": 2})
    assert response.status_code == 200
    # Applied once: the conflicting attempt was rolled back.
    expected = 12 if route == "deliveries" else 8
    assert response.json() == {"sku": sku, "available": expected}
    assert (await client.get(f"/stock/{sku}")).json()["available"] == expected
    (retry,) = app.state.retries
    assert (retry.attempt, retry.sqlstate, retry.code) == (1, "40001", "OC000")


async def test_concurrent_deliveries_to_one_sku_all_land_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    responses = await asyncio.gather(
        *(client.post("/stock/hot/deliveries", json={"quantity": 1}) for _ in range(20))
    )
    assert [r.status_code for r in responses] == [200] * 20
    # Each answer is the stock right after its own commit: 1..20, once each.
    assert sorted(r.json()["available"] for r in responses) == list(range(1, 21))
    final = await client.get("/stock/hot")
    assert final.json() == {"sku": "hot", "available": 20}
    # Every retry was a conflict on the hot row, not anything else.
    assert {event.reason for event in app.state.retries} <= {"conflict"}
