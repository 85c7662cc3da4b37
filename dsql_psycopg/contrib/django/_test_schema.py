"""Decisions about the test schema, apart from any connection.

DSQL has one database, so Django's test database is a schema in it: the
alias's libpq ``options`` get ``-c search_path=<schema>``. This module parses
and rewrites those options, names the schema, and judges whether DSQL's
schema limit leaves room for it; `creation` does the talking to the cluster.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

#: DSQL allows this many schemas besides ``public`` and ``sys``
#: (``more than 10 schemas not allowed``, SQLSTATE 54000).
MAX_SCHEMAS = 10
#: PostgreSQL's identifier length.
MAX_NAME = 63
# Schemas that never count toward the limit: the system's own, and DSQL
# Local's (its statement helpers live there; DSQL has no such schema).
_UNCOUNTED = frozenset({"public", "sys", "information_schema", "dsql_local"})
_PARAMETER = "search_path"


def _tokens(options: str) -> list[str]:
    """Split libpq ``options`` as the server does: on spaces, ``\\`` escapes."""
    tokens: list[str] = []
    current: list[str] = []
    escaped = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        tokens.append("".join(current))
    return tokens


def _escape(token: str) -> str:
    return "".join("\\" + c if c == "\\" or c.isspace() else c for c in token)


def _setting(token: str) -> tuple[str, str] | None:
    name, equals, value = token.partition("=")
    if not equals:
        return None
    return name.replace("-", "_").lower(), value


def _split(options: str) -> tuple[list[str], str | None]:
    """Return the other options' tokens and the last ``search_path`` value."""
    kept: list[str] = []
    search_path = None
    tokens = _tokens(options)
    i = 0
    while i < len(tokens):
        word = tokens[i]
        if word == "-c" and i + 1 < len(tokens):
            setting, step = _setting(tokens[i + 1]), 2
        elif word.startswith(("-c", "--")):
            setting, step = _setting(word[2:]), 1
        else:
            setting, step = None, 1
        if setting is not None and setting[0] == _PARAMETER:
            search_path = setting[1]
        else:
            kept.extend(tokens[i : i + step])
        i += step
    return kept, search_path


def search_path(options: str | None) -> list[str]:
    """Return the schemas a libpq ``options`` string sets ``search_path`` to."""
    _, value = _split(options or "")
    if value is None:
        return []
    schemas = (part.strip() for part in value.split(","))
    return [
        s[1:-1] if s.startswith('"') and s.endswith('"') else s for s in schemas if s
    ]


def with_search_path(options: str | None, schema: str) -> str:
    """Return `options` with ``search_path`` set to `schema` alone."""
    kept, _ = _split(options or "")
    quoted = '"' + schema.replace('"', '""') + '"'
    return " ".join([*(_escape(t) for t in kept), "-c", f"{_PARAMETER}={quoted}"])


def _own_schemas(options: str | None) -> list[str]:
    return [s for s in search_path(options) if s != "$user"]


def test_schema(settings_dict: dict[str, object], alias: str) -> str:
    """Return the schema `alias`'s tests run in, refusing a schema with data.

    ``TEST["NAME"]`` if set, else ``test_`` and the first schema of the
    alias's own ``search_path`` (``test_postgres`` when it sets none).
    """
    database = str(settings_dict.get("NAME") or "postgres")
    test = settings_dict.get("TEST") or {}
    options = (settings_dict.get("OPTIONS") or {}).get("options")  # type: ignore[attr-defined]
    own = _own_schemas(options)
    name = test.get("NAME") if isinstance(test, dict) else None
    where = f"DATABASES[{alias!r}]['TEST']['NAME']"
    if name:
        name = str(name)
        if name == database:
            raise ImproperlyConfigured(
                f"{where} is {name!r}, the database itself: the tests would empty"
                " your tables there. The tests run in a schema of their own,"
                " which the test runner creates and drops: remove"
                f" TEST['NAME'] (the schema is then 'test_{database}') or set it"
                " to a schema name for the tests"
            )
        if name in own or name in _UNCOUNTED or name.startswith("pg_"):
            raise ImproperlyConfigured(
                f"{where} is {name!r}, a schema the test runner would empty and"
                " drop, but it is your application's or the system's: name a"
                " schema of its own for the tests, or remove TEST['NAME']"
            )
    else:
        base = own[0] if own and own[0] != "public" else database
        name = f"test_{base}"
    if len(name) > MAX_NAME - 4:
        raise ImproperlyConfigured(
            f"The test schema name {name!r} is longer than {MAX_NAME - 4}"
            " characters (room is kept for the parallel workers' suffixes):"
            f" set a shorter {where}"
        )
    return name


def clone_name(schema: str, suffix: str) -> str:
    """Return the schema of the parallel worker `suffix`."""
    return f"{schema}_{suffix}"


@dataclass(frozen=True)
class Room:
    """Whether DSQL's schema limit leaves room for one more test schema."""

    fits: bool
    #: Schemas counting toward the limit, the test run's own excluded.
    others: tuple[str, ...]
    #: How many parallel workers the limit leaves room for (0: not even the
    #: test schema itself).
    max_workers: int


def room(existing: Collection[str], created: Sequence[str]) -> Room:
    """Judge whether one more schema fits next to `existing`.

    `existing` is every schema in the cluster; `created` are those this run
    made already (the test schema, earlier parallel workers' schemas).
    """
    counted = [s for s in existing if s not in _UNCOUNTED and not s.startswith("pg_")]
    ours = set(created)
    others = tuple(sorted(s for s in counted if s not in ours))
    return Room(
        fits=len(counted) < MAX_SCHEMAS,
        others=others,
        max_workers=max(MAX_SCHEMAS - len(others) - 1, 0),
    )


def no_room_message(alias: str, schema: str, room: Room, worker: int | None) -> str:
    """Explain why `schema` (for parallel `worker`, if any) cannot be made."""
    listed = ", ".join(repr(s) for s in room.others) or "none"
    head = (
        f"Cannot create the test schema {schema!r} for alias {alias!r}: DSQL allows"
        f" {MAX_SCHEMAS} schemas besides public and sys, and the cluster has"
        f" {len(room.others)} of its own ({listed})"
    )
    if worker is None:
        return head + ". Drop a schema you no longer use."
    needs = (
        f"; parallel workers need a schema each besides the test schema"
        f" ({worker + 1} or more for --parallel {worker} or more)"
    )
    if room.max_workers == 0:
        fix = "there is room for the test schema alone: run without --parallel"
    else:
        fix = f"run with --parallel {room.max_workers} or fewer"
    return f"{head}{needs}: {fix}, or drop a schema you no longer use."
