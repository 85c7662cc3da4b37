"""Read connection strings and option values: the text-level half of `_config`.

`split_conninfo` takes a ``postgresql://`` URL or a libpq ``key=value``
string apart (our options out, the rest for libpq, quoting honoured); the
other functions turn an option's value (a number, its text, ``off``) into
what `_config` validates.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ._naming import URL_PREFIXES
from .errors import ConfigurationError

DEFAULT_TOKEN_DURATION = 900
MAX_TOKEN_DURATION = 604_800
#: Seconds a connect keeps retrying transient refusals (waking cluster, rate
#: limit, full, endpoint restarting): a cluster scaled down while idle wakes
#: up in seconds, and DSQL admits 100 new connections a second.
DEFAULT_CONNECT_RETRY = 5.0
_OFF = frozenset({"off", "false", "no"})

_PAIR = re.compile(
    r"\s*(?P<key>[^=\s]+)\s*=\s*"
    r"(?:'(?P<quoted>(?:[^'\\]|\\.)*)'|(?P<bare>(?!')(?:[^\s\\]|\\.)*))"
    r"(?=\s|$)"
)
_UNESCAPE = re.compile(r"\\(.)")


def split_conninfo(
    conninfo: str, options: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a conninfo string into `options` and libpq's parameters."""
    ours: dict[str, Any] = {}
    if conninfo.startswith(URL_PREFIXES):
        base, sep, query = conninfo.partition("?")
        if sep:
            # Only our own keys are taken out; the rest is left exactly as
            # written, for libpq to decode (it does not read "+" as a space).
            kept = []
            for part in query.split("&"):
                key, _, value = part.partition("=")
                if unquote(key) in options:
                    ours[unquote(key)] = unquote(value)
                else:
                    kept.append(part)
            conninfo = f"{base}?{'&'.join(kept)}" if kept else base
        return ours, _libpq_parse(conninfo)

    libpq: dict[str, Any] = {}
    for key, value in _tokenize(conninfo):
        (ours if key in options else libpq)[key] = value
    return ours, libpq


def _libpq_parse(conninfo: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as ex:
        raise ConfigurationError(f"invalid connection string: {ex}") from None
    except UnicodeDecodeError:
        # A percent-escape in a URL that does not decode to UTF-8.
        raise ConfigurationError(
            "invalid connection string: a %-escape in the URL is not valid UTF-8"
        ) from None


def _tokenize(conninfo: str) -> list[tuple[str, str]]:
    """Split a libpq ``key=value`` string, honouring its quoting rules."""
    pairs = []
    pos, end = 0, len(conninfo.rstrip())
    while pos < end:
        match = _PAIR.match(conninfo, pos)
        if match is None:
            raise ConfigurationError(
                f"invalid connection string near {conninfo[pos : pos + 20]!r}: expected"
                " key=value pairs (quote values with spaces: key='a b') or a"
                " postgresql:// URL"
            )
        raw = match["quoted"] if match["quoted"] is not None else match["bare"]
        pairs.append((match["key"], _UNESCAPE.sub(r"\1", raw)))
        pos = match.end()
    return pairs


def token_duration(value: Any) -> int:
    if value is None:
        return DEFAULT_TOKEN_DURATION
    try:
        if isinstance(value, bool) or (
            isinstance(value, float) and not value.is_integer()
        ):
            raise ValueError
        seconds = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"token_duration must be a whole number of seconds, got {value!r}"
        ) from None
    if not 1 <= seconds <= MAX_TOKEN_DURATION:
        raise ConfigurationError(
            f"token_duration must be between 1 and {MAX_TOKEN_DURATION} seconds"
            f" (one week), got {seconds}"
        )
    return seconds


def connect_retry_budget(value: Any) -> float:
    """Return the connect retry budget in seconds that `value` asks for (0: off).

    `value` is seconds (a number or its text), ``False`` or ``"off"`` for no
    retry, ``True`` or ``None`` for the default.
    """
    if value is None or value is True:
        return DEFAULT_CONNECT_RETRY
    if value is False or (isinstance(value, str) and value.lower() in _OFF):
        return 0.0
    seconds = _number(value)
    if not seconds >= 0:
        raise ConfigurationError(
            f"connect_retry must be the seconds to keep retrying a refused connect"
            f" (0 or 'off' for never), got {value!r}"
        )
    return seconds


def seconds(value: Any, default: float, name: str) -> float:
    """Return `value` as a positive number of seconds (`default` for None)."""
    if value is None:
        return default
    seconds = _number(value)
    if not seconds > 0:
        raise ConfigurationError(
            f"{name} must be a positive number of seconds, got {value!r}"
        )
    return seconds


def _number(value: Any) -> float:
    """Return `value` (a number or its text) as a finite float, else NaN."""
    if isinstance(value, bool):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    return number if math.isfinite(number) else math.nan
