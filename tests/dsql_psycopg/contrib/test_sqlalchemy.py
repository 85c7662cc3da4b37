"""SQLAlchemy on strict DSQL Local: engine, DDL, Core and ORM CRUD, OCC."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import psycopg
import pytest

pytest.importorskip("sqlalchemy")

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from dsql_local import DsqlLocal
from dsql_psycopg import AsyncDsqlConnection
from dsql_psycopg.connection import DsqlConnection
from dsql_psycopg.contrib.sqlalchemy import (
    DEFAULT_POOL_RECYCLE,
    AsyncDsqlDialect,
    DDLTransactionError,
    DsqlDialect,
    IndexBuildError,
    IndexKeyOrderWarning,
    create_async_engine,
    create_engine,
)
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
    with engine.begin() as conn:
        Base.metadata.create_all(conn)
    yield engine
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
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


@pytest.mark.parametrize(
    ("make", "driver", "dialect"),
    [
        ("sa.create_engine", "dsql", "DsqlDialect"),
        ("create_async_engine", "dsql_async", "AsyncDsqlDialect"),
        ("create_async_engine", "dsql", "AsyncDsqlDialect"),
    ],
)
def test_dialect_is_found_without_importing_it(
    make: str, driver: str, dialect: str
) -> None:
    # Through the package's sqlalchemy.dialects entry points, in a fresh process.
    code = (
        "import sys, sqlalchemy as sa;"
        "from sqlalchemy.ext.asyncio import create_async_engine;"
        f"engine = {make}('postgresql+{driver}://admin@h/postgres');"
        "print(type(engine.dialect).__name__);"
        "print('dsql_psycopg' in sys.modules and 'imported' or '')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [dialect, "imported"]


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


def test_create_all_made_keys_identities_and_indexes(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        kinds = conn.execute(
            sa.text(
                # PostgreSQL 18 records NOT NULL as constraints too ('n');
                # DSQL, on 16, does not.
                "SELECT c.contype FROM pg_constraint c"
                " WHERE c.conrelid IN ('sa_customer'::regclass, 'sa_order'::regclass)"
                " AND c.contype <> 'n'"
            )
        ).scalars()
        assert sorted(kinds) == ["f", "p", "p", "u"]
        (fk,) = sa.inspect(conn).get_foreign_keys("sa_order")
        assert (fk["constrained_columns"], fk["referred_table"]) == (
            ["customer_id"],
            "sa_customer",
        )
        indexes = sa.inspect(conn).get_indexes("sa_order")
        assert [i["column_names"] for i in indexes] == [["customer_id"]]
        identity = conn.execute(
            sa.text(
                "SELECT data_type, is_identity FROM information_schema.columns"
                " WHERE table_name = 'sa_order' AND column_name = 'id'"
            )
        ).one()
        assert tuple(identity) == ("bigint", "YES")


def _compile(element: sa.schema.ExecutableDDLElement) -> str:
    return str(element.compile(dialect=DsqlDialect()))


def test_ddl_is_written_the_way_dsql_takes_it() -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "t",
        metadata,
        sa.Column("id", sa.Integer, sa.Identity(start=10), primary_key=True),
        sa.Column("small", sa.SmallInteger, sa.Identity(cache=65536)),
        sa.Column("n", sa.Integer, sa.Sequence("t_n", data_type=sa.Integer)),
        sa.Column("parent", sa.BigInteger, sa.ForeignKey("t.id", name="t_parent")),
    )
    create = _compile(sa.schema.CreateTable(table))
    assert "id BIGINT GENERATED BY DEFAULT AS IDENTITY (START WITH 10 CACHE 1)" in (
        create
    )
    assert "small BIGINT GENERATED BY DEFAULT AS IDENTITY (CACHE 65536)" in create
    assert "CONSTRAINT t_parent FOREIGN KEY(parent) REFERENCES t (id)" in create
    sequence = sa.Sequence("t_n", data_type=sa.Integer)
    assert _compile(sa.schema.CreateSequence(sequence)) == (
        "CREATE SEQUENCE t_n AS BIGINT CACHE 1"
    )
    index = sa.Index("t_small", table.c.small, unique=True)
    assert _compile(sa.schema.CreateIndex(index)) == (
        "CREATE UNIQUE INDEX ASYNC t_small ON t (small)"
    )
    check = sa.CheckConstraint("n > 0", name="t_n_positive", table=table)
    assert _compile(sa.schema.AddConstraint(check)) == (
        "ALTER TABLE t ADD CONSTRAINT t_n_positive CHECK (n > 0) NOT VALID"
    )


def test_create_all_runs_in_one_sqlalchemy_transaction(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    parent = sa.Table(
        "sa_ddl_a",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        comment="parents",
    )
    sa.Table(
        "sa_ddl_b",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a_id", sa.BigInteger, sa.ForeignKey(parent.c.id), index=True),
        sa.ForeignKeyConstraint(
            ["id"], [parent.c.id], name="sa_ddl_b_a", comment="same id"
        ),
    )
    with engine.begin() as conn:
        conn.execute(sa.select(sa.literal(1)))  # a read before the DDL is fine
        metadata.create_all(conn)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            assert inspector.has_table("sa_ddl_a")
            assert inspector.get_table_comment("sa_ddl_a")["text"] == "parents"
            assert len(inspector.get_foreign_keys("sa_ddl_b")) == 2
            assert [i["name"] for i in inspector.get_indexes("sa_ddl_b")] == [
                "ix_sa_ddl_b_a_id"
            ]
        (index,) = metadata.tables["sa_ddl_b"].indexes
        with engine.begin() as conn:
            conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
    finally:
        with engine.begin() as conn:
            metadata.drop_all(conn)
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("sa_ddl_a")


def test_ddl_after_writes_is_refused_without_committing_them(
    engine: sa.Engine,
) -> None:
    customers = Base.metadata.tables["sa_customer"]
    extra = sa.Table(
        "sa_ddl_extra", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True)
    )
    with engine.connect() as conn:
        conn.execute(customers.insert().values(email="pending@example.com"))
        with pytest.raises(
            sa.exc.NotSupportedError, match="separate transactions"
        ) as info:
            extra.create(conn)
        assert isinstance(info.value.orig, DDLTransactionError)
        assert "CREATE TABLE sa_ddl_extra" in str(info.value.orig)
        conn.rollback()
        assert not sa.inspect(conn).has_table("sa_ddl_extra")
        assert conn.scalar(sa.select(sa.func.count()).select_from(customers)) == 0


def test_ddl_on_an_autocommit_connection(engine: sa.Engine) -> None:
    extra = sa.Table(
        "sa_ddl_auto",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.String(10), index=True),
    )
    auto = engine.execution_options(isolation_level="AUTOCOMMIT")
    extra.create(auto)
    try:
        with engine.connect() as conn:
            assert len(sa.inspect(conn).get_indexes("sa_ddl_auto")) == 1
    finally:
        extra.drop(auto)


def test_index_build_that_fails_raises(engine: sa.Engine) -> None:
    table = sa.Table(
        "sa_ddl_dup",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.Integer),
    )
    with engine.begin() as conn:
        table.create(conn)
    try:
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"v": 1}, {"v": 1}])
        unique = sa.Index("sa_ddl_dup_v", table.c.v, unique=True)
        with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError) as info:
            unique.create(conn)
        assert isinstance(info.value.orig, IndexBuildError)
        assert "failed" in str(info.value.orig)
    finally:
        with engine.begin() as conn:
            table.drop(conn)


def test_results_stream_without_server_side_cursors(engine: sa.Engine) -> None:
    numbers = sa.select(sa.func.generate_series(1, 2500).label("n"))
    with engine.connect() as conn:
        streamed = conn.execution_options(stream_results=True, yield_per=100)
        result = streamed.execute(numbers)
        chunks = list(result.partitions())
        assert [len(c) for c in chunks] == [100] * 25
    with orm.Session(engine) as session:
        rows = session.execute(numbers.execution_options(yield_per=1000))
        assert sum(1 for _ in rows) == 2500


def test_isolation_levels_are_dsqls(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert conn.get_isolation_level() == "REPEATABLE READ"
        assert set(conn.dialect.get_isolation_level_values(None)) == {
            "REPEATABLE READ",
            "AUTOCOMMIT",
        }
    with pytest.raises(sa.exc.ArgumentError, match="SERIALIZABLE"):
        engine.execution_options(isolation_level="SERIALIZABLE").connect()


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


def test_engine_over_both_endpoints_of_a_multi_region_cluster(
    dsql_local_multi_region: DsqlLocal,
) -> None:
    local = dsql_local_multi_region
    home, peer = (local.endpoint(region) for region in local.regions)
    # SQLAlchemy's own spelling of several hosts: one host= per endpoint.
    url = (
        f"postgresql+dsql://admin@/postgres?host={home.host}:{home.port}"
        f"&host={peer.host}:{peer.port}&hostaddr=127.0.0.1,127.0.0.1"
        f"&sslrootcert={local.ca_file}&endpoint_cooldown=0.1"
    )
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection.endpoint == home.host
        local.fail_region(home.region)
        engine.dispose()
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert conn.connection.dbapi_connection.endpoint == peer.host
    finally:
        engine.dispose()


def test_descending_index_key_is_compiled_ascending_with_a_warning() -> None:
    table = sa.Table(
        "t", sa.MetaData(), sa.Column("a", sa.Integer), sa.Column("b", sa.Integer)
    )
    index = sa.Index("t_ab", table.c.a.desc(), table.c.b.asc().nulls_last())
    with pytest.warns(IndexKeyOrderWarning) as caught:
        text = _compile(sa.schema.CreateIndex(index))
    assert text == "CREATE INDEX ASYNC t_ab ON t (a, b NULLS LAST)"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "index t_ab" in messages[0]
    assert "DESC" in messages[0]
    assert "ASC" in messages[1]
    # Ordering elsewhere is untouched.
    assert _compile_query(sa.select(table.c.a).order_by(table.c.a.desc())).endswith(
        "ORDER BY t.a DESC"
    )


def _compile_query(query: sa.Select[tuple[int]]) -> str:
    return " ".join(str(query.compile(dialect=DsqlDialect())).split())


def test_descending_index_is_built_on_dsql(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "sa_ddl_desc",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("placed", sa.DateTime),
    )
    sa.Index("sa_ddl_desc_placed", table.c.placed.desc())
    with (
        pytest.warns(IndexKeyOrderWarning, match="sa_ddl_desc_placed"),
        engine.begin() as conn,
    ):
        metadata.create_all(conn)
    try:
        with engine.connect() as conn:
            (index,) = sa.inspect(conn).get_indexes("sa_ddl_desc")
            assert index["column_names"] == ["placed"]
            assert not index.get("column_sorting")
            # What the dialect leaves out, DSQL (and strict DSQL Local) refuses.
            with pytest.raises(sa.exc.NotSupportedError, match="sort order"):
                conn.execute(
                    sa.text(
                        "CREATE INDEX ASYNC sa_ddl_desc_raw ON sa_ddl_desc"
                        " (placed DESC)"
                    )
                )
    finally:
        with engine.begin() as conn:
            metadata.drop_all(conn)


# -- asyncio: create_async_engine and postgresql+dsql_async ----------------------


@pytest.fixture
async def async_engine(dsql_local: DsqlLocal) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(dsql_local.url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.mark.anyio
async def test_async_engine_connects_with_async_dsql_connections(
    async_engine: AsyncEngine,
) -> None:
    async with async_engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, AsyncDsqlConnection)
        assert driver.info.get_parameters()["sslmode"] == "verify-full"
        assert await conn.scalar(sa.text("SELECT current_user")) == "admin"
    assert async_engine.dialect.driver == "dsql_async"
    assert isinstance(async_engine.dialect, AsyncDsqlDialect)
    assert async_engine.pool._recycle == DEFAULT_POOL_RECYCLE  # type: ignore[attr-defined]


@pytest.mark.anyio
@pytest.mark.parametrize("driver", ["dsql_async", "dsql"])
async def test_plain_sqlalchemy_async_engine_knows_the_dsql_drivers(
    dsql_local: DsqlLocal, driver: str
) -> None:
    url = dsql_local.url.replace("postgresql://", f"postgresql+{driver}://")
    engine = sa_asyncio.create_async_engine(url)
    try:
        assert isinstance(engine.dialect, AsyncDsqlDialect)
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.driver_connection, AsyncDsqlConnection)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("postgresql+asyncpg://h/db", {}, "psycopg 3"),
        ("postgresql://h/db", {"pool_recycle": MAX_LIFETIME_CEILING + 1}, "60"),
    ],
)
def test_bad_async_engine_arguments_are_refused(
    url: str, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_async_engine(url, **kwargs)


@pytest.mark.anyio
async def test_async_ddl_follows_the_same_rules(async_engine: AsyncEngine) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "sa_async_ddl",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.Integer),
        sa.Column("placed", sa.DateTime),
    )
    sa.Index("sa_async_ddl_v", table.c.v)
    sa.Index("sa_async_ddl_placed", table.c.placed.desc())
    async with async_engine.begin() as conn:
        await conn.execute(sa.select(sa.literal(1)))  # a read first is fine
        with pytest.warns(IndexKeyOrderWarning, match="sa_async_ddl_placed"):
            await conn.run_sync(metadata.create_all)
    try:
        async with async_engine.connect() as conn:
            names = await conn.run_sync(
                lambda sync: sorted(
                    i["name"] for i in sa.inspect(sync).get_indexes("sa_async_ddl")
                )
            )
            assert names == ["sa_async_ddl_placed", "sa_async_ddl_v"]
            identity = await conn.execute(
                sa.text(
                    "SELECT data_type, is_identity FROM information_schema.columns"
                    " WHERE table_name = 'sa_async_ddl' AND column_name = 'id'"
                )
            )
            assert tuple(identity.one()) == ("bigint", "YES")
        # DDL after writes in one transaction is refused, the writes kept back.
        extra = sa.Table(
            "sa_async_extra",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
        )
        async with async_engine.connect() as conn:
            await conn.execute(table.insert().values(v=1))
            with pytest.raises(sa.exc.NotSupportedError) as info:
                await conn.run_sync(extra.create)
            assert isinstance(info.value.orig, DDLTransactionError)
            await conn.rollback()
            assert await conn.scalar(sa.select(sa.func.count()).select_from(table)) == 0
        # A unique index over duplicates: the build job fails, and says so.
        async with async_engine.begin() as conn:
            await conn.execute(table.insert(), [{"v": 2}, {"v": 2}])
        unique = sa.Index("sa_async_ddl_v_unique", table.c.v, unique=True)
        async with async_engine.begin() as conn:
            with pytest.raises(sa.exc.IntegrityError) as failed:
                await conn.run_sync(unique.create)
        assert isinstance(failed.value.orig, IndexBuildError)
    finally:
        async with async_engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)


@pytest.mark.anyio
async def test_async_create_index_answers_its_job_id(async_engine: AsyncEngine) -> None:
    table = sa.Table(
        "sa_async_job", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True)
    )
    async with async_engine.begin() as conn:
        await conn.run_sync(table.create)
    index = sa.Index("sa_async_job_id", table.c.id)  # made after the table
    try:
        async with async_engine.begin() as conn:
            result = await conn.execute(sa.schema.CreateIndex(index))
            (job_id,) = result.one()
            assert job_id  # the row the dialect read is left for the caller
    finally:
        async with async_engine.begin() as conn:
            await conn.run_sync(table.drop)


@pytest.mark.anyio
async def test_async_orm_session_and_a_retried_conflict(
    async_engine: AsyncEngine, dsql_local: DsqlLocal
) -> None:
    async with async_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    make_session = sa_asyncio.async_sessionmaker(async_engine, expire_on_commit=False)
    seen: list[RetryEvent] = []
    runs: list[str] = []

    @retry_on_occ(base_delay=0, max_delay=0, on_retry=seen.append)
    async def register(email: str) -> uuid.UUID:
        runs.append(email)
        async with make_session() as session, session.begin():
            customer = Customer(email=email)
            session.add(customer)
            await session.flush()
            return customer.id

    try:
        dsql_local.inject_conflicts(1)
        new_id = await register("async@example.com")
        assert runs == ["async@example.com"] * 2
        (event,) = seen
        assert isinstance(event.error, sa.exc.OperationalError)
        assert event.sqlstate == "40001"
        async with make_session() as session:
            found = await session.get(Customer, new_id)
            assert found is not None
            assert found.email == "async@example.com"
            await session.delete(found)
            await session.commit()
    finally:
        async with async_engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
