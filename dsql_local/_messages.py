"""The protocol messages the relay's parts build, and the few they read.

What the relay sends of its own (refusals, hidden transaction control, the
Parse and Bind of a statement it runs instead) and what it reads of the
client's extended protocol (a Bind's parameters, whether a Parse runs alone
in its Sync). `_protocol` holds the framing these build on.
"""

from __future__ import annotations

import re
import struct

from . import _protocol as pq
from ._policy import Refusal
from ._schema import OC001_MESSAGE

OC000_MESSAGE = "change conflicts with another transaction (OC000)"
CONFLICT_MESSAGES = {"OC000": OC000_MESSAGE, "OC001": OC001_MESSAGE}
# PostgreSQL errors that mean "another writer got there first".
CONFLICT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
REFUSE_FUNCTION = "dsql_local.refuse"
STALE_SCHEMA = Refusal("40001", OC001_MESSAGE)
CONFLICT = Refusal("40001", OC000_MESSAGE)
# A FunctionCall runs a function by its oid: the policy cannot see which.
FUNCTION_CALL = Refusal(
    "0A000",
    "the FunctionCall protocol message is not supported: call the function in a query",
)

COMMIT_RE = re.compile(
    r"\s*(?:commit|end)(?:\s+(?:work|transaction))?\s*;?\s*\Z", re.IGNORECASE
)
# Blanks and comments before a statement (not nested ones).
LEADING_COMMENTS = r"(?:\s|/\*.*?\*/|--[^\n]*(?:\n|\Z))*"
BEGIN_RE = re.compile(
    rf"{LEADING_COMMENTS}(?:begin|start\s+transaction)\b[^;]*;?\s*\Z",
    re.IGNORECASE | re.DOTALL,
)

INT32 = struct.Struct("!I")
INT16 = struct.Struct("!H")
UNPACK_LEN = INT32.unpack_from

# Message types, as the ints a bytes object's items are.
Q, B, S, F, PARSE = b"QBSFP"
COPY_IN, COPY_DONE, COPY_FAIL = b"Gcf"
DESCRIBE, EXECUTE, FLUSH = b"DEH"
E, Z, C, PARSE_COMPLETE, PARAMETER_STATUS = b"EZC1S"
ROW_DESCRIPTION, DATA_ROW = b"TD"
EVERY_KIND = frozenset(range(256))

ROLLBACK = pq.query("ROLLBACK")
COMMIT = pq.query("COMMIT")
SYNC = pq.message(b"S")  # a Sync has no body: every one is these bytes


def refusal_sql(refusal: Refusal, undeclared: list[int] | None = None) -> str:
    """SQL that makes the backend raise `refusal` (referencing parameters)."""
    extra = ""
    if undeclared:
        refs = ", ".join(f"${n}::text" for n in undeclared)
        extra = f", VARIADIC ARRAY[{refs}]::text[]"
    return (
        f"CALL {REFUSE_FUNCTION}({pq.quote_literal(refusal.sqlstate)}, "
        f"{pq.quote_literal(refusal.message)}{extra})"
    )


def refusal_query(refusal: Refusal) -> bytes:
    """A Query making the backend raise `refusal`."""
    return pq.query(refusal_sql(refusal))


def parse(name: str, sql: str, types: bytes) -> bytes:
    """A Parse of `sql` as statement `name`; `types` as a Parse ends."""
    return pq.message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + types)


def parameter_types(oids: list[int]) -> bytes:
    """The end of a Parse declaring parameters of these types."""
    return INT16.pack(len(oids)) + b"".join(INT32.pack(o) for o in oids)


def bind(portal: bytes, statement: bytes, params: bytes, formats: bytes) -> bytes:
    """A Bind; `params` and `formats` as `split_bind` gives them."""
    return pq.message(b"B", portal + b"\0" + statement + b"\0" + params + formats)


def execute() -> bytes:
    """An Execute of the unnamed portal, every row."""
    return pq.message(b"E", b"\0" + INT32.pack(0))


def rewrite_error(body: bytes | memoryview) -> bytes | None:
    """An ErrorResponse as DSQL gives it, or None to pass it as it is.

    A refusal loses its PL/pgSQL context; PostgreSQL's serialization and
    lock-timeout errors become DSQL's 40001 ``(OC000)``.
    """
    fields = pq.parse_fields(body)
    if REFUSE_FUNCTION in fields.get("W", ""):
        return pq.build_fields(b"E", fields)
    if fields.get("C") in CONFLICT_SQLSTATES:
        fields["C"] = "40001"
        fields["M"] = OC000_MESSAGE
        fields.pop("D", None)
        fields.pop("H", None)
        return pq.build_fields(b"E", fields)
    return None


def next_bind(view: memoryview, end: int) -> bytes:
    """The body of the Bind that follows `end` (`synced_alone` holds)."""
    pos = end
    while view[pos] != B:
        pos += 1 + UNPACK_LEN(view, pos + 1)[0]
    return bytes(view[pos + 5 : pos + 1 + UNPACK_LEN(view, pos + 1)[0]])


def split_bind(body: bytes) -> tuple[bytes, bytes]:
    """Split a Bind body after its names: (parameters, result formats)."""
    _, at = pq.cstring(body, 0)
    _, at = pq.cstring(body, at)
    start = at
    (count,) = INT16.unpack_from(body, at)
    at += 2 + 2 * count
    (count,) = INT16.unpack_from(body, at)
    at += 2
    for _ in range(count):
        (size,) = INT32.unpack_from(body, at)
        at += 4 + (0 if size == 0xFFFFFFFF else size)
    return body[start:at], body[at:]


def synced_alone(view: memoryview, end: int) -> bool:
    """Whether the client data after `end` runs one statement, then Sync.

    That is: Bind and Describe messages, one Execute, and a Sync, all already
    received, as libpq sends a statement outside pipeline mode.
    """
    executes = 0
    pos, n = end, len(view)
    while n - pos >= 5:
        kind = view[pos]
        pos += 1 + UNPACK_LEN(view, pos + 1)[0]
        if pos > n:
            return False
        if kind == S:
            return executes == 1
        if kind == EXECUTE:
            executes += 1
        elif kind not in (B, DESCRIBE, FLUSH):
            return False
    return False
