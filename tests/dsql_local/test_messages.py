"""`_messages`: the messages the relay builds and reads, without PostgreSQL."""

from __future__ import annotations

import pytest

from dsql_local import _messages as m
from dsql_local import _protocol as pq
from dsql_local._policy import Refusal

_PARAMS = b"\0\1\0\0" + b"\0\2" + b"\0\0\0\2" + b"42" + b"\xff\xff\xff\xff"
"""One format code (text), two values: '42' and NULL."""


def test_a_bind_splits_after_its_names_into_parameters_and_formats() -> None:
    formats = b"\0\1\0\1"  # one result column, binary
    body = b"portal\0stmt\0" + _PARAMS + formats
    assert m.split_bind(body) == (_PARAMS, formats)
    built = m.bind(b"portal", b"stmt", _PARAMS, formats)
    assert built == pq.message(b"B", body)


def _messages(*kinds: bytes) -> memoryview:
    return memoryview(b"".join(pq.message(kind, b"\0") for kind in kinds))


@pytest.mark.parametrize(
    ("kinds", "alone"),
    [
        ((b"B", b"D", b"E", b"S"), True),
        ((b"B", b"E", b"S"), True),
        ((b"B", b"E", b"B", b"E", b"S"), False),  # two statements
        ((b"B", b"E"), False),  # its Sync not in yet
        ((b"B", b"P", b"E", b"S"), False),
        ((b"S",), False),
    ],
)
def test_a_statement_runs_alone_in_its_sync(kinds: tuple[bytes], alone: bool) -> None:
    assert m.synced_alone(_messages(*kinds), 0) is alone


def test_the_next_bind_is_found_after_a_parse() -> None:
    parse = m.parse("", "select $1", m.parameter_types([25]))
    data = parse + pq.message(b"B", b"\0\0" + _PARAMS + b"\0\0") + m.SYNC
    assert m.next_bind(memoryview(data), len(parse)) == b"\0\0" + _PARAMS + b"\0\0"


def test_a_refusal_names_the_parameters_the_statement_left_undeclared() -> None:
    refusal = Refusal("0A000", "it's not supported")
    assert m.refusal_sql(refusal) == (
        "CALL dsql_local.refuse('0A000', 'it''s not supported')"
    )
    assert m.refusal_sql(refusal, [1, 3]).endswith(
        ", VARIADIC ARRAY[$1::text, $3::text]::text[])"
    )


def test_lock_timeouts_and_serialization_errors_become_oc000() -> None:
    body = b"SERROR\0C55P03\0Mcanceling statement\0Dwaited\0Hretry\0Fpg.c\0\0"
    rewritten = m.rewrite_error(body)
    assert rewritten is not None
    fields = pq.parse_fields(rewritten[5:])
    assert fields == {"S": "ERROR", "C": "40001", "M": m.OC000_MESSAGE}


def test_a_refusal_loses_its_plpgsql_context_and_other_errors_pass() -> None:
    context = f"PL/pgSQL function {m.REFUSE_FUNCTION}(text,text) line 3"
    body = f"SERROR\0C0A000\0Mno\0W{context}\0\0".encode()
    rewritten = m.rewrite_error(body)
    assert rewritten is not None
    assert pq.parse_fields(rewritten[5:]) == {"S": "ERROR", "C": "0A000", "M": "no"}
    assert m.rewrite_error(b"SERROR\0C23505\0Mduplicate key\0\0") is None
