"""Replay a real DSQL cluster's recorded answers against DSQL Local.

The corpus (``data/dsql-recorded-2026-09.json``, see ``data/README.md``) lists
cases in order; each has steps (SQL and the recorded answer). `replay` runs
them through plain psycopg as the recorder ran them and returns, per case,
the differences that count (outcome, SQLSTATE, command tag, columns, rows)
and those that are advisory (messages).

Protocols: an ``extended`` step is one statement sent with Parse/Bind/Execute
(psycopg does so for binary results, which is also how the recorder's pgx
driver asked for them); a ``simple`` step is one Query message, which psycopg
sends for a query without parameters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

DATA = Path(__file__).parent / "data" / "dsql-recorded-2026-09.json"
KNOWN_GAPS = Path(__file__).parent / "known_gaps.json"

STEP_PAUSE = 0.15  # between the steps of one session of a multi-session case
STEP_TIMEOUT = 15.0

Connect = Callable[[], psycopg.Connection[Any]]


def load_corpus() -> dict[str, Any]:
    """The recorded corpus, as stored."""
    corpus: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return corpus


def load_known_gaps() -> dict[str, str]:
    """Case id -> why DSQL Local answers differently, on purpose."""
    stored = json.loads(KNOWN_GAPS.read_text(encoding="utf-8"))
    gaps: dict[str, str] = stored["gaps"]
    return gaps


@dataclass
class Answer:
    """What one step got: an error, or a result per statement."""

    sqlstate: str | None = None
    message: str | None = None
    results: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)


@dataclass
class CaseResult:
    """The differences found in one case."""

    case_id: str
    differences: list[str] = field(default_factory=list)
    advisories: list[str] = field(default_factory=list)
    enforced: bool = True
    corpus_gap: str | None = None

    @property
    def matches(self) -> bool:
        return not self.differences


# -- rendering as the recorder printed values ------------------------------------


def render(value: Any) -> str:
    """Print a value decoded by psycopg as pgx decoded and Go printed it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, uuid.UUID):
        return render(list(value.bytes))
    if isinstance(value, list):
        return "[" + " ".join(render(v) for v in value) + "]"
    if isinstance(value, tuple):
        # A record: psycopg leaves fields of unknown type as bytes, which pgx
        # decodes as text.
        fields = (v.decode() if isinstance(v, bytes) else v for v in value)
        return "[" + " ".join(render(v) for v in fields) + "]"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return render(list(bytes(value)))
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat().replace("+00:00", "") + "Z"
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return f"{value}/{value.max_prefixlen}"
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def render_text(value: Any) -> str:
    """Print a value of a simple-protocol result: the server's text format."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


# -- running steps -----------------------------------------------------------------


def run_step(conn: psycopg.Connection[Any], sql: str, protocol: str) -> Answer:
    """Run one step and collect its answer."""
    simple = protocol == "simple"
    cur = conn.cursor()
    try:
        # Binary results make psycopg use the extended protocol for a query
        # without parameters; text results, the simple one.
        cur.execute(sql.encode(), binary=not simple)  # type: ignore[call-overload]
    except psycopg.Error as exc:
        return Answer(sqlstate=exc.sqlstate, message=exc.diag.message_primary)
    answer = Answer()
    show = render_text if simple else render
    while True:
        columns = [c.name for c in cur.description or ()]
        rows = [[show(v) for v in row] for row in cur.fetchall()] if columns else []
        answer.results.append((cur.statusmessage or "", columns, rows))
        if not cur.nextset():
            break
    return answer


def quietly(conn: psycopg.Connection[Any], sql: str) -> None:
    """Run `sql`, ignoring any error (an unobserved cleanup)."""
    with contextlib.suppress(psycopg.Error):
        conn.execute(sql.encode())


def _without_order(sql: str) -> bool:
    return "order by" not in " ".join(sql.lower().split())


def compare_step(
    step: dict[str, Any], got: Answer, compare: dict[str, Any], *, final_race: bool
) -> tuple[list[str], list[str]]:
    """Differences (counted, advisory) between a recorded step and `got`."""
    expect = step["expect"]
    where = f"step {step['index']} (session {step['session']}) {step['sql'][:80]!r}"
    diffs: list[str] = []
    notes: list[str] = []
    if expect["outcome"] == "error":
        if got.sqlstate is None:
            if final_race:  # which session loses is not compared, only how many
                return diffs, notes
            tags = ", ".join(t for t, _, _ in got.results)
            diffs.append(
                f"{where}: DSQL refused it ({expect['sqlstate']} "
                f"{expect['message']!r}), DSQL Local answered {tags or 'ok'}"
            )
        elif got.sqlstate != expect["sqlstate"] and not final_race:
            diffs.append(
                f"{where}: SQLSTATE {got.sqlstate} ({got.message!r}),"
                f" DSQL {expect['sqlstate']} ({expect['message']!r})"
            )
        elif got.message != expect["message"]:
            notes.append(
                f"{where}: message {got.message!r}, DSQL {expect['message']!r}"
            )
        return diffs, notes
    if got.sqlstate is not None:
        if not final_race:
            diffs.append(
                f"{where}: DSQL ran it, DSQL Local refused it:"
                f" {got.sqlstate} {got.message!r}"
            )
        return diffs, notes
    recorded = expect.get("results") or [
        {
            "command_tag": expect.get("command_tag", ""),
            "columns": expect.get("columns", []),
            "rows": expect.get("rows", []),
        }
    ]
    if len(recorded) != len(got.results):
        diffs.append(f"{where}: {len(got.results)} results, DSQL {len(recorded)}")
        return diffs, notes
    for want, (tag, columns, rows) in zip(recorded, got.results, strict=True):
        want_tag = want.get("command_tag", "")
        ignore_tag = not compare["rows"] and want_tag.startswith("SELECT ")
        if tag != want_tag and not (ignore_tag and tag.startswith("SELECT ")):
            diffs.append(f"{where}: command tag {tag!r}, DSQL {want_tag!r}")
        if columns != want.get("columns", []):
            diffs.append(f"{where}: columns {columns}, DSQL {want.get('columns', [])}")
        if compare["rows"]:
            want_rows = want.get("rows", [])
            same = rows == want_rows or (
                _without_order(step["sql"]) and sorted(rows) == sorted(want_rows)
            )
            if not same:
                diffs.append(f"{where}: rows {rows}, DSQL {want_rows}")
    return diffs, notes


def replay_single(conn: psycopg.Connection[Any], case: dict[str, Any]) -> CaseResult:
    result = CaseResult(case["id"])
    for step in case["steps"]:
        got = run_step(conn, step["sql"], case["protocol"])
        diffs, notes = compare_step(step, got, case["compare"], final_race=False)
        result.differences += diffs
        result.advisories += notes
    for sql in case["cleanup"]:
        quietly(conn, sql)
    return result


def replay_sessions(connect: Connect, case: dict[str, Any]) -> CaseResult:
    """Run each session in a thread of its own, all starting together."""
    result = CaseResult(case["id"])
    count = case["sessions"]
    by_session = [[s for s in case["steps"] if s["session"] == n] for n in range(count)]
    conns = [connect() for _ in range(count)]
    answers: list[list[Answer]] = [[] for _ in range(count)]
    running: list[float | None] = [None] * count
    start = threading.Barrier(count)

    def session(n: int) -> None:
        start.wait()
        for i, step in enumerate(by_session[n]):
            if i:
                time.sleep(STEP_PAUSE)
            running[n] = time.monotonic()
            answers[n].append(run_step(conns[n], step["sql"], case["protocol"]))
            running[n] = None

    threads = [threading.Thread(target=session, args=(n,)) for n in range(count)]
    try:
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            time.sleep(0.05)
            for n, began in enumerate(running):
                if began is not None and time.monotonic() - began > STEP_TIMEOUT:
                    conns[n].cancel_safe()  # the step fails; the case differs
                    running[n] = None
        for thread in threads:
            thread.join()
    finally:
        for conn in conns:
            conn.close()
    race = bool(case["compare"]["conflict_race"])
    failed_states: list[str] = []
    wanted_states: list[str] = []
    for n in range(count):
        if len(answers[n]) < len(by_session[n]):
            result.differences.append(f"session {n} did not run all its steps")
        for i, (step, got) in enumerate(zip(by_session[n], answers[n], strict=False)):
            final = race and i == len(by_session[n]) - 1
            diffs, notes = compare_step(step, got, case["compare"], final_race=final)
            result.differences += diffs
            result.advisories += notes
            if final:
                if got.sqlstate is not None:
                    failed_states.append(got.sqlstate)
                if step["expect"]["outcome"] == "error":
                    wanted_states.append(step["expect"]["sqlstate"])
    if race and sorted(failed_states) != sorted(wanted_states):
        result.differences.append(
            f"last steps: {len(failed_states)} session(s) failed"
            f" {sorted(failed_states)}, DSQL {len(wanted_states)}"
            f" {sorted(wanted_states)}"
        )
    return result


def _setup(conn: psycopg.Connection[Any], statements: Sequence[str]) -> None:
    for sql in statements:
        for attempt in range(5):
            try:
                conn.execute(sql.encode())
                break
            except psycopg.errors.SerializationFailure:
                if attempt == 4:
                    raise


def replay(connect: Connect) -> Iterator[CaseResult]:
    """Replay the whole corpus in order through connections from `connect`.

    `connect` opens an autocommit connection to a fresh strict DSQL Local.
    """
    corpus = load_corpus()
    harness = corpus["harness"]
    with connect() as main:
        _setup(main, harness["setup"])
        for sql in harness["verify"]:
            main.execute(sql.encode())
        for case in sorted(corpus["cases"], key=lambda c: c["seq"]):
            for sql in case["setup"]:
                main.execute(sql.encode())
            if case["sessions"] == 1:
                result = replay_single(main, case)
            else:
                result = replay_sessions(connect, case)
            result.enforced = bool(case["compare"]["enforced"])
            result.corpus_gap = case.get("known_gap")
            yield result
        for sql in harness["verify"]:
            main.execute(sql.encode())
        for sql in harness["cleanup"]:
            quietly(main, sql)


def summary(results: Sequence[CaseResult], gaps: dict[str, str]) -> str:
    """The report: how many cases match, then every difference."""
    matching = sum(r.matches for r in results)
    lines = [f"{matching} of {len(results)} cases match a real cluster"]
    for r in results:
        if r.matches:
            continue
        reason = gaps.get(r.case_id) or r.corpus_gap
        label = f"known gap: {reason}" if reason else "NOT A KNOWN GAP"
        lines.append(f"- {r.case_id} ({label})")
        lines += [f"    {d}" for d in r.differences]
    advisories = [(r.case_id, a) for r in results for a in r.advisories]
    if advisories:
        lines.append(f"Advisory (messages, never failures): {len(advisories)}")
        lines += [f"- {case_id}: {note}" for case_id, note in advisories]
    return "\n".join(lines)
