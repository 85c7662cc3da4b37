"""The parse cache: plain values only, every input in its key (#24)."""

from __future__ import annotations

import gc
import weakref

import boto3
import pytest

from dsql_psycopg._config import _parse_cached, parse, parse_endpoints
from dsql_psycopg.errors import ConfigurationError

EAST = "aaaaaaaaaaaaaaaaaaaaaaaaaa.dsql.us-east-1.on.aws"
WEST = "bbbbbbbbbbbbbbbbbbbbbbbbbb.dsql.us-west-2.on.aws"


def test_the_cache_keeps_no_session_or_token_provider_alive():
    session = boto3.Session(region_name="us-east-1")

    def provider(*, host: str, region: str, user: str, expires_in: int) -> str:
        return "token"

    params = parse(host=EAST, session=session, token_provider=provider)
    assert params.session is session
    assert params.token_provider is provider
    again = parse(host=EAST, session=session, token_provider=provider)
    assert again == params  # same values, from the cache
    gone = [weakref.ref(session), weakref.ref(provider)]
    del session, provider, params, again
    gc.collect()
    assert [ref() for ref in gone] == [None, None]


def test_objects_are_still_checked_when_the_rest_is_cached():
    parse(host=EAST)  # cached without objects
    with pytest.raises(ConfigurationError, match=r"session must be a boto3\.Session"):
        parse(host=EAST, session="default")
    with pytest.raises(ConfigurationError, match="token_provider must be callable"):
        parse(host=EAST, token_provider="secret")
    with pytest.raises(ConfigurationError, match="either profile= or session="):
        parse(host=EAST, profile="dev", session=boto3.Session())


def test_pgconnect_timeout_is_part_of_the_key(monkeypatch):
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    hosts = f"{EAST},{WEST}"
    assert parse_endpoints(host=hosts).each[0].libpq["connect_timeout"] == 5
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "9")
    # libpq reads the variable itself: ours must then not set a default.
    assert "connect_timeout" not in parse_endpoints(host=hosts).each[0].libpq
    monkeypatch.delenv("PGCONNECT_TIMEOUT")
    assert parse_endpoints(host=hosts).each[0].libpq["connect_timeout"] == 5


def test_user_objects_in_other_keywords_bypass_the_cache():
    class Port(int):
        pass

    before = _parse_cached.cache_info().currsize
    parse(host=EAST, port=Port(5433))
    assert _parse_cached.cache_info().currsize == before
