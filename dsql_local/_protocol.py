"""PostgreSQL wire protocol v3: the few messages DSQL Local builds or reads."""

from __future__ import annotations

import struct

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 3 << 16

INT32 = struct.Struct("!I")

# DSQL refuses longer messages (a message's length counts itself, not its type
# byte); PostgreSQL's own limit is 1 GiB for most.
MAX_MESSAGE_LENGTH = 10 * 1024 * 1024

# Error fields a client cares about; the relay drops the server-internal ones
# (file, line, routine, PL/pgSQL context) from errors it rewrites.
_KEPT_FIELDS = frozenset(b"SVCMDH")


class ProtocolViolation(Exception):
    """The client broke the protocol: answer with this FATAL error and close."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


# Settings that change how the backend reads SQL text: the policy reads it as
# these values say, so a session where the backend reports another value is
# ended (DSQL refuses to change them).
LEXING_SETTINGS = {"standard_conforming_strings": "on"}


def check_parameter_status(body: bytes | memoryview) -> None:
    """Raise ProtocolViolation if a ParameterStatus body changes SQL lexing."""
    name, value, *_ = bytes(body).split(b"\0")
    expected = LEXING_SETTINGS.get(name.decode("utf-8", "replace"))
    if expected is not None and value.decode("utf-8", "replace") != expected:
        raise ProtocolViolation(
            "0A000",
            f'setting configuration parameter "{name.decode()}" not supported',
        )


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + INT32.pack(len(body) + 4) + body


def error_response(
    sqlstate: str, text: str, severity: str = "ERROR", detail: str | None = None
) -> bytes:
    body = b"S%s\0V%s\0C%s\0M%s\0" % (
        severity.encode(),
        severity.encode(),
        sqlstate.encode(),
        text.encode(),
    )
    if detail:
        body += b"D" + detail.encode() + b"\0"
    return message(b"E", body + b"\0")


def parse_fields(body: bytes | memoryview) -> dict[str, str]:
    """Decode an ErrorResponse/NoticeResponse body into {code: value}."""
    fields: dict[str, str] = {}
    for part in bytes(body).split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def build_fields(kind: bytes, fields: dict[str, str]) -> bytes:
    body = b"".join(
        k.encode() + v.encode() + b"\0"
        for k, v in fields.items()
        if ord(k) in _KEPT_FIELDS
    )
    return message(kind, body + b"\0")


def auth_cleartext_request() -> bytes:
    return message(b"R", INT32.pack(3))


def ready_for_query(status: bytes) -> bytes:
    return message(b"Z", status)


def query(sql: str) -> bytes:
    return message(b"Q", sql.encode() + b"\0")


def startup_message(params: dict[str, str], version: int = PROTOCOL_3) -> bytes:
    body = INT32.pack(version) + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()
    )
    return INT32.pack(len(body) + 5) + body + b"\0"


def parse_startup(body: bytes) -> dict[str, str]:
    """Decode the key/value pairs of a StartupMessage body (after the version)."""
    parts = body.split(b"\0")
    params: dict[str, str] = {}
    for key, value in zip(parts[0::2], parts[1::2], strict=False):
        if not key:
            break
        params[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return params


def cstring(buf: bytes | memoryview, pos: int) -> tuple[str, int]:
    """Read a NUL-terminated string at `pos`; return it and the next position."""
    if isinstance(buf, bytes):
        end = buf.index(b"\0", pos)
        return buf[pos:end].decode("utf-8", "replace"), end + 1
    # A view of a whole read: look at a short piece first, not all that follows.
    piece = bytes(buf[pos : pos + 256])
    at = piece.find(b"\0")
    if at < 0:
        piece = bytes(buf[pos:])
        at = piece.index(b"\0")
    return piece[:at].decode("utf-8", "replace"), pos + at + 1


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
