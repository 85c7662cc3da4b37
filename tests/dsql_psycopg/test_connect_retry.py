"""Connect retries: transient refusals are retried, final failures never are."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_local._certs import make_certificates
from dsql_psycopg._config import DEFAULT_CONNECT_RETRY, parse
from tests.fixtures.drivers import Driver


@pytest.fixture(scope="module")
def fault_local() -> Iterator[DsqlLocal]:
    """A DSQL Local of this module's own: outages cut every connection."""
    with DsqlLocal(strict=False) as fault_local:
        yield fault_local


@pytest.fixture
def calm(fault_local: DsqlLocal) -> Iterator[DsqlLocal]:
    """The module's DSQL Local, with no fault left armed after the test."""
    yield fault_local
    fault_local.refuse_connections(count=0)
    fault_local.end_outage()


class CountingProvider:
    """Sign real tokens with botocore and count them; a wrong key on demand."""

    def __init__(
        self,
        fault_local: DsqlLocal,
        *,
        wrong_key: bool = False,
        on_second_call: Callable[[], None] | None = None,
    ) -> None:
        session = boto3.Session(
            aws_access_key_id="AKIAWRONGKEYWRONGKEY" if wrong_key else None,
            aws_secret_access_key="wrong-secret" if wrong_key else None,
        )
        self._client = session.client("dsql", region_name=fault_local.region)
        self.calls = 0
        self.tokens: list[str] = []
        self._on_second_call = on_second_call

    def __call__(self, *, host: str, region: str, user: str, expires_in: int) -> str:
        self.calls += 1
        if self.calls == 2 and self._on_second_call is not None:
            self._on_second_call()
        token = self._client.generate_db_connect_admin_auth_token(
            host, region, ExpiresIn=expires_in
        )
        self.tokens.append(token)
        return token


def _connect(fault_local: DsqlLocal, **kwargs: Any) -> dsql.DsqlConnection[Any]:
    return dsql.connect(fault_local.url, connect_timeout=10, **kwargs)


def _connected(driver: Driver, fault_local: DsqlLocal, **kwargs: Any) -> Any:
    return driver.connected(fault_local.url, connect_timeout=10, **kwargs)


@pytest.mark.parametrize("reason", ["waking_up", "rate_exceeded", "too_many"])
def test_transient_refusals_are_retried_with_a_fresh_token(
    driver: Driver, calm: DsqlLocal, reason: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = CountingProvider(calm)
    calm.refuse_connections(reason, count=3)
    caplog.set_level("INFO", logger="dsql_psycopg")
    with (
        dsql.retry_testing(),
        _connected(driver, calm, token_provider=provider) as conn,
    ):
        assert driver.query(conn, "SELECT 1") == [(1,)]
    assert provider.calls == 4
    tries = [r.getMessage() for r in caplog.records if "connect attempt" in r.message]
    assert len(tries) == 3
    assert all("retrying in" in message for message in tries)


@pytest.mark.parametrize("how", ["outage", "cut", "kill"])
def test_connect_waits_out_an_endpoint_coming_back(
    driver: Driver, calm: DsqlLocal, how: str
) -> None:
    # The endpoint comes back when the second try signs its token: the first
    # try certainly meets it gone, however slow the machine.
    if how == "kill":
        calm.kill_endpoint()
        provider = CountingProvider(calm, on_second_call=calm.restart_endpoint)
    else:
        calm.outage(60, refuse=how == "outage")
        provider = CountingProvider(calm, on_second_call=calm.end_outage)
    with _connected(driver, calm, token_provider=provider, connect_retry=60) as conn:
        assert driver.query(conn, "SELECT 1") == [(1,)]
    assert provider.calls == 2


def test_budget_exhausted_names_the_cause_and_the_time(
    driver: Driver, calm: DsqlLocal
) -> None:
    calm.refuse_connections("waking_up", count=10_000)
    provider = CountingProvider(calm)
    with dsql.retry_testing(), pytest.raises(dsql.ConnectRetryExhausted) as info:
        driver.connect(
            calm.url, connect_timeout=10, token_provider=provider, connect_retry=3
        )
    error = info.value
    assert isinstance(error, psycopg.OperationalError)
    assert isinstance(error, dsql.DsqlError)
    assert error.cause == "the cluster is waking up"
    assert error.attempts == provider.calls > 1
    # It stopped because the next wait (at most a second) would pass 3 s.
    assert error.elapsed + 1.0 >= 3
    message = str(error)
    assert message.startswith("could not connect: the cluster is waking up (FATAL:")
    assert "waking up cluster, please retry later" in message
    assert f"{error.attempts} attempt(s)" in message
    assert "connect_retry=3 s" in message
    assert isinstance(error.__cause__, psycopg.OperationalError)
    signatures = {t.partition("X-Amz-Signature=")[2][:64] for t in provider.tokens}
    assert all(len(sig) == 64 for sig in signatures)
    for text in (message, repr(error), str(error.__cause__)):
        assert not any(sig in text for sig in signatures)


@pytest.mark.parametrize("off", [0, False, "off", "0"])
def test_connect_retry_off_fails_at_the_first_refusal(
    calm: DsqlLocal, off: Any
) -> None:
    calm.refuse_connections("rate_exceeded", count=1)
    provider = CountingProvider(calm)
    with pytest.raises(psycopg.OperationalError, match="rate exceeded") as info:
        _connect(calm, token_provider=provider, connect_retry=off)
    assert type(info.value) is psycopg.OperationalError
    assert provider.calls == 1
    _connect(calm).close()  # only one refusal was used


def test_connect_retry_in_the_url(calm: DsqlLocal) -> None:
    calm.refuse_connections("too_many", count=1)
    with pytest.raises(psycopg.OperationalError, match="too many open connections"):
        dsql.connect(calm.url + "&connect_retry=off")


def test_bad_credentials_are_never_retried(calm: DsqlLocal) -> None:
    provider = CountingProvider(calm, wrong_key=True)
    with pytest.raises(dsql.AuthenticationError):
        _connect(calm, token_provider=provider, connect_retry=60)
    assert provider.calls == 1


def test_tls_verification_failures_are_never_retried(
    calm: DsqlLocal, tmp_path: Path
) -> None:
    (other_ca,) = make_certificates(tmp_path, calm.region)
    provider = CountingProvider(calm)
    with pytest.raises(psycopg.OperationalError, match="certificate") as info:
        _connect(
            calm,
            token_provider=provider,
            sslrootcert=str(Path(other_ca.cert_file).parent / "root.crt"),
            connect_retry=60,
        )
    assert not isinstance(info.value, dsql.ConnectRetryExhausted)
    assert provider.calls == 1


def test_configuration_errors_are_never_retried(calm: DsqlLocal) -> None:
    calm.refuse_connections("waking_up", count=10_000)
    with pytest.raises(dsql.ConfigurationError, match="connect_retry must be"):
        _connect(calm, connect_retry="soon")
    with pytest.raises(dsql.ConfigurationError, match="malformed cluster id"):
        dsql.connect(calm.url.replace(calm.cluster_id, "nope"))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, DEFAULT_CONNECT_RETRY), (True, DEFAULT_CONNECT_RETRY), (2, 2.0)],
)
def test_connect_retry_values(value: Any, seconds: float) -> None:
    from dsql_psycopg._config import connect_retry_budget  # noqa: PLC0415

    assert connect_retry_budget(value) == seconds
    parse(f"host={'a' * 26}.dsql.us-east-1.on.aws", connect_retry=value)


@pytest.mark.parametrize("value", [-1, "soon", float("nan"), float("inf"), [1]])
def test_connect_retry_bad_values(value: Any) -> None:
    with pytest.raises(dsql.ConfigurationError, match="connect_retry must be"):
        parse(f"host={'a' * 26}.dsql.us-east-1.on.aws", connect_retry=value)


def test_pool_connections_retry_refusals(calm: DsqlLocal) -> None:
    provider = CountingProvider(calm)
    calm.refuse_connections("rate_exceeded", count=6)
    with (
        dsql.retry_testing(),
        dsql.create_pool(
            calm.url, min_size=3, token_provider=provider, connect_retry=60
        ) as pool,
    ):
        pool.wait(timeout=60)
        assert pool.get_stats()["pool_size"] == 3
        # Each refusal cost one more token, and no connect failed for good.
        assert provider.calls == 9
        assert pool.get_stats().get("connections_errors", 0) == 0
