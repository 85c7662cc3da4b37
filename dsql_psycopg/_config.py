"""Turn a URL, a ``key=value`` string or keyword arguments into one parameter set.

The DSQL-only options (``region``, ``cluster_id``, ``profile``,
``token_duration``, ``connect_retry``, ``endpoint_cooldown``, and in Python
``session`` and ``token_provider``) are taken out here, so libpq never sees
them. Several hosts in libpq's spelling (``host=a,b``, ``postgresql://u@a,b/``)
become one parameter set per endpoint: a token is signed for one host name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import psycopg

from ._conninfo import (
    DEFAULT_CONNECT_RETRY,
    DEFAULT_TOKEN_DURATION,
    MAX_TOKEN_DURATION,
    connect_retry_budget,
    seconds,
    split_conninfo,
    token_duration,
)
from ._naming import (
    CLUSTER_ID,
    DSQL_HOST,
    ENDPOINT_FORM,
    REGION,
    endpoint_host,
)
from .errors import ConfigurationError

__all__ = [
    "DEFAULT_CONNECT_RETRY",
    "DEFAULT_ENDPOINT_COOLDOWN",
    "DEFAULT_TOKEN_DURATION",
    "DSQL_OPTIONS",
    "MAX_TOKEN_DURATION",
    "PYTHON_OPTIONS",
    "DsqlParams",
    "Endpoints",
    "connect_retry_budget",
    "is_dsql_host",
    "parse",
    "parse_endpoints",
]

if TYPE_CHECKING:
    import boto3

    from ._types import TokenProvider

DEFAULT_USER = "admin"
DEFAULT_DBNAME = "postgres"
#: Seconds an endpoint that failed a connect is tried after the others.
DEFAULT_ENDPOINT_COOLDOWN = 30.0
#: libpq's connect_timeout with several endpoints, unless one is given: an
#: endpoint that drops packets must not hold a connect for minutes when
#: another one answers.
FAILOVER_CONNECT_TIMEOUT = 5

#: Options understood in a URL query, a conninfo string or as keywords.
DSQL_OPTIONS = frozenset(
    {
        "region",
        "cluster_id",
        "profile",
        "token_duration",
        "connect_retry",
        "endpoint_cooldown",
    }
)
#: Options that only make sense as Python objects.
PYTHON_OPTIONS = frozenset({"session", "token_provider"})

# libpq's variables read here: the token depends on the first three, and a
# list of hosts splits into endpoints with its lists of ports and addresses.
_ENV_DEFAULTS = (
    ("host", "PGHOST"),
    ("user", "PGUSER"),
    ("dbname", "PGDATABASE"),
    ("port", "PGPORT"),
    ("hostaddr", "PGHOSTADDR"),
)
# Every environment variable a parse reads (the cache's key holds them all).
_ENV_READ = (*(name for _, name in _ENV_DEFAULTS), "PGCONNECT_TIMEOUT")
# Values a cached parse may be keyed on: plain data, never a user's object.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_PROFILE_AND_SESSION = (
    "pass either profile= or session=, not both: a session already has a profile"
)
# The libpq parameters that hold one value per host.
_HOST_LISTS = ("host", "hostaddr", "port")


def is_dsql_host(host: str) -> bool:
    """Tell whether `!host` is a DSQL endpoint name (``<id>.dsql.<region>.on.aws``)."""
    return DSQL_HOST.fullmatch(host) is not None


@dataclass(frozen=True)
class DsqlParams:
    """Everything needed to open one connection, validated.

    `libpq` holds the parameters passed to libpq (host, port, user, dbname and
    whatever else the user gave), without the password: that is added at
    connect time.
    """

    host: str
    user: str
    region: str | None
    profile: str | None
    token_duration: int
    libpq: Mapping[str, Any] = field(repr=False)
    session: boto3.Session | None = field(default=None, repr=False)
    token_provider: TokenProvider | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Endpoints:
    """The endpoints one connect may use, in the user's order, and how."""

    each: tuple[DsqlParams, ...]
    """One parameter set per endpoint; the first is the preferred one."""
    random_order: bool
    """Try them in a random order (``load_balance_hosts=random``)."""
    cooldown: float
    """Seconds a failed endpoint is tried last."""
    connect_retry: float
    """Seconds to keep retrying transient refusals (0: never)."""


def parse_endpoints(conninfo: str = "", **kwargs: Any) -> Endpoints:
    """Merge `!conninfo` and `!kwargs` (which win) into validated endpoints."""
    # A pool connects with the same arguments over and over: parsing them once
    # keeps our share of a connect down to signing the token. The cache holds
    # plain values only (strings, numbers): a session or a token provider is
    # applied to the cached result, so the cache never keeps one alive, and
    # every environment variable the parse reads is part of the key.
    env = tuple(os.environ.get(name) for name in _ENV_READ)
    objects = {k: kwargs.pop(k) for k in PYTHON_OPTIONS & kwargs.keys()}
    if not isinstance(conninfo, str) or not all(
        type(v) in _PLAIN for v in kwargs.values()
    ):
        return _parse(conninfo, {**kwargs, **objects}, env)
    endpoints = _parse_cached(conninfo, tuple(sorted(kwargs.items())), env)
    if not any(v is not None for v in objects.values()):
        return endpoints
    return _with_objects(endpoints, objects)


def _with_objects(endpoints: Endpoints, objects: Mapping[str, Any]) -> Endpoints:
    """Return `endpoints` with the session and token provider set, validated."""
    session, provider = objects.get("session"), objects.get("token_provider")
    _check_objects(session, provider)
    if session is not None and any(p.profile is not None for p in endpoints.each):
        raise ConfigurationError(_PROFILE_AND_SESSION)
    each = tuple(
        replace(p, session=session, token_provider=provider) for p in endpoints.each
    )
    return replace(endpoints, each=each)


def parse(conninfo: str = "", **kwargs: Any) -> DsqlParams:
    """Like `parse_endpoints`, for one endpoint only."""
    endpoints = parse_endpoints(conninfo, **kwargs)
    if len(endpoints.each) > 1:
        hosts = ", ".join(p.host for p in endpoints.each)
        raise ConfigurationError(
            f"several hosts given ({hosts}): this takes one endpoint; pass one"
            " host name"
        )
    return endpoints.each[0]


@functools.lru_cache(maxsize=128)
def _parse_cached(
    conninfo: str, items: tuple[tuple[str, Any], ...], env: tuple[str | None, ...]
) -> Endpoints:
    return _parse(conninfo, dict(items), env)


def _parse(
    conninfo: str, kwargs: Mapping[str, Any], env: tuple[str | None, ...]
) -> Endpoints:
    if not isinstance(conninfo, str):
        raise ConfigurationError(
            f"conninfo must be a string (a postgresql:// URL or key=value pairs),"
            f" got {type(conninfo).__name__}"
        )
    ours, libpq = split_conninfo(conninfo, DSQL_OPTIONS)
    for key, value in kwargs.items():
        if value is None:
            continue
        if key in DSQL_OPTIONS or key in PYTHON_OPTIONS:
            ours[key] = value
        else:
            libpq[key] = value
    # libpq's own fallbacks (see _ENV_DEFAULTS).
    defaults = dict(zip(_ENV_READ, env, strict=True))
    for key, name in _ENV_DEFAULTS:
        value = defaults[name]
        if value and not libpq.get(key):
            libpq[key] = value
    return _validate(ours, libpq, connect_timeout_env=defaults["PGCONNECT_TIMEOUT"])


def _validate(
    ours: dict[str, Any], libpq: dict[str, Any], *, connect_timeout_env: str | None
) -> Endpoints:
    if "password" in libpq or "passfile" in libpq:
        raise ConfigurationError(
            "do not set a password: dsql_psycopg signs an IAM token for every"
            " connection; pass token_provider=... to supply tokens yourself"
        )
    region = _optional_str(ours, "region")
    if region is not None and not REGION.fullmatch(region):
        raise ConfigurationError(
            f"region {region!r} does not look like an AWS region (e.g. 'us-east-1')"
        )
    balance = str(libpq.get("load_balance_hosts") or "disable")
    if balance not in ("disable", "random"):
        raise ConfigurationError(
            f"load_balance_hosts must be 'disable' or 'random', got {balance!r}"
        )
    hosts = _split_hosts(libpq)
    if len(hosts) > 1:
        if ours.get("cluster_id") is not None:
            raise ConfigurationError(
                "cluster_id names one cluster: for a multi-Region cluster give the"
                " endpoint names as host='<id1>.dsql.<region1>.on.aws,<id2>...'"
            )
        if "connect_timeout" not in libpq and not connect_timeout_env:
            libpq["connect_timeout"] = FAILOVER_CONNECT_TIMEOUT
        for key in _HOST_LISTS:
            libpq.pop(key, None)
    each = tuple(_endpoint(ours, {**libpq, **one}, region) for one in hosts)
    return Endpoints(
        each=each,
        random_order=balance == "random",
        cooldown=seconds(
            ours.get("endpoint_cooldown"),
            DEFAULT_ENDPOINT_COOLDOWN,
            "endpoint_cooldown",
        ),
        connect_retry=connect_retry_budget(ours.get("connect_retry")),
    )


def _split_hosts(libpq: Mapping[str, Any]) -> list[dict[str, str]]:
    """Split libpq's comma lists of hosts, host addresses and ports, per host.

    As in libpq, one port serves every host, and an empty port or host
    address in a list means the default for that host.
    """
    lists = {
        key: str(libpq[key]).split(",")
        for key in _HOST_LISTS
        if libpq.get(key) not in (None, "")
    }
    count = len(lists.get("host", [""]))
    for key, values in lists.items():
        if key == "port" and len(values) == 1:
            lists[key] = values * count
        elif len(values) != count:
            also = " (or one port for all)" if key == "port" else ""
            raise ConfigurationError(
                f"{count} host(s) but {len(values)} values in {key}="
                f"{libpq[key]!r}: give one {key} per host{also}, in the same order"
            )
    if count == 1:
        return [{}]
    if any(not host.strip() for host in lists["host"]):
        raise ConfigurationError(
            f"an empty host name in host={libpq['host']!r}: DSQL is reached by"
            " endpoint name; separate the names with commas"
        )
    return [
        {key: values[i].strip() for key, values in lists.items() if values[i].strip()}
        for i in range(count)
    ]


def _endpoint(
    ours: Mapping[str, Any], libpq: dict[str, Any], region: str | None
) -> DsqlParams:
    """Validate the parameters of one endpoint."""
    host = _host(
        str(libpq.get("host") or ""), _optional_str(ours, "cluster_id"), region
    )
    if match := DSQL_HOST.fullmatch(host):
        cluster_id, host_region = match["id"], match["region"].lower()
        if not CLUSTER_ID.fullmatch(cluster_id):
            raise ConfigurationError(
                f"malformed cluster id {cluster_id!r} in host {host!r}: a cluster id"
                " is exactly 26 lowercase letters and digits"
            )
        if region is not None and region != host_region:
            raise ConfigurationError(
                f"region {region!r} contradicts host {host!r}, which is in"
                f" {host_region!r}; drop region= or fix the host"
            )
        region = host_region

    libpq["host"] = host
    libpq["user"] = user = str(libpq.get("user") or DEFAULT_USER)
    libpq.setdefault("dbname", DEFAULT_DBNAME)
    # No port default of ours: libpq's is DSQL's 5432, and it honours PGPORT.

    session, provider = ours.get("session"), ours.get("token_provider")
    _check_objects(session, provider)
    profile = _optional_str(ours, "profile")
    if profile is not None and session is not None:
        raise ConfigurationError(_PROFILE_AND_SESSION)
    try:
        # Let libpq itself refuse unknown keywords and malformed values now,
        # rather than from deep inside connect().
        psycopg.conninfo.make_conninfo("", **libpq)
    except psycopg.ProgrammingError as ex:
        raise ConfigurationError(f"invalid connection parameters: {ex}") from None
    return DsqlParams(
        host=host,
        user=user,
        region=region,
        profile=profile,
        token_duration=token_duration(ours.get("token_duration")),
        libpq=MappingProxyType(libpq),
        session=session,
        token_provider=provider,
    )


def _check_objects(session: object, provider: object) -> None:
    if session is not None and not hasattr(session, "client"):
        raise ConfigurationError(
            f"session must be a boto3.Session, got {type(session).__name__}"
        )
    if provider is not None and not callable(provider):
        raise ConfigurationError(
            f"token_provider must be callable, got {type(provider).__name__}"
        )


def _host(host: str, cluster_id: str | None, region: str | None) -> str:
    if cluster_id is not None:
        if not CLUSTER_ID.fullmatch(cluster_id):
            raise ConfigurationError(
                f"malformed cluster_id {cluster_id!r}: a cluster id is exactly"
                " 26 lowercase letters and digits"
            )
        if host and host != cluster_id and not host.startswith(f"{cluster_id}."):
            raise ConfigurationError(
                f"cluster_id {cluster_id!r} contradicts host {host!r}; give one of them"
            )
        host = cluster_id
    if not host:
        raise ConfigurationError(
            f"no host given: pass a DSQL endpoint ('{ENDPOINT_FORM}'),"
            " or cluster_id= with region="
        )
    if host.startswith("/"):
        raise ConfigurationError(
            f"host {host!r} is a unix socket directory: DSQL is reached over TLS only"
        )
    if CLUSTER_ID.fullmatch(host):
        if region is None:
            raise ConfigurationError(
                f"cluster id {host!r} needs a region: pass region='us-east-1' (for"
                " example) or the full endpoint name"
            )
        return endpoint_host(host, region)
    return host


def _optional_str(ours: Mapping[str, Any], key: str) -> str | None:
    value = ours.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{key} must be a non-empty string, got {value!r}")
    return value
