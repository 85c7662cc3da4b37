"""SQLAlchemy on strict DSQL Local: engine, create_all, Core and ORM CRUD, OCC."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

pytest.importorskip("sqlalchemy")

import sqlalchemy as sa
from sqlalchemy import orm

from dsql_local import DsqlLocal
from dsql_psycopg.connection import DsqlConnection
from dsql_psycopg.contrib.sqlalchemy import DEFAULT_POOL_RECYCLE, create_engine
from dsql_psycopg.errors import ConfigurationError
from dsql_psycopg.pool import MAX_LIFETIME_CEILING
from dsql_psycopg.retry import RetryEvent, is_occ_error, retry_on_occ


class Base(orm.DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "sa_customer"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(
        primary_key=True, server_default=sa.text("gen_random_uuid()")
    )
    email: orm.Mapped[str] = orm.mapped_column(sa.String(200), unique=True)
    orders: orm.Mapped[list[Order]] = orm.relationship(
        back_populates="customer", cascade="all, delete-orphan"
    )


class Order(Base):
    __tablename__ = "sa_order"

    # A plain integer key: SERIAL on PostgreSQL, an identity on DSQL.
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    # Declared for joins; DSQL does not enforce it, the dialect leaves it out.
    customer_id: orm.Mapped[uuid.UUID] = orm.mapped_column(
        sa.ForeignKey("sa_customer.id"), index=True
    )
    total: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(10, 2))
    placed: orm.Mapped[dt.datetime] = orm.mapped_column(sa.DateTime(timezone=True))
    notes: orm.Mapped[dict[str, object]] = orm.mapped_column(sa.JSON, default=dict)
    customer: orm.Mapped[Customer] = orm.relationship(back_populates="orders")


@pytest.fixture(scope="module")
def engine(dsql_local: DsqlLocal) -> Iterator[sa.Engine]:
    engine = create_engine(dsql_local.url, pool_size=2, pool_pre_ping=True)
    ddl = engine.execution_options(isolation_level="AUTOCOMMIT")
    Base.metadata.create_all(ddl)
    yield engine
    Base.metadata.drop_all(ddl)
    engine.dispose()


def test_engine_connects_with_dsql_connections(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, DsqlConnection)
        assert raw.info.get_parameters()["sslmode"] == "verify-full"
        assert conn.scalar(sa.text("SELECT current_user")) == "admin"
    assert engine.pool._recycle == DEFAULT_POOL_RECYCLE  # type: ignore[attr-defined]
    assert engine.dialect.driver == "dsql"


def test_plain_sqlalchemy_knows_the_dsql_driver(dsql_local: DsqlLocal) -> None:
    url = dsql_local.url.replace("postgresql://", "postgresql+dsql://")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert isinstance(conn.connection.driver_connection, DsqlConnection)
    finally:
        engine.dispose()


def test_dialect_is_found_without_importing_it() -> None:
    # Through the package's sqlalchemy.dialects entry point, in a fresh process.
    code = (
        "import sys, sqlalchemy as sa;"
        "engine = sa.create_engine('postgresql+dsql://admin@h/postgres');"
        "print(type(engine.dialect).__name__);"
        "print('dsql_psycopg' in sys.modules and 'imported' or '')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["DsqlDialect", "imported"]


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("postgresql+psycopg2://h/db", {}, "psycopg 3"),
        ("mysql://h/db", {}, "psycopg 3"),
        ("postgresql://h/db", {"pool_recycle": MAX_LIFETIME_CEILING + 1}, "60"),
        ("postgresql://h/db", {"pool_recycle": -1}, "pool_recycle"),
    ],
)
def test_bad_engine_arguments_are_refused(
    url: str, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_engine(url, **kwargs)


def test_create_all_left_out_foreign_keys(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        kinds = conn.execute(
            sa.text(
                "SELECT c.contype FROM pg_constraint c"
                " WHERE c.conrelid IN ('sa_customer'::regclass, 'sa_order'::regclass)"
            )
        ).scalars()
        assert sorted(kinds) == ["p", "p", "u"]
        indexes = sa.inspect(conn).get_indexes("sa_order")
        assert [i["column_names"] for i in indexes] == [["customer_id"]]
        identity = conn.execute(
            sa.text(
                "SELECT data_type, is_identity FROM information_schema.columns"
                " WHERE table_name = 'sa_order' AND column_name = 'id'"
            )
        ).one()
        assert tuple(identity) == ("bigint", "YES")


def test_one_transaction_holds_one_ddl_statement(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    for name in ("sa_ddl_a", "sa_ddl_b"):
        sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True))
    with pytest.raises(sa.exc.NotSupportedError, match="ddl"):
        metadata.create_all(engine)
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("sa_ddl_a")


def test_core_create_read_update_delete(engine: sa.Engine) -> None:
    customers = Base.metadata.tables["sa_customer"]
    with engine.begin() as conn:
        new_id = conn.execute(
            customers.insert()
            .values(email="core@example.com")
            .returning(customers.c.id)
        ).scalar_one()
    with engine.begin() as conn:
        row = conn.execute(sa.select(customers).where(customers.c.id == new_id)).one()
        assert row.email == "core@example.com"
        conn.execute(
            customers.update()
            .where(customers.c.id == new_id)
            .values(email="core2@example.com")
        )
    with engine.begin() as conn:
        assert conn.scalar(
            sa.select(customers.c.email).where(customers.c.id == new_id)
        ) == ("core2@example.com")
        deleted = conn.execute(customers.delete().where(customers.c.id == new_id))
        assert deleted.rowcount == 1
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(customers)) == 0


def test_orm_session_create_read_update_delete(engine: sa.Engine) -> None:
    placed = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    with orm.Session(engine) as session, session.begin():
        customer = Customer(email="orm@example.com")
        customer.orders = [
            Order(total=Decimal("9.99"), placed=placed, notes={"gift": True}),
            Order(total=Decimal("20.00"), placed=placed),
        ]
        session.add(customer)
    with orm.Session(engine) as session, session.begin():
        found = session.scalars(
            sa.select(Customer)
            .join(Customer.orders)
            .where(Order.total > Decimal("10"))
            .options(orm.selectinload(Customer.orders))
        ).one()
        assert found.email == "orm@example.com"
        assert sorted(o.total for o in found.orders) == [
            Decimal("9.99"),
            Decimal("20.00"),
        ]
        gift = next(o for o in found.orders if o.notes)
        assert gift.notes == {"gift": True}
        assert gift.placed == placed
        gift.total = Decimal("10.50")
    with orm.Session(engine) as session, session.begin():
        customer = session.scalars(sa.select(Customer)).one()
        assert sum(o.total for o in customer.orders) == Decimal("30.50")
        session.delete(customer)
    with orm.Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_conflict_is_retried_through_sqlalchemy(
    engine: sa.Engine, dsql_local: DsqlLocal
) -> None:
    seen: list[BaseException] = []
    runs = []

    def remember(event: RetryEvent) -> None:
        seen.append(event.error)

    @retry_on_occ(base_delay=0, max_delay=0, on_retry=remember)
    def register(email: str) -> uuid.UUID:
        runs.append(email)
        with orm.Session(engine) as session, session.begin():
            customer = Customer(email=email)
            session.add(customer)
            session.flush()
            return customer.id

    dsql_local.inject_conflicts(1)
    new_id = register("retried@example.com")
    assert len(runs) == 2
    (error,) = seen
    # SQLAlchemy wraps the driver's error; the conflict is its .orig.
    assert isinstance(error, sa.exc.OperationalError)
    assert isinstance(error.orig, psycopg.errors.SerializationFailure)
    assert is_occ_error(error)
    with orm.Session(engine) as session:
        emails = session.scalars(sa.select(Customer.email)).all()
        assert emails == ["retried@example.com"]
        session.execute(sa.delete(Customer).where(Customer.id == new_id))
        session.commit()
