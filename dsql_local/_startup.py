"""What DSQL Local decides in a connection's startup, without I/O.

The startup conversation (`_login`) reads the client's and the backend's
packets; this module says what they ask for, what is wrong with them and what
goes on to the backend. Nothing here touches a socket, a clock or a lock.
"""

from __future__ import annotations

import re
from typing import Literal

from . import _protocol as pq
from ._strict_rules import RULES_BY_NAME

# The longest startup packet taken.
MAX_STARTUP = 10_000
# Startup parameters that are DSQL Local's business, not the backend's.
_NOT_FORWARDED = frozenset({"replication"})
# How long a write may wait for a row lock before the relay answers it as
# DSQL would (see `_relay`): PostgreSQL's brief waits of its own (a table's
# extension) fit in it; a refusal that was not a conflict only costs a replay.
LOCK_TIMEOUT = "10ms"
TOO_MANY = "Unable to accept connection, too many open connections."
RATE_EXCEEDED = "Unable to accept connection, rate exceeded."
# What PostgreSQL answers a startup for a role it does not have.
_INVALID_AUTHORIZATION = "28000"

PreTls = Literal["ssl", "gssenc", "cancel"]


class Refused(Exception):
    """Answer the client with this FATAL error, then close the connection."""

    def __init__(self, sqlstate: str, message: str, detail: str | None = None):
        super().__init__(sqlstate, message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail

    def response(self) -> bytes:
        """The ErrorResponse to send."""
        return pq.error_response(
            self.sqlstate, self.message, severity="FATAL", detail=self.detail
        )


class TokenBucket:
    """Admit `rate` events per second on average, `burst` at once.

    Fed the time of each event (seconds on a clock that only goes forward);
    tokens come back at `rate` while it passes, up to `burst`.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token at `now` if there is one."""
        last = self._last
        if last is not None and now > last:
            self._tokens = min(self._burst, self._tokens + (now - last) * self._rate)
        if last is None or now > last:
            self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class BackendRefused(Exception):
    """The backend ended the startup with an error to pass on as it is."""


def len_code(data: bytes) -> tuple[int, int]:
    """Split the 8 leading bytes of a startup-phase packet: length and code."""
    length, code = pq.INT32.unpack_from(data, 0)[0], pq.INT32.unpack_from(data, 4)[0]
    return length, code


def kind_len(data: bytes) -> tuple[bytes, int]:
    """Split a message header: type byte and length."""
    return data[:1], pq.INT32.unpack_from(data, 1)[0]


def before_tls(length: int, code: int) -> PreTls:
    """What a packet sent before TLS asks for; a plaintext startup is refused."""
    if length == 8 and code == pq.SSL_REQUEST:
        return "ssl"
    if length == 8 and code == pq.GSSENC_REQUEST:
        return "gssenc"
    if length == 16 and code == pq.CANCEL_REQUEST:
        return "cancel"
    rule = RULES_BY_NAME["plaintext-startup"]
    raise Refused(
        rule.sqlstate,
        rule.message,
        detail="DSQL takes TLS connections only: connect with sslmode=verify-full",
    )


def is_cancel(length: int, code: int) -> bool:
    """Whether a packet sent over TLS is a CancelRequest."""
    return code == pq.CANCEL_REQUEST and length == 16


def check_startup_header(length: int, version: int) -> None:
    """Refuse a startup packet too short, too long or not of protocol 3."""
    if not 8 < length <= MAX_STARTUP or version >> 16 != 3:
        raise Refused("08P01", "invalid startup packet")


def user_and_server(params: dict[str, str], sni: str | None) -> tuple[str, str]:
    """The user a startup packet names and the server name the client sent.

    Refused without a user, or without SNI (the client's TLS server name).
    """
    user = params.get("user", "")
    if not user:
        raise Refused("28000", "no user name in the startup packet")
    if not sni:
        raise Refused("08004", "unable to accept connection, sni was not received")
    return user, sni


def password_size(kind: bytes, size: int) -> int:
    """The body size of the password message whose header says `kind`, `size`."""
    if kind != b"p" or not 4 < size <= 65_536:
        raise Refused("08P01", "expected a password message")
    return size - 4


def password(body: bytes) -> str:
    """The password (the token) a password message's body holds."""
    return body.rstrip(b"\0").decode("utf-8", "replace")


def backend_parameters(params: dict[str, str]) -> dict[str, str]:
    """The startup parameters to send the backend for the client's `params`."""
    forwarded = {k: v for k, v in params.items() if k not in _NOT_FORWARDED}
    # Nothing waits in DSQL: a write that meets another transaction's
    # row gives up at once and is answered, then judged at COMMIT.
    forwarded["options"] = (
        f"-c lock_timeout={LOCK_TIMEOUT} " + forwarded.get("options", "")
    ).strip()
    return forwarded


def server_major(body: bytes) -> int | None:
    """The major version a ParameterStatus ``server_version`` body gives."""
    name, _, rest = body.partition(b"\0")
    if name != b"server_version":
        return None
    digits = re.match(rb"\d+", rest)
    return int(digits.group()) if digits else None


class Greeting:
    """The backend's answer to a startup, message by message, until ready.

    `add` each message; once it returns true, `data` is what to relay to the
    client, `pid` the backend's process id and `major` its PostgreSQL major
    version (None if it did not say). An error from the backend raises
    `Refused` (DSQL's answer) or `BackendRefused` (pass `data` on, then close).
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.pid = 0
        self.key = b""
        """Its BackendKeyData: the process id and the secret a cancel names."""
        self.major: int | None = None

    def add(self, kind: bytes, body: bytes) -> bool:
        """Take one message; true once it was ReadyForQuery."""
        self.data += kind + pq.INT32.pack(len(body) + 4) + body
        if kind == b"K" and len(body) >= 4:
            (self.pid,) = pq.INT32.unpack_from(body)
            self.key = bytes(body)
        if kind == b"S":
            try:
                pq.check_parameter_status(body)
            except pq.ProtocolViolation as exc:
                raise Refused(exc.sqlstate, exc.message) from None
            major = server_major(body)
            if major is not None:
                self.major = major
        if kind == b"E":
            fields = pq.parse_fields(body)
            if fields.get("C") == "53300":
                # The backend's own cap (max_connections) came first.
                raise Refused("53300", TOO_MANY)
            if fields.get("C") == _INVALID_AUTHORIZATION:
                # A role that does not exist, with a valid token.
                rule = RULES_BY_NAME["unknown-role"]
                raise Refused(rule.sqlstate, rule.message, fields.get("M"))
            raise BackendRefused
        return kind == b"Z"
