"""Unit tests of several endpoints in one conninfo (no server needed)."""

from __future__ import annotations

import pytest

from dsql_psycopg import ConfigurationError
from dsql_psycopg._config import (
    DEFAULT_ENDPOINT_COOLDOWN,
    FAILOVER_CONNECT_TIMEOUT,
    parse,
    parse_endpoints,
)

EAST = "abcdefghijklmnopqrstuvwx12.dsql.us-east-1.on.aws"
WEST = "zyxwvutsrqponmlkjihgfedc98.dsql.us-west-2.on.aws"


def test_host_list_gives_one_endpoint_per_host_with_its_own_region() -> None:
    endpoints = parse_endpoints(host=f"{EAST},{WEST}", user="app")
    assert [(p.host, p.region, p.user) for p in endpoints.each] == [
        (EAST, "us-east-1", "app"),
        (WEST, "us-west-2", "app"),
    ]
    assert [p.libpq["host"] for p in endpoints.each] == [EAST, WEST]
    assert not endpoints.random_order
    assert endpoints.cooldown == DEFAULT_ENDPOINT_COOLDOWN


def test_url_form_with_ports_and_hostaddrs() -> None:
    endpoints = parse_endpoints(
        f"postgresql://admin@{EAST}:5432,{WEST}:5433/postgres"
        "?hostaddr=127.0.0.1,127.0.0.2&endpoint_cooldown=2.5&load_balance_hosts=random"
    )
    assert [(p.host, p.libpq["port"], p.libpq["hostaddr"]) for p in endpoints.each] == [
        (EAST, "5432", "127.0.0.1"),
        (WEST, "5433", "127.0.0.2"),
    ]
    assert endpoints.random_order
    assert endpoints.cooldown == 2.5
    assert "endpoint_cooldown" not in endpoints.each[0].libpq


def test_one_port_serves_every_host_and_empty_items_mean_the_default() -> None:
    same = parse_endpoints(host=f"{EAST},{WEST}", port=5433)
    assert [p.libpq["port"] for p in same.each] == ["5433", "5433"]
    url = parse_endpoints(f"postgresql://{EAST},{WEST}/postgres")
    assert ["port" in p.libpq for p in url.each] == [False, False]


def test_several_endpoints_get_a_connect_timeout_unless_given() -> None:
    endpoints = parse_endpoints(host=f"{EAST},{WEST}")
    assert {p.libpq["connect_timeout"] for p in endpoints.each} == {
        FAILOVER_CONNECT_TIMEOUT
    }
    given = parse_endpoints(host=f"{EAST},{WEST}", connect_timeout=11)
    assert {p.libpq["connect_timeout"] for p in given.each} == {11}
    assert "connect_timeout" not in parse_endpoints(host=EAST).each[0].libpq


def test_one_host_is_one_endpoint_as_before() -> None:
    endpoints = parse_endpoints(host=EAST, port=5432)
    assert len(endpoints.each) == 1
    assert endpoints.each[0].libpq["port"] == 5432


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"host": f"{EAST},{WEST}", "port": "1,2,3"}, "one port per host"),
        ({"host": f"{EAST},{WEST}", "hostaddr": "127.0.0.1"}, "one hostaddr per host"),
        ({"host": f"{EAST},,{WEST}"}, "empty host name"),
        ({"host": f"{EAST},{WEST}", "region": "us-east-1"}, "contradicts host"),
        (
            {"host": f"{EAST},{WEST}", "cluster_id": "abcdefghijklmnopqrstuvwx12"},
            "cluster_id names one cluster",
        ),
        ({"host": f"{EAST},{WEST}", "load_balance_hosts": "yes"}, "load_balance"),
        ({"host": f"{EAST},{WEST}", "endpoint_cooldown": 0}, "endpoint_cooldown"),
        ({"host": EAST, "endpoint_cooldown": "soon"}, "endpoint_cooldown"),
        ({"host": f"{EAST},/tmp"}, "unix socket"),
    ],
)
def test_bad_endpoint_lists_are_refused(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        parse_endpoints(**kwargs)


def test_single_endpoint_parse_refuses_several() -> None:
    with pytest.raises(ConfigurationError, match=f"several hosts given.*{WEST}"):
        parse(host=f"{EAST},{WEST}")
