"""The Flask examples (examples/flask/), through Flask's test client on DSQL Local."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("flask")
pytest.importorskip("flask_sqlalchemy")

from flask import Flask
from flask.testing import FlaskClient

from dsql_local import DsqlLocal

EXAMPLES = Path(__file__).parents[3] / "examples" / "flask"


def load(name: str) -> ModuleType:
    """Import examples/flask/<name>.py (the examples are not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"flask_example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: SQLAlchemy resolves annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- the pool app ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pool_app(dsql_local: DsqlLocal) -> Iterator[Flask]:
    app = load("pool_app").create_app(dsql_local.url, max_size=4)
    yield app
    app.extensions["dsql"]["pool"].close()


@pytest.fixture
def pool_client(pool_app: Flask) -> FlaskClient:
    pool_app.extensions["dsql"]["retries"].clear()
    return pool_app.test_client()


def test_pool_app_deposits_and_reads(pool_client: FlaskClient) -> None:
    first = pool_client.post("/accounts/ann/deposits", json={"amount": 70})
    assert first.status_code == 200
    assert first.json == {"name": "ann", "balance": 70}
    again = pool_client.post("/accounts/ann/deposits", json={"amount": 30})
    assert again.json == {"name": "ann", "balance": 100}
    assert pool_client.get("/accounts/ann").json == {"name": "ann", "balance": 100}
    assert pool_client.get("/accounts/nobody").status_code == 404
    assert (
        pool_client.post("/accounts/ann/deposits", json={"amount": -5}).status_code
        == 400
    )


def test_pool_app_transfer_checks_funds(pool_client: FlaskClient) -> None:
    pool_client.post("/accounts/bob/deposits", json={"amount": 50})
    ok = pool_client.post("/transfers", json={"from": "bob", "to": "cy", "amount": 20})
    assert ok.status_code == 200
    too_much = pool_client.post(
        "/transfers", json={"from": "bob", "to": "cy", "amount": 31}
    )
    assert too_much.status_code == 409
    assert pool_client.get("/accounts/bob").json["balance"] == 30
    assert pool_client.get("/accounts/cy").json["balance"] == 20


def test_pool_app_answers_through_a_conflict(
    pool_app: Flask, pool_client: FlaskClient, dsql_local: DsqlLocal
) -> None:
    pool_client.post("/accounts/dee/deposits", json={"amount": 10})
    dsql_local.inject_conflicts(1)
    response = pool_client.post("/accounts/dee/deposits", json={"amount": 5})
    assert response.status_code == 200
    # Written once: the conflicting attempt was rolled back.
    assert response.json == {"name": "dee", "balance": 15}
    assert pool_client.get("/accounts/dee").json["balance"] == 15
    (retry,) = pool_app.extensions["dsql"]["retries"]
    assert (retry.attempt, retry.sqlstate, retry.code) == (1, "40001", "OC000")


# -- the Flask-SQLAlchemy app ----------------------------------------------------


@pytest.fixture(scope="module")
def sqlalchemy_example(dsql_local: DsqlLocal) -> Iterator[tuple[ModuleType, Flask]]:
    module = load("sqlalchemy_app")
    app = module.create_app(dsql_local.url)
    yield module, app
    with app.app_context():
        module.db.engine.dispose()


@pytest.fixture
def sa_client(sqlalchemy_example: tuple[ModuleType, Flask]) -> FlaskClient:
    _, app = sqlalchemy_example
    app.extensions["dsql_retries"].clear()
    return app.test_client()


def test_sqlalchemy_app_engine_is_ours(
    sqlalchemy_example: tuple[ModuleType, Flask],
) -> None:
    module, app = sqlalchemy_example
    with app.app_context(), module.db.engine.connect() as conn:
        assert conn.dialect.driver == "dsql"
        assert type(conn.connection.driver_connection).__name__ == "DsqlConnection"


def test_sqlalchemy_app_counts_visits(sa_client: FlaskClient) -> None:
    for views in (1, 2, 3):
        response = sa_client.post("/pages/home/visits")
        assert response.status_code == 200
        assert response.json == {"slug": "home", "views": views}
    assert sa_client.get("/pages/home").json == {
        "slug": "home",
        "views": 3,
        "visits": 3,
    }
    assert sa_client.get("/pages/missing").status_code == 404


def test_sqlalchemy_app_answers_through_a_conflict(
    sqlalchemy_example: tuple[ModuleType, Flask],
    sa_client: FlaskClient,
    dsql_local: DsqlLocal,
) -> None:
    _, app = sqlalchemy_example
    dsql_local.inject_conflicts(1)
    response = sa_client.post("/pages/about/visits")
    assert response.status_code == 200
    assert response.json == {"slug": "about", "views": 1}
    # One page row bumped once, one visit row: the first attempt left nothing.
    assert sa_client.get("/pages/about").json == {
        "slug": "about",
        "views": 1,
        "visits": 1,
    }
    (retry,) = app.extensions["dsql_retries"]
    assert (retry.attempt, retry.sqlstate) == (1, "40001")
