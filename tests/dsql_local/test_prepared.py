"""`_prepared`: Parse and Bind of the extended protocol, without PostgreSQL."""

from __future__ import annotations

from dsql_local import _messages as m
from dsql_local import _protocol as pq
from dsql_local._policy import Refusal

from .relay_wire import (
    FAILED,
    IDLE,
    Host,
    Policy,
    kinds,
    make_relay,
    messages,
    pg_error,
)

_NO = Refusal("0A000", "not now")


def _parse(sql: str, name: str = "", oids: tuple[int, ...] = ()) -> bytes:
    return m.parse(name, sql, m.parameter_types(list(oids)))


def _bind(name: str) -> bytes:
    return m.bind(b"", name.encode(), b"\0\0\0\0", b"\0\0")


def test_a_prepared_statement_is_checked_again_each_run_but_its_first() -> None:
    policy = Policy()
    relay = make_relay(Host(policy))
    relay.from_client(_parse("select 1", "s1") + m.SYNC)
    relay.from_client(_bind("s1") + m.execute() + m.SYNC)
    assert policy.checked == ["select 1"]  # at its Parse only
    messages(relay.to_backend)
    relay.from_backend(pq.message(b"1") + IDLE + pq.message(b"2") + IDLE)
    messages(relay.to_client)
    policy.refused["select 1"] = _NO
    bind = _bind("s1")
    relay.from_client(bind + m.execute() + m.SYNC)
    assert policy.checked == ["select 1", "select 1"]
    # The portal is bound to a statement raising the refusal instead.
    sent = messages(relay.to_backend)
    assert [kind for kind, _ in sent] == list("PBES")
    assert "CALL dsql_local.refuse('0A000', 'not now')" in sent[0][1].decode()
    relay.from_backend(
        pq.message(b"1") + pq.message(b"2") + pg_error("0A000", "not now") + FAILED
    )
    # The added Parse's ParseComplete is hidden.
    assert kinds(relay.to_client) == "2EZ"


def test_a_refused_parse_keeps_its_parameters_for_its_bind() -> None:
    relay = make_relay(Host(Policy(refused={"select $1, $3": _NO})))
    types = m.parameter_types([23, 0])
    relay.from_client(m.parse("", "select $1, $3", types))
    ((kind, body),) = messages(relay.to_backend)
    # $2 and $3 have no declared type: the refusal names them, as text.
    assert (kind, body) == (
        "P",
        b"\0CALL dsql_local.refuse('0A000', 'not now',"
        b" VARIADIC ARRAY[$2::text, $3::text]::text[])\0" + types,
    )


def test_a_rewritten_parse_keeps_the_client_s_parameter_types() -> None:
    relay = make_relay(Host(Policy(rewritten={"select $1": "select $1 + 0"})))
    relay.from_client(_parse("select $1", "s2", (23,)))
    assert messages(relay.to_backend) == [
        ("P", b"s2\0select $1 + 0\0" + m.parameter_types([23]))
    ]


def test_a_bind_of_a_statement_it_does_not_know_passes_unread() -> None:
    relay = make_relay(Host(Policy()))
    relay.from_client(_parse("select 1", "s3") + m.SYNC)
    messages(relay.to_backend)
    data = _bind("unknown") + m.execute() + m.SYNC
    relay.from_client(data)
    assert bytes(relay.to_backend) == data
    relay.from_backend(pq.message(b"2") + IDLE)
    assert kinds(relay.to_client) == "2Z"
