"""Multi-region clusters: two regional endpoints over one data set.

A peered pair has two cluster ids, two host names, two ports and two
certificates from one CA; tokens are checked per endpoint; data, conflicts
and schema changes are shared; one region can fail while the other serves.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import TransactionStatus

from dsql_local import DsqlLocal, DsqlLocalError, RegionalEndpoint
from tests.dsql_local.helpers import make_token, open_connection

EAST1, EAST2 = "us-east-1", "us-east-2"
PEER_ID = "peer0cluster0id0for0tests0"
_WAIT_LIMIT = 30.0  # a safety net, not a measure


@pytest.fixture(scope="module")
def pair_local() -> Iterator[DsqlLocal]:
    with DsqlLocal(
        region=EAST1, peer_region=EAST2, peer_cluster_id=PEER_ID, schema_conflicts=True
    ) as local:
        yield local


@pytest.fixture
def table(pair_local: DsqlLocal, request: pytest.FixtureRequest) -> Iterator[str]:
    """A table of its own for one test, made through the own region's endpoint."""
    name = re.sub(r"\W", "_", request.node.name)[:50]
    with open_connection(pair_local, autocommit=True) as conn:
        conn.execute(f"create table {name} (id int primary key, n int not null)")
        conn.execute(f"insert into {name} values (1, 0)")
    yield name
    with psycopg.connect(pair_local.backend_dsn, autocommit=True) as conn:
        conn.execute(f"drop table if exists {name}")


def _endpoints(local: DsqlLocal) -> tuple[RegionalEndpoint, RegionalEndpoint]:
    return local.endpoint(EAST1), local.endpoint(EAST2)


def _wait_listening(endpoint: RegionalEndpoint) -> None:
    deadline = time.monotonic() + _WAIT_LIMIT
    while not endpoint.listening:
        assert time.monotonic() < deadline, f"{endpoint} did not come back"
        time.sleep(0.05)


# -- where the endpoints are --------------------------------------------------


def test_each_region_has_its_own_endpoint(pair_local: DsqlLocal) -> None:
    a, b = _endpoints(pair_local)
    assert pair_local.regions == (EAST1, EAST2)
    assert pair_local.peer_region == EAST2
    assert pair_local.endpoint(EAST1) is a
    assert (a.region, a.cluster_id) == (EAST1, pair_local.cluster_id)
    assert (a.host, a.port) == (pair_local.host, pair_local.port)
    assert a.connect_kwargs(user="reader") == pair_local.connect_kwargs(user="reader")
    assert a.url == pair_local.url
    assert (b.region, b.cluster_id) == (EAST2, PEER_ID)
    assert b.host == f"{PEER_ID}.dsql.us-east-2.on.aws"
    assert b.port not in {0, a.port}
    assert b.connect_kwargs() == {
        "host": b.host,
        "hostaddr": "127.0.0.1",
        "port": b.port,
        "dbname": "postgres",
        "user": "admin",
        "sslrootcert": pair_local.ca_file,
    }
    assert b.url == (
        f"postgresql://admin@{b.host}:{b.port}/postgres?hostaddr=127.0.0.1"
        f"&sslrootcert={quote(pair_local.ca_file, safe='/')}"
    )
    assert repr(b) == f"<RegionalEndpoint {b.host} port={b.port}>"
    assert repr(pair_local) == (
        f"<DsqlLocal {a.host} port={a.port}, {b.host} port={b.port}>"
    )


def test_multi_region_kwargs_and_url_name_both_endpoints(
    pair_local: DsqlLocal,
) -> None:
    a, b = _endpoints(pair_local)
    assert pair_local.multi_region_kwargs(user="admin") == {
        "host": f"{a.host},{b.host}",
        "hostaddr": "127.0.0.1,127.0.0.1",
        "port": f"{a.port},{b.port}",
        "dbname": "postgres",
        "user": "admin",
        "sslrootcert": pair_local.ca_file,
    }
    assert pair_local.multi_region_url == (
        f"postgresql://admin@{a.host}:{a.port},{b.host}:{b.port}/postgres"
        f"?hostaddr=127.0.0.1,127.0.0.1"
        f"&sslrootcert={quote(pair_local.ca_file, safe='/')}"
    )
    # libpq reads them as two hosts and tries the first: the token is A's.
    kwargs = pair_local.multi_region_kwargs()
    with psycopg.connect(
        **kwargs, password=make_token(a), sslmode="verify-full"
    ) as conn:
        assert conn.info.host == a.host
        assert conn.info.port == a.port
    with psycopg.connect(
        pair_local.multi_region_url, password=make_token(a), sslmode="verify-full"
    ) as conn:
        assert conn.info.port == a.port


# -- certificates and tokens --------------------------------------------------


@pytest.mark.parametrize("region", [EAST1, EAST2])
@pytest.mark.parametrize("negotiation", ["direct", "postgres"])
def test_one_ca_verifies_both_endpoints(
    pair_local: DsqlLocal, region: str, negotiation: str
) -> None:
    endpoint = pair_local.endpoint(region)
    with open_connection(endpoint, negotiation=negotiation) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.info.port == endpoint.port
        assert conn.execute("select current_user").fetchone() == ("admin",)


def test_each_certificate_names_its_own_region(pair_local: DsqlLocal) -> None:
    a, b = _endpoints(pair_local)
    # A's host name at B's port: B's certificate is for *.dsql.us-east-2.on.aws.
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        open_connection(b, host=a.host, token=make_token(a))
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        open_connection(a, host=b.host, token=make_token(b))


def _refusal(endpoint: RegionalEndpoint, token: str) -> str:
    with pytest.raises(psycopg.OperationalError) as info:
        open_connection(endpoint, token=token)
    message = str(info.value)
    assert "IAM authentication failed" in message
    assert token.rsplit("=", 1)[-1] not in message
    return message


def test_a_token_for_the_other_endpoint_is_refused(pair_local: DsqlLocal) -> None:
    a, b = _endpoints(pair_local)
    # Signed with botocore, as applications sign: A's host and region, sent to B.
    assert "another host name" in _refusal(b, make_token(a))
    assert "another host name" in _refusal(a, make_token(b))
    with open_connection(a, token=make_token(a)), open_connection(b):
        pass


def test_a_token_for_the_host_but_the_other_region_is_refused(
    pair_local: DsqlLocal,
) -> None:
    a, b = _endpoints(pair_local)
    token = make_token(a, host=b.host)  # B's host name, A's region
    assert "another region than this endpoint's (us-east-2)" in _refusal(b, token)


# -- one data set ------------------------------------------------------------


def test_a_commit_through_one_endpoint_is_seen_at_once_through_the_other(
    pair_local: DsqlLocal, table: str
) -> None:
    a, b = _endpoints(pair_local)
    with open_connection(a) as one, open_connection(b) as two:
        one.execute(f"update {table} set n = 5 where id = 1")
        one.execute(f"insert into {table} values (2, 7)")
        one.commit()
        rows = two.execute(f"select id, n from {table} order by id").fetchall()
        assert rows == [(1, 5), (2, 7)]
        two.execute(f"delete from {table} where id = 2")
        two.commit()
        assert one.execute(f"select count(*) from {table}").fetchone() == (1,)
        one.commit()


def test_a_write_conflict_across_regions_fails_the_later_commit(
    pair_local: DsqlLocal, table: str
) -> None:
    a, b = _endpoints(pair_local)
    with open_connection(a) as one, open_connection(b) as two:
        assert one.execute(f"update {table} set n = n + 1 where id = 1").rowcount == 1
        # Nothing waits: B's write is answered, and its COMMIT fails.
        assert two.execute(f"update {table} set n = n + 10 where id = 1").rowcount == 1
        one.commit()
        with pytest.raises(errors.SerializationFailure) as info:
            two.commit()
        assert info.value.sqlstate == "40001"
        assert str(info.value) == "change conflicts with another transaction (OC000)"
        assert two.info.transaction_status == TransactionStatus.IDLE
        assert two.execute(f"select n from {table}").fetchone() == (1,)
        two.commit()


def test_a_schema_change_through_one_region_fails_older_transactions_in_the_other(
    pair_local: DsqlLocal, table: str
) -> None:
    a, b = _endpoints(pair_local)
    with open_connection(b) as older, open_connection(a, autocommit=True) as ddl:
        assert older.execute(f"select n from {table}").fetchone() == (0,)
        ddl.execute(f"create index async on {table} (n)")
        with pytest.raises(errors.SerializationFailure) as info:
            older.execute("select 1")
        assert str(info.value) == (
            "schema has been updated by another transaction, please retry: (OC001)"
        )
        older.rollback()
        assert older.execute(f"select n from {table}").fetchone() == (0,)
        older.commit()


def test_roles_are_shared(pair_local: DsqlLocal) -> None:
    pair_local.create_role("multi_region_reader")
    for endpoint in _endpoints(pair_local):
        with open_connection(endpoint, "multi_region_reader") as conn:
            assert conn.execute("select current_user").fetchone() == (
                "multi_region_reader",
            )


# -- per-endpoint controls ----------------------------------------------------


def test_injected_faults_act_on_the_chosen_endpoint(
    pair_local: DsqlLocal, table: str
) -> None:
    a, b = _endpoints(pair_local)
    with open_connection(a) as one, open_connection(b) as two:
        pair_local.inject_conflicts(1, region=EAST2)
        one.execute(f"update {table} set n = 1 where id = 1")
        one.commit()  # A's COMMIT is not B's
        two.execute(f"update {table} set n = 2 where id = 1")
        with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
            two.commit()
        pair_local.inject_conflicts(1)  # by default, the own region's endpoint
        two.execute(f"update {table} set n = 3 where id = 1")
        two.commit()
        one.execute(f"update {table} set n = 4 where id = 1")
        with pytest.raises(errors.SerializationFailure, match=r"\(OC000\)"):
            one.commit()
    pair_local.refuse_connections("waking_up", count=1, region=EAST2)
    with open_connection(a):
        pass
    with pytest.raises(psycopg.OperationalError, match="waking up cluster"):
        open_connection(b)
    with open_connection(b):
        pass


def test_drop_connections_drops_one_endpoints_connections(
    pair_local: DsqlLocal,
) -> None:
    a, b = _endpoints(pair_local)
    with open_connection(a) as one, open_connection(b) as two:
        pair_local.drop_connections(region=EAST2)
        with pytest.raises(psycopg.OperationalError):
            two.execute("select 1")
        assert one.execute("select 1").fetchone() == (1,)


@pytest.fixture
def limited_local() -> Iterator[DsqlLocal]:
    with DsqlLocal(peer_region=EAST2, max_connections=1) as local:
        yield local


def test_connection_limits_are_per_endpoint(limited_local: DsqlLocal) -> None:
    a, b = _endpoints(limited_local)
    # Each regional endpoint admits its own connection, not one in all.
    with (
        open_connection(a),
        open_connection(b),
        pytest.raises(psycopg.OperationalError, match="too many open"),
    ):
        open_connection(b)


def test_latency_can_differ_per_endpoint(pair_local: DsqlLocal) -> None:
    a, b = _endpoints(pair_local)
    with open_connection(b, autocommit=True) as conn:
        b.latency = 0.1
        try:
            assert (a.latency, pair_local.latency) == (0.0, 0.0)
            start = time.monotonic()
            for _ in range(5):
                conn.execute("select 1")
            elapsed = time.monotonic() - start
        finally:
            b.latency = 0.0
    assert elapsed >= 0.5
    pair_local.latency = 0.05  # sets both
    try:
        assert (a.latency, b.latency) == (0.05, 0.05)
    finally:
        pair_local.latency = 0.0
    with pytest.raises(DsqlLocalError, match="latency must be zero or a positive"):
        b.latency = -1.0
    assert b.latency == 0.0


# -- failing a region ---------------------------------------------------------


def _refused(endpoint: RegionalEndpoint) -> None:
    with pytest.raises(psycopg.OperationalError, match="Connection refused"):
        open_connection(endpoint)


def test_a_failed_region_cuts_and_refuses_while_the_other_serves(
    pair_local: DsqlLocal, table: str
) -> None:
    a, b = _endpoints(pair_local)
    port = a.port
    one, two = open_connection(a), open_connection(b)
    try:
        one.execute(f"update {table} set n = 1 where id = 1")
        pair_local.fail_region(EAST1)
        assert [a.listening, b.listening] == [False, True]
        assert f"port={port} failed" in repr(pair_local)
        with pytest.raises(psycopg.OperationalError):
            one.commit()  # cut without a message: the commit never arrived
        _refused(a)
        # The other region serves the same data, on connections old and new.
        assert two.execute(f"select n from {table}").fetchone() == (0,)
        two.execute(f"update {table} set n = 2 where id = 1")
        two.commit()
        with open_connection(b) as three:
            assert three.execute(f"select n from {table}").fetchone() == (2,)

        pair_local.restore_region(EAST1)
        assert a.listening
        assert a.port == port
        with open_connection(a) as four:
            assert four.execute(f"select n from {table}").fetchone() == (2,)
        assert one.closed or one.broken
    finally:
        pair_local.restore_region(EAST1)
        one.close()
        two.close()


def test_the_peer_region_can_fail_too(pair_local: DsqlLocal) -> None:
    a, b = _endpoints(pair_local)
    with open_connection(b) as two:
        pair_local.fail_region(EAST2)
        try:
            with pytest.raises(psycopg.OperationalError):
                two.execute("select 1")
            _refused(b)
            with open_connection(a) as one:
                assert one.execute("select 1").fetchone() == (1,)
        finally:
            pair_local.restore_region(EAST2)
    with open_connection(b) as two:
        assert two.execute("select 1").fetchone() == (1,)


def test_failing_twice_and_restoring_a_serving_region_are_harmless(
    pair_local: DsqlLocal,
) -> None:
    a, _ = _endpoints(pair_local)
    pair_local.restore_region(EAST1)  # not failed: nothing happens
    pair_local.fail_region(EAST1)
    pair_local.fail_region(EAST1)
    _refused(a)
    pair_local.restore_region(EAST1)
    with open_connection(a) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_a_timed_failure_ends_by_itself(pair_local: DsqlLocal) -> None:
    a, b = _endpoints(pair_local)
    two = open_connection(b)
    try:
        pair_local.fail_region(EAST2, seconds=1.0)
        # It returned at once, with the region failed and a timer armed.
        assert EAST2 in pair_local._outage_ends
        with pytest.raises(psycopg.OperationalError):
            two.execute("select 1")
        with open_connection(a):
            pass
        _wait_listening(b)
        assert EAST2 not in pair_local._outage_ends  # the timer restored it
        with open_connection(b) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        pair_local.restore_region(EAST2)
        two.close()


def test_restore_cancels_the_timer_of_a_timed_failure(pair_local: DsqlLocal) -> None:
    a, _ = _endpoints(pair_local)
    pair_local.fail_region(EAST1, seconds=60.0)
    assert EAST1 in pair_local._outage_ends
    pair_local.restore_region(EAST1)
    assert EAST1 not in pair_local._outage_ends
    # A failure without a time is not ended by an earlier timer either.
    pair_local.fail_region(EAST1, seconds=60.0)
    pair_local.fail_region(EAST1)
    assert EAST1 not in pair_local._outage_ends
    pair_local.restore_region(EAST1)
    with open_connection(a):
        pass


@pytest.fixture
def own_local() -> Iterator[DsqlLocal]:
    with DsqlLocal(peer_region=EAST2) as local:
        yield local


def test_stop_stops_both_endpoints_and_cancels_timers(own_local: DsqlLocal) -> None:
    local = own_local
    a, b = _endpoints(local)
    ports = a.port, b.port
    local.fail_region(EAST2, seconds=60.0)
    timer = local._outage_ends[EAST2]
    local.stop()
    assert not timer.is_alive() or timer.finished.is_set()
    assert local._outage_ends == {}
    assert repr(local) == f"<DsqlLocal {a.host} stopped, {b.host} stopped>"
    for port in ports:
        with pytest.raises(psycopg.OperationalError, match="Connection refused"):
            psycopg.connect(host="127.0.0.1", port=port, connect_timeout=5)
    with pytest.raises(DsqlLocalError, match="not running"):
        b.port
    with pytest.raises(DsqlLocalError, match="not running"):
        local.fail_region(EAST1)


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.backend
def test_a_peer_that_cannot_listen_leaves_nothing_running() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        own = _free_port()
        local = DsqlLocal(peer_region=EAST2, port=own, peer_port=busy)
        with pytest.raises(OSError, match="in use"):
            local.start()
    assert repr(local).endswith("stopped>")
    assert local._tmp is None
    with pytest.raises(psycopg.OperationalError, match="Connection refused"):
        psycopg.connect(host="127.0.0.1", port=own, connect_timeout=5)
    with pytest.raises(DsqlLocalError, match="not running"):
        local.backend_dsn


# -- bad input and the single-region case -------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"peer_region": "useast2"}, "peer_region must look like 'us-east-2'"),
        ({"peer_region": EAST1}, "peer_region must be another region than region"),
        (
            {"peer_region": EAST2, "peer_cluster_id": "short"},
            "peer_cluster_id must be 26 characters",
        ),
        (
            {"peer_region": EAST2, "peer_cluster_id": PEER_ID, "cluster_id": PEER_ID},
            "peer_cluster_id must differ from cluster_id",
        ),
        ({"peer_cluster_id": PEER_ID}, "need peer_region"),
        ({"peer_port": 15432}, "need peer_region"),
        (
            {"peer_region": EAST2, "port": 15432, "peer_port": 15432},
            "peer_port must differ from port",
        ),
    ],
)
def test_bad_peer_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DsqlLocalError, match=re.escape(message)):
        DsqlLocal(**kwargs)


def test_unknown_regions_are_refused_naming_the_known_ones() -> None:
    local = DsqlLocal(peer_region=EAST2)
    known = "its regions are us-east-1, us-east-2"
    with pytest.raises(DsqlLocalError, match=f"'eu-west-1'; {known}"):
        local.endpoint("eu-west-1")
    with pytest.raises(DsqlLocalError, match=known):
        local.fail_region("eu-west-1")
    with pytest.raises(DsqlLocalError, match=known):
        local.restore_region("us-west-2")
    with pytest.raises(DsqlLocalError, match=known):
        local.inject_conflicts(1, region="us-west-2")
    # Names and ids are known before start; ports are not.
    assert local.endpoint(EAST2).host.endswith(".dsql.us-east-2.on.aws")
    assert repr(local).endswith("stopped>")


def test_fail_region_checks_its_time(pair_local: DsqlLocal) -> None:
    for seconds in (0, -1.0, float("nan")):
        with pytest.raises(DsqlLocalError, match="seconds must be a positive"):
            pair_local.fail_region(EAST1, seconds=seconds)
    assert pair_local.endpoint(EAST1).listening


def test_a_single_region_local_is_unchanged(dsql_local: DsqlLocal) -> None:
    assert dsql_local.peer_region is None
    assert dsql_local.regions == (dsql_local.region,)
    own = dsql_local.endpoint(dsql_local.region)
    assert (own.host, own.port) == (dsql_local.host, dsql_local.port)
    assert repr(dsql_local) == f"<DsqlLocal {dsql_local.host} port={dsql_local.port}>"
    kwargs = dsql_local.multi_region_kwargs()
    assert kwargs["host"] == dsql_local.host
    assert kwargs["port"] == str(dsql_local.port)
    with pytest.raises(DsqlLocalError, match=f"its regions are {dsql_local.region}$"):
        dsql_local.endpoint(EAST2)
