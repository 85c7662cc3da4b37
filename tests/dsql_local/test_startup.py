"""`_startup`: the startup conversation's decisions, fed bytes by hand."""

from __future__ import annotations

import socket

import pytest

from dsql_local import _protocol as pq
from dsql_local import _startup as st
from dsql_local._login import Authenticated
from dsql_local._policy import Session
from dsql_local._strict_rules import RULES_BY_NAME


def _header(length: int, code: int) -> bytes:
    return pq.INT32.pack(length) + pq.INT32.pack(code)


@pytest.mark.parametrize(
    ("length", "code", "asked"),
    [
        (8, pq.SSL_REQUEST, "ssl"),
        (8, pq.GSSENC_REQUEST, "gssenc"),
        (16, pq.CANCEL_REQUEST, "cancel"),
    ],
)
def test_what_a_packet_before_tls_asks_for(length: int, code: int, asked: str) -> None:
    assert st.before_tls(*st.len_code(_header(length, code))) == asked


def test_a_plaintext_startup_is_refused_with_the_fix() -> None:
    with pytest.raises(st.Refused) as refused:
        st.before_tls(*st.len_code(_header(40, pq.PROTOCOL_3)))
    rule = RULES_BY_NAME["plaintext-startup"]
    assert (refused.value.sqlstate, refused.value.message) == (
        rule.sqlstate,
        rule.message,
    )
    assert refused.value.detail is not None
    assert "sslmode=verify-full" in refused.value.detail
    response = pq.parse_fields(refused.value.response()[5:])
    assert response["S"] == "FATAL"
    assert response["C"] == rule.sqlstate


@pytest.mark.parametrize(
    ("length", "version"),
    [(8, pq.PROTOCOL_3), (st.MAX_STARTUP + 1, pq.PROTOCOL_3), (40, 2 << 16)],
)
def test_a_bad_startup_header_is_refused(length: int, version: int) -> None:
    with pytest.raises(st.Refused) as refused:
        st.check_startup_header(length, version)
    assert refused.value.sqlstate == "08P01"


def test_a_good_startup_header_passes_and_a_cancel_is_told_apart() -> None:
    st.check_startup_header(40, pq.PROTOCOL_3)
    assert st.is_cancel(16, pq.CANCEL_REQUEST)
    assert not st.is_cancel(8, pq.CANCEL_REQUEST)


def test_a_startup_needs_a_user_and_sni() -> None:
    assert st.user_and_server({"user": "admin"}, "h") == ("admin", "h")
    with pytest.raises(st.Refused) as no_user:
        st.user_and_server({"database": "postgres"}, "h")
    assert no_user.value.sqlstate == "28000"
    with pytest.raises(st.Refused) as no_sni:
        st.user_and_server({"user": "admin"}, None)
    assert no_sni.value.sqlstate == "08004"


def test_a_password_message_is_checked_and_read() -> None:
    assert st.password_size(*st.kind_len(b"p" + pq.INT32.pack(10))) == 6
    for kind, size in ((b"Q", 10), (b"p", 4), (b"p", 65_537)):
        with pytest.raises(st.Refused, match="expected a password message"):
            st.password_size(kind, size)
    assert st.password(b"token\0") == "token"


def test_the_backend_gets_a_short_lock_timeout_and_no_replication() -> None:
    params = {"user": "admin", "replication": "database", "options": "-c a=b"}
    assert st.backend_parameters(params) == {
        "user": "admin",
        "options": f"-c lock_timeout={st.LOCK_TIMEOUT} -c a=b",
    }
    assert st.backend_parameters({"user": "admin"})["options"] == (
        f"-c lock_timeout={st.LOCK_TIMEOUT}"
    )


def _status(name: str, value: str) -> tuple[bytes, bytes]:
    return b"S", name.encode() + b"\0" + value.encode() + b"\0"


def test_a_greeting_gives_the_pid_the_major_and_every_byte_to_relay() -> None:
    greeting = st.Greeting()
    messages = [
        (b"R", pq.INT32.pack(0)),
        _status("server_version", "16.4 (Debian)"),
        _status("standard_conforming_strings", "on"),
        (b"K", pq.INT32.pack(4242) + pq.INT32.pack(7)),
        (b"Z", b"I"),
    ]
    done = [greeting.add(kind, body) for kind, body in messages]
    assert done == [False, False, False, False, True]
    assert (greeting.pid, greeting.major) == (4242, 16)
    assert bytes(greeting.data) == b"".join(pq.message(k, b) for k, b in messages)


def test_a_greeting_refuses_a_setting_the_relay_cannot_lex() -> None:
    with pytest.raises(st.Refused):
        st.Greeting().add(*_status("standard_conforming_strings", "off"))


@pytest.mark.parametrize(
    ("code", "sqlstate", "message"),
    [
        ("53300", "53300", st.TOO_MANY),
        (
            "28000",
            RULES_BY_NAME["unknown-role"].sqlstate,
            RULES_BY_NAME["unknown-role"].message,
        ),
    ],
)
def test_a_backend_error_dsql_words_differently_is_refused(
    code: str, sqlstate: str, message: str
) -> None:
    body = pq.build_fields(b"E", {"S": "FATAL", "C": code, "M": "from pg"})[5:]
    with pytest.raises(st.Refused) as refused:
        st.Greeting().add(b"E", body)
    assert (refused.value.sqlstate, refused.value.message) == (sqlstate, message)


def test_another_backend_error_is_passed_on_as_it_is() -> None:
    greeting = st.Greeting()
    body = pq.build_fields(b"E", {"S": "FATAL", "C": "3D000", "M": "no db"})[5:]
    with pytest.raises(st.BackendRefused):
        greeting.add(b"E", body)
    assert bytes(greeting.data) == pq.message(b"E", body)


def _taken(bucket: st.TokenBucket, times: list[float]) -> list[bool]:
    return [bucket.take(now) for now in times]


def test_the_admission_bucket_takes_a_burst_then_refuses() -> None:
    bucket = st.TokenBucket(rate=0.25, burst=2)
    assert _taken(bucket, [100.0, 100.0, 100.0, 101.0]) == [True, True, False, False]


def test_the_admission_bucket_earns_tokens_back_at_its_rate() -> None:
    bucket = st.TokenBucket(rate=0.25, burst=2)
    assert _taken(bucket, [0.0, 0.0]) == [True, True]
    # A token every 4 s, its quarters kept between refusals.
    assert _taken(bucket, [1.0, 2.0, 3.0, 3.9, 4.0, 4.0]) == [
        False,
        False,
        False,
        False,
        True,
        False,
    ]
    assert _taken(bucket, [12.0, 12.0, 12.0]) == [True, True, False]


def test_the_admission_bucket_keeps_no_more_than_its_burst() -> None:
    bucket = st.TokenBucket(rate=100.0, burst=3)
    assert _taken(bucket, [0.0] * 4) == [True, True, True, False]
    assert _taken(bucket, [3600.0] * 4) == [True, True, True, False]


def test_the_admission_bucket_earns_nothing_from_a_time_gone_back() -> None:
    bucket = st.TokenBucket(rate=1.0, burst=1)
    # Back to 5 then 9.5 earns nothing; from 10 on, half a token by 10.5.
    assert _taken(bucket, [10.0, 5.0, 9.5, 10.5, 11.0]) == [
        True,
        False,
        False,
        False,
        True,
    ]


def test_an_authenticated_login_s_repr_shows_no_cancel_secret() -> None:
    key = (4242).to_bytes(4, "big") + b"\x8a\x11\xfe\x07"
    greeting = b"K" + (12).to_bytes(4, "big") + key + b"Z\0\0\0\5I"
    one, other = socket.socketpair()
    with one, other:
        started = Authenticated(one, 4242, Session(user="admin"), greeting, key)
        shown = repr(started)
    assert "4242" in shown
    for secret in (key[4:], key[4:].hex(), repr(key[4:])[2:-1]):
        assert str(secret) not in shown
