"""The relay's message framing does not depend on how the bytes arrive."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st

from dsql_local import _protocol as pq
from dsql_local._faults import Faults
from dsql_local._framing import Framer
from dsql_local._messages import OC000_MESSAGE
from dsql_local._policy import Session
from dsql_local._relay import Relay


class _Endpoint:
    """What a Relay reads from its endpoint, with nothing switched on."""

    policy = None
    schema_clock = None
    faults = Faults()
    latency = 0.0
    max_connection_age = 3600.0

    def take_conflict(self) -> None:
        return None

    def take_commit_drop(self) -> bool:
        return False


@contextmanager
def _relay() -> Iterator[Relay]:
    """A Relay: the protocol without I/O; the tests feed it bytes directly."""
    yield Relay(_Endpoint(), Session(user="admin"))


def _pieces(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        yield data[start:end]


def _from_backend(data: bytes, cuts: list[int]) -> bytes:
    with _relay() as relay:
        for piece in _pieces(data, cuts):
            relay.from_backend(piece)
        return bytes(relay.to_client)


_backend_messages = st.one_of(
    st.builds(lambda n: pq.message(b"D", b"\0\1" + n), st.binary(max_size=300)),
    st.just(pq.message(b"C", b"SELECT 1\0")),
    st.sampled_from([pq.ready_for_query(s) for s in (b"I", b"T", b"E")]),
    st.sampled_from(
        [
            pq.error_response("40001", "could not serialize access"),
            pq.error_response("55P03", "canceling statement due to lock timeout"),
            pq.error_response("42P01", 'relation "x" does not exist'),
        ]
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(_backend_messages, min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
)
def test_backend_stream_is_split_anywhere(
    messages: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(messages)
    whole = _from_backend(data, [])
    assert _from_backend(data, cuts) == whole
    # Conflicts are rewritten, everything else passes unchanged.
    conflict = {"S": "ERROR", "V": "ERROR", "C": "40001", "M": OC000_MESSAGE}
    expected = b"".join(
        pq.build_fields(b"E", conflict)
        if m.startswith(b"E") and b"C42P01" not in m
        else m
        for m in messages
    )
    assert whole == expected


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=70_000), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=400_000), max_size=30),
)
def test_client_stream_is_split_anywhere(sizes: list[int], cuts: list[int]) -> None:
    data = b"".join(pq.message(b"d", bytes(i % 251 for i in range(n))) for n in sizes)
    data += pq.message(b"c") + pq.message(b"S")
    with _relay() as relay:
        for piece in _pieces(data, cuts):
            relay.from_client(piece)
        assert bytes(relay.to_backend) == data


@settings(max_examples=100, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(b"BEHPSQd"), min_size=1, max_size=12),
    watched=st.sets(st.sampled_from(b"BEHPSQd")),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=10),
)
def test_the_framer_knows_the_last_whole_message(
    kinds: list[int], watched: set[int], cuts: list[int]
) -> None:
    """Whether a unit may still be open in the backend (see `_solo`)."""
    data = b"".join(pq.message(bytes([k]), b"x" * (k % 7)) for k in kinds)
    out = bytearray()
    framer = Framer(out, lambda kind, view, start, end: None, lambda: watched)
    seen = 0
    for piece in _pieces(data, cuts):
        framer.feed(piece)
        whole = len(out)  # what was passed on: whole messages only
        sizes = [len(pq.message(bytes([k]), b"x" * (k % 7))) for k in kinds]
        ends = itertools.accumulate(sizes)
        passed = [k for k, end in zip(kinds, ends, strict=True) if end <= whole]
        seen = passed[-1] if passed else seen
        assert framer.last == seen
    assert bytes(out) == data
