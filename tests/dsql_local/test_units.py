"""`_units`: which answer of the backend is which, without PostgreSQL."""

from __future__ import annotations

from dsql_local import _protocol as pq
from dsql_local._units import QUIET, Unit, Units


def test_a_hidden_unit_is_counted_queued_and_recorded() -> None:
    out = bytearray()
    units = Units(out)
    units.open()  # the client's Query
    units.send(pq.query("ROLLBACK"), Unit.SWALLOW | Unit.HIDE_READY)
    assert (units.sent, bytes(out)) == (2, pq.query("ROLLBACK"))
    assert units.actions == {2: Unit.SWALLOW | Unit.HIDE_READY}
    units.add(2, Unit.AS_IDLE)
    assert units.action(2) == Unit.SWALLOW | Unit.HIDE_READY | Unit.AS_IDLE
    assert units.action(1) == 0


def test_ending_a_unit_forgets_it_and_says_whether_it_failed() -> None:
    units = Units(bytearray())
    units.open()
    units.add(1, Unit.HIDE_READY)
    units.note_tags(1, ("CREATE INDEX",))
    units.failed = True
    assert units.end(1, units.action(1)) is True
    assert (units.done, units.actions, units.tags, units.failed) == (1, {}, {}, False)
    units.open()
    assert units.end(2, 0) is False


def test_the_status_is_known_past_quiet_units_only() -> None:
    units = Units(bytearray())
    units.status = b"T"
    units.send(b"", QUIET)
    assert units.status_known(1)  # unanswered, but it leaves the status as is
    units.send(b"", Unit.SWALLOW)
    assert not units.status_known(2)
    units.end(1, QUIET)
    units.end(2, Unit.SWALLOW)
    assert units.status_known(2)
    assert not units.idle_after(2)  # in a transaction
    units.status = b"I"
    assert units.idle_after(2)
    assert not units.idle_after(3)


def test_command_tags_are_given_in_the_order_of_the_statements() -> None:
    units = Units(bytearray())
    units.open()
    units.note_tags(1, ())  # nothing rewritten: nothing noted
    assert units.tags == {}
    units.note_tags(1, ("CREATE INDEX", None))
    units.note_tags(1, ())  # a later statement of the unit keeps its own tag
    done = pq.message(b"C", b"SELECT 1\0")
    tags = [units.command_tag(memoryview(done), 0) for _ in range(3)]
    assert tags == [
        ("CREATE INDEX", pq.message(b"C", b"CREATE INDEX\0")),
        ("SELECT 1", None),
        ("SELECT 1", None),
    ]


def test_parse_completes_of_added_parses_are_hidden() -> None:
    units = Units(bytearray())
    units.parses_sent = 1  # the client's own Parse
    units.hide_parse(1)  # then one of the relay's
    assert units.parses_sent == 2
    assert [units.parse_complete(1, 0) for _ in range(3)] == [False, True, False]
    units.end(1, 0)
    assert units.parse_complete(2, Unit.SWALLOW)  # a swallowed unit's too
