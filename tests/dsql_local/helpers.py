"""Helpers for DSQL Local's own tests: plain psycopg and botocore tokens only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import psycopg

from dsql_local import DsqlLocal, RegionalEndpoint

Connect = Callable[..., psycopg.Connection[Any]]
#: Where a token is for: a DsqlLocal's own endpoint, or one of its regional ones.
Target = DsqlLocal | RegionalEndpoint


def make_token(
    local: Target,
    user: str = "admin",
    *,
    host: str | None = None,
    expires: int = 900,
    session: boto3.Session | None = None,
) -> str:
    """Sign a token the way applications do, with botocore."""
    client = (session or boto3.Session()).client("dsql", region_name=local.region)
    if user == "admin":
        return client.generate_db_connect_admin_auth_token(
            host or local.host, local.region, ExpiresIn=expires
        )
    return client.generate_db_connect_auth_token(
        host or local.host, local.region, ExpiresIn=expires
    )


def open_connection(
    local: Target,
    user: str = "admin",
    *,
    token: str | None = None,
    negotiation: str = "direct",
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    password = token if token is not None else make_token(local, user)
    params: dict[str, Any] = {
        **local.connect_kwargs(user=user),
        "password": password,
        "sslmode": "verify-full",
        "sslnegotiation": negotiation,
        "connect_timeout": 10,
    }
    params.update(kwargs)
    return psycopg.connect(**params)
